"""Running the real ParaView (pvpython, pvbatch, paraview) from pytest, with srnvtk's plugin environment.

The environment comes from plugin/srnvtk-env.sh, sourced in a clean shell, so the tests exercise
the same file users source. Nothing from the test's own Python (pip's VTK, a virtualenv) leaks
into ParaView: pip's vtkmodules on pvpython's path would shadow ParaView's VTK and crash it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_XML = REPO / "xml" / "srnvtk.xml"
ENV_SCRIPT = REPO / "plugin" / "srnvtk-env.sh"
PVSCRIPTS = Path(__file__).resolve().parent / "pvscripts"
# Variables that would let the test's Python environment into ParaView's.
SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "PV_PLUGIN_PATH", "VIRTUAL_ENV", "PYTHONSTARTUP")


def require_programs(*names: str) -> dict[str, str]:
    """Full paths of the programs, or skip the test naming what is missing."""
    paths = {name: shutil.which(name) for name in names}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        pytest.skip(f"ParaView test needs {', '.join(missing)} on PATH (Debian: apt-get install paraview "
                    "python3-paraview openmpi-bin xvfb, or run scripts/setup.sh)")
    return paths


def paraview_env(plugin_path: bool = True) -> dict[str, str]:
    """os.environ cleaned of Python/plugin settings, plus what plugin/srnvtk-env.sh exports.

    plugin_path=False drops PV_PLUGIN_PATH again, for tests that call LoadPlugin themselves.
    Torch runs one thread per process: the test machines have few, shared cores.
    """
    if not list(REPO.glob(".venv-paraview/lib/python3*/site-packages")):
        pytest.skip(f"{REPO / '.venv-paraview'} is missing (torch for ParaView's Python); run scripts/setup.sh")
    base = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    dump = subprocess.run(
        ["bash", "-c", f'source "{ENV_SCRIPT}" >&2 && env -0'],
        env=base, capture_output=True, check=True, timeout=30,
    ).stdout.decode()
    env = dict(item.split("=", 1) for item in dump.split("\0") if "=" in item)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if not plugin_path:
        env.pop("PV_PLUGIN_PATH", None)
    return env


def run_paraview(
    args: list, env: dict[str, str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run a ParaView program; stdout and stderr come back merged, as text, in .stdout."""
    try:
        return subprocess.run(
            [str(a) for a in args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"{Path(str(args[0])).name} timed out after {timeout} s:\n{tail(output)}")


def tail(text: str, lines: int = 40) -> str:
    """The end of a program's output, after srnvtk's own error lines and tracebacks from anywhere in it."""
    all_lines = text.splitlines()
    marks = ("(SRNEncoder)", "(SRNReader)", "Error", "error:")
    errors = [line for line in all_lines[:-lines] if any(m in line for m in marks)][:20]
    head = ["... srnvtk errors earlier in the output:", *errors, "... end of the output:"] if errors else []
    return "\n".join(head + all_lines[-lines:])


def check_ran(proc: subprocess.CompletedProcess, done_marker: str) -> None:
    """The script ran to its end; otherwise fail showing the end of its output."""
    assert proc.returncode == 0 and done_marker in proc.stdout, (
        f"{proc.args[0]} exited with {proc.returncode}:\n{tail(proc.stdout)}"
    )
