#!/usr/bin/env bash
# Set up (idempotent), then compress the project's generated default volume inside ParaView,
# reconstruct it, print ratio and PSNR, and save a screenshot rendered by ParaView to out/demo.png.
# (The demo starts its own Xvfb when there is no display.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
exec plugin/srnvtk-paraview pvpython examples/demo_paraview.py "$@"
