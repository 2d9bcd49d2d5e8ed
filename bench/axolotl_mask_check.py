"""ft's chat masks against Axolotl 0.21's own ChatTemplateStrategy, case by case.

Both encode the same conversation with the same tokenizer and the same template text; a case
is equal when the token ids and the labels (-100 or trained) are identical. Writes one JSON
line per case. Axolotl is imported from a throwaway install, never a dependency of ft:

    pip install --no-deps --ignore-requires-python --target /work/venv-masks-ax \
        axolotl-0.21.0-py3-none-any.whl addict colorama termcolor fire
    PYTHONPATH=$PWD:/work/venv-masks-ax:/work/shared/bench/axolotl/shims \
        python bench/axolotl_mask_check.py bench/results/2026-12-07-axolotl-masks.jsonl
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from tests.chat_mask_cases import (
    EDGES,
    PLAIN,
    family_tokenizer,
    inline_thinking,
    sharegpt,
    thinking_template,
    with_detail,
    with_flags,
    with_parts,
    with_reasoning,
    with_tool_call,
)
from trainer.data.formats import RowEncoder
from trainer.data.templates import resolve_chat_template
from trainer.models.tiny import build_tiny_tokenizer
from trainer.torch_free.training import DatasetSpec, TrainingConfig

CLOSER = {"chatml": "<|im_end|>", "chatml_eos": "<|im_end|>", "qwen3": "<|im_end|>",
          "llama3": "<|eot_id|>"}


def rules(family: str) -> list[tuple[str, dict[str, Any], dict[str, Any], list[dict]]]:
    """(name, dataset fields, top-level fields, conversation)."""
    closer = CLOSER[family]
    out: list[tuple[str, dict[str, Any], dict[str, Any], list[dict]]] = [
        ("default", {}, {}, PLAIN),
        *[(f"train_on_eos={m}", {"train_on_eos": m}, {}, PLAIN)
          for m in ("turn", "last", "all", "none")],
        ("eot_tokens", {}, {"eot_tokens": [closer]}, PLAIN),
        *[(f"eot_tokens+train_on_eot={m}", {"train_on_eot": m, "train_on_eos": m},
           {"eot_tokens": [closer]}, PLAIN) for m in ("last", "all", "none")],
        ("eot_tokens two+train_on_eot=all", {"train_on_eot": "all"},
         {"eot_tokens": [closer, "<|im_start|>"]}, PLAIN),
        ("roles_to_train=[assistant,user]", {"roles_to_train": ["assistant", "user"]}, {},
         PLAIN),
        ("roles_to_train=[assistant,user]+eot", {"roles_to_train": ["assistant", "user"]},
         {"eot_tokens": [closer]}, PLAIN),
        ("train_on_inputs", {}, {"train_on_inputs": True}, PLAIN),
        ("message_field_training", {"message_field_training": "training"},
         {"eot_tokens": [closer]}, with_flags()),
        ("message_field_training_detail", {"message_field_training_detail": "training_detail"},
         {}, with_detail()),
        ("thinking on", {}, {}, with_reasoning()),
        ("thinking on+eot", {}, {"eot_tokens": [closer]}, with_reasoning()),
        ("field_thinking=thinking", {"field_thinking": "thinking"}, {},
         with_reasoning("thinking")),
        ("thinking+training_detail", {"message_field_training_detail": "training_detail"},
         {}, [*with_reasoning()[:4], {**with_detail()[4], "reasoning_content": "Cold."}]),
        ("tool call", {}, {}, with_tool_call()),
        ("tool call+train_on_eos=all", {"train_on_eos": "all"}, {}, with_tool_call()),
        *[(f"edge:{name}", {}, {"eot_tokens": [closer]}, conv)
          for name, conv in EDGES.items()],
        *[(f"edge:{name}+train_on_eos=all", {"train_on_eos": "all", "train_on_eot": "all"},
           {"eot_tokens": [closer]}, conv) for name, conv in EDGES.items()],
        ("eos=all+eot=last", {"train_on_eos": "all", "train_on_eot": "last"},
         {"eot_tokens": [closer]}, PLAIN),
        ("content parts", {}, {}, with_parts()),
        ("content parts+eot", {}, {"eot_tokens": [closer]}, with_parts()),
        ("content parts, no reasoning", {}, {},
         [*with_parts()[:4], {"role": "assistant", "content": with_parts()[4]["content"]}]),
        ("split_thinking", {"split_thinking": True}, {}, inline_thinking()),
        ("split_thinking off", {}, {}, inline_thinking()),
        ("template_thinking_key=thinking", {"template_thinking_key": "thinking"}, {},
         with_reasoning()),
        ("sharegpt keys+reasoning", {"message_property_mappings": {"role": "from",
                                                                   "content": "value"}},
         {}, sharegpt(with_reasoning())),
        ("sharegpt keys+field_thinking", {"field_messages": "conversations",
                                          "message_property_mappings": {"role": "from",
                                                                        "content": "value"},
                                          "field_thinking": "thinking"},
         {}, sharegpt(with_reasoning("thinking"))),
    ]
    return out


def templates(family: str, tok: Any, axolotl_templates: dict[str, str]) -> dict[str, str]:
    """Template text by label: the tokenizer's own, ft's template of that name (as on this
    branch), Axolotl's file of that name."""
    name = {"chatml_eos": "chatml"}.get(family, family)
    own = tok.chat_template
    tok.chat_template = None  # so the name resolves to ft's own template of that family
    ours = resolve_chat_template(name, tok).jinja
    tok.chat_template = own
    out = {"tokenizer_default": own, f"ft:{name}": ours,
           f"axolotl:{name}": axolotl_templates[name]}
    if family == "qwen3":
        out["own:thinking_key=thinking"] = thinking_template("thinking")
    return out


def ft_encode(tok: Any, jinja: str, ds: dict[str, Any], top: dict[str, Any],
              conv: list[dict]) -> tuple[list[int], list[int]]:
    spec = {"path": "x.jsonl", "type": "chat_template", **ds}
    cfg = TrainingConfig(base_model="unused", datasets=[spec], chat_template=jinja,
                         sequence_len=4096, **top)
    column = ds.get("field_messages", "messages")
    out = RowEncoder(DatasetSpec(**spec), cfg, tok)({column: [json.loads(json.dumps(conv))]})
    return out["input_ids"][0], out["labels"][0]


def axolotl_encode(tok: Any, jinja: str, ds: dict[str, Any], top: dict[str, Any],
                   conv: list[dict]) -> tuple[list[int], list[int]]:
    from axolotl.prompt_strategies.chat_template import StrategyLoader
    from axolotl.utils.dict import DictDefault

    cfg = DictDefault({"chat_template": "jinja", "chat_template_jinja": jinja,
                       "train_on_inputs": top.get("train_on_inputs", False),
                       "sequence_len": 4096, "eot_tokens": top.get("eot_tokens"),
                       "tokenizer_use_mistral_common": False})
    strategy = StrategyLoader()(tok, cfg, dict(ds))  # Axolotl drops None keys the same way
    column = ds.get("field_messages", "messages")
    out = strategy.tokenize_prompt({column: json.loads(json.dumps(conv))})
    return out["input_ids"], out["labels"]


def trained_text(tok: Any, ids: list[int], labels: list[int]) -> list[str]:
    runs, prev = [], False
    for tid, lab in zip(ids, labels, strict=True):
        if lab != -100 and not prev:
            runs.append([])
        if lab != -100:
            runs[-1].append(tid)
        prev = lab != -100
    return [tok.decode(r) for r in runs]


# Where ft differs from Axolotl on purpose (docs/chat-templates.md, "Which tokens train").
FIELD_THINKING_KEPT = ("ft maps `field_thinking` whenever the spec names it; Axolotl ignores "
                       "it when `message_property_mappings` is set")
KEYS_PASSED = ("ft hands the template every message key; Axolotl only those its template "
               "analyzer finds in the template, which misses this template's reads")


def known_divergence(case: str, jinja: str) -> str | None:
    from axolotl.prompt_strategies.jinja_template_analyzer import JinjaTemplateAnalyzer

    if case == "sharegpt keys+field_thinking":
        return FIELD_THINKING_KEPT
    seen = JinjaTemplateAnalyzer(jinja).get_message_vars("messages")
    if case == "sharegpt keys+reasoning" and "reasoning_content" not in seen:
        return KEYS_PASSED
    return None


def run_case(tok: Any, jinja: str, ds: dict, top: dict, conv: list[dict]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for side, encode in (("ft", ft_encode), ("axolotl", axolotl_encode)):
        try:
            ids, labels = encode(tok, jinja, ds, top, conv)
            result[side] = {"ids": ids, "labels": labels,
                            "trained": trained_text(tok, ids, labels)}
        except Exception as exc:  # noqa: BLE001 - an error is a result to compare
            result[side] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    ft, ax = result["ft"], result["axolotl"]
    both_failed = "error" in ft and "error" in ax
    equal_ids = both_failed or ft.get("ids") == ax.get("ids")
    equal_labels = both_failed or ft.get("labels") == ax.get("labels")
    return {"equal": equal_ids and equal_labels, "equal_ids": equal_ids,
            "equal_labels": equal_labels,
            "ft": ft.get("trained", ft.get("error")),
            "axolotl": ax.get("trained", ax.get("error"))}


def main(out_path: str) -> int:
    logging.disable(logging.WARNING)
    from axolotl.utils.chat_templates.base import _CHAT_TEMPLATES

    base = build_tiny_tokenizer()
    lines, unequal = [], 0
    for family in ("chatml", "chatml_eos", "llama3", "qwen3"):
        tok = family_tokenizer(base, family)
        for label, jinja in templates(family, tok, _CHAT_TEMPLATES).items():
            for name, ds, top, conv in rules(family):
                row = {"tokenizer": family, "eos": tok.eos_token, "template": label,
                       "case": name, **run_case(tok, jinja, ds, top, conv)}
                if not row["equal"]:
                    row["known_divergence"] = known_divergence(name, jinja)
                unequal += not row["equal"] and not row["known_divergence"]
                lines.append(json.dumps(row))
                if not row["equal"] and not row["known_divergence"]:
                    print("DIFFERS", json.dumps(row), file=sys.stderr)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    diverging = sum('"known_divergence": "' in line for line in lines)
    print(f"{len(lines) - unequal - diverging}/{len(lines)} cases equal, {diverging} known "
          f"divergences, {unequal} unexplained -> {out_path}")
    return 1 if unequal else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1
                  else "bench/results/2026-12-07-axolotl-masks.jsonl"))
