#!/usr/bin/env bash
# Idempotent set-up on Debian 12 as root: ParaView from Debian, and two Python environments.
#   .venv           pip's VTK + torch (CPU) + srnvtk (editable) + test tools: the library, CLI and tests
#   .venv-paraview  torch, PyWavelets and pysz for ParaView's own Python (Debian's 3.11), with NO pip VTK,
#                   since pip's vtkmodules would shadow ParaView's VTK 9.2; h5py comes from Debian there
#                   so that it shares ParaView's HDF5 library.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="torch==2.13.0"   # the CPU wheel; an unpinned torch pulls a multi-GB CUDA build
# The GPU kernels (srnvtk/gpu): on a machine without a GPU the tests run them in Triton's CPU interpreter.
TRITON_SPEC="triton==3.9.0"

need_apt=()
# gcc + libc6-dev: srnvtk compiles its fused CPU decoding kernel on first use (srnvtk/native); without them
# decoding falls back to a slower torch path. libqt5svg5: Qt's SVG module, without which ParaView's GUI draws
# its toolbar buttons blank (Debian's paraview package does not pull it in).
for pkg in paraview python3-paraview python3-venv python3-h5py xvfb xauth openmpi-bin gcc libc6-dev libqt5svg5; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "[setup] apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY=/usr/bin/python3  # Debian's Python: the one ParaView embeds
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import srnvtk, torch, vtkmodules, pywt, h5py, pytest, ruff, Xlib, pysz, triton" 2>/dev/null; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q "$TORCH_SPEC" "$TRITON_SPEC"
    .venv/bin/pip install -q -e ".[vtk,test]"   # benchmarks: also .[bench] (matplotlib, classic codecs)
fi

if [ ! -x .venv-paraview/bin/python ]; then
    echo "[setup] creating .venv-paraview"
    "$PY" -m venv --system-site-packages .venv-paraview
fi
if ! .venv-paraview/bin/python -c "import torch, pywt, pysz" 2>/dev/null; then
    # numpy<2 keeps Debian's numpy 1.24 (which ParaView and Debian's h5py are built against).
    # pysz: SZ3, one of the error bound's residual coders (its wheel works with numpy 1.24).
    .venv-paraview/bin/pip install -q "$TORCH_SPEC" "pywavelets<1.9" "pysz==1.1.0" "numpy<2"
fi
echo "[setup] ready"
