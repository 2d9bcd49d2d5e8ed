"""The README's "Before and during a run": its sample of the pre-flight's output is the
pre-flight's own format (each finding line is the report's line for a check the runner runs,
its words come from the module that writes them, the last line is what `ft launch --backend
local` says on exit 78), and its exit codes and default timeout are the code's."""

from __future__ import annotations

import inspect
import re

from orchestrator.backends.local import node_group
from tests.cli_runner import REPO
from trainer.preflight import gpu_check, links_check, links_verdict, report, runner

README = (REPO / "README.md").read_text()
SECTION = README.split("## Before and during a run", 1)[1].split("\n## ", 1)[0]
SAMPLE = SECTION.split("```\n", 1)[1].split("```", 1)[0].splitlines()
LINE = re.compile(r"^ft pre-flight: (ok  |FAIL) (\w+) +node \d+ \((\w+)\): (.+)$")
WRITTEN_BY = {"gpu": gpu_check, "link": links_verdict}  # the module that words the finding
RUN_BY = {"gpu": gpu_check, "link": links_check}  # the check the runner calls


def test_each_sample_finding_is_a_report_line_of_a_check_the_runner_runs():
    findings = [line for line in SAMPLE if line.startswith(report.PREFIX)]
    assert len(findings) >= 2
    checks_run = inspect.getsource(runner._checks)
    for line in findings:
        mark, check, _, detail = LINE.match(line).groups()
        assert f"{RUN_BY[check].__name__.rsplit('.', 1)[1]}.check" in checks_run
        assert line.startswith(f"{report.PREFIX} {mark} {check:10} ")
        # The fixed words between the numbers and names (e.g. "job median", "every pair
        # with it is slow"): the module that writes the finding holds them.
        phrases = re.findall(r"\b[a-z]{2,}[a-z ]{5,}[a-z]", detail)
        # Implicitly joined string pieces read as one text.
        source = re.sub(r'"\s*\n\s*f?"', "", inspect.getsource(WRITTEN_BY[check]))
        assert phrases and all(p in source for p in phrases), (phrases, check)


def test_the_sample_ends_as_a_failed_launch_ends():
    source = inspect.getsource(node_group)
    said = SAMPLE[-1].removeprefix("ft launch: ")
    assert said.startswith("exit 78: ")
    assert said.removeprefix("exit 78: ").split(";")[0] in source.replace('"\n', "")


def test_the_sections_codes_and_default_timeout_are_the_codes_own():
    from trainer.torch_free.liveness import PEER_LOST_EXIT_CODE, Timeouts, seconds
    from trainer.torch_free.preflight_settings import PREFLIGHT_FAILED_EXIT_CODE

    text = " ".join(SECTION.split())
    assert f"ends the job with exit {PEER_LOST_EXIT_CODE} and the node named" in text
    assert f"ends the job with exit {PREFLIGHT_FAILED_EXIT_CODE} (on Slurm, requeued" in text
    minutes = seconds(Timeouts().peer) // 60
    assert f"(a silent peer: {minutes} minutes by default)" in text
