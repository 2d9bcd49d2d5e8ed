"""ft's named chat templates against Axolotl 0.21's own, rendered the same way.

Axolotl's jinja files are read at run time from its wheel (zipfile: nothing installed,
nothing copied into this repository); both templates are rendered by transformers'
`apply_chat_template(..., chat_template=...)` on one tiny tokenizer, for every conversation
of tests/chat_template_cases.py (system or not, 4 turns, generation prompt, tool calls,
thinking). A template that refuses a conversation (raises) must refuse it in both. One JSON
line per (template, conversation):

    python3 bench/axolotl_template_check.py [--wheel PATH] [--out PATH]

`--goldens PATH` also records Axolotl's renders as the golden texts of
tests/test_chat_templates_golden.py (tests/fixtures/chat_templates_golden.json), each with
its family's conversations and marker tokens; today's date, which mistral_v7_tekken writes,
is recorded as `{today}`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chat_template_cases import cases_for, tiny_chat_tokenizer  # noqa: E402
from trainer.torch_free.chat_templates import (  # noqa: E402
    FAMILIES,
    MULTIMODAL,
    TOKENIZER_ONLY,
)

WHEEL = Path("/work/main/.axwhl/axolotl-0.21.0-py3-none-any.whl")
OUT = ROOT / "bench/results/2026-12-07-axolotl-templates.jsonl"
TEMPLATES = "axolotl/utils/chat_templates/templates/"


def axolotl_templates(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as z:
        return {name[len(TEMPLATES):-len(".jinja")]: z.read(name).decode()
                for name in z.namelist()
                if name.startswith(TEMPLATES) and name.endswith(".jinja")}


def render(tok, template: str, messages: list, kwargs: dict) -> str:
    try:
        return tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                       **kwargs)
    except Exception as exc:  # a refusal is a result: it must match
        return f"<error {type(exc).__name__}>"


def records(theirs: dict[str, str]) -> list[dict]:
    tok = tiny_chat_tokenizer()
    out = []
    for name in sorted(theirs):
        if name not in FAMILIES:
            reason = ("multimodal: refused by ft" if name in MULTIMODAL else
                      "no ft template: the tokenizer's own is used" if name in TOKENIZER_ONLY
                      else "unknown to ft")
            out.append({"template": name, "case": None, "equal": False, "reason": reason})
            continue
        for case, (messages, kwargs) in cases_for(tools=True, thinking=True).items():
            ours = render(tok, FAMILIES[name].jinja, messages, kwargs)
            ref = render(tok, theirs[name], messages, kwargs)
            row = {"template": name, "case": case, "equal": ours == ref,
                   "refused": ref.startswith("<error")}
            if ours != ref:
                row.update(ours=ours, axolotl=ref)
            out.append(row)
    return out


def goldens(theirs: dict[str, str]) -> dict[str, dict[str, str]]:
    today = datetime.date.today().isoformat()
    out: dict[str, dict[str, str]] = {}
    for name, family in sorted(FAMILIES.items()):
        tok = tiny_chat_tokenizer(family.markers)
        out[name] = {case: render(tok, theirs[name], messages, kwargs).replace(today, "{today}")
                     for case, (messages, kwargs)
                     in cases_for(family.tools, family.thinking).items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, default=WHEEL)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--goldens", type=Path, help="also write the golden texts here")
    args = parser.parse_args()
    theirs = axolotl_templates(args.wheel)
    if args.goldens:
        args.goldens.write_text(json.dumps(goldens(theirs), indent=1, ensure_ascii=False,
                                           sort_keys=True), encoding="utf-8")
    rows = records(theirs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    compared = [r for r in rows if r["case"] is not None]
    names = {r["template"] for r in compared}
    bad = sorted({r["template"] for r in compared if not r["equal"]})
    print(f"{len(compared)} renders of {len(names)} templates compared: "
          f"{sum(r['equal'] for r in compared)} equal; differing: {', '.join(bad) or 'none'}")
    for r in rows:
        if r["case"] is None:
            print(f"not compared: {r['template']} ({r['reason']})")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
