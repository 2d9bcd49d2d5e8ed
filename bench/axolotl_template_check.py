"""ft's named chat templates against Axolotl 0.21's own, rendered the same way.

Axolotl's jinja files are read at run time from its wheel (zipfile: nothing installed,
nothing copied into this repository); both templates are rendered by transformers'
`apply_chat_template(..., chat_template=...)` on one tiny tokenizer, for every conversation
of tests/chat_template_cases.py (system or not, 4 turns, generation prompt, tool calls,
thinking). A template that refuses a conversation (raises) must refuse it in both. One JSON
line per (template, conversation):

    python3 bench/axolotl_template_check.py [--wheel PATH] [--out PATH]

`--fuzz N` adds N random conversations (random roles, contents, content parts, tool calls,
reasoning, tools, documents and template switches; `--seed`), compared the same way: one
line per template with the count of renders, of refusals and of differences (a refusal in
both counts as equal whatever the error).

`--goldens PATH` also records Axolotl's renders as the golden texts of
tests/test_chat_templates_golden.py (tests/fixtures/chat_templates_golden.json), each with
its family's conversations and marker tokens; today's date, which mistral_v7_tekken writes,
is recorded as `{today}`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chat_template_cases import (  # noqa: E402
    CALL,
    CALL_JSON,
    FORECAST_TOOL,
    RICH_CALL,
    WEATHER_TOOL,
    cases_for,
    tiny_chat_tokenizer,
)
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


TEXTS = ["Hi", " padded ", "\nnl\n", "", "<think>\nr\n</think>\n\nans",
         "a<|channel>x<channel|>b", "multi\nline"]
ROLES = ["user", "user", "assistant", "assistant", "system", "tool"]
RARE_ROLES = ["developer", "chatbot", "ipython"]


def random_conversation(rnd: random.Random) -> tuple[list[dict], dict]:
    def content():
        if rnd.random() < 0.8:
            return rnd.choice(TEXTS)
        return [{"type": "text", "text": rnd.choice(TEXTS)} for _ in range(rnd.randint(1, 2))]

    def message():
        role = rnd.choice(RARE_ROLES if rnd.random() < 0.03 else ROLES)
        m = {"role": role, "content": content()}
        if role == "assistant" and rnd.random() < 0.3:
            m["tool_calls"] = rnd.sample([CALL, RICH_CALL, CALL_JSON], rnd.randint(1, 2))
        if role == "assistant" and rnd.random() < 0.1:
            m["tool_plan"] = "plan"
        if role == "assistant" and rnd.random() < 0.3:
            m["reasoning_content"] = rnd.choice(["why", "", "\nwhy\n"])
        if role == "tool":
            m["tool_call_id"] = rnd.choice(["call12345", "call67890"])
            if rnd.random() < 0.5:
                m["name"] = "get_weather"
        return m

    switches = {"add_generation_prompt": (0.5, [True]),
                "tools": (0.3, [[WEATHER_TOOL], [FORECAST_TOOL, WEATHER_TOOL]]),
                "enable_thinking": (0.2, [True, False]),
                "documents": (0.2, [[{"title": "T", "text": "D", "url": "u"}, {"text": "E"}]]),
                "knobs": (0.1, [{"is_set": True, "citation_mode": "fast"}]),
                "tools_in_user_message": (0.1, [False]), "skip_think": (0.1, [False]),
                "safety_mode": (0.1, ["strict"]), "enable_citations": (0.1, [True])}
    kwargs = {k: rnd.choice(values) for k, (p, values) in switches.items() if rnd.random() < p}
    return [message() for _ in range(rnd.randint(1, 6))], kwargs


def fuzz(theirs: dict[str, str], n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    conversations = [random_conversation(rnd) for _ in range(n)]
    tok = tiny_chat_tokenizer()
    out = []
    for name in sorted(FAMILIES):
        rendered = refused = differ = 0
        for messages, kwargs in conversations:
            ours = render(tok, FAMILIES[name].jinja, messages, kwargs)
            ref = render(tok, theirs[name], messages, kwargs)
            both_refuse = ref.startswith("<error") and ours.startswith("<error")
            refused += ref.startswith("<error")
            rendered += not ref.startswith("<error")
            differ += ours != ref and not both_refuse
        out.append({"template": name, "case": f"fuzz(n={n}, seed={seed})", "equal": not differ,
                    "rendered": rendered, "refused": refused, "differing": differ})
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
    parser.add_argument("--fuzz", type=int, default=0, help="random conversations to add")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    theirs = axolotl_templates(args.wheel)
    if args.goldens:
        args.goldens.write_text(json.dumps(goldens(theirs), indent=1, ensure_ascii=False,
                                           sort_keys=True), encoding="utf-8")
    rows = records(theirs) + (fuzz(theirs, args.fuzz, args.seed) if args.fuzz else [])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    compared = [r for r in rows if r["case"] is not None and "differing" not in r]
    names = {r["template"] for r in compared}
    bad = sorted({r["template"] for r in rows if r["case"] is not None and not r["equal"]})
    print(f"{len(compared)} renders of {len(names)} templates compared: "
          f"{sum(r['equal'] for r in compared)} equal")
    for r in rows:
        if "differing" in r:
            print(f"{r['case']} {r['template']}: {r['rendered']} rendered, {r['refused']} "
                  f"refused, {r['differing']} differing")
    print(f"differing: {', '.join(bad) or 'none'}")
    for r in rows:
        if r["case"] is None:
            print(f"not compared: {r['template']} ({r['reason']})")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
