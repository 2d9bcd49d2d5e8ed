"""`python -m orchestrator.cli`: the same as the `ft` console script (used where `ft` is not
on PATH, e.g. emulated nodes started with this interpreter)."""

from orchestrator.cli import main

main()
