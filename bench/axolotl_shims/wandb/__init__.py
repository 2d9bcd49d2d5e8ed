"""Import stand-in for wandb (Axolotl's callbacks import it at module load; the bench never
logs to W&B: `use_wandb: false`, WANDB_DISABLED=true). Any use raises."""

__version__ = "0.0.0+ft-bench-shim"
run = None


def _unavailable(*args, **kwargs):
    raise RuntimeError("wandb is not installed (ft bench shim): do not set use_wandb")


init = log = save = log_artifact = finish = login = watch = _unavailable


class Artifact:
    def __init__(self, *args, **kwargs):
        _unavailable()


class Table:
    def __init__(self, *args, **kwargs):
        _unavailable()
