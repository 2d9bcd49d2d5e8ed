"""What the harness measures on the GPU itself, outside the training process: the bf16
matmul peak that HFU and MFU are relative to (in its own process, `run_bench.py _matmul`:
the harness itself never imports torch) and the whole GPU's memory in use while a run
trains (polled through NVML, else nvidia-smi).
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path


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

