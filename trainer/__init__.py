"""ft's in-container trainer. Importing this package must not import torch: the CLI relies on it."""
