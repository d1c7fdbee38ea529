"""srnvtk at target ratios, through its public API: plan the model and byte budget (ratecontrol.plan_for_ratio),
train with a time limit, fit the file to the budget and write it (encoder.compress), then read the file back
and decode it (fileformat.read_srn, decode.decode). The ratio counts the whole .srn file; the PSNR is that of
the decoded file."""

from __future__ import annotations

import dataclasses
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..results_io import code_version, device_name
from .rows import environment, quality, size_fields, summary
from .volumes import BenchVolume

# Presets: the architecture's settings and the pruning method (None: unpruned). Neurcomp is pruned with binary
# masks, the method that won for it in the pruning ablation (benchmarks/README.md); fV-SRN with variational dropout.
PRESETS = {
    "fvsrn": ("fvsrn", {}, None),
    "fvsrn-smallify": ("fvsrn", {}, "smallify"),
    "fvsrn-variational": ("fvsrn", {}, "variational"),
    "fvsrn-binary": ("fvsrn", {}, "binary"),
    "fvsrn-haar-variational": ("fvsrn", {"wavelet": "haar"}, "variational"),
    "neurcomp": ("neurcomp", {}, None),
    "neurcomp-kmeans": ("neurcomp", {"weight_clusters": 256}, None),
    "neurcomp-kmeans-binary": ("neurcomp", {"weight_clusters": 256}, "binary"),
}
PRESET_NAMES = tuple(PRESETS)


@dataclass(frozen=True)
class SRNSettings:
    time_limit: float = 300.0  # seconds of training per ratio
    steps: int | None = None  # None: TrainConfig's default (the time limit usually ends training first)
    device: str = "auto"
    threads: int = 0  # torch threads; 0: torch's default
    seed: int = 0
    clock: str = "wall"  # what time_limit counts (TrainConfig.time_clock); "cpu": comparable on a busy machine
    batch_size: int | None = None  # None: TrainConfig's default
    grid_bits: int | None = None  # fV-SRN latent code bits; None: FVSRNConfig's default
    sampling: str | None = None  # TrainConfig.sampling; None: its default


def preset(name: str):
    """(base model settings, pruning settings or None) of a preset name."""
    from srnvtk.config import MODEL_CONFIGS, PruningConfig

    if name not in PRESETS:
        raise ValueError(f"unknown srnvtk preset '{name}'; known: {', '.join(PRESET_NAMES)}")
    architecture, fields, method = PRESETS[name]
    return MODEL_CONFIGS[architecture](**fields), None if method is None else PruningConfig(method=method)


def train_config(settings: SRNSettings):
    from srnvtk.config import TrainConfig

    extra = {} if settings.steps is None else {"steps": settings.steps}
    if settings.batch_size is not None:
        extra["batch_size"] = settings.batch_size
    if settings.sampling is not None:
        extra["sampling"] = settings.sampling
    return TrainConfig(time_limit=settings.time_limit, time_clock=settings.clock, device=settings.device,
                       threads=settings.threads, seed=settings.seed, **extra)


def compress_and_decode(bench: BenchVolume, model_config, pruning, budget: int, settings: SRNSettings,
                        path: Path) -> dict:
    """Train and write the file, read and decode it; sizes, quality, times and the encoder's own stats."""
    from srnvtk.decode import decode
    from srnvtk.encoder import compress
    from srnvtk.fileformat import read_srn

    start, cpu_start, load_start = time.perf_counter(), process_cpu_seconds(), os.getloadavg()[0]
    result = compress(bench.volume, model_config=model_config, train_config=train_config(settings), path=path,
                      pruning=pruning, target_bytes=budget)
    encode_seconds = time.perf_counter() - start
    encode_cpu_seconds = process_cpu_seconds() - cpu_start
    load_end = os.getloadavg()[0]
    file_bytes = os.path.getsize(path)
    start = time.perf_counter()
    srn = read_srn(path)
    decoded = decode(srn, device=settings.device)
    decode_seconds = time.perf_counter() - start
    stats = result.stats
    final = srn.model_config  # after rate control's growth, trim or change of code bits: what the file holds
    return {"final_model": {"architecture": final.architecture, **dataclasses.asdict(final)},
            "compressed_bytes": file_bytes, "encode_seconds": encode_seconds, "decode_seconds": decode_seconds,
            "encode_cpu_seconds": encode_cpu_seconds, "load_average_1min": [load_start, load_end],
            "decoded": decoded, "train_seconds": stats["train_seconds"], "steps": int(stats["steps"]),
            "encoder_psnr_db": stats["psnr"], "pruned_fraction": stats.get("pruned_fraction", 0.0)}


def process_cpu_seconds() -> float:
    """CPU seconds this process has used (user + system): beside the wall clock, how much of a core training got
    on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def srn_environment(settings: SRNSettings) -> dict:
    import torch

    return {**environment(), "torch_threads": torch.get_num_threads(), "device": device_name(settings.device),
            "code": code_version()}


def srn_row(bench: BenchVolume, name: str, target: float, settings: SRNSettings, workdir: Path) -> dict:
    """Compress at one target ratio with one preset; a row of every measure (or why it could not run)."""
    from srnvtk.errors import SettingsError
    from srnvtk.ratecontrol import plan_for_ratio

    base, pruning = preset(name)
    if settings.grid_bits is not None and base.architecture == "fvsrn":
        base = dataclasses.replace(base, grid_bits=settings.grid_bits)
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


def same_run(row: dict, settings: SRNSettings) -> bool:
    """Whether a stored row was measured with these settings (so a resumed run can skip it)."""
    return row.get("family") == "srnvtk" and row.get("settings") == dataclasses.asdict(settings)


def run_srnvtk(bench: BenchVolume, presets: list[str], ratios: list[float], settings: SRNSettings,
               log: Callable[[str], None] = print, done: Callable[[str, float], bool] = lambda _c, _t: False,
               on_row: Callable[[dict], None] = lambda _row: None) -> list[dict]:
    """One row per preset and target ratio, ratio by ratio in the order given (the most telling first); the
    (codec, target) pairs `done` names are skipped, and `on_row` sees each row as soon as it is measured."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="rd_srnvtk_") as tmp:
        for target in ratios:
            for name in presets:
                if done(f"srnvtk-{name}", target):
                    log(f"  srnvtk-{name} target {target:g}: done in an earlier run, skipped")
                    continue
                row = srn_row(bench, name, target, settings, Path(tmp))
                log(summary(row))
                on_row(row)
                rows.append(row)
    return rows

