"""What a person reads from a training job: rank 0 reports, the other ranks only warn.

Every rank of a job writes into the same log (torchrun relays its workers, the backends
collect every node). Left alone, each rank prints every progress bar and metrics line, and
the dependencies add their own notices, on every rank and often on every step. So, once
per process at the start of `ft train`:

- ft's own progress (the `ft.*` loggers) is logged at INFO by global rank 0; everything
  else, and every other rank, logs warnings and errors only; in a job of several
  processes every record, Python warnings included, starts with `[node N rank R]`;
- transformers' and datasets' records go through that same handler and format;
- progress bars of datasets, transformers and huggingface_hub run on rank 0 only (the
  Trainer's own bar is TrainingArguments.disable_tqdm, and its metrics line FtTrainer's);
  where stderr is not a terminal (a log), each bar is one line, not one per redraw
  (trainer/console/log_lines.py);
- known dependency noise, listed below with the reason for each entry, is said once by
  rank 0 or not at all. Nothing else is silenced: an unknown warning still shows.
"""

from __future__ import annotations

import atexit
import logging
import re
import sys
import warnings

from trainer.console.log_lines import LogLines
from trainer.distributed.world_ranks import WorldRanks

# (logger, message pattern, say it once on rank 0 or never, why).
NOISY_RECORDS = (
    ("bitsandbytes.autograd._functions", r"MatMul8bitLt: inputs will be cast", True,
     "true, but logged on every 8-bit matmul call (28 lines for 3 steps of the tiny model)"),
    ("DeepSpeed", r"Setting accelerator to", True,
     "DeepSpeed's device guess, printed by every rank that imports it"),
    ("transformers.training_args", r"prefer `fsdp_config\['activation_checkpointing'\]`",
     False, "advice for FSDP that accelerate wraps; ft wraps the layers itself, where "
     "transformers' per-layer recompute is the one that applies (trainer/distributed/fsdp.py)"),
)

# (category, message pattern, module that warns, why): deprecation notices meant for the
# library that calls the old API, not for a person training a model, who can do nothing.
IGNORED_WARNINGS = (
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated", r"transformers\.",
     "peft reads transformers' old property name while wrapping the model"),
    (UserWarning, r"`_get_pg_default_device` will be deprecated",
     r"torch\.distributed\.checkpoint\.", "torch's own checkpoint code calls it, per save"),
    (UserWarning, r"Multiple backends are registered with this ProcessGroup",
     r"torch\.distributed\.checkpoint\.", "the same call, on a CPU+GPU process group"),
    (FutureWarning, r"`torch\.distributed\.all_gather_into_tensor` is deprecated",
     r"torch\.distributed\.", "DeepSpeed ZeRO calls torch's old collective name"),
)


def setup_console(world: WorldRanks) -> None:
    """Logging, progress bars and noise filters for this rank (see the module doc)."""
    _log_lines()  # first: the logging handler below keeps the stream it is given
    _logging(world)
    _progress_bars(world)
    for name, pattern, once, _why in NOISY_RECORDS:
        logging.getLogger(name).addFilter(OnceOnMain(pattern, once and world.is_main))
    for category, pattern, module, _why in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category, module=module)


def _logging(world: WorldRanks) -> None:
    prefix = f"[node {world.node_rank} rank {world.rank}] " if world.distributed else ""
    logging.basicConfig(level=logging.WARNING, format=f"{prefix}%(name)s: %(message)s",
                        force=True)
    # Dependencies' INFO records (accelerate's four lines per checkpoint, ...) stay out.
    logging.getLogger("ft").setLevel(logging.INFO if world.is_main else logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn -> the `py.warnings` logger: same prefix
    logging.getLogger("py.warnings").addFilter(_without_final_newline)
    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as transformers_logging

    # Their own handlers print without the rank; propagate to ours instead.
    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
    datasets_logging.enable_propagation()
    for handler in list(datasets_logging.get_logger().handlers):
        datasets_logging.get_logger().removeHandler(handler)


def quiet_for_a_model_build() -> None:
    """For `ft init --example`, which saves a small model: transformers would import
    DeepSpeed (when installed), which announces the accelerator it guessed, and draw a
    progress bar for one small file."""
    from trainer.distributed.deepspeed_config import keep_deepspeed_unloaded

    keep_deepspeed_unloaded()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def _log_lines() -> None:
    if isinstance(sys.stderr, LogLines) or sys.stderr.isatty():
        return
    sys.stderr = LogLines(sys.stderr)
    atexit.register(sys.stderr.close)


def _progress_bars(world: WorldRanks) -> None:
    if world.is_main:
        return
    import datasets
    from transformers.utils import logging as transformers_logging

    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()  # huggingface_hub's downloads too


def _without_final_newline(record: logging.LogRecord) -> bool:
    """A captured warning's text ends with a newline (warnings.formatwarning's), and the
    handler adds its own: a blank line after every warning."""
    record.msg, record.args = record.getMessage().rstrip("\n"), ()
    return True


class OnceOnMain(logging.Filter):
    """Lets the first record matching `pattern` through if `say_once` (given on rank 0
    only), drops every other match. Records that do not match pass untouched."""

    def __init__(self, pattern: str, say_once: bool) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)
        self.say_once = say_once
        self.said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.pattern.search(record.getMessage()):
            return True
        if not self.say_once or self.said:
            return False
        self.said = True
        return True
