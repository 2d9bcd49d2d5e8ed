"""`ft train / preprocess / merge-lora / inference`: the in-container commands.

They import torch and transformers, so they load the trainer lazily: `ft --help` and
`ft render` stay light.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.options import ForceOpt, OverrideOpt, examples, trainer_switches
from orchestrator.train_stack import needs_train_stack
from trainer.torch_free.errors import UserError

SpecArg = Annotated[Path, typer.Argument(help="The spec YAML.", show_default=False)]


def _training_config(spec_path: Path):
    from orchestrator.cli.options import load_for_cli

    return load_for_cli(spec_path).training


@needs_train_stack("`ft train`")
def train(spec: SpecArg, force: ForceOpt = False, override: OverrideOpt = False) -> None:
    """Fine-tune as the spec says (one process, or one rank under torchrun)."""
    from orchestrator.cli.allocator_env import allocator_env
    from trainer.loop.stop_signals import STOPS

    # Before anything can start CUDA (reading the spec may ask for the GPU's memory): the
    # allocator reads its setting once, when it starts.
    os.environ.update(allocator_env(os.environ))

    # First of all: a stop that comes while the spec and the trainer stack load must not be
    # lost (a rank starts with the stop signals ignored) nor kill the process (Ctrl-C).
    STOPS.install()
    try:
        output = _train(spec, force, override)
    except UserError as exc:
        _user_error_under_ft_node(exc)
        raise
    if os.environ.get("RANK", "0") == "0":  # one line per job, not one per rank
        typer.echo(f"trained model in {output}")


def _train(spec: Path, force: bool, override: bool) -> Path:
    from orchestrator.cli.launcher_hint import single_process_problem
    from orchestrator.cli.options import load_for_cli
    from orchestrator.spec.local_checks import require_local_files

    loaded = load_for_cli(spec)
    require_local_files(loaded)  # the same check `ft validate` makes for --backend local
    cfg = loaded.training
    problem = single_process_problem(cfg, spec, os.environ)
    if problem:
        raise UserError(problem)
    from trainer.distributed.gpu_choice import use_one_gpu_outside_launcher

    # First: importing the trainer stack (peft -> bitsandbytes) already starts the CUDA
    # driver, which reads CUDA_VISIBLE_DEVICES once.
    note = use_one_gpu_outside_launcher()
    if note:
        typer.echo(note, err=True)
    from orchestrator.node.job_id import job_id_outside_node
    from trainer.loop.train import train as run_training

    os.environ.update(trainer_switches(force, override))
    # Under a launcher of the user's own (`srun torchrun ... ft train`), not `ft node`.
    os.environ.update(job_id_outside_node(os.environ))
    from orchestrator.cli.train_layout import settle_layout

    cfg, layout = settle_layout(loaded, os.environ)  # DDP / HSDP when the spec leaves it to ft
    if layout is not None and os.environ.get("RANK", "0") == "0":
        typer.echo(f"ft: {layout.line}", err=True)
    return run_training(cfg)


def _user_error_under_ft_node(exc: UserError) -> None:
    """Under ft node a rank says its user error (disk full, ...) once, as `ft` does, and
    leaves it to ft node: exit 0, since torchrun buries a non-zero exit in a traceback. An
    error every rank reached together (a failed pre-flight) is said and reported by each
    node's local rank 0 only; the others leave quietly."""
    from trainer.loop.stop_signals import report_user_error
    from trainer.torch_free.exit_codes import STOP_REPORT_DIR

    if not os.environ.get(STOP_REPORT_DIR):
        return
    if getattr(exc, "said_by_every_rank", False) and os.environ.get("LOCAL_RANK", "0") != "0":
        raise SystemExit(0) from None
    # Said before reported: ft node stops the node's other ranks once it sees the report.
    typer.echo(f"error: {exc}", err=True)
    report_user_error(str(exc), exc.exit_code)
    raise SystemExit(0) from None


@needs_train_stack("`ft preprocess`")
def preprocess(
    spec: SpecArg,
    debug: Annotated[bool, typer.Option(help="Show a few rows with masked tokens marked.")]
    = False,
) -> None:
    """Tokenize (and pack) the data once into dataset_prepared_path."""
    import json

    from trainer.data.pipeline import describe_rows, prepare_data
    from trainer.models.load import load_tokenizer

    cfg = _training_config(spec)
    tokenizer = load_tokenizer(cfg)
    data = prepare_data(cfg, tokenizer, show_progress=True)
    typer.echo(json.dumps(data.stats, indent=2, default=str))
    if debug:
        typer.echo(describe_rows(data.train, tokenizer))


@needs_train_stack("`ft merge-lora`")
def merge_lora(
    spec: SpecArg,
    cpu: Annotated[bool, typer.Option("--cpu", help="Merge on the CPU.")] = False,
) -> None:
    """Merge the trained adapter into the base model -> output_dir/merged."""
    from trainer.models.merge_lora import merge_lora as run_merge

    try:
        target = run_merge(_training_config(spec), on_cpu=cpu)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    typer.echo(f"merged model in {target}")


@needs_train_stack("`ft inference`")
def inference(
    spec: SpecArg,
    prompt: Annotated[str | None, typer.Option(help="The prompt (default: read stdin).")]
    = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    merged: Annotated[bool | None, typer.Option("--merged/--adapter", help="Use the merged "
                                                "model or base + adapter (default: merged "
                                                "if it exists).")] = None,
) -> None:
    """Generate with the trained model, using the training chat template."""
    from trainer.models.inference import generate, load_for_inference

    text = prompt if prompt is not None else sys.stdin.read()
    if not text.strip():
        raise UserError("no prompt: pass --prompt or pipe text on stdin")
    model, tokenizer = load_for_inference(_training_config(spec), merged)
    typer.echo(generate(model, tokenizer, text, max_new_tokens=max_new_tokens,
                        temperature=temperature))


def register(app: typer.Typer) -> None:
    app.command(epilog=examples(
        "ft train examples/tiny/tiny.yaml",
        "ft train spec.yaml --override   (resume although the spec changed)",
        "torchrun --nproc-per-node 8 --no-python ft train spec.yaml   (what ft node runs)"))(train)
    app.command(epilog=examples("ft preprocess spec.yaml",
                                "ft preprocess spec.yaml --debug | less"))(preprocess)
    app.command("merge-lora", epilog=examples("ft merge-lora spec.yaml",
                                              "ft merge-lora spec.yaml --cpu"))(merge_lora)
    app.command(epilog=examples(
        'ft inference spec.yaml --prompt "Write a haiku about GPUs."',
        "echo 'Summarise: ...' | ft inference spec.yaml --adapter"))(inference)
