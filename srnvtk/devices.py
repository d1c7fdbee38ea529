"""Choosing where torch runs."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from .config import check_device
from .errors import SettingsError


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without CUDA falls back to the CPU with a warning."""
    check_device(device)
    if device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if device == "cuda":
        warnings.warn("CUDA was requested but is not available; running on the CPU", RuntimeWarning, stacklevel=2)
    return torch.device("cpu")


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU thread count set to `threads` (0: left as it is) for the duration, then restored."""
    if threads < 0:
        raise SettingsError("threads must be >= 0")
    previous = torch.get_num_threads()
    if threads and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
