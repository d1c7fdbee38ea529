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

Under MPI (srnvtk.distributed) every rank must reach every exchange, whatever happens to it: a KeyboardInterrupt
raised in the middle of an exchange or of start-up would leave the other ranks waiting. So `srnvtk compress`
turns SIGINT and SIGTERM into a flag (`Interrupts`) from before its imports, which the run reads at safe points.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from collections.abc import Iterable, Iterator
from typing import Any

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
    """SIGINT is only noted inside the block; when the block ends, one that came is handed to the handler that was
    there before (KeyboardInterrupt by default)."""
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
        if callable(previous):  # Python's default handler raises KeyboardInterrupt; Interrupts' raises a flag
            previous(signal.SIGINT, None)
        else:
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


class Interrupts:
    """While active, SIGINT (Ctrl-C) and SIGTERM (what launchers send to stop a job) only raise a flag, which the
    run reads (`check`) between training steps and between bricks, so this rank stops, cleans up and tells the
    others at the next exchange instead of vanishing mid-way; a second signal interrupts at once.

    Nested: an Interrupts given an outer one shares its flag and leaves the handlers to it."""

    def __init__(self, outer: Interrupts | None = None) -> None:
        self.outer = outer
        self._caught: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def caught(self) -> int | None:
        return self.outer.caught if self.outer is not None else self._caught

    def __enter__(self) -> Interrupts:
        if self.outer is not None:
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            # A handler installed outside Python (ParaView's) could not be put back afterwards: leave it alone.
            if signal.getsignal(signum) is None:
                continue
            try:
                self._previous[signum] = signal.signal(signum, self._catch)
            except ValueError:  # not the main thread: signals stay as they are
                break
        return self

    def _catch(self, signum: int, frame: Any) -> None:
        if self._caught is not None:
            raise KeyboardInterrupt
        self._caught = signum

    def check(self) -> None:
        """KeyboardInterrupt if a signal has been caught."""
        if self.caught is not None:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
