"""Compressing under a guaranteed pointwise error bound: choose the split between a network and its residual.

For a bound E the encoder makes several files and keeps the smallest:

- residual only (no network): the volume coded to the bound by each residual coder at hand
  (srnvtk.errorbound: quantised codes with Lorenzo differences and LZMA, or SZ3 through pysz when installed);
  its size S0 is the reference;
- a network plus its residual, for `bound_networks` network sizes: budgets of NETWORK_SHARES of S0 (of the
  target ratio's budget, when that is smaller). Each network is trained for what the residual coder needs
  (BOUND_LOSS: L1, which fits most voxels closely and leaves large errors to few of them, instead of MSE,
  whose residual is spread noise), rounded to its stored precision, decoded exactly as a reader decodes it,
  and its residual coded by every coder; each coder's file is measured.

Every candidate's reconstruction is computed by the reader's own code path (srnvtk.decode on the in-memory
file, output type rounding included) and checked against the original on every voxel, in float64, before
the chosen file is written. With a target ratio as well, the smallest file must fit its budget, else a
SettingsError says how many bytes the bound needs. E = 0 on an integer array (or E < 0.5) is lossless; on a
float array E = 0 stores the values exactly (no network can help there). Measured reasons for the defaults:
benchmarks/README.md (error bound).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from .budget import budget_fit
from .config import EncoderSettings, ModelConfig, NeurcompConfig, PruningConfig
from .decode import decode, to_dtype
from .encoder import CompressResult, source_info
from .errorbound import (
    CODER_CHUNK_EDGES,
    ResidualCode,
    absolute_bound,
    decode_margin,
    encode_residual,
    sz3_available,
)
from .errors import SettingsError
from .fileformat import SourceInfo, SRNFile, srn_bytes, write_srn
from .metrics import compression_ratio, psnr
from .pruning import pruned_fraction, pruned_fractions
from .quantize import apply_storage_precision
from .train import AbortCallback, LossFunction, ProgressCallback, train
from .volume import Volume

NETWORK_SHARES = (0.5, 0.25, 0.125, 0.0625)  # of the residual-only file's bytes, one per network size tried
BOUND_LOSS = "l1"  # what networks under a bound are trained for ("l1" or "mse")


@dataclass
class Candidate:
    """One split: a network (or none) and its residual, with the file's bytes."""

    design: str
    coder: str
    file_bytes: int
    code: ResidualCode
    model: torch.nn.Module | None = None
    config: ModelConfig | None = None
    stored: object = None
    pruning: PruningConfig | None = None
    network_bytes: int = 0  # bytes of the file without its residual
    train: dict = dataclasses.field(default_factory=dict)
    residual_seconds: float = 0.0


def coders() -> tuple[str, ...]:
    """The residual coders at hand: quant always, sz3 where pysz is installed."""
    return ("quant", "sz3") if sz3_available() else ("quant",)


def bound_loss(kind: str = BOUND_LOSS) -> LossFunction | None:
    """The training loss for a network under a bound (None: MSE)."""
    if kind == "mse":
        return None
    if kind == "l1":
        return lambda prediction, target: (prediction.reshape(-1) - target.reshape(-1)).abs().mean()
    raise SettingsError(f"unknown bound loss {kind!r}")


def compress_bounded(
    volume: Volume,
    settings: EncoderSettings,
    *,
    path: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    should_abort: AbortCallback | None = None,
) -> CompressResult:
    """The smallest file whose every decoded voxel is within the bound (see the module); written when path is
    given. result.bound says which split was chosen and lists every candidate measured."""
    target = settings.encode
    source = source_info(volume)
    bound = absolute_bound(target.max_error, target.max_rel_error, source.value_range)
    budget = None if target.ratio is None else int(4 * volume.geometry.num_points // target.ratio)
    shares = NETWORK_SHARES[: target.bound_networks]
    steps = 1 + len(shares)

    def report(stage: int, fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(1.0, (stage + fraction) / steps), message)

    candidates = residual_only(volume, source, bound, target.max_rel_error)
    smallest = min(c.file_bytes for c in candidates)
    report(0, 1.0, f"residual only: {smallest:,} bytes")
    reference = smallest if budget is None else min(smallest, budget)
    if bound == 0 and not np.issubdtype(volume.values.dtype, np.integer):
        shares = ()  # exact float values: a network cannot save a byte
    for stage, share in enumerate(shares, start=1):
        network_budget = int(share * reference)
        try:
            found = _with_network(volume, source, bound, target.max_rel_error, settings, network_budget,
                                  lambda f, m, s=stage: report(s, f, m), should_abort)
        except SettingsError:  # too few bytes for any network of these settings: smaller shares fit even less
            break
        candidates.extend(found)
        report(stage, 1.0, f"network of {network_budget:,} bytes: {min(c.file_bytes for c in found):,} bytes")
    best = min(candidates, key=lambda c: c.file_bytes)
    if budget is not None and best.file_bytes > budget:
        raise SettingsError(
            f"max error {bound:g} needs {best.file_bytes:,} bytes (ratio "
            f"{compression_ratio(volume.geometry.num_points, best.file_bytes):.1f}); ratio {target.ratio:g} allows "
            f"{budget:,}: loosen the bound or lower the ratio")
    return finish(volume, source, best, candidates, path)


def residual_only(volume: Volume, source: SourceInfo, bound: float, rel: float | None) -> list[Candidate]:
    """The volume coded to the bound by every coder, without a network."""
    # what decode predicts without a network: the value range's minimum everywhere (the residual is relative to it)
    prediction = np.full(volume.geometry.shape_zyx, source.value_range[0], dtype=np.float64)
    found = []
    for coder in coders():
        start = time.perf_counter()
        code, size = _code(volume, source, prediction, bound, coder, "residual only", rel)
        seconds = time.perf_counter() - start
        found.append(Candidate("residual only", code.coder, size, code, residual_seconds=seconds))
    return found


def _code(volume: Volume, source: SourceInfo, prediction: np.ndarray, bound: float, coder: str, design: str,
          rel: float | None, config: ModelConfig | None = None, stored: object = None,
          pruning: PruningConfig | None = None) -> tuple[ResidualCode, int]:
    """The residual coded by one coder at each of its chunk edges (CODER_CHUNK_EDGES, those within the grid's
    longest axis): the code of the smallest file, and that file's bytes (with the network, when given)."""
    margin = decode_margin(source.value_range, source.dtype, config is not None)
    longest = max(volume.values.shape)
    edges = [e for e in CODER_CHUNK_EDGES[coder] if e <= longest] or [CODER_CHUNK_EDGES[coder][0]]
    best = None
    for edge in edges:
        code = encode_residual(volume.values, prediction, bound, source.dtype, margin, coder, design, edge,
                               finish=lambda v: to_dtype(v, source.dtype))
        code.max_rel_error = rel
        size = len(srn_bytes(config, stored, source, {}, pruning, code))
        if best is None or size < best[1]:
            best = (code, size)
    return best


@dataclass
class TrainedNetwork:
    """A network trained for a bound's residual coder, as stored, with what a reader decodes from it."""

    model: torch.nn.Module
    stored: object
    pruning: PruningConfig | None
    prediction: np.ndarray  # float64, what the reader computes before the residual
    network_bytes: int  # its file without a residual
    info: dict


def train_for_bound(volume: Volume, settings: EncoderSettings, network_budget: int,
                    progress: ProgressCallback | None = None, should_abort: AbortCallback | None = None,
                    loss: str = BOUND_LOSS) -> TrainedNetwork:
    """A network of the settings' architecture fitted into network_budget bytes, trained with the bound's loss;
    SettingsError when no network fits."""
    from .ratecontrol import plan_for_ratio  # ratecontrol imports this module

    source = source_info(volume)
    ratio = 4 * volume.geometry.num_points / max(network_budget, 1)
    if ratio <= 1:
        raise SettingsError("no network fits")
    pruning = settings.pruning
    config, fit_budget = plan_for_ratio(ratio, volume, settings.model_config, pruning)
    result = train(volume, config, settings.train, progress=progress, should_abort=should_abort, pruning=pruning,
                   fit=budget_fit(fit_budget, source, pruning), loss=bound_loss(loss))
    budget_fit(fit_budget, source, pruning, grow=False)(result.model)
    model = result.model
    stored = apply_storage_precision(model)
    srn = SRNFile(model, model.config, source, pruning=pruning or PruningConfig())
    prediction = decode(srn, device=settings.train.device, dtype="float64")
    network_bytes = len(srn_bytes(model.config, stored, source, {}, pruning))
    info = {"train_seconds": result.seconds, "steps": result.steps, "final_loss": result.final_loss,
            "pruned_fraction": pruned_fraction(model), "loss": loss}
    return TrainedNetwork(model, stored, pruning, prediction, network_bytes, info)


def network_candidates(volume: Volume, network: TrainedNetwork, bound: float, rel: float | None = None,
                       coder_names: tuple[str, ...] | None = None) -> list[Candidate]:
    """The network's residual coded to the bound by every coder (or those named), each file measured."""
    source = source_info(volume)
    found = []
    model = network.model
    for coder in coder_names or coders():
        start = time.perf_counter()
        code, size = _code(volume, source, network.prediction, bound, coder, "network + residual", rel,
                           model.config, network.stored, network.pruning)
        seconds = time.perf_counter() - start
        found.append(Candidate("network + residual", code.coder, size, code, model, model.config, network.stored,
                               network.pruning, network.network_bytes, network.info, seconds))
    return found


def _with_network(volume: Volume, source: SourceInfo, bound: float, rel: float | None, settings: EncoderSettings,
                  network_budget: int, progress: ProgressCallback, should_abort: AbortCallback | None,
                  ) -> list[Candidate]:
    network = train_for_bound(volume, settings, network_budget, progress, should_abort)
    return network_candidates(volume, network, bound, rel)


def finish(volume: Volume, source: SourceInfo, best: Candidate, candidates: list[Candidate],
            path: str | os.PathLike | None) -> CompressResult:
    """Decode the chosen file as a reader will, check the bound on every voxel, write it."""
    srn = SRNFile(best.model, best.config, source, pruning=best.pruning or PruningConfig(), bound=best.code)
    start = time.perf_counter()
    reconstruction = decode(srn, device="cpu")
    decode_seconds = time.perf_counter() - start
    error = np.abs(reconstruction.astype(np.float64) - volume.values.astype(np.float64))
    worst = float(error.max())
    if worst > best.code.max_error:  # never expected: the residual's exceptions cover every miss
        raise RuntimeError(f"the bounded reconstruction misses the bound ({worst:g} > {best.code.max_error:g})")
    stats = {"psnr": psnr(volume.values, reconstruction, source.value_range[1] - source.value_range[0]),
             "train_seconds": best.train.get("train_seconds", 0.0), "steps": best.train.get("steps", 0),
             "final_loss": best.train.get("final_loss", float("nan")),
             "pruned_fraction": best.train.get("pruned_fraction", 0.0)}
    file_bytes = None
    if path is not None:
        file_bytes = write_srn(path, best.config, best.stored, source, stats, best.pruning, best.code)
    else:
        stats["file_bytes"] = best.file_bytes
        stats["ratio"] = compression_ratio(volume.geometry.num_points, best.file_bytes)
    residual_bytes = sum(best.code.chunk_bytes)
    summary = {
        "max_error": best.code.max_error, "max_rel_error": best.code.max_rel_error, "max_error_measured": worst,
        "design": best.design, "coder": best.code.coder, "network_bytes": best.network_bytes,
        "residual_bytes": residual_bytes, "residual_encode_seconds": best.residual_seconds,
        "decode_seconds": decode_seconds,
        "candidates": [{"design": c.design, "coder": c.coder, "file_bytes": c.file_bytes,
                        "network_bytes": c.network_bytes, "residual_encode_seconds": c.residual_seconds,
                        **({"network": _describe(c.config), **c.train} if c.config is not None else {})}
                       for c in candidates],
    }
    return CompressResult(best.config, reconstruction, stats, file_bytes,
                          pruned_fractions(best.model) if best.model is not None else {}, bound=summary)


def _describe(config: ModelConfig) -> str:
    if isinstance(config, NeurcompConfig):
        return f"neurcomp width {config.width}"
    return f"fvsrn grid resolution {config.grid_resolution}"

