"""After submission, the backend-independent half of a job's life: submit (secrets, the
tool's readiness, files, the rendered argv, the record), the state file of jobs ft launched
(`store`), and `ft status / list / launch --watch` (report, watch, progress). What each
backend's tool prints is parsed by that backend's own `jobs.py` under orchestrator/backends/,
with the job record and status it fills in (backends/job_model.py) and the helpers for tool
output (backends/tool_output.py) beside the protocol that names them.
"""
