"""`ft node`: runs on every node of a job and starts the training processes.

It maps the backend's variables (dstack, SkyPilot, Slurm, local) to one `World`, sets the
NCCL/RDMA environment from the cluster profile plus what it finds on the node, and execs
`torchrun` / `accelerate launch`. Pure Python: nothing here imports torch.
"""
