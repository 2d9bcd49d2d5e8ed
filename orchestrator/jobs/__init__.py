"""After submission: the jobs ft launched, their status, logs and cancellation.

`store` remembers every submitted job in a small state file; one adapter per backend
(`slurm`, `dstack`, `skypilot`) maps status / logs / cancel to that backend's own tool through
the process seam (`orchestrator.process.run_cmd`, and `stream_cmd` for followed logs).
"""
