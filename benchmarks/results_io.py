"""What the benchmark scripts share for their results: a file name per device, and an atomic JSON write."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path


def device_slug(text: str) -> str:
    """'NVIDIA H200' -> 'h200': a device's name as part of a results file name."""
    words = [w for w in text.lower().replace("nvidia", "").split() if w.isalnum()]
    return "_".join(words) or "gpu"


def write_results(out: str | Path, summary: dict) -> None:
    """The summary as JSON at out, written whole or not at all (a temporary name, then a rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(f"{out}.tmp")
    partial.write_text(json.dumps(summary, indent=2) + "\n")
    partial.replace(out)
    print(f"-> {out}")


def machine() -> dict:
    """The facts of this machine a CPU result depends on."""
    return {"python": platform.python_version(), "cpu_count": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def code_version() -> str | None:
    """The commit of the srnvtk that ran: SRNVTK_BENCH_COMMIT where a run uses a snapshot of the code (so edits
    to the checkout cannot change a long run halfway), else the checkout's HEAD."""
    if os.environ.get("SRNVTK_BENCH_COMMIT"):
        return os.environ["SRNVTK_BENCH_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() or None


def device_name(setting: str) -> str:
    """What a run trains on, for its rows: 'cpu' or the GPU's name (srnvtk.devices resolves the setting)."""
    import torch

    from srnvtk.devices import resolve_device

    device = resolve_device(setting)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
