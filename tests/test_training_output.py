"""What a person reads from `ft launch --backend local --nodes 2` of the tiny example: rank 0
reports (progress bars, one metrics line per logging step), the other ranks only warn,
labelled with their node and rank, and known dependency noise stays out."""

from __future__ import annotations

import ast
import os
import re

import pytest

from tests.cli_runner import run_ft
from tests.support import rank_voices
from tests.train_helpers import free_port, summary, write_tiny_spec

TQDM_BAR = re.compile(r"\d+%\|")  # "Packing:  45%|████▌     | 37/83"
# What a record looks like without ft's label: "ft.model: ...", "/x/y.py:12: FutureWarning: ",
# "{'loss': ...". (`ft node`'s own lines read "ft node: ...", with a space.)
BARE_RECORD = re.compile(r"[\w.-]+: |\S+\.py:\d+: \w*Warning: |\{'")


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, tiny_model_dir):
    """The tiny example on 2 emulated nodes, with a hook that speaks on every rank."""
    tmp = tmp_path_factory.mktemp("two-node-output")
    spec = write_tiny_spec(tmp, tiny_model_dir, max_steps=6, logging_steps=2, save_steps=6,
                           eval_steps=3, launch={"nodes": 2})
    result = run_ft("launch", str(spec), "--backend", "local", "--master-port",
                    str(free_port()), cwd=tmp,
                    env={**os.environ, "FT_TRAINER_HOOKS": rank_voices.HOOK})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout, tmp / "out"


def _logged(log: str, key: str) -> list[tuple[str, int]]:
    """(node prefix, step) of every printed metrics line that has `key`."""
    found = []
    for line in log.splitlines():
        node, _, text = line.partition("] ")
        if text.startswith("{") and f"'{key}'" in text:
            found.append((node + "]", int(ast.literal_eval(text)["step"])))
    return found


def test_progress_bars_come_from_rank_zero_only(two_nodes):
    log, _ = two_nodes
    bars = [line for line in log.splitlines() if TQDM_BAR.search(line)]
    assert bars, "no progress bar at all"
    assert all(line.startswith("[node0] ") for line in bars), \
        [line for line in bars if not line.startswith("[node0] ")][:3]


@pytest.mark.parametrize("key", ["loss", "eval_loss"])
def test_one_metrics_line_per_logging_step(two_nodes, key):
    log, out = two_nodes
    history = [entry["step"] for entry in summary(out)["log_history"] if key in entry]
    assert history == ([1, 2, 4, 6] if key == "loss" else [3, 6])  # first step, then every 2
    assert _logged(log, key) == [("[node0]", step) for step in history]


def test_other_ranks_only_warn_and_say_where_they_are(two_nodes):
    log, _ = two_nodes
    # ft's own progress and the hook's INFO come from global rank 0 only.
    assert "[node0] [node 0 rank 0] ft.model: adapter lora" in log
    assert "[node0] [node 0 rank 0] ft.test-hook: info from rank 0" in log
    assert "rank 1] ft.model" not in log and "info from rank 1" not in log
    # Warnings of every rank reach the log, labelled; Python warnings too.
    assert "[node1] [node 1 rank 1] ft.test-hook: warning from rank 1" in log
    assert re.search(r"\[node1\] \[node 1 rank 1\] py\.warnings: .*UserWarning: "
                     r"python warning from rank 1", log)
    # No record of rank 1 goes out bare: a Python log record ("name: message"), a raw Python
    # warning or a metrics line. (torch's C++ layer logs in its own `[W... file.cpp]` form,
    # e.g. when a node's launcher outlives the rendezvous store at shutdown: not ours.)
    rank1 = [line.removeprefix("[node1] ") for line in log.splitlines()
             if line.startswith("[node1] ")]
    bare = [text for text in rank1 if BARE_RECORD.match(text)]
    assert not bare, bare[:5]


def test_no_dependency_noise(two_nodes):
    log, _ = two_nodes
    assert "Setting accelerator" not in log  # DeepSpeed is not even imported
    assert "FutureWarning" not in log
    assert "[transformers]" not in log  # transformers' records go through ft's format
    # bitsandbytes' import-time kernel notice (trainer/console/import_notices.py), once per rank.
    assert "gemm_4bit_forward" not in log and "pip install kernels" not in log


def test_each_progress_bar_is_one_line_in_a_log(two_nodes):
    """Not a terminal: no line per redraw (blank, 0%, 100%, 100% again), one line per bar."""
    log, _ = two_nodes
    lines = log.splitlines()
    assert not [line for line in lines if not line.removeprefix("[node0]").strip()], \
        "blank lines in the log"
    bars = [line for line in lines if TQDM_BAR.search(line)]
    assert not [line for line in bars if " 0%|" in line], bars
    labels = [line.split("%|")[0].rsplit(":", 1)[0] + line.split("| ")[1].split(" [")[0]
              for line in bars]  # "[node0] Packing" + "83/83": one bar
    assert len(labels) == len(set(labels)), bars


def test_metrics_are_numbers(two_nodes):
    log, _ = two_nodes
    for line in log.splitlines():
        text = line.partition("] ")[2]
        if text.startswith("{'"):
            values = ast.literal_eval(text)
            assert all(isinstance(v, int | float) for v in values.values()), text


@pytest.mark.parametrize(("writes", "shown"), [
    (["\rbar:   0%| 0/8", "\rbar: 100%| 8/8", "\rbar: 100%| 8/8", "\n"], "bar: 100%| 8/8\n"),
    (["plain line\n", "partial", " end\n"], "plain line\npartial end\n"),
    (["\rbar: 50%", "\r     \r", "next\n"], "next\n"),  # a bar cleared away: no blank line
    (["\n"], "\n"),  # a blank line someone prints stays
])
def test_log_lines_keeps_what_a_terminal_shows(writes, shown):
    import io

    from trainer.console.log_lines import LogLines

    raw = io.StringIO()
    stream = LogLines(raw, heartbeat=3600)
    for text in writes:
        stream.write(text)
    assert raw.getvalue() == shown


def test_log_lines_shows_a_long_bar_advancing():
    import io

    from trainer.console.log_lines import LogLines

    now = [0.0]
    raw = io.StringIO()
    stream = LogLines(raw, heartbeat=30, clock=lambda: now[0])
    for step in range(1, 5):
        now[0] += 20
        stream.write(f"\rbar: {step}/4")
    stream.write("\n")
    assert raw.getvalue().splitlines() == ["bar: 2/4", "bar: 4/4"]


def test_8bit_cast_notice_is_said_once(tmp_path, tiny_model_dir):
    """bitsandbytes logs its fp32->fp16 cast on every 8-bit matmul (dozens per step)."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=3, save_steps=3, eval_steps=3,
                           load_in_8bit=True)
    result = run_ft("train", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert summary(tmp_path / "out")["model"]["loaded_in_8bit"]
    output = result.stdout + result.stderr
    assert output.count("MatMul8bitLt") <= 1
    assert "FutureWarning" not in output
