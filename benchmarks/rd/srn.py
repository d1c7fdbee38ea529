"""srnvtk at target ratios, through its public API: plan the model and byte budget (ratecontrol.plan_for_ratio),
train with a time limit, fit the file to the budget and write it (encoder.compress), then read the file back
and decode it (fileformat.read_srn, decode.decode). The ratio counts the whole .srn file; the PSNR is that of
the decoded file."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .rows import environment, quality, size_fields, summary
from .volumes import BenchVolume

PRESET_NAMES = ("fvsrn", "fvsrn-smallify", "fvsrn-variational", "fvsrn-binary", "neurcomp")


@dataclass(frozen=True)
class SRNSettings:
    time_limit: float = 300.0  # seconds of training per ratio
    steps: int | None = None  # None: TrainConfig's default (the time limit usually ends training first)
    device: str = "auto"
    threads: int = 0  # torch threads; 0: torch's default
    seed: int = 0


def preset(name: str):
    """(base model settings, pruning settings or None) of a preset name."""
    from srnvtk.config import FVSRNConfig, NeurcompConfig, PruningConfig

    if name == "fvsrn":
        return FVSRNConfig(), None
    if name == "neurcomp":
        return NeurcompConfig(), None
    if name.startswith("fvsrn-") and name[len("fvsrn-"):] in ("smallify", "variational", "binary"):
        return FVSRNConfig(), PruningConfig(method=name[len("fvsrn-"):])
    raise ValueError(f"unknown srnvtk preset '{name}'; known: {', '.join(PRESET_NAMES)}")


def train_config(settings: SRNSettings):
    from srnvtk.config import TrainConfig

    extra = {} if settings.steps is None else {"steps": settings.steps}
    return TrainConfig(time_limit=settings.time_limit, device=settings.device, threads=settings.threads,
                       seed=settings.seed, **extra)


def compress_and_decode(bench: BenchVolume, model_config, pruning, budget: int, settings: SRNSettings,
                        path: Path) -> dict:
    """Train and write the file, read and decode it; sizes, quality, times and the encoder's own stats."""
    from srnvtk.decode import decode
    from srnvtk.encoder import compress
    from srnvtk.fileformat import read_srn

    start = time.perf_counter()
    result = compress(bench.volume, model_config=model_config, train_config=train_config(settings), path=path,
                      pruning=pruning, target_bytes=budget)
    encode_seconds = time.perf_counter() - start
    file_bytes = os.path.getsize(path)
    start = time.perf_counter()
    srn = read_srn(path)
    decoded = decode(srn, device=settings.device)
    decode_seconds = time.perf_counter() - start
    stats = result.stats
    return {"compressed_bytes": file_bytes, "encode_seconds": encode_seconds, "decode_seconds": decode_seconds,
            "decoded": decoded, "train_seconds": stats["train_seconds"], "steps": int(stats["steps"]),
            "encoder_psnr_db": stats["psnr"], "pruned_fraction": stats.get("pruned_fraction", 0.0)}


def srn_environment(settings: SRNSettings) -> dict:
    import torch

    from srnvtk.devices import resolve_device

    device = resolve_device(settings.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {**environment(), "torch_threads": torch.get_num_threads(), "device": name}


def srn_row(bench: BenchVolume, name: str, target: float, settings: SRNSettings, workdir: Path) -> dict:
    """Compress at one target ratio with one preset; a row of every measure (or why it could not run)."""
    from srnvtk.errors import SettingsError
    from srnvtk.ratecontrol import plan_for_ratio

    base, pruning = preset(name)
    row = {"codec": f"srnvtk-{name}", "label": f"srnvtk {name}", "family": "srnvtk",
           "package": "srnvtk (this repository)", "bytes_counted": "the whole .srn file",
           "settings": dataclasses.asdict(settings)}
    try:
        model_config, budget = plan_for_ratio(target, bench.volume, base, pruning)
    except SettingsError as exc:
        return {**row, "target_ratio": target, "reached": False, "note": str(exc),
                "environment": srn_environment(settings)}
    measured = compress_and_decode(bench, model_config, pruning, budget, settings, workdir / f"{name}_{target:g}.srn")
    decoded = measured.pop("decoded")
    return {**row, **size_fields(bench.volume.values.size, target, measured["compressed_bytes"]),
            **quality(bench.volume.values, decoded, bench.value_range), **measured,
            "model": {"architecture": model_config.architecture, **dataclasses.asdict(model_config)},
            "pruning": None if pruning is None else pruning.method,
            "environment": srn_environment(settings)}


def run_srnvtk(bench: BenchVolume, presets: list[str], ratios: list[float], settings: SRNSettings,
               log: Callable[[str], None] = print) -> list[dict]:
    """One row per preset and target ratio."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="rd_srnvtk_") as tmp:
        for name in presets:
            for target in sorted(ratios):
                row = srn_row(bench, name, target, settings, Path(tmp))
                log(summary(row))
                rows.append(row)
    return rows

