"""The ranks of a job: where this process sits, the process group and its timeouts, peer
heartbeats, FSDP2 sharding and export, DeepSpeed, GPU choice, the NCCL transport, `ft doctor`."""
