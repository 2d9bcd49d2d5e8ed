"""`ft node`: runs on every node of a job and starts the training processes.

It maps the backend's variables (through the backend's `node_vars`) to one `Rendezvous`
(backends/rendezvous.py) and the job id the trainer reads (job_id.py), sets the NCCL/RDMA
environment from the cluster profile plus what it finds on the node, then starts `torchrun` /
`accelerate launch` and supervises the ranks (supervise.py: stop signals, grace period, the
resumable exit code). Pure Python: nothing here imports torch.
"""
