#!/usr/bin/env bash
# One device call of performance round 3 (issue 22): ft vs Axolotl 0.21 on packed rows, same
# GPU, same rows (the first AXBENCH_REAL_ROWS of the baseline's --write-data stream), same
# micro-batch geometry (mbs 4 x 2048). Run from the root of the checkout that travels; this
# tree is carried as .perf/, main's code is the root, the carried wheels .whl/ and .axwhl/,
# the Axolotl kit .axkit/.
#   bash .perf/bench/round3_call.sh "CASES" "FT_MBS" "AXOLOTL_VARIANTS" [main]
# Writes under $OUT: env.txt, results.jsonl + runs.log (this tree), main/ (main's ft),
# ax.log + ax_results.jsonl + ax_mem.txt (Axolotl; GPU memory polled every 0.3 s).
set -o pipefail
ROOT=$PWD; PERF=$ROOT/.perf; CASES=$1; MBS=$2; AXV=$3; MAIN=${4:-}
ROWS=${ROWS:-4000}
python3 "$PERF/bench/device_setup.py" --wheels "$ROOT/.whl" > "$OUT/env.txt" 2>&1 \
  || { cat "$OUT/env.txt"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,power.limit,temperature.gpu \
  --format=csv >> "$OUT/env.txt" 2>&1
export PYTHONPATH=/tmp/site
B=(--shape 8b --steps 20 --warm 5 --rows "$ROWS" --ft-mbs-realistic "$MBS" --min-run-s 60)
(cd "$PERF" && PYTHONPATH=/tmp/site:$PERF python3 bench/varlen_check.py "$OUT/results.jsonl") \
  2>&1 | tail -3
(cd "$PERF" && python3 bench/run_bench.py --out "$OUT" --cases "$CASES" --tools "${TOOLS:-ft}" \
  "${B[@]}" --budget-s "${FT_BUDGET:-260}" 2>&1 | grep -v '^{')
if [ -n "$AXV" ]; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 300 > "$OUT/ax_mem.txt" &
  poll=$!
  AXBENCH_WORK=/tmp/axbench AXBENCH_REAL_ROWS=$ROWS AXBENCH_VARIANT_TIMEOUT=${AX_TIMEOUT:-280} \
    bash "$ROOT/.axkit/run_axolotl_bench.sh" "$ROOT/.whl:$ROOT/.axwhl" $AXV > "$OUT/ax.log" 2>&1
  kill "$poll"
  grep AXBENCH_RESULT "$OUT/ax.log" | sed 's/^AXBENCH_RESULT //' > "$OUT/ax_results.jsonl"
  grep -E "AXBENCH_RESULT|\[axbench\] ===|error|Error" "$OUT/ax.log" | cut -c1-300 | tail -8
  sort -n "$OUT/ax_mem.txt" | tail -1 | sed 's/^/axolotl peak GPU MiB: /'
fi
if [ -n "$MAIN" ]; then
  mkdir -p "$OUT/main"
  python3 bench/run_bench.py --out "$OUT/main" --cases "$CASES" --tools ft "${B[@]}" \
    --budget-s "${MAIN_BUDGET:-200}" 2>&1 | grep -v '^{'
fi
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in ("results.jsonl", "main/results.jsonl", "ax_results.jsonl"):
    p = out / name
    for line in (p.read_text().splitlines() if p.exists() else []):
        d = json.loads(line)
        keep = {k: d.get(k) for k in ("tool", "variant", "case", "mbs", "attn", "tokens_per_s",
                "tokens_per_s_wall", "peak_gpu_used_gib", "peak_alloc_gib", "error",
                "fwd_rel_err", "varlen_fwd_bwd_ms_per_layer", "sdpa_mask_fwd_bwd_ms_per_layer")
                if d.get(k) is not None}
        print(name, json.dumps(keep))
PY
