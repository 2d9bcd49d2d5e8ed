"""The contract between the orchestrator and the trainer, named for what makes it shareable:
it imports no torch, so the base install (the CLI on a laptop or in CI) ships it too.

What both sides read lives here (the training keys, the user-facing errors, exit codes,
shipped-file names; the `launch:` schema is the orchestrator's own,
orchestrator/spec/launch_schema.py), so that both sides import them and the arrows point one
way: orchestrator -> trainer.torch_free, trainer -> trainer.torch_free, never trainer ->
orchestrator. Nothing here imports torch.
"""
