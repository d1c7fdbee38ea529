"""Classic codecs at target ratios: search the parameter on compressed size, then encode and decode once
more at the chosen parameter for the timings and the PSNR."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .codecs import Codec, Encoded, package_version
from .rows import environment, quality, size_fields, summary
from .search import SearchResult, Trial, find_parameter
from .volumes import BenchVolume


def timed(function: Callable, *args: Any) -> tuple[Any, float]:
    """function(*args) and its wall-clock seconds."""
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def codec_row(codec: Codec, bench: BenchVolume, target: float, result: SearchResult, rel_tol: float) -> dict:
    """Encode and decode at the search's best parameter; a row of every measure."""
    values = bench.volume.values
    scale = bench.value_range if codec.relative else 1.0
    row = {"codec": codec.name, "label": codec.label, "family": "classic",
           "package": f"{codec.package} {package_version(codec.package)}", "bytes_counted": codec.bytes_counted,
           "parameter_name": codec.parameter, "search_trials": result.trials, "ratio_tolerance": rel_tol}
    if result.best is None:
        reachable = 4.0 * values.size / result.smallest.nbytes
        return {**row, "target_ratio": target, "reached": False, "max_ratio_reached": reachable,
                "environment": environment()}
    parameter = result.best.parameter
    encoded, encode_seconds = timed(codec.encode, values, parameter * scale)
    row.update(size_fields(values.size, target, encoded.nbytes), parameter=parameter,
               codec_parameter=parameter * scale, encode_seconds=encode_seconds, environment=environment())
    if encoded.nbytes != result.best.nbytes:
        row["note"] = f"size differed between search ({result.best.nbytes}) and final encode ({encoded.nbytes})"
    try:
        decoded, decode_seconds = timed(codec.decode, encoded, values.shape)
    except Exception as exc:  # the WebAssembly TTHRESH fails on some streams; record it and go on
        return {**row, "decode_failed": str(exc).splitlines()[0]}
    return {**row, **quality(values, decoded, bench.value_range), "decode_seconds": decode_seconds}


def run_codec(codec: Codec, bench: BenchVolume, ratios: list[float], rel_tol: float = 0.005,
              log: Callable[[str], None] = print) -> list[dict]:
    """One row per target ratio, searched from the smallest target up (trials are shared)."""
    values = bench.volume.values
    scale = bench.value_range if codec.relative else 1.0
    trials: list[Trial] = []

    def evaluate(parameter: float) -> int:
        encoded: Encoded = codec.encode(values, parameter * scale)
        return encoded.nbytes

    rows = []
    for target in sorted(ratios):
        budget = int(4 * values.size // target)
        result = find_parameter(evaluate, budget, codec.small_end, codec.large_end, trials, rel_tol)
        row = codec_row(codec, bench, target, result, rel_tol)
        log(summary(row))
        rows.append(row)
    return rows

