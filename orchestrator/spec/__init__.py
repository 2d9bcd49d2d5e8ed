"""The spec file: YAML with line numbers (yaml_source), validation of both halves with every
problem at once (load), cross-field rules (rules) and the JSON Schema (schema). The models
themselves are the torch-free contract in trainer/torch_free/."""
