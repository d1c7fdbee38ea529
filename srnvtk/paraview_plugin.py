"""ParaView with srnvtk, from an installed package: `srnvtk paraview [paraview|pvpython|pvbatch] [args...]`.

A checkout has `xml/srnvtk.xml` and `plugin/srnvtk-paraview`; a pip-installed srnvtk has neither, so this
module writes the plugin XML (srnvtk.paraview_xml, the same text as the committed file) into a cache folder
and starts the ParaView program with that folder in PV_PLUGIN_PATH and the folder holding the installed
srnvtk (with torch and PyWavelets beside it) in PYTHONPATH. ParaView 5.11 embeds Debian's Python 3.11, so
that environment must be built for it (a venv of /usr/bin/python3) and must not hold pip's `vtk`: its
vtkmodules would shadow ParaView's own VTK and crash pvpython. That case is refused with an explanation.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import sys
from pathlib import Path

from .errors import SettingsError
from .paraview_xml import paraview_xml

PROGRAMS = ("paraview", "pvpython", "pvbatch", "pvserver")
XML_NAME = "srnvtk.xml"


def cache_folder() -> Path:
    """Where srnvtk keeps files it makes for this user (SRNVTK_CACHE_DIR, else ~/.cache/srnvtk)."""
    base = os.environ.get("SRNVTK_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "srnvtk")
    return Path(base)


def plugin_folder() -> Path:
    """A folder holding the plugin XML for this srnvtk, written (atomically) when missing or different."""
    folder = cache_folder() / "paraview"
    folder.mkdir(parents=True, exist_ok=True)
    path, text = folder / XML_NAME, paraview_xml()
    if not path.is_file() or path.read_text() != text:
        tmp = folder / f".{XML_NAME}.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)
    return folder


def package_root() -> Path:
    """The folder the srnvtk package is imported from (site-packages, or a checkout's root)."""
    return Path(__file__).resolve().parent.parent


def python_folders() -> list[Path]:
    """What ParaView's Python needs on its path: srnvtk's folder and this environment's own site-packages
    (torch, PyWavelets); not the system's, which ParaView's Python has already."""
    folders = [package_root()]
    for folder in map(Path, site.getsitepackages()):
        if folder.is_dir() and folder.resolve().is_relative_to(Path(sys.prefix).resolve()) and folder not in folders:
            folders.append(folder)
    return folders


def paraview_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a ParaView program: the plugin folder in PV_PLUGIN_PATH, srnvtk's folders first in
    PYTHONPATH. SettingsError when they hold pip's vtk or lack torch (see the module docstring)."""
    env = dict(os.environ if base is None else base)
    folders = python_folders()
    for folder in folders:
        if (folder / "vtkmodules").is_dir():
            raise SettingsError(
                f"pip's vtk is installed in {folder}, beside srnvtk; ParaView would import it instead of its own VTK "
                "and crash. Run srnvtk paraview from an environment without the vtk package (plugin/README.md)")
    if not any((folder / "torch").is_dir() for folder in folders) and importlib.util.find_spec("torch") is None:
        raise SettingsError("torch is not installed beside srnvtk; ParaView's Python needs it")
    env["PV_PLUGIN_PATH"] = os.pathsep.join(p for p in (str(plugin_folder()), env.get("PV_PLUGIN_PATH")) if p)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, folders), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def launch(program: str, args: list[str]) -> None:
    """Replace this process with the ParaView program (never returns); SettingsError when it is missing."""
    if program not in PROGRAMS:
        raise SettingsError(f"program must be one of {', '.join(PROGRAMS)}, got '{program}'")
    executable = shutil.which(program)
    if executable is None:
        raise SettingsError(f"'{program}' is not on PATH (Debian: apt-get install paraview python3-paraview)")
    env = paraview_environment()
    os.execve(executable, [program, *args], env)
