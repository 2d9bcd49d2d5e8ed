"""Test-only pause points that hold a job at one start-up stage until the test has sent its
stop signal, so a stop lands in that stage every time, however fast or loaded the machine.

FT_TEST_STOP_STAGE names the stage, FT_TEST_STOP_DIR a directory: the paused process
writes `<stage>-<who>` there, the test sees it, signals `ft launch` and writes `signalled`;
the process then waits for its node's stop mark (ft node wrote it: the signal reached the
node) and a moment more for the signal itself, and goes on. FT_TEST_STOP_RANKS (default:
all) says which ranks pause.

- `torchrun`: `ft node` about to start the launcher (audit hook on subprocess.Popen);
- `imports`: a rank importing the CLI, its stop signals still ignored (audit hook on import);
- `data`, `model`: a rank about to prepare the data / load the model (trainer.loop.train's
  functions wrapped when FT_TRAINER_HOOKS imports this module);
- `step`: the first optimizer step (a callback from `install`, the FT_TRAINER_HOOKS entry).
Sleeping changes no number.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from trainer.torch_free.exit_codes import STOP_MARK, STOP_REPORT_DIR

STAGE_ENV, DIR_ENV, RANKS_ENV = "FT_TEST_STOP_STAGE", "FT_TEST_STOP_DIR", "FT_TEST_STOP_RANKS"
HOOK = "tests.support.stop_stages:install"
SIGNALLED = "signalled"
WAIT_S = 60


def env(stage: str, directory: Path, ranks: str | None = None) -> dict[str, str]:
    """What a launch's environment gets to pause at `stage` (the site dir goes first on
    PYTHONPATH so that every process of the job imports the pause point)."""
    site = Path(__file__).parent / "stop_stage_site"
    repo = Path(__file__).resolve().parents[2]
    extra = {"FT_TRAINER_HOOKS": HOOK} if stage in ("data", "model", "step") else {}
    return {STAGE_ENV: stage, DIR_ENV: str(directory), "PYTHONPATH": f"{site}:{repo}",
            **({RANKS_ENV: ranks} if ranks is not None else {}), **extra}


def _armed(stage: str) -> bool:
    if os.environ.get(STAGE_ENV) != stage:
        return False
    ranks = os.environ.get(RANKS_ENV)
    return ranks is None or os.environ.get("RANK") in ranks.split(",")


def pause(who: str) -> None:
    directory = Path(os.environ[DIR_ENV])
    (directory / f"{os.environ[STAGE_ENV]}-{who}").touch()
    deadline = time.monotonic() + WAIT_S
    while not (directory / SIGNALLED).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    reports = os.environ.get(STOP_REPORT_DIR)
    while reports and not (Path(reports) / STOP_MARK).exists() \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the signal itself, right behind the mark


def _audit(stage: str, trigger) -> None:
    fired = []

    def hook(event: str, args: tuple) -> None:
        if not fired and trigger(event, args):
            fired.append(True)
            pause(f"pid{os.getpid()}")

    sys.addaudithook(hook)


def _wrap(module, name: str) -> None:
    original = getattr(module, name)

    def paused(*args, **kwargs):
        pause(f"rank{os.environ.get('RANK', '0')}")
        return original(*args, **kwargs)

    setattr(module, name, paused)


def install(trainer) -> None:
    """FT_TRAINER_HOOKS entry: pause at the start of the first optimizer step."""
    if not _armed("step"):
        return
    from transformers import TrainerCallback

    class _FirstStep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                pause(f"rank{os.environ.get('RANK', '0')}")
            return control

    trainer.add_callback(_FirstStep())


if _armed("torchrun") and "RANK" not in os.environ:
    _audit("torchrun", lambda event, args: event == "subprocess.Popen"
           and Path(str((args[1] or [""])[0])).name == "torchrun")
if _armed("imports") and "RANK" in os.environ:
    _audit("imports", lambda event, args: event == "import" and args[0] == "typer")
if _armed("data") or _armed("model"):
    import trainer.loop.train

    _wrap(trainer.loop.train, "prepare_data" if _armed("data") else "load_model")
