"""How a stopped job says "resume me" through every layer (trainer -> torchrun -> ft node ->
the scheduler's job step or task / `ft launch --backend local`).

torchrun reports any worker's non-zero exit as its own exit 1, so the code cannot travel
up by itself: each rank that stopped cleanly (complete checkpoint saved) also leaves a
report in STOP_REPORT_DIR, and `ft node` turns "every local rank reported" into
RESUMABLE_EXIT_CODE. 75 is EX_TEMPFAIL ("temporary failure, retry"): unlike 143 it is
never what a shell reports for a process killed by SIGTERM before it could save.

A rank that finished training (final model saved) leaves a FINISHED_REPORT there too: a
stop signal that comes after the last step, or torchrun failing in its exit barrier while it
waits for the other nodes, must not turn a completed run into a crash.
"""

RESUMABLE_EXIT_CODE = 75
# A second Ctrl-C: stopped at once, unsaved; what a shell reports for a Ctrl-C'd process
# (128 + SIGINT), on `ft train` and on `ft node` alike.
ABORT_EXIT_CODE = 130
STOP_REPORT_DIR = "FT_STOP_REPORT_DIR"  # env: where ranks report a clean stop to ft node
STOP_GRACE_ENV = "FT_STOP_GRACE_S"  # env: seconds ft node gives the ranks to save
STOP_REPORT = "rank-{rank}.json"  # in STOP_REPORT_DIR: this rank saved and stopped
FINISHED_REPORT = "finished-rank-{rank}.json"  # in STOP_REPORT_DIR: this rank completed
# In STOP_REPORT_DIR: this rank stopped on a user error (disk full, a bad file), already told;
# it exits 0 so that torchrun adds no traceback, and ft node exits with the error's code.
USER_ERROR_REPORT = "error-rank-{rank}.json"
# In STOP_REPORT_DIR, written by `ft node` before it signals the ranks (its text: the signal's
# name): a rank that had the stop signals ignored when the signal came (torchrun starts it
# with them ignored, until `ft train` installs its handler) still finds the stop here.
STOP_MARK = "stop-requested"
