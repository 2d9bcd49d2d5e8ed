"""ft vs the plain transformers+peft baseline, same session, same GPU (DESIGN.md,
"Performance protocol"). Prints one JSON line per run, then a table.

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

FLOPs per useful token: N = parameters of the base model (8.03e9 for 8b); HFU counts 6N
(forward 2N, activation gradients 2N, activation-checkpoint recompute 2N), MFU 4N (no
recompute). LoRA weight gradients and attention score FLOPs are left out (a few % at 2048).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import multi_gpu

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"



def find_baseline() -> Path:
    """The shared baseline script: $FT_BASELINE_SCRIPT, a carried copy in bench/.baseline/
    (../shared does not travel to the GPU machine), or ../shared/bench beside the repo."""
    candidates = [os.environ.get("FT_BASELINE_SCRIPT"),
                  BENCH / ".baseline" / "baseline_hf_peft.py",
                  REPO.parent / "shared" / "bench" / "baseline_hf_peft.py"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise SystemExit("baseline_hf_peft.py not found: mkdir -p bench/.baseline && cp "
                     "../shared/bench/baseline_hf_peft.py bench/.baseline/ (and carry it)")


BASELINE = find_baseline()
PROBE = BENCH / "probe.py"

CASES = {
    "lora-fixed": dict(mode="lora", data="fixed", mbs=4),
    "lora-realistic": dict(mode="lora", data="realistic", mbs=8),
    "qlora-fixed": dict(mode="qlora", data="fixed", mbs=4),
    "qlora-realistic": dict(mode="qlora", data="realistic", mbs=8),
}
# Tool modifiers (`ft+liger+nockpt`, `baseline+liger`): each a switch of one lever.
#   ft: no modifier = ft's defaults (kernels and checkpointing chosen by ft);
#       ckpt / nockpt = gradient_checkpointing true / false (default: auto);
#       liger / noliger = liger_kernel true / false (default: Liger where installed);
#       cce = cut_cross_entropy: true; nolorak = lora_*_kernel false (peft's own LoRA
#       forward). `ft:ATTN` also sets attn_implementation.
#       `ft@NxG`: N emulated nodes of G GPUs (`ft launch --backend local`), FSDP2 unless
#       `+ddp` (transformers' DDP); `+keep` keeps each layer's gathered weights from
#       forward to backward (reshard_after_forward false: one all-gather per layer and
#       step instead of two); `+shard` shards the frozen base too (replicate_frozen_params
#       false; default auto keeps it whole on each GPU when it fits); `+iso` isolates the
#       nodes (own netns: NCCL over veth).
#   baseline: liger = --liger 1 (transformers' use_liger_kernel); nockpt = --grad-ckpt 0.
MODIFIERS = {"ft": {"ckpt", "nockpt", "liger", "noliger", "cce", "nolorak", "ddp", "keep",
                    "shard", "iso"},
             "baseline": {"liger", "nockpt"}}


def parse_tool(tool: str) -> tuple[str, str | None, set[str]]:
    """'ft:flex_attention@1x2+liger' -> ('ft', 'flex_attention', {'liger'})."""
    name, *mods = tool.split("+")
    base, _, attn = name.split("@")[0].partition(":")
    unknown = set(mods) - MODIFIERS.get(base, set())
    if base not in MODIFIERS or unknown:
        raise SystemExit(f"unknown tool {tool!r} (modifiers {sorted(unknown)})")
    return base, attn or None, set(mods)


def tool_topology(tool: str) -> tuple[int, int] | None:
    """'ft@2x1+ddp' -> (2, 1); None for a single-process tool."""
    name = tool.split("+")[0]
    return multi_gpu.topology(name.split("@")[1]) if "@" in name else None


def single_gpu_tool(tool: str) -> str:
    """The one-GPU run a multi-GPU tool scales from: 'ft@1x2+ddp+ckpt' -> 'ft+ckpt'."""
    name, *mods = tool.split("+")
    return "+".join([name.split("@")[0], *(m for m in mods if m not in multi_gpu.MODIFIERS)])


def ft_lever_keys(mods: set[str]) -> dict:
    """The spec keys a tool's modifiers set; absent keys leave ft's defaults."""
    keys: dict = {}
    if "ckpt" in mods or "nockpt" in mods:
        keys["gradient_checkpointing"] = "ckpt" in mods
    if "liger" in mods or "noliger" in mods:
        keys["liger_kernel"] = "liger" in mods
    if "cce" in mods:
        keys["cut_cross_entropy"] = True
    if "nolorak" in mods or "noliger" in mods:  # noliger: the plain path, peft's LoRA too
        keys.update(lora_mlp_kernel=False, lora_qkv_kernel=False, lora_o_kernel=False)
    return keys


# Only for the CPU smoke test (bench/smoke_cpu.sh); the baseline knows 8b and 1b.
TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2)


def load_baseline_module():
    spec = importlib.util.spec_from_file_location("baseline_hf_peft", BASELINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # only stdlib at import time; main() is guarded
    return module


BASE = load_baseline_module()
VOCAB = BASE.VOCAB


def shape_of(name: str) -> dict:
    return TINY_SHAPE if name == "tiny" else BASE.SHAPES[name]


def n_params(shape: dict, vocab: int = VOCAB) -> int:
    """Parameters of LlamaForCausalLM (untied embeddings), counted from the shape."""
    d, ff, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    hd = d // shape["num_attention_heads"]
    attn = d * shape["num_attention_heads"] * hd * 2 + d * shape["num_key_value_heads"] * hd * 2
    layer = attn + 3 * d * ff + 2 * d
    return 2 * vocab * d + layers * layer + d


# ---------------------------------------------------------------- subprocess helpers (torch)

def cmd_matmul(out: str) -> None:
    """Median bf16 matmul rate on random data, rotating inputs (METHOD.md)."""
    import torch

    res = {"cuda": torch.cuda.is_available()}
    if res["cuda"]:
        torch.manual_seed(0)
        best = 0.0
        for dist, n, batches, per in (("randn", 8192, 15, 10), ("randn", 16384, 6, 4),
                                      ("rand", 8192, 15, 10)):
            make = torch.randn if dist == "randn" else torch.rand
            mats = [(make(n, n, device="cuda", dtype=torch.bfloat16),
                     make(n, n, device="cuda", dtype=torch.bfloat16)) for _ in range(3)]
            for i in range(10):
                a, b = mats[i % 3]
                a @ b
            torch.cuda.synchronize()
            times = []
            for _ in range(batches):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                start.record()
                for i in range(per):
                    a, b = mats[i % 3]
                    a @ b
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3 / per)
            times.sort()
            tflops = 2 * n**3 / times[len(times) // 2] / 1e12
            res[f"tflops_{dist}_n{n}"] = round(tflops, 1)
            best = max(best, tflops)
            del mats
            torch.cuda.empty_cache()
        res["tflops"] = round(best, 1)
        res["gpu"] = torch.cuda.get_device_name(0)
        res["gpu_mem_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        res["torch_cuda"] = torch.version.cuda
    Path(out).write_text(json.dumps(res))


def cmd_prep(model_dir: str, shape_name: str, seq: int, fixed_rows: int, fixed_path: str) -> None:
    """Model (as the baseline builds it) + tokenizer into model_dir; full-length jsonl rows."""
    import torch
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(model_dir)
    t0 = time.perf_counter()
    if not (path / "config.json").exists():
        cfg = LlamaConfig(vocab_size=VOCAB, max_position_embeddings=8192, rope_theta=500000.0,
                          **shape_of(shape_name))
        torch.manual_seed(0)
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = LlamaForCausalLM(cfg)
        model.save_pretrained(model_dir)
        del model
        torch.set_default_dtype(torch.float32)
    t_model = time.perf_counter() - t0
    if not (path / "tokenizer.json").exists():
        # Llama-3 ids for the special tokens; pad is a vocabulary entry (no resize in ft).
        special = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>",
                   128004: "<|finetune_right_pad_id|>"}
        vocab = {special.get(i, f"<t{i}>"): i for i in range(VOCAB)}
        tok = Tokenizer(WordLevel(vocab, unk_token="<t0>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=special[128000],
                                       eos_token=special[128001], pad_token=special[128004],
                                       unk_token="<t0>")
        assert len(fast) == VOCAB, len(fast)
        fast.save_pretrained(model_dir)
    if fixed_path and not Path(fixed_path).exists():
        tmp = fixed_path + ".tmp"
        with open(tmp, "w") as f:
            for i in range(fixed_rows):  # exactly the baseline's Fixed dataset rows
                g = torch.Generator().manual_seed(i)
                ids = torch.randint(0, VOCAB, (seq,), generator=g).tolist()
                f.write(json.dumps({"input_ids": ids, "attention_mask": [1] * seq,
                                    "labels": ids}) + "\n")
        os.replace(tmp, fixed_path)
    print(json.dumps({"prep_model_s": round(t_model, 1),
                      "prep_total_s": round(time.perf_counter() - t0, 1)}))


# ---------------------------------------------------------------- GPU memory poller

class GpuMemPoller:
    """Peak memory in use on GPU 0 (whole device), polled every `period` s from outside."""

    def __init__(self, period: float = 0.2) -> None:
        self.period, self.peak_mib, self.source = period, None, None
        self._stop = threading.Event()
        self._read = self._reader()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _reader(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.source = "nvml"
            return lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
        except Exception:
            pass
        try:
            subprocess.run(["nvidia-smi", "-L"], capture_output=True, check=True, timeout=10)
        except Exception:
            return None
        self.source = "nvidia-smi"
        self.period = max(self.period, 0.5)

        def read():
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,"
                                  "noheader,nounits", "-i", "0"], capture_output=True,
                                 text=True, timeout=10).stdout
            return float(out.strip().splitlines()[0])
        return read

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                used = self._read()
                self.peak_mib = used if self.peak_mib is None else max(self.peak_mib, used)
            except Exception:
                pass
            self._stop.wait(self.period)

    def __enter__(self):
        if self._read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def idle_mib(self) -> float | None:
        try:
            return self._read() if self._read else None
        except Exception:
            return None


# ---------------------------------------------------------------- the harness

class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.t0 = time.monotonic()
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(a.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = open(self.out / "runs.log", "a")  # noqa: SIM115 (open for the whole run)
        self.results = open(self.out / "results.jsonl", "a")  # noqa: SIM115
        self.model_dir = f"/tmp/rand-{a.shape}"
        self.baseline = str(BASELINE)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
                        HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                        TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_TELEMETRY="1")
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env["PYTHONPATH"] = os.pathsep.join(paths + [str(REPO)])
        self.peak_tflops: float | None = None
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
        self.results.write(text + "\n")
        self.results.flush()

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
            "logging_steps": 1,
            "seed": 0,
        }
        path = self.work / f"spec-{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path, out_dir

    # -- one run
    def run_one(self, case: str, tool: str) -> dict:
        a = self.a
        cfg = dict(CASES[case])
        cfg["ft_mbs"] = a.ft_mbs_realistic if (cfg["data"] == "realistic" and a.ft_mbs_realistic) \
            else cfg["mbs"]
        base = {"session": self.session, "case": f"{case}-{a.shape}", "tool": tool,
                "mode": cfg["mode"], "shape": a.shape, "data": cfg["data"], "seq": a.seq,
                "mbs": cfg["mbs"] if tool == "baseline" else cfg["ft_mbs"],
                "steps": a.steps, "warm": a.warm}
        left = self.left()
        if left < a.min_run_s:
            line = {**base, "skipped": f"budget: {left:.0f}s left < {a.min_run_s}s"}
            self.emit(line)
            return line
        probe_json = self.work / f"probe-{case}-{tool.replace(':', '-').replace('+', '-')}.json"
        probe_json.unlink(missing_ok=True)
        out_dir = None
        kind, tool_attn, mods = parse_tool(tool)
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
        line.update(self.figures(p, a.warm, world))
        if topo:
            line["per_rank_peak_alloc_gib"] = [_r(x, 2) for x in p["per_rank_peak_alloc_gib"]]
        line["useful_source"] = p.get("useful_source")
        line["setup_s"] = round(p.get("train_begin_s", 0), 1)
        line["peak_alloc_gib"] = _r(p.get("peak_alloc_gib"), 2)
        line["peak_reserved_gib"] = _r(p.get("peak_reserved_gib"), 2)
        if poll.peak_mib is not None:
            line["peak_gpu_used_gib"] = round(poll.peak_mib / 1024, 2)
            line["gpu_used_idle_gib"] = _r(idle / 1024 if idle is not None else None, 2)
            line["gpu_poll"] = poll.source
        params = n_params(shape_of(a.shape))
        line["params"] = params
        line.update(ft_choices(lines, kind, mods))
        line["loss"] = [round(x, 5) for x in p.get("loss", [])]
        if self.peak_tflops and line.get("tokens_per_s"):
            peak = self.peak_tflops * 1e12
            # HFU: forward 2N + activation gradients 2N + recompute 2N x recomputed share.
            hfu_n = (4 + 2 * line["recomputed_share"]) * params
            line["hfu"] = round(hfu_n * line["tokens_per_s"] / peak, 3)
            line["mfu"] = round(4 * params * line["tokens_per_s"] / peak, 3)
            line["hfu_wall"] = round(hfu_n * line["tokens_per_s_wall"] / peak, 3)
            line["mfu_wall"] = round(4 * params * line["tokens_per_s_wall"] / peak, 3)
            line["peak_tflops"] = self.peak_tflops
        result = next((x for x in lines if x.startswith("RESULT ")), None)
        if result:
            line["baseline_result"] = json.loads(result[len("RESULT "):])
        if out_dir is not None and (out_dir / "ft-train-summary.json").exists():
            summary = json.loads((out_dir / "ft-train-summary.json").read_text())
            losses = [e["loss"] for e in summary.get("log_history", []) if "loss" in e]
            data = {k: v for k, v in summary.get("data", {}).items() if k != "datasets"}
            line["ft_summary"] = {"train": summary.get("train"), "data": data,
                                  "model": summary.get("model"),
                                  "first_loss": losses[0] if losses else None,
                                  "last_loss": losses[-1] if losses else None}
        line["loss_vs"] = {x["tool"]: loss_gap(line["loss"], x["loss"]) for x in self.lines
                           if x.get("case") == line["case"] and x.get("loss")}
        line["ratio_vs"] = {x["tool"]: round(line["tokens_per_s"] / x["tokens_per_s"], 3)
                            for x in self.lines if x.get("case") == line["case"]
                            and x.get("tokens_per_s") and x["tool"].startswith("baseline")}
        ref = next((x for x in self.lines if x.get("case") == line["case"]
                    and x.get("tool") == "baseline" and x.get("tokens_per_s")), None)
        single = next((x for x in self.lines if x.get("case") == line["case"]
                       and x.get("tool") == single_gpu_tool(tool) and x.get("tokens_per_s")),
                      None)
        if topo and single:
            # The scaling target: tokens/s per GPU against the same tool on one GPU.
            line["scaling_vs_1gpu"] = {
                "tool": single["tool"],
                "per_gpu": round(line["tokens_per_s"] / single["tokens_per_s"], 3),
                "per_gpu_wall": round(line["tokens_per_s_wall"] / single["tokens_per_s_wall"],
                                      3)}
        if topo and topo[0] > 1:
            # The emulation target: N nodes against one node with the same GPUs.
            one_node = tool.replace(f"@{topo[0]}x{topo[1]}", f"@1x{topo[0] * topo[1]}")
            same = next((x for x in self.lines if x.get("case") == line["case"]
                         and x.get("tool") == one_node and x.get("tokens_per_s")), None)
            if same:
                line["vs_one_node"] = {"tool": one_node, "per_gpu": round(
                    line["tokens_per_s"] / same["tokens_per_s"], 3)}
        if tool.startswith("ft") and ref:
            line["ratio_vs_baseline"] = {
                "tokens_per_s": round(line["tokens_per_s"] / ref["tokens_per_s"], 3),
                "tokens_per_s_wall": round(line["tokens_per_s_wall"]
                                           / ref["tokens_per_s_wall"], 3),
                "peak_alloc": _ratio(line.get("peak_alloc_gib"), ref.get("peak_alloc_gib")),
                "peak_gpu_used": _ratio(line.get("peak_gpu_used_gib"),
                                        ref.get("peak_gpu_used_gib")),
            }
        self.emit(line)
        return line

    @staticmethod
    def figures(p: dict, warm: int, world: int = 1) -> dict:
        """Rates per GPU (a multi-GPU record sums every rank's tokens)."""
        steps = len(p["step_s"])
        if p.get("gradient_accumulation_steps", 1) != 1:
            raise SystemExit("the probe assumes gradient_accumulation_steps 1")
        warm = min(warm, max(steps - 2, 0))
        useful = p["useful"][:steps]
        timed = sum(useful[warm:])
        step_time = sum(p["step_s"][warm:])
        begin = p["step_end_t"][warm - 1] if warm else p["train_begin_s"]
        wall = p["step_end_t"][-1] - begin
        batch = sum(p["batch_tokens"][warm:steps])
        return {"timed_steps": steps - warm,
                "tokens_per_s": round(timed / step_time / world, 1) if step_time else None,
                "tokens_per_s_wall": round(timed / wall / world, 1) if wall else None,
                **({"tokens_per_s_all_gpus": round(timed / step_time, 1)}
                   if world > 1 and step_time else {}),
                "useful_tokens_per_step": round(timed / max(steps - warm, 1), 1),
                "padding_frac": round(1 - timed / batch, 4) if batch else None,
                "step_s_median": round(sorted(p["step_s"][warm:])[(steps - warm) // 2], 4),
                "first_step_s": round(p["step_s"][0], 2) if steps else None}

    def table(self) -> None:
        rows = [x for x in self.lines if x.get("case")]
        print("\ncase                    tool              mbs tok/s(step) tok/s(wall) peak_alloc "
              "gpu_used   HFU   MFU  ratio(step) ratio(wall)", flush=True)
        for x in rows:
            if x.get("skipped") or x.get("error") is not None:
                print(f"{x['case']:<23} {x['tool']:<17} {x.get('mbs', ''):>3}  "
                      f"{'skipped: ' + x['skipped'] if x.get('skipped') else 'FAILED'}")
                continue
            r = x.get("ratio_vs_baseline") or {}
            first = next((y for y in rows if y.get("case") == x["case"] and y.get("loss")), {})
            gap = (x.get("loss_vs") or {}).get(first.get("tool")) or {}
            print(f"{x['case']:<23} {x['tool']:<17} {x['mbs']:>3} {x['tokens_per_s']:>11} "
                  f"{x['tokens_per_s_wall']:>11} {x.get('peak_alloc_gib')!s:>10} "
                  f"{x.get('peak_gpu_used_gib')!s:>8} {x.get('hfu')!s:>5} {x.get('mfu')!s:>5} "
                  f"{r.get('tokens_per_s', '')!s:>11} {r.get('tokens_per_s_wall', '')!s:>11} "
                  f"recomputed {x.get('recomputed_share')} loss gap vs {first.get('tool')}: "
                  f"max {gap.get('max')} mean {gap.get('mean')}", flush=True)


def ft_choices(lines: list[str], kind: str, mods: set[str]) -> dict:
    """What the run chose: kernels and the share of decoder layers recomputed in backward
    (ft logs both; the baseline's come from its flags)."""
    if kind == "baseline":
        return {"kernels": "transformers use_liger_kernel" if "liger" in mods else "none",
                "recomputed_share": 0.0 if "nockpt" in mods else 1.0}
    out = {"kernels": None,
           "recomputed_share": 1.0 if "ckpt" in mods else 0.0}  # auto: from the log
    for text in lines:
        if m := re.search(r"ft\.kernels: kernels: (.*)$", text):
            out["kernels"] = m.group(1)
        if m := re.search(r"gradient_checkpointing auto: (\d+) of (\d+)", text):
            out["recomputed_share"] = round(int(m.group(1)) / int(m.group(2)), 3)
            out["recomputed_layers"] = f"{m.group(1)}/{m.group(2)}"
        if m := re.search(r"activation memory estimate: (.*)$", text):
            out["memory_estimate"] = m.group(1)
        if "FSDP2 " in text and "layers sharded over" in text:
            out["frozen_replicated"] = "frozen weights replicated" in text
    return out


def loss_gap(a: list[float], b: list[float]) -> dict | None:
    """Per-step loss difference of two runs over their common steps."""
    n = min(len(a), len(b))
    if not n:
        return None
    gaps = [abs(x - y) for x, y in zip(a[:n], b[:n], strict=True)]
    return {"steps": n, "first": round(gaps[0], 5), "max": round(max(gaps), 5),
            "mean": round(sum(gaps) / n, 5)}


def _r(x, n):
    return None if x is None else round(x, n)


def _ratio(x, y):
    return round(x / y, 3) if x and y else None


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
    ap.add_argument("--baseline", default=str(BASELINE), help="baseline script (tests only)")
    ap.add_argument("--fail-lines", type=int, default=40)
    a = ap.parse_args()
    cases = [c for c in a.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {list(CASES)}")
    bench = Bench(a)
    bench.baseline = a.baseline
    bench.say(f"cases {cases}, shape {a.shape}, steps {a.steps} (warm {a.warm}), "
              f"budget {a.budget_s:.0f}s, attention {bench.attention()}")
    bench.measure_peak()
    bench.prepare(cases)
    for case in cases:
        for tool in [t for t in a.tools.split(",") if t]:
            bench.run_one(case, tool)
    bench.table()
    bench.say("done")


if __name__ == "__main__":
    main()
