"""What every result row shares: the quality fields (one PSNR definition) and the machine it ran on."""

from __future__ import annotations

import math
import os
import platform
import time

import numpy as np

from srnvtk.metrics import psnr

PSNR_DEFINITION = "20 log10(range / RMSE), range = max - min of the original (srnvtk.metrics.psnr)"
RATIO_DEFINITION = "float32 bytes of the volume / compressed bytes"


def quality(original: np.ndarray, decoded: np.ndarray, value_range: float) -> dict[str, float]:
    """PSNR (dB) and RMSE of decoded against original, with the original's value range."""
    db = psnr(original, np.asarray(decoded, dtype=np.float32).reshape(original.shape), value_range)
    rmse = 0.0 if math.isinf(db) else value_range / 10.0 ** (db / 20.0)
    return {"psnr_db": db, "rmse": rmse}


def size_fields(num_values: int, target: float, nbytes: int) -> dict:
    ratio = 4.0 * num_values / nbytes
    return {"target_ratio": target, "compressed_bytes": int(nbytes), "ratio": ratio, "reached": ratio >= target}


def cpu_model() -> str | None:
    """The CPU's model name (Linux), so that rows from machines of different speed can be told apart: a training
    row's steps in its time budget depend on it."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first processor's block is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return None
    if "model name" not in fields:
        return None
    # a hypervisor may show only the brand ("AMD EPYC"): family and model number tell generations apart
    return f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


def environment() -> dict:
    """Where and when a row was measured (timings depend on it)."""
    return {
        "machine": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def summary(row: dict) -> str:
    """One progress line for a row."""
    head = f"  {row['codec']:>16} target {row['target_ratio']:g}:"
    if "decode_failed" in row:
        return f"{head} ratio {row['ratio']:.2f}, decoding failed: {row['decode_failed']}"
    if "psnr_db" not in row:
        reach = row.get("max_ratio_reached")
        return f"{head} not reachable" + (f" (at most {reach:.1f})" if reach else f" ({row.get('note', '')})")
    extra = f", {row['steps']} steps" if "steps" in row else f", {row.get('search_trials', 0)} trials"
    return (f"{head} ratio {row['ratio']:.2f} PSNR {row['psnr_db']:.2f} dB, "
            f"enc {row['encode_seconds']:.2f}s dec {row['decode_seconds']:.2f}s{extra}")
