"""What a run writes to `output_dir` and how a restart trusts it: complete checkpoints and
their manifests, rotation, the resume guard, the one-writer lease, a full disk."""
