#!/usr/bin/env bash
# Issue 15's GPU check in one run on a fresh GPU machine (the lent H200): the CUDA tests, the decode benchmark
# (fV-SRN and Neurcomp; full, strides, sub-extent, upsampled; fp32 and fp16; against the large-batch torch decode
# and the fused CPU kernel) and the training benchmark (graphed vs eager steps/s, time to 40 dB at ratio >= 100),
# each under its own time limit (7.5 minutes at most together), results in benchmarks/results/.
#
# 1. Prepare, here (pip and VTK at hand), once per checkout:     bash benchmarks/gpu_check.sh --prepare
#      .whl/  PyWavelets for the GPU machine's Python 3.12 (it has torch, triton, numpy, h5py and pytest, and no
#             network; srnvtk imports pywt); wheels are never committed
#      .gpu/  rm256.npz: the shared 256^3 volume as a numpy array (the GPU machine has no VTK)
#    Both folders are ignored by git; a device run takes them along with carry [".whl", ".gpu"].
# 2. Run, on the GPU machine, from the repository root:          bash benchmarks/gpu_check.sh
#    (the device tool: command "bash benchmarks/gpu_check.sh", carry [".whl", ".gpu"], timeout_s 540). It writes
#    benchmarks/results/{gpu_decode,train_speed}_<gpu>.json and gpu_check_<gpu>.log, and copies them to $OUT
#    when that is set (the device tool brings $OUT back).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's srnvtk, installed or not
WHEELS=("pywavelets==1.9.0")
VOLUME="${RM256:-../shared/data/richtmyer_meshkov_t0020_256.vti}"  # the shared volume

if [ "${1:-}" = "--prepare" ]; then
    set -e
    PY="${PYTHON:-.venv/bin/python}"
    mkdir -p .whl .gpu
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
    VOLUME="$VOLUME" "$PY" - <<'EOF'
import os
from pathlib import Path

import numpy as np

from srnvtk.vtkio import read_vti, volume_from_image

source = Path(os.environ["VOLUME"])
volume = volume_from_image(read_vti(source), "density")
np.savez_compressed(".gpu/rm256.tmp.npz", density=volume.values)
Path(".gpu/rm256.tmp.npz").replace(".gpu/rm256.npz")
print(f"[gpu_check] .gpu/rm256.npz: {volume.values.shape} {volume.values.dtype} from {source}")
EOF
    ls -l .whl .gpu
    exit 0
fi

PY="${PYTHON:-python3}"  # the GPU machine's python3 holds torch and triton
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONUNBUFFERED=1
TAG=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr 'A-Z' 'a-z' | sed 's/nvidia//g' \
      | tr -cs 'a-z0-9' '_' | sed 's/^_*//; s/_*$//')
TAG=${TAG:-gpu}
RESULTS=benchmarks/results
LOG=$RESULTS/gpu_check_$TAG.log
mkdir -p "$RESULTS"
exec > >(tee "$LOG") 2>&1
status=0
echo "== machine ($(date -u +%FT%TZ))"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
"$PY" -c "import torch, triton, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', \
triton.__version__, 'numpy', numpy.__version__)"
echo "cpus: $(nproc)"
echo "== CUDA tests"
parallel=()  # each kernel variant compiles for seconds: spread the tests over 4 processes where xdist is installed
"$PY" -c "import xdist" 2>/dev/null && parallel=(-n 4)
timeout 130 "$PY" -m pytest -q -rs -p no:cacheprovider "${parallel[@]}" tests/test_gpu_cuda.py tests/test_lattice.py \
    -k cuda || status=1
echo "== training benchmark"
if [ -f .gpu/rm256.npz ]; then
    timeout 100 "$PY" benchmarks/train_speed.py --volume .gpu/rm256.npz --out "$RESULTS/train_speed_$TAG.json" \
        || status=1
else
    echo "no .gpu/rm256.npz (run --prepare here and carry .gpu): training benchmark skipped"
    status=1
fi
echo "== decode benchmark (each row is also a JSON line here, should the time limit cut it short)"
timeout 220 "$PY" benchmarks/gpu_decode.py --out "$RESULTS/gpu_decode_$TAG.json" || status=1
echo "== done (status $status)"
sleep 1  # let tee finish the log
if [ -n "${OUT:-}" ]; then
    for file in "$LOG" "$RESULTS/gpu_decode_$TAG.json" "$RESULTS/train_speed_$TAG.json"; do
        [ -f "$file" ] && cp "$file" "$OUT"/
    done
fi
exit $status
