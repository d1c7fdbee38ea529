#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: library, CLI, pip-VTK algorithms, and the real
# ParaView (pvpython, pvbatch under MPI, the GUI under Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
.venv/bin/ruff check srnvtk tests benchmarks examples plugin
exec .venv/bin/python -m pytest -q -rs "$@"
