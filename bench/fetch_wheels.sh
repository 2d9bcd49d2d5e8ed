#!/usr/bin/env bash
# Fill .whl/ (git-ignored through .git/info/exclude) with the Python 3.12 x86-64 wheels the
# GPU image lacks, for the device tool's `carry: [".whl"]`. Run here, in the repo root, where
# pip reaches the index. bench/device_setup.py installs on the device only those the machine
# lacks or has older.
#
# Size: the whole carried tree must stay under 64 MiB. bitsandbytes is 43 MB because it ships
# binaries for every CUDA/ROCm/XPU; the image's torch is 2.11.0+cu130, so only the CUDA 13.x
# (and CPU) binaries are kept: 7 MB. pyarrow is not carried: datasets 5.2 asks for
# pyarrow>=24 and the image has 25.0.1 (2026-11). deepspeed has no wheel on the index: its
# sdist is built here into a pure-Python wheel (DS_BUILD_OPS=0; ft uses no DeepSpeed kernels,
# the optimizer is torch's), 2 MB. liger-kernel (0.9 MB) and cut-cross-entropy (23 kB) are
# pure Python (triton kernels): ft's default kernels and its `cut_cross_entropy` key.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl \
    bitsandbytes==0.50.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
    pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
    typing-extensions==4.16.0 huggingface-hub==1.31.0 hjson==3.1.0 \
    liger-kernel==0.8.5 cut-cross-entropy==25.1.1

# bitsandbytes: drop the binaries torch cu13x never loads, rewrite RECORD, re-zip.
whl=$(ls .whl/bitsandbytes-0.50.2-*.whl)
tmp=$(mktemp -d)
python3 - "$whl" "$tmp" <<'EOF'
import csv, io, os, sys, zipfile
src, tmp = sys.argv[1], sys.argv[2]
keep = lambda n: not (n.startswith("bitsandbytes/libbitsandbytes_") and n.endswith(".so")) \
    or n.split("_")[-1] in ("cpu.so", "cuda130.so", "cuda132.so")
out = os.path.join(tmp, os.path.basename(src))
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
    names = [n for n in zin.namelist() if keep(n)]
    for n in names:
        data = zin.read(n)
        if n.endswith(".dist-info/RECORD"):
            rows = [r for r in csv.reader(io.StringIO(data.decode())) if r and keep(r[0])]
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(rows)
            data = buf.getvalue().encode()
        zout.writestr(n, data)
os.replace(out, src)
EOF
rm -rf "$tmp"

# deepspeed: sdist only. Build it against the torch of the venv running this script.
if ! ls .whl/deepspeed-0.19.8-*.whl >/dev/null 2>&1; then
    src=$(mktemp -d)
    python3 -m pip download --no-deps --no-binary :all: deepspeed==0.19.8 -d "$src" -q
    DS_BUILD_OPS=0 python3 -m pip wheel --no-deps --no-build-isolation "$src"/deepspeed-*.tar.gz \
        -w .whl -q
    rm -rf "$src"
fi
du -cb .whl/*.whl | tail -1
