#!/usr/bin/env bash
# Set up (idempotent), then compress the project's generated default volume inside ParaView,
# reconstruct it, print ratio and PSNR, and save a screenshot rendered by ParaView to out/demo.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
exec xvfb-run -a -s "-screen 0 1280x1024x24" plugin/srnvtk-paraview pvpython examples/demo_paraview.py "$@"
