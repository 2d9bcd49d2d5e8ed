"""The torch-free contract between the orchestrator and the trainer.

The spec's models (training keys, `launch:`) and the user-facing errors live here so that
both sides import them and the arrows point one way: orchestrator -> trainer.contract,
trainer -> trainer.contract, never trainer -> orchestrator. Nothing here imports torch.
"""
