"""ft vs the plain transformers+peft baseline, same session, same GPU (docs/performance.md,
"Protocol"). Prints one JSON line per run, then a table.

    python3 bench/device_setup.py            # carried wheels -> /tmp/site (device only)
    PYTHONPATH=/tmp/site:. python3 bench/run_bench.py --out "$OUT" \
        --cases lora-fixed,lora-realistic --shape 8b --budget-s 560

Per case (mode lora|qlora x data fixed|realistic) it:
1. saves a random-init Llama of the real shape (the baseline's SHAPES, vocab 128256, bf16,
   torch.manual_seed(0): the same weights the baseline builds) to /tmp/rand-<shape>, with an
   offline WordLevel tokenizer of 128256 entries whose pad token is one of the model's own
   ids (no embedding resize); the baseline's QLoRA path reuses that directory;
2. writes the data: `fixed` = full-length rows (the baseline's own Fixed rows, as jsonl for
   ft), `realistic` = `baseline_hf_peft.py --write-data` (log-normal lengths around 350);
3. runs the baseline (bench/baseline_hf_peft.py, a verbatim copy of
   shared/bench/baseline_hf_peft.py) and then `ft train` on a spec written here, each in its
   own process under bench/probe.py, which times steps and counts useful tokens the same way
   for both (see probe.py);
4. reports useful (non-padding) tokens/s/GPU over the steps after the first `--warm`
   (step basis: the CUDA-synchronised step times, the baseline's own method; wall basis: the
   host clock between step ends, which also counts data loading, collation and logging),
   peak GPU memory (torch max_memory_allocated in the training process, and the whole GPU's
   memory in use polled through NVML/nvidia-smi), HFU and MFU against the bf16 matmul peak
   measured in the same session, and ft/baseline ratios.

This file runs the session (budget, processes, runs.log, results.jsonl) and re-invokes
itself as `run_bench.py _matmul` / `_prep` for the steps that import torch. Beside it in
bench/: tool_names.py (what a `--tools` name and its modifiers mean), model_prep.py (the
baseline script, the shapes, the model and fixed rows of steps 1-2), gpu_meter.py (the
matmul peak, the GPU memory poller), run_records.py (a run's JSON record, the FLOPs behind
HFU/MFU, the table), multi_gpu.py (`ft@NxG` runs).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import axolotl_tool
import multi_gpu
from gpu_meter import GpuMemPoller, cmd_matmul
from model_prep import BASE, BASELINE, cmd_prep, n_params, shape_of
from run_records import (
    comparisons,
    finish_case,
    ft_choices,
    ft_summary,
    print_table,
    probe_fields,
    utilization,
)
from tool_names import ft_lever_keys, parse_tool, tool_topology

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PROBE = BENCH / "probe.py"

CASES = {
    "lora-fixed": dict(mode="lora", data="fixed", mbs=4),
    "lora-realistic": dict(mode="lora", data="realistic", mbs=8),
    "qlora-fixed": dict(mode="qlora", data="fixed", mbs=4),
    "qlora-realistic": dict(mode="qlora", data="realistic", mbs=8),
}


class Bench:
    """One session: its time budget, the processes it starts (each logged to runs.log), and
    the records it writes to results.jsonl and prints."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.t0 = time.monotonic()
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(a.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = open(self.out / "runs.log", "a")  # noqa: SIM115 (open for the whole run)
        # results.jsonl = the lines of earlier invocations, then this one's (rewritten when a
        # case ends: an ft record gains its ratio to an Axolotl run that came after it)
        self.results_path = self.out / "results.jsonl"
        self.earlier = self.results_path.read_text() if self.results_path.exists() else ""
        self.model_dir = f"/tmp/rand-{a.shape}"
        self.baseline = str(BASELINE)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
                        HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                        TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_TELEMETRY="1")
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env["PYTHONPATH"] = os.pathsep.join(paths + [str(REPO)])
        self.peak_tflops: float | None = None
        self.cuda = True  # the matmul step says (a CPU runs Axolotl in fp32)
        self.lines: list[dict] = []
        self.session = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def left(self) -> float:
        return self.a.budget_s - (time.monotonic() - self.t0)

    def say(self, msg: str) -> None:
        stamp = f"[bench +{time.monotonic() - self.t0:6.1f}s] {msg}"
        print(stamp, flush=True)
        self.log.write(stamp + "\n")
        self.log.flush()

    def emit(self, line: dict) -> None:
        self.lines.append(line)
        text = json.dumps(line, sort_keys=False)
        print(text, flush=True)
        with self.results_path.open("a") as f:
            f.write(text + "\n")

    def finish_case(self, case: str) -> None:
        """Comparisons that need every run of the case (ft / Axolotl when Axolotl ran after
        ft, loss gaps both ways), then results.jsonl rewritten with them."""
        for line in finish_case(self.lines, f"{case}-{self.a.shape}"):
            r = line["ratio_vs_axolotl"]
            self.say(f"{line['case']} {line['tool']} / {r['tool']}: {r['tokens_per_s']}x "
                     f"tokens/s, {r['gpu_gib_minus_axolotl']} GiB, loss gap "
                     f"{((line.get('loss_vs') or {}).get(r['tool']) or {}).get('max')}")
        tmp = self.results_path.with_suffix(".tmp")
        tmp.write_text(self.earlier + "".join(json.dumps(x) + "\n" for x in self.lines))
        os.replace(tmp, self.results_path)

    def sub(self, name: str, cmd: list[str], timeout: float,
            env: dict | None = None) -> tuple[int, list[str], float]:
        """Run cmd in its own process group; its output goes to runs.log. (rc, lines, s)."""
        self.log.write(f"\n===== {name}: {' '.join(cmd)}\n")
        self.log.flush()
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env or self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(max(timeout, 1), kill)
        timer.start()
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            self.log.write(line)
        rc = proc.wait()
        timer.cancel()
        self.log.write(f"===== {name}: rc {rc}{' (timed out)' if timed_out.is_set() else ''}"
                       f" after {time.monotonic() - start:.1f}s\n")
        self.log.flush()
        if timed_out.is_set():
            rc = 124
        return rc, lines, time.monotonic() - start

    def fail_tail(self, name: str, rc: int, lines: list[str]) -> None:
        self.say(f"{name} failed (rc {rc}); last lines:")
        for line in lines[-self.a.fail_lines:]:
            print(f"  | {line[:400]}", flush=True)

    # -- session setup
    def measure_peak(self) -> None:
        path = self.work / "matmul.json"
        rc, lines, _ = self.sub("matmul", [sys.executable, __file__, "_matmul", str(path)], 120)
        info = json.loads(path.read_text()) if rc == 0 and path.exists() else {}
        if rc:
            self.fail_tail("matmul", rc, lines)
        self.peak_tflops = info.get("tflops") or self.a.peak_tflops
        self.cuda = info.get("cuda", True)
        self.emit({"session": self.session, "tool": "matmul_peak", **info,
                   "peak_tflops_used": self.peak_tflops})
        self.pick_bnb_binary(info.get("torch_cuda"))

    def pick_bnb_binary(self, torch_cuda: str | None) -> None:
        """The carried bitsandbytes keeps only its CUDA 13.0/13.2 binaries (size): point it
        at the nearest one when torch reports another 13.x."""
        spec = importlib.util.find_spec("bitsandbytes")
        if not torch_cuda or spec is None or "BNB_CUDA_VERSION" in self.env:
            return
        libs = sorted(p.name for d in spec.submodule_search_locations or []
                      for p in Path(d).glob("libbitsandbytes_cuda*.so"))
        have = [n[len("libbitsandbytes_cuda"):-3] for n in libs]
        want = torch_cuda.replace(".", "")
        if have and want not in have:
            same_major = [v for v in have if v[:-1] == want[:-1]] or have
            lower = [v for v in same_major if int(v) <= int(want)]
            self.env["BNB_CUDA_VERSION"] = (lower or same_major)[-1]
            self.say(f"torch CUDA {torch_cuda}: bitsandbytes binaries {have}, using "
                     f"BNB_CUDA_VERSION={self.env['BNB_CUDA_VERSION']}")

    def prepare(self, cases: list[str]) -> None:
        a = self.a
        need_fixed = any(CASES[c]["data"] == "fixed" for c in cases)
        fixed_rows = a.steps * max(CASES[c]["mbs"] for c in cases) + 16
        self.fixed_path = str(self.work / f"data-fixed-{a.seq}-{fixed_rows}.jsonl")
        self.realistic_path = str(self.work / f"data-realistic-{a.seq}-{a.rows}.jsonl")
        rc, lines, s = self.sub("prep", [sys.executable, __file__, "_prep", self.model_dir,
                                         a.shape, str(a.seq), str(fixed_rows),
                                         self.fixed_path if need_fixed else ""], 600)
        if rc:
            self.fail_tail("prep", rc, lines)
            raise SystemExit("model/data preparation failed")
        self.say(f"model + tokenizer in {self.model_dir}, fixed data: {lines[-1]} ({s:.0f}s)")
        if any(CASES[c]["data"] == "realistic" for c in cases) and \
                not Path(self.realistic_path).exists():
            t = time.monotonic()
            BASE.write_data(self.realistic_path + ".tmp", a.rows, a.seq)
            os.replace(self.realistic_path + ".tmp", self.realistic_path)
            self.say(f"realistic data {self.realistic_path} ({time.monotonic() - t:.0f}s)")

    def attention(self) -> str:
        if self.a.attn != "auto":
            return self.a.attn
        try:
            import importlib.util as u
            return "flash_attention_2" if u.find_spec("flash_attn") else "sdpa"
        except Exception:
            return "sdpa"

    def write_spec(self, case: str, cfg: dict, tool: str, attn: str) -> tuple[Path, Path]:
        import yaml

        a = self.a
        name = f"{case}-{tool.replace(':', '-').replace('+', '-')}"
        out_dir = self.work / f"out-{name}"
        shutil.rmtree(out_dir, ignore_errors=True)
        spec = {
            "base_model": self.model_dir,
            "datasets": [{"path": self.fixed_path if cfg["data"] == "fixed"
                          else self.realistic_path}],  # no `type`: pre-tokenized rows
            "output_dir": str(out_dir),
            "adapter": cfg["mode"],
            **({"load_in_4bit": True} if cfg["mode"] == "qlora" else {}),
            "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_target_linear": True,
            "sequence_len": a.seq,
            "sample_packing": cfg["data"] == "realistic",
            "micro_batch_size": cfg["ft_mbs"],
            "gradient_accumulation_steps": 1,
            "max_steps": a.steps,
            # as the baseline's TrainingArguments: adamw_torch, lr 2e-4, linear, no warmup
            "optimizer": "adamw_torch", "learning_rate": 2e-4, "lr_scheduler": "linear",
            "warmup_steps": 0,
            "bf16": True,
            **ft_lever_keys(parse_tool(tool)[2]),
            **multi_gpu.sharding_keys(tool_topology(tool), parse_tool(tool)[2]),
            "attn_implementation": attn,
            # the fixed rows are written in the baseline's sampling order (model_prep.py)
            **({"curriculum_sampling": True} if cfg["data"] == "fixed" else {}),
            "logging_steps": 1,
            "seed": 0,
        }
        path = self.work / f"spec-{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path, out_dir

    def write_axolotl_config(self, case: str, cfg: dict, tool: str, mods: set[str]) -> Path:
        import yaml

        name = f"{case}-{tool.replace('+', '-')}"
        out_dir = self.work / f"out-{name}"
        shutil.rmtree(out_dir, ignore_errors=True)
        config = axolotl_tool.axolotl_config(
            mode=cfg["mode"], packed=cfg["data"] == "realistic", model_dir=self.model_dir,
            data_path=self.fixed_path if cfg["data"] == "fixed" else self.realistic_path,
            out_dir=out_dir, prepared_dir=self.work / f"axolotl-prepared-{name}",
            seq=self.a.seq, mbs=cfg["ft_mbs"], steps=self.a.steps, mods=mods, bf16=self.cuda)
        path = self.work / f"axolotl-{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # -- one run
    def run_one(self, case: str, tool: str) -> dict:
        a = self.a
        cfg = dict(CASES[case])
        cfg["ft_mbs"] = a.ft_mbs_realistic if (cfg["data"] == "realistic" and a.ft_mbs_realistic) \
            else cfg["mbs"]
        kind, tool_attn, mods = parse_tool(tool)
        base = {"session": self.session, "case": f"{case}-{a.shape}", "tool": tool,
                "mode": cfg["mode"], "shape": a.shape, "data": cfg["data"], "seq": a.seq,
                "mbs": cfg["mbs"] if kind == "baseline" else cfg["ft_mbs"],
                "steps": a.steps, "warm": a.warm}
        left = self.left()
        if left < a.min_run_s:
            line = {**base, "skipped": f"budget: {left:.0f}s left < {a.min_run_s}s"}
            self.emit(line)
            return line
        probe_json = self.work / f"probe-{case}-{tool.replace(':', '-').replace('+', '-')}.json"
        probe_json.unlink(missing_ok=True)
        out_dir = None
        topo, world = tool_topology(tool), 1
        # A one-process tool on a multi-GPU machine gets one GPU: the baseline's Trainer
        # would otherwise wrap DataParallel over all of them (doubled batch, summed loss).
        env = dict(self.env, CUDA_VISIBLE_DEVICES=self.env.get("CUDA_VISIBLE_DEVICES",
                                                               "0").split(",")[0])
        if kind == "baseline":
            data = "fixed" if cfg["data"] == "fixed" else self.realistic_path
            cmd = [sys.executable, str(PROBE), str(probe_json), self.baseline, "--mode",
                   cfg["mode"], "--shape", a.shape, "--data", data, "--seq", str(a.seq),
                   "--mbs", str(cfg["mbs"]), "--steps", str(a.steps),
                   "--liger", str(int("liger" in mods)),
                   "--grad-ckpt", str(int("nockpt" not in mods))]
            base.update(packing=False, attn="sdpa")
        elif kind == "axolotl":
            why = axolotl_tool.missing(a.axolotl_site)
            if why:
                self.say(why)
                self.emit({**base, "error": why})
                return self.lines[-1]
            config = self.write_axolotl_config(case, cfg, tool, mods)
            cmd = [sys.executable, str(PROBE), str(probe_json), "-m", "axolotl.cli.train",
                   str(config)]
            env = axolotl_tool.environment(env, a.axolotl_site, self.work)
            base.update(packing=cfg["data"] == "realistic", attn="sdpa", config=str(config))
        else:
            attn = tool_attn or self.attention()
            spec, out_dir = self.write_spec(case, cfg, tool, attn)
            cmd = [sys.executable, str(PROBE), str(probe_json), "ft", "train", str(spec)]
            base.update(packing=cfg["data"] == "realistic", attn=attn, spec=str(spec))
        if topo:
            world = multi_gpu.world_size(topo)
            rank_json = str(probe_json.with_suffix("")) + "-rank{rank}.json"
            for stale in multi_gpu.rank_files(rank_json, world):
                stale.unlink(missing_ok=True)
            site = multi_gpu.probe_site(self.work, BENCH)
            env = dict(self.env, FT_BENCH_PROBE=rank_json,
                       PYTHONPATH=os.pathsep.join([str(site), self.env["PYTHONPATH"]]))
            cmd = multi_gpu.launch_cmd(sys.executable, spec, topo, isolate="iso" in mods)
            sharding = "ddp" if "ddp" in mods else "+".join(
                ["fsdp2", *sorted(mods & {"keep", "shard"})])
            base.update(nodes=topo[0], gpus_per_node=topo[1], world=world, sharding=sharding,
                        isolated="iso" in mods)
        self.say(f"start {case} {tool} ({left:.0f}s of budget left)")
        with GpuMemPoller() as poll:
            idle = poll.idle_mib()
            rc, lines, wall = self.sub(f"{case}-{tool}", cmd, timeout=left - 5, env=env)
        line = {**base, "rc": rc, "process_s": round(wall, 1)}
        p = (multi_gpu.read_ranks(rank_json, world) if topo
             else json.loads(probe_json.read_text()) if probe_json.exists() else None)
        if rc != 0 or p is None:
            self.fail_tail(f"{case} {tool}", rc, lines)
            line["error"] = next((x for x in reversed(lines) if x.strip()), "")[-500:]
            self.emit(line)
            return line
        line.update(probe_fields(p, a.warm, world, per_rank=bool(topo)))
        if poll.peak_mib is not None:
            line["peak_gpu_used_gib"] = round(poll.peak_mib / 1024, 2)
            line["gpu_used_idle_gib"] = round(idle / 1024, 2) if idle is not None else None
            line["gpu_poll"] = poll.source
        params = n_params(shape_of(a.shape))
        line["params"] = params
        line.update(ft_choices(lines, kind, mods))
        line["loss"] = [round(x, 5) for x in p.get("loss", [])]
        line.update(utilization(line, params, self.peak_tflops))
        result = next((x for x in lines if x.startswith("RESULT ")), None)
        if result:
            line["baseline_result"] = json.loads(result[len("RESULT "):])
        summary = ft_summary(out_dir) if out_dir is not None else None
        if summary is not None:
            line["ft_summary"] = summary
        line.update(comparisons(line, self.lines, topo))
        self.emit(line)
        return line

    def table(self) -> None:
        print_table(self.lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_matmul":
        return cmd_matmul(sys.argv[2])
    if len(sys.argv) > 1 and sys.argv[1] == "_prep":
        return cmd_prep(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
                        sys.argv[6])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for results.jsonl and runs.log")
    ap.add_argument("--work", default="/tmp/ftbench", help="scratch: data, specs, outputs")
    ap.add_argument("--cases", default="lora-fixed,lora-realistic",
                    help=f"comma-separated, from {', '.join(CASES)}")
    ap.add_argument("--tools", default="baseline,ft",
                    help="order in which they run per case; ft:ATTN runs ft with that "
                         "attn_implementation (e.g. ft:flex_attention)")
    ap.add_argument("--shape", default="8b", choices=[*BASE.SHAPES, "tiny"])
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warm", type=int, default=5, help="first steps left out of the rates")
    ap.add_argument("--rows", type=int, default=20000, help="rows of the realistic data")
    ap.add_argument("--ft-mbs-realistic", type=int, default=None,
                    help="ft's micro_batch_size on packed realistic data (default: the "
                         "baseline's)")
    ap.add_argument("--attn", default="auto",
                    help="ft attention: auto (flash_attention_2 if flash_attn imports, else "
                         "sdpa), sdpa, flash_attention_2, flex_attention")
    ap.add_argument("--budget-s", type=float, default=560,
                    help="stop starting runs when this much time has passed")
    ap.add_argument("--min-run-s", type=float, default=75,
                    help="skip a run when less than this is left of the budget")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="bf16 matmul peak to use when it cannot be measured (no GPU)")
    ap.add_argument("--axolotl-site", default="/tmp/axsite",
                    help="where the `axolotl` tool's wheels are installed (bench/axolotl_tool.py)")
    ap.add_argument("--baseline", default=str(BASELINE), help="baseline script (tests only)")
    ap.add_argument("--fail-lines", type=int, default=40)
    a = ap.parse_args()
    cases = [c for c in a.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {list(CASES)}")
    tools = [t for t in a.tools.split(",") if t]
    for tool in tools:
        parse_tool(tool)  # an unknown tool or modifier stops here, before any run
    bench = Bench(a)
    bench.baseline = a.baseline
    bench.say(f"cases {cases}, shape {a.shape}, steps {a.steps} (warm {a.warm}), "
              f"budget {a.budget_s:.0f}s, attention {bench.attention()}")
    bench.measure_peak()
    bench.prepare(cases)
    for case in cases:
        for tool in tools:
            bench.run_one(case, tool)
        bench.finish_case(case)
    bench.table()
    bench.say("done")


if __name__ == "__main__":
    main()
