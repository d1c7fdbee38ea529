"""Rate control's trim, per value or per grid position (srnvtk.budget): the same training with the two ways of
dropping latent entries to fit the budget, on the central N^3 of the shared volume.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fit_granularity.py --fit entry --ratio 100 --time-limit 150
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fit_granularity.py --fit position --ratio 100 --time-limit 150

'entry' is what srnvtk does (single values ranked by their square); 'position' drops whole grid positions with
all their channels, ranked by the squares summed over the channels (what srnvtk did before; re-created here by
replacing srnvtk.budget.ranked_entries for the run). One line of JSON per run is appended to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import srnvtk.budget as budget
from srnvtk.config import TrainConfig
from srnvtk.ratecontrol import compress_to_ratio
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", choices=("entry", "position"), required=True)
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--time-limit", type=float, default=150.0, help="CPU seconds of training")
    parser.add_argument("--size", type=int, default=128, help="the central N^3 of the shared volume")
    parser.add_argument("--volume", type=Path, default=VOLUME)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fit_granularity.jsonl")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.fit == "position":
        budget.ranked_entries = ranked_positions
    source = volume_from_image(read_vti(str(args.volume)), "density")
    n, start = args.size, (source.values.shape[0] - args.size) // 2
    values = np.ascontiguousarray(source.values[start:start + n, start:start + n, start:start + n])
    volume = Volume(values, Geometry((0, n - 1, 0, n - 1, 0, n - 1), (0.0, 0.0, 0.0), source.geometry.spacing),
                    "density")
    train = TrainConfig(steps=1_000_000, time_limit=args.time_limit, time_clock="cpu", device="cpu", threads=1, seed=0)
    cpu = time.process_time()
    result = compress_to_ratio(volume, args.ratio, train_config=train)
    row = {"fit": args.fit, "ratio": args.ratio, "size": n, "time_limit": args.time_limit, "psnr": result.stats["psnr"],
           "steps": int(result.stats["steps"]), "dropped_fraction": result.stats.get("pruned_fraction"),
           "grid_resolution": result.model_config.grid_resolution, "cpu_seconds": time.process_time() - cpu,
           "load_average": list(os.getloadavg())}
    with args.out.open("a") as out:
        out.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
