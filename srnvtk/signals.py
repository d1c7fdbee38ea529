"""Ctrl-C and SIGTERM as a flag that long runs read at safe points, instead of an exception raised anywhere.

Under MPI every rank must reach every exchange, whatever happens to it (srnvtk.distributed): a KeyboardInterrupt
raised in the middle of an exchange or of start-up would leave the other ranks waiting. Light on imports, so a
command can catch signals before it imports torch.
"""

from __future__ import annotations

import signal
from typing import Any


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
