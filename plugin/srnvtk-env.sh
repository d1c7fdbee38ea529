# Source this file (bash or zsh) to run srnvtk inside ParaView 5.11+:
#   source plugin/srnvtk-env.sh && paraview
# PYTHONPATH gains the repository root (the srnvtk package) and .venv-paraview's site-packages
# (torch, PyWavelets built for ParaView's Python); PV_PLUGIN_PATH gains xml/, so paraview, pvpython
# and pvbatch load xml/srnvtk.xml at start-up. Never add pip's vtk to this PYTHONPATH: its
# vtkmodules would shadow ParaView's own VTK and crash pvpython.
if [ -n "${BASH_SOURCE:-}" ]; then
    _srnvtk_self="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
    # shellcheck disable=SC2296
    _srnvtk_self="${(%):-%x}"
else
    _srnvtk_self="$0"
fi
SRNVTK_ROOT="$(cd "$(dirname "$_srnvtk_self")/.." && pwd)"
unset _srnvtk_self
_srnvtk_site="$(echo "$SRNVTK_ROOT"/.venv-paraview/lib/python3*/site-packages)"
if [ ! -d "$_srnvtk_site" ]; then
    echo "srnvtk-env.sh: $SRNVTK_ROOT/.venv-paraview is missing; run scripts/setup.sh" >&2
    _srnvtk_site=""
fi
export SRNVTK_ROOT
export PYTHONPATH="$SRNVTK_ROOT${_srnvtk_site:+:$_srnvtk_site}${PYTHONPATH:+:$PYTHONPATH}"
export PV_PLUGIN_PATH="$SRNVTK_ROOT/xml${PV_PLUGIN_PATH:+:$PV_PLUGIN_PATH}"
unset _srnvtk_site
