"""Reading what the backends' tools print: colour codes, JSON after chatter, error lines."""

from __future__ import annotations

import json
import re

from orchestrator.process import Completed

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """Without terminal colour codes (some tools colour their errors even when piped)."""
    return _ANSI.sub("", text)


def json_after_chatter(text: str) -> object:
    """The JSON document a tool printed after progress lines.

    Some tools' `-o json` print a notice ("... not found: ...", "Fetching job queue for:
    ...") before the JSON, on stdout; so parse from the first line that opens an object or
    a list.
    """
    lines = plain(text).splitlines()
    for index, line in enumerate(lines):
        if line.startswith(("{", "[")):
            try:
                return json.loads("\n".join(lines[index:]))
            except ValueError:
                continue
    raise ValueError(f"no JSON in the output: {text.strip()[:200]!r}")


def failure_text(result: Completed) -> str:
    """The tool's own words about a failure: stderr, else stdout, trimmed, colourless."""
    text = plain(result.stderr).strip() or plain(result.stdout).strip()
    lines = text.splitlines()
    return "\n".join(lines[-15:]) if lines else f"exit status {result.returncode}"
