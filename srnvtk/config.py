"""Settings as frozen dataclasses, validated once, stored in every .srn file as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .errors import SettingsError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class FVSRNConfig:
    """fV-SRN: a latent grid (channels x grid resolution, longest axis) read trilinearly, plus an MLP."""

    grid_channels: int = 16
    grid_resolution: int = 32
    grid_shape: tuple[int, int, int] | None = None  # (z, y, x); derived from the volume when None
    mlp_width: int = 32
    mlp_layers: int = 4
    fourier_features: int = 4  # sin/cos octaves per axis

    def __post_init__(self) -> None:
        _check_range("grid_channels", self.grid_channels, 1, 256)
        _check_range("grid_resolution", self.grid_resolution, 2, 1024)
        _check_range("mlp_width", self.mlp_width, 1, 1024)
        _check_range("mlp_layers", self.mlp_layers, 1, 32)
        _check_range("fourier_features", self.fourier_features, 0, 16)
        if self.grid_shape is not None:
            if len(self.grid_shape) != 3 or min(self.grid_shape) < 2:
                raise SettingsError(f"grid_shape must be three sizes >= 2, got {self.grid_shape}")
            object.__setattr__(self, "grid_shape", tuple(int(s) for s in self.grid_shape))


@dataclass(frozen=True)
class TrainConfig:
    """How long and how the network is fitted."""

    # Small batches and many steps at a high rate won on the shared 256^3 volume at equal samples
    # (benchmarks/results/hparam_sweep*.jsonl): 16k x 12k steps at 2e-2 gave 42.6 dB, 65k x 4k at 1e-2 36.1.
    steps: int = 10000
    batch_size: int = 16384
    learning_rate: float = 2e-2
    final_learning_rate_fraction: float = 0.02
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0: torch's default
    time_limit: float = 0.0  # seconds of training at most (the schedule follows the clock); 0: no limit

    def __post_init__(self) -> None:
        _check_range("steps", self.steps, 1, 10_000_000)
        _check_range("batch_size", self.batch_size, 1, 1 << 26)
        if not (0.0 < self.learning_rate < 1.0):
            raise SettingsError(f"learning_rate must lie in (0, 1), got {self.learning_rate}")
        if not (0.0 < self.final_learning_rate_fraction <= 1.0):
            raise SettingsError("final_learning_rate_fraction must lie in (0, 1]")
        check_device(self.device)
        _check_range("threads", self.threads, 0, 1024)
        if not (self.time_limit >= 0.0):
            raise SettingsError(f"time_limit must be >= 0 seconds, got {self.time_limit}")


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise SettingsError(f"device must be one of {', '.join(DEVICES)}, got '{device}'")
    return device


def _check_range(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (lo <= value <= hi):
        raise SettingsError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def from_json(cls: type, text: str) -> Any:
    """Rebuild a config, rejecting unknown keys so a foreign file fails loudly."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"stored settings are not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError("stored settings are not a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise SettingsError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    if data.get("grid_shape") is not None:
        data["grid_shape"] = tuple(data["grid_shape"])
    try:
        return cls(**data)
    except TypeError as exc:
        raise SettingsError(str(exc)) from None
