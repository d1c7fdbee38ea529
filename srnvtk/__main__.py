"""`python -m srnvtk`: the same command as the `srnvtk` console script (which runs `run` too)."""

import os
import signal
import sys
from typing import NoReturn

from .interrupts import deferred_interrupts

EXIT_INTERRUPTED = 130


def run() -> NoReturn:
    """The srnvtk command. Ctrl-C during the start-up imports (numpy's C extensions) or the argument parsing exits
    as it does later: one line, status 130. An interrupted run then ends at once (os._exit), skipping the
    interpreter's shutdown: CPython marks a KeyboardInterrupt raised inside exec() of a string (dataclasses and
    namedtuples do that while modules import, torch's lazily) as unhandled even when srnvtk handled it, and would
    kill itself with SIGINT at exit; and modules the interrupt left half imported are never finalised. Every
    temporary file was removed where the interrupt passed through (srnvtk writes through temporary names).

    A finished run ends the same way, with Ctrl-C ignored first: its output is written, and a SIGINT landing in the
    interpreter's shutdown (atexit handlers, thread joins, after Python restores the default action) would end the
    process by the signal, status -2, which 8 of 100 scripted interrupts did (benchmarks/interrupt_compress.py)."""
    try:
        with deferred_interrupts():
            from .cli import main
        status = main()
    except Exception as exc:
        if not interrupted_by(exc):
            raise
        print("srnvtk: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("srnvtk: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    _ignore_interrupts()
    if status != EXIT_INTERRUPTED:
        _finalize_mpi()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _finalize_mpi() -> None:
    """MPI_Finalize where mpi4py initialised MPI (its atexit hook does not run under os._exit, and mpirun reports a
    rank that leaves without it as failed). Not after an interrupt: the other ranks may never get there."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.Finalize()


def _ignore_interrupts() -> None:
    """SIGINT ignored from here on; one already pending (Python checks before it changes a handler) is dropped."""
    while True:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            return
        except KeyboardInterrupt:
            continue


def interrupted_by(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the causes of exc: Python wraps one raised in a descriptor's
    __set_name__ (while a class is made, as modules that torch imports lazily do) into a RuntimeError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    raise SystemExit(run())
