"""The torch-free contract between the orchestrator and the trainer.

What both sides read lives here (the training keys, the user-facing errors, exit codes,
shipped-file names; the `launch:` schema is the orchestrator's own,
orchestrator/spec/launch_schema.py), so that both sides import them and the arrows point one
way: orchestrator -> trainer.contract, trainer -> trainer.contract, never trainer ->
orchestrator. Nothing here imports torch.
"""
