"""Rate control's fit (srnvtk.budget): the same training with different ways of bringing the file into its
budget, on the central N^3 of the shared volume (or the whole of it with --size 256).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fit_granularity.py --fit entry --ratio 100 --time-limit 150
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fit_granularity.py --fit position --ratio 100 --time-limit 150

'bits' is what srnvtk does: the fit may also lower the latent codes' bits (down to srnvtk.budget.FEWEST_FIT_BITS)
and keeps whichever stores the latent tensor closest to the trained one. 'entry' keeps 8-bit codes and only drops
single values ranked by their square; 'position' drops whole grid positions with all their channels, ranked by the
squares summed over the channels (what srnvtk did before; re-created here by replacing
srnvtk.budget.ranked_entries for the run). --steps S trains a fixed S steps instead of a CPU time. One line of
JSON per run is appended to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import srnvtk.budget as budget
import srnvtk.encoder as encoder
from srnvtk.config import TrainConfig
from srnvtk.ratecontrol import compress_to_ratio
from srnvtk.sampling import voxel_positions
from srnvtk.volume import Geometry, Volume
from srnvtk.vtkio import read_vti, volume_from_image

VOLUME = Path(__file__).resolve().parents[2] / "shared" / "data" / "richtmyer_meshkov_t0020_256.vti"


def ranked_positions(model):
    """The previous ranking: whole positions, by their squares summed over the channels."""
    latent = model.latent.detach()
    keep = model.grid_keep
    if keep is None and model.unit_importance is None:
        keep = torch.ones((1, *latent.shape[1:]), dtype=torch.bool, device=latent.device)
        importance = latent.double().square().sum(dim=0, keepdim=True)
        importance = importance.masked_fill(~keep, -torch.inf).reshape(-1)
        order = torch.argsort(importance, descending=True, stable=True)
        return order[: int(keep.sum())], keep
    return original_ranking(model)


original_ranking = budget.ranked_entries
TRACE_POINTS = 1 << 20  # random voxels the trace's PSNR is measured on


def sampled_psnr(model, volume: Volume) -> float:
    """PSNR (dB, of the value range) of the model on TRACE_POINTS fixed random voxels, as its file would store
    the latent codes."""
    values = torch.from_numpy(np.ascontiguousarray(volume.values).reshape(-1)).float()
    low, high = float(values.min()), float(values.max())
    index = torch.randint(0, values.numel(), (TRACE_POINTS,), generator=torch.Generator().manual_seed(1))
    model.quantization_aware(True)
    with torch.no_grad():
        prediction = model(voxel_positions(index, volume.values.shape)).reshape(-1)
    model.quantization_aware(False)
    error = torch.mean((prediction - (values[index] - low) / (high - low)) ** 2).item()
    return 10 * math.log10(1 / error)


def traced(make_fit, volume: Volume, trace: list):
    """encoder.budget_fit that records the sampled PSNR before and after every fit."""

    def make(*args, **kwargs):
        fit = make_fit(*args, **kwargs)

        def run(model) -> None:
            before = sampled_psnr(model, volume)
            fit(model)
            kept = None if model.grid_keep is None else float(model.grid_keep.float().mean())
            trace.append({"psnr_before": before, "psnr_after": sampled_psnr(model, volume),
                          "grid_bits": model.config.grid_bits, "kept_fraction": kept})

        return run

    return make


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", choices=("bits", "entry", "position"), required=True)
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--time-limit", type=float, default=150.0, help="CPU seconds of training")
    parser.add_argument("--steps", type=int, default=0, help="train this many steps instead (no time limit)")
    parser.add_argument("--size", type=int, default=128, help="the central N^3 of the shared volume")
    parser.add_argument("--volume", type=Path, default=VOLUME)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fit_granularity.jsonl")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.fit == "position":
        budget.ranked_entries = ranked_positions
    if args.fit != "bits":
        encoder.FEWEST_FIT_BITS = None  # the model's own 8 bits only
    source = volume_from_image(read_vti(str(args.volume)), "density")
    n, start = args.size, (source.values.shape[0] - args.size) // 2
    values = np.ascontiguousarray(source.values[start:start + n, start:start + n, start:start + n])
    volume = Volume(values, Geometry((0, n - 1, 0, n - 1, 0, n - 1), (0.0, 0.0, 0.0), source.geometry.spacing),
                    "density")
    time_limit = 0.0 if args.steps else args.time_limit
    train = TrainConfig(steps=args.steps or 1_000_000, time_limit=time_limit, time_clock="cpu", device="cpu",
                        threads=1, seed=0)
    cpu = time.process_time()
    trace: list[dict] = []
    encoder.budget_fit = traced(encoder.budget_fit, volume, trace)
    with tempfile.TemporaryDirectory() as scratch:
        result = compress_to_ratio(volume, args.ratio, train_config=train, path=Path(scratch) / "fit.srn")
    row = {"fit": args.fit, "ratio": args.ratio, "size": n, "time_limit": time_limit, "psnr": result.stats["psnr"],
           "steps": int(result.stats["steps"]), "dropped_fraction": result.stats.get("pruned_fraction"),
           "grid_resolution": result.model_config.grid_resolution, "grid_bits": result.model_config.grid_bits,
           "file_bytes": result.file_bytes, "cpu_seconds": time.process_time() - cpu,
           "load_average": list(os.getloadavg()), "fits": trace}
    with args.out.open("a") as out:
        out.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
