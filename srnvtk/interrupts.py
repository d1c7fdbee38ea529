"""Ctrl-C in the command line: noted while extension modules load, raised once they have.

Python turns SIGINT into KeyboardInterrupt at the next bytecode its main thread runs, wherever that is. Where it is
inside the initialisation of a C++ extension module, the module is left half made: measured with
benchmarks/interrupt_compress.py on `srnvtk compress`, an interrupt during VTK's module imports (the first
seconds of a run) crashed the process with SIGSEGV or SIGABRT, turned into an ImportError ("Failed to load
vtkIOXML"), or, raised inside code VTK runs with PyRun_*, marked the interpreter as stopped by an unhandled
KeyboardInterrupt, so that Python killed itself with SIGINT at exit even though srnvtk had handled it.

So the CLI imports every extension module a command needs up front, with SIGINT only noted meanwhile
(`deferred_interrupts`), and raises KeyboardInterrupt right after if one came. Everything after that (training
steps, decoding, writing through temporary files) stops cleanly on KeyboardInterrupt, and the interrupted command
then ends without the interpreter's shutdown (`srnvtk.__main__.run`). Only the main thread can set signal
handlers: elsewhere the imports simply run.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from collections.abc import Iterable, Iterator

# What each command imports, heaviest first; importing them again later costs nothing.
TORCH = ("torch", "h5py", "pywt", "srnvtk.fileformat", "srnvtk.decode", "srnvtk.wavelet", "srnvtk.lattice",
         "srnvtk.neurcomp_eval")
VTK = ("vtkmodules.vtkCommonCore", "vtkmodules.vtkCommonDataModel", "vtkmodules.vtkIOXML",
       "vtkmodules.util.numpy_support", "srnvtk.vtkio")
COMMAND_MODULES = {
    # torch.optim imports torch._dynamo (a second of imports) when the first optimiser is made
    "compress": TORCH + VTK + ("torch._dynamo", "torch.optim", "srnvtk.encoder", "srnvtk.ratecontrol",
                               "srnvtk.budget", "srnvtk.train"),
    "decompress": TORCH + VTK,
    "info": TORCH + ("srnvtk.pruning",),
    "generate": VTK + ("srnvtk.datasets",),
    # replaces itself with ParaView (os.execve): nothing heavy to import first
    "paraview": (),
}


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT is only noted inside the block; KeyboardInterrupt is raised when the block ends, if one came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, _frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def preload(modules: Iterable[str]) -> None:
    """Import the modules with interrupts deferred; one that cannot be imported is left for its user to report."""
    with deferred_interrupts():
        for name in modules:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)


def preload_command(command: str | None) -> None:
    """Preload what a CLI command needs (nothing for an unknown one)."""
    preload(COMMAND_MODULES.get(command or "", ()))
