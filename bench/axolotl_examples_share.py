"""The share of Axolotl's own example configs that ft validates (the README's figure).

Walks `examples/` of an Axolotl checkout at one commit (a bare mirror works: it reads with
`git ls-tree` / `git show`), keeps the current training configs (YAML mappings with
`base_model`, outside `examples/archived/`, which Axolotl keeps for old models and no longer
maintains), sets aside those that are not text fine-tuning by the rule below, and validates each
remaining one as `ft validate` does with no `launch:` block: the YAML text as Axolotl ships
it, parsed by `orchestrator.spec.load.parse_spec` from an empty scratch directory (so a
relative `deepspeed: deepspeed_configs/zero3.json` resolves as it would for a user who copied
only the YAML: to ft's shipped equivalent). The ft that runs is the one on PYTHONPATH, so
main's figure and a branch's come from the same script:

    PYTHONPATH=/path/to/ft python bench/axolotl_examples_share.py \\
        --axolotl /work/.mirror/axolotl-ai-cloud+axolotl/repo \\
        --out bench/results/axolotl-examples-share.json

The JSON holds the counts, the share, each refused config's first refusal, how many configs
each key stops first (`first_refusal_keys`) and how often each key is refused at all
(`refused_keys`, a config counted once per key).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

# What is not text fine-tuning, and so outside the share (the first matching category
# names it). A key counts when it is true, a number above 1 (a parallel size of 1 asks for
# no parallelism) or any other non-empty value.
EXCLUDED: dict[str, tuple[str, ...]] = {
    "RL / preference": ("rl", "trl", "ebft", "nemo_gym_enabled", "dpo_beta", "orpo_alpha"),
    "reward model": ("reward_model", "process_reward_model"),
    "multimodal": ("processor_type", "image_size", "image_resize_algorithm",
                   "freeze_mm_modules"),
    "tensor / context / expert parallel > 1": ("tensor_parallel_size", "context_parallel_size",
                                               "sequence_parallel_degree",
                                               "expert_parallel_size", "context_parallel"),
    "knowledge distillation": ("kd_trainer", "kd_alpha", "kd_ce_alpha", "kd_temperature"),
    "diffusion": ("diffusion", "diffusion_lm", "diffusion_decision"),
}
# Plugins that make a config one of the categories above.
EXCLUDED_PLUGINS = {"KDPlugin": "knowledge distillation", "DiffusionPlugin": "diffusion",
                    "DiffusionDecisionPlugin": "diffusion", "NemoGymPlugin": "RL / preference",
                    "ContextParallelPlugin": "tensor / context / expert parallel > 1",
                    "ExpertParallelPlugin": "tensor / context / expert parallel > 1"}


def _asks(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 1
    return value not in (None, "", [], {})


def excluded_category(config: dict) -> str | None:
    """The category that puts a config outside text fine-tuning, or None."""
    for category, keys in EXCLUDED.items():
        if any(_asks(config.get(key)) for key in keys):
            return category
    for plugin in config.get("plugins") or []:
        category = EXCLUDED_PLUGINS.get(str(plugin).rsplit(".", 1)[-1])
        if category:
            return category
    return None


ARCHIVED = "examples/archived/"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def example_configs(repo: Path, commit: str) -> dict[str, dict]:
    """path -> parsed YAML of every training config under examples/ at `commit`."""
    found: dict[str, dict] = {}
    for path in _git(repo, "ls-tree", "-r", "--name-only", commit, "examples").splitlines():
        if not path.endswith((".yml", ".yaml")) or path.startswith(ARCHIVED):
            continue
        text = _git(repo, "show", f"{commit}:{path}")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and data.get("base_model"):
            found[path] = {"text": text, "data": data}
    return found


def validate(text: str) -> tuple[list[Any], list[str]]:
    """(problems, warnings) of ft's validation of one config, without a launch block."""
    from orchestrator.spec.load import SpecWarning, parse_spec
    from trainer.torch_free.errors import SpecError, UserError

    data = yaml.safe_load(text)
    if "launch" in data:  # Axolotl has no launch:, but be sure the figure is about training
        text = yaml.safe_dump({k: v for k, v in data.items() if k != "launch"}, sort_keys=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        try:
            parse_spec(text, "config.yml")
            problems: list[Any] = []
        except SpecError as exc:
            problems = list(exc.problems)
        except UserError as exc:
            problems = [str(exc)]
    return problems, [str(w.message) for w in caught if issubclass(w.category, SpecWarning)]


def _key(problem: Any) -> str:
    """`datasets[3].field_thinking` -> `datasets[].field_thinking` (the key, not the entry)."""
    path = getattr(problem, "path", "") or "(top level)"
    return re.sub(r"\[\d+\]", "[]", path)


def _reason(problem: Any) -> str:
    return f"`{problem.path}`: {problem.message}" if hasattr(problem, "message") else problem


def measure(repo: Path, commit: str) -> dict:
    configs = example_configs(repo, commit)
    excluded: Counter[str] = Counter()
    refused: dict[str, str] = {}
    refused_keys: Counter[str] = Counter()
    first_keys: Counter[str] = Counter()
    warned_unknown: dict[str, int] = {}
    accepted = []
    for path, config in sorted(configs.items()):
        category = excluded_category(config["data"])
        if category:
            excluded[category] += 1
            continue
        problems, notes = validate(config["text"])
        unknown = sum("unknown key" in note for note in notes)
        if unknown:
            warned_unknown[path] = unknown
        if problems:
            refused[path] = _reason(problems[0])
            first_keys[_key(problems[0])] += 1
            refused_keys.update(dict.fromkeys(_key(p) for p in problems).keys())
        else:
            accepted.append(path)
    text_ft = len(configs) - sum(excluded.values())
    return {
        "axolotl_commit": _git(repo, "rev-parse", commit).strip(),
        "training_configs": len(configs),
        "excluded": dict(excluded.most_common()),
        "text_finetuning": text_ft,
        "accepted": len(accepted),
        "share": round(len(accepted) / text_ft, 3) if text_ft else None,
        "first_refusal_keys": dict(first_keys.most_common()),
        "refused_keys": dict(refused_keys.most_common()),
        "refused": refused,
        "accepted_configs": accepted,
        "unknown_keys_warned": warned_unknown,
    }


def _ft_commit() -> str:
    import orchestrator

    root = Path(orchestrator.__file__).resolve().parent.parent
    try:
        return _git(root, "rev-parse", "HEAD").strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axolotl", type=Path,
                        default=Path("/work/.mirror/axolotl-ai-cloud+axolotl/repo"))
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    repo = args.axolotl.resolve()
    out = args.out.resolve() if args.out else None
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)  # relative paths resolve as for a user who copied only the YAML
        result = {"ft_commit": _ft_commit(), **measure(repo, args.commit)}
    text = json.dumps(result, indent=1) + "\n"
    if out:
        out.write_text(text)
    print(f"{result['accepted']} of {result['text_finetuning']} text fine-tuning configs "
          f"validate ({result['share']:.0%}); {result['training_configs']} training configs, "
          f"excluded: {result['excluded']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
