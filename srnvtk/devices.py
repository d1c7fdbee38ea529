"""Choosing where torch runs."""

from __future__ import annotations

import warnings

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


def set_threads(threads: int) -> None:
    if threads < 0:
        raise SettingsError("threads must be >= 0")
    if threads:
        torch.set_num_threads(threads)
