"""The variables through which `ft train` / `ft launch` switches reach the trainer on every
rank of a job (`ft launch` puts them into the job's environment like `launch.env`)."""

# --force: take over output_dir's lease from the run holding it
# (trainer/checkpoint/output_lease.py).
FORCE_LEASE_ENV = "FT_FORCE_LEASE"
# --override: resume although the spec changed what the checkpoint was trained with
# (trainer/checkpoint/resume_guard.py).
RESUME_OVERRIDE_ENV = "FT_RESUME_OVERRIDE"
