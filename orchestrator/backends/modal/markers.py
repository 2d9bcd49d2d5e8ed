"""Lines the rendered app prints for ft to read back (jobs.py), kept apart from render.py so
that reading a job's state does not load the renderer."""

RESULT_MARK = "ft-modal-result:"  # the chain's end: "succeeded", or "failed in STAGE"
APP_ID_MARK = "ft-modal-app:"  # what `launch` prints: the app id ft records
