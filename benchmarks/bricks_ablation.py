"""Bricks ablation (issue 14): halo, brick size, byte allocation and the MLP ladder, on a region of the shared
volume, every run at the same target ratio and the same total training steps (a brick gets the whole run's
steps divided by the number of bricks).

    .venv/bin/python benchmarks/bricks_ablation.py --runs whole b64h0 b64h4 ...   # labels: see RUNS

A run's label says what it is: "whole" (one network, srnvtk.ratecontrol), "b<size>h<halo>" (bricks of size^3
with that halo, bytes by points), "...g<gamma>" (bytes by points times complexity^gamma, srnvtk.bricks), "...m<k>"
(the MLP ladder forced to rung k for every brick). Rows record file bytes (the bricks' parts plus the measured
fixed cost of a bricked file), PSNR overall, on border and interior points (2 points either side of a plane
between bricks; srnvtk.bricks.border_quality) and of the gradient there, steps and CPU seconds. The json is
rewritten after every run; a rerun skips the labels it holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pruning_ablation import add_region_arguments, load_region, machine_info  # noqa: E402

from srnvtk.bricks import (  # noqa: E402
    border_quality,
    brick_budgets,
    brick_complexity,
    brick_fit,
    brick_measure,
    brick_volume,
    bricks_in_memory,
    layout_for,
    plan_brick,
    train_brick,
)
from srnvtk.config import FVSRNConfig, TrainConfig  # noqa: E402
from srnvtk.decode import decode  # noqa: E402
from srnvtk.metrics import psnr  # noqa: E402
from srnvtk.ratecontrol import MLP_LADDER, compress_to_ratio  # noqa: E402

FIXED_BYTES = 1024  # a bricked file's cost beyond its bricks: an upper bound (531-536 measured, container_overhead.py)
LABEL = re.compile(r"^b(?P<size>\d+)h(?P<halo>\d+)(g(?P<gamma>[\d.]+))?(m(?P<rung>\d))?$")


def train_config(args, share: int = 1, batch_size: int | None = None) -> TrainConfig:
    """The training of one network of a run: its share of the run's steps or (--time-limit) of its CPU time."""
    batch = args.batch_size if batch_size is None else batch_size
    if args.time_limit:
        return TrainConfig(steps=10_000_000, time_limit=args.time_limit / share, time_clock="cpu", batch_size=batch,
                           seed=args.seed, device="cpu")
    return TrainConfig(steps=max(1, args.steps // share), batch_size=batch, seed=args.seed, device="cpu")


def run_whole(volume, args) -> dict:
    train = train_config(args)
    cpu = time.process_time()
    result = compress_to_ratio(volume, args.ratio, train_config=train, path=Path(args.scratch) / "whole.srn")
    rec = result.reconstruction
    return {"file_bytes": result.file_bytes, "psnr": result.stats["psnr"], "steps": int(result.stats["steps"]),
            "steps_per_brick": int(result.stats["steps"]), "bricks": 1, "cpu_seconds": time.process_time() - cpu,
            "model": dataclasses.asdict(result.model_config)}, rec


def run_bricks(volume, label: str, args) -> tuple[dict, np.ndarray]:
    match = LABEL.match(label)
    if match is None:
        raise SystemExit(f"unknown run label {label}")
    size, halo = int(match["size"]), int(match["halo"])
    gamma = float(match["gamma"] or 0.0)
    grid = volume.geometry
    layout = layout_for(grid, size, halo)
    bricks = layout.indices(grid)
    value_range = (float(volume.values.min()), float(volume.values.max()))
    total = int(4 * grid.num_points // args.ratio) - FIXED_BYTES
    points, complexity = [], []
    for brick in bricks:
        core = layout.core(grid, brick)
        points.append((core[1] - core[0] + 1) * (core[3] - core[2] + 1) * (core[5] - core[4] + 1))
        sub = volume.values[core[4]:core[5] + 1, core[2]:core[3] + 1, core[0]:core[1] + 1]
        complexity.append(brick_complexity(sub, value_range))
    budgets = brick_budgets(total, points, complexity, gamma)
    # Equal samples per point as the whole run: every brick runs all the steps with a share of the batch (the
    # hyperparameter sweep found steps matter more than batch size at equal samples), or (--split-steps) the
    # whole batch for a share of the steps.
    # With --time-limit, every brick gets its share of the run's CPU time and the whole batch (what `srnvtk
    # compress --brick-size` does with a time limit per brick).
    if args.split_steps or args.time_limit:
        train = train_config(args, share=len(bricks))
    else:
        train = train_config(args, batch_size=max(256, round(args.batch_size * size**3 / grid.num_points)))
    models, used, rows, brick_steps = {}, 0, [], []
    cpu = time.process_time()
    for brick, budget in zip(bricks, budgets, strict=True):
        source = brick_volume(volume, layout, brick)
        base = FVSRNConfig()
        if match["rung"] is not None:
            layers, width, channels, octaves = MLP_LADDER[int(match["rung"])]
            base = dataclasses.replace(base, mlp_layers=layers, mlp_width=width, grid_channels=channels,
                                       fourier_features=octaves)
            config = plan_brick(budget, source.geometry, base, share=1.0)
        else:
            config = plan_brick(budget, source.geometry, base)
        trained = train_brick(source, brick, model_config=config, train_config=train, value_range=value_range,
                              fit=brick_fit(budget, source.geometry), final_fit=brick_fit(budget, source.geometry,
                                                                                          grow=False))
        models[brick] = trained.model
        brick_steps.append(int(trained.stats["steps"]))
        size_bytes = brick_measure(trained.model, source.geometry)(None)
        used += size_bytes
        rows.append({"brick": brick, "budget": budget, "bytes": size_bytes, "complexity": complexity[len(rows)],
                     "mlp": [trained.model.config.mlp_layers, trained.model.config.mlp_width,
                             trained.model.config.grid_channels, trained.model.config.fourier_features],
                     "grid": list(trained.model.structure()["grid_shape"])})
    seconds = time.process_time() - cpu
    rec = decode(bricks_in_memory(models, layout, grid, value_range, volume.dtype), device="cpu")
    row = {"file_bytes": used + FIXED_BYTES, "psnr": psnr(volume.values, rec, value_range[1] - value_range[0]),
           "steps": sum(brick_steps), "steps_per_brick": min(brick_steps), "batch_per_brick": train.batch_size,
           "bricks": len(bricks),
           "cpu_seconds": seconds,
           "size": size, "halo": halo, "gamma": gamma, "per_brick": rows}
    for brick_row in rows:
        core = layout.core(grid, brick_row["brick"])
        sl = (slice(core[4], core[5] + 1), slice(core[2], core[3] + 1), slice(core[0], core[1] + 1))
        brick_row["psnr_core"] = psnr(volume.values[sl], rec[sl], value_range[1] - value_range[0])
    return row, rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_region_arguments(parser)
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--steps", type=int, default=3000, help="total steps of a run (bricks share them)")
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.add_argument("--time-limit", type=float, default=0.0,
                        help="CPU seconds of training of a run (bricks share them out; the steps then do not count)")
    parser.add_argument("--split-steps", action="store_true",
                        help="bricks share the steps out (each its share, whole batch) instead of the batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mask-sizes", type=int, nargs="+", default=[64, 32],
                        help="brick sizes whose border masks every run is measured with")
    parser.add_argument("--scratch", default="/tmp")
    parser.add_argument("--out", default=str(HERE / "results" / "bricks_ablation.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    volume = load_region(args)
    if volume is None:
        raise SystemExit(f"no volume at {args.volume}")
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    data["settings"] = {"region": args.region, "volume": Path(args.volume).name, "ratio_default": args.ratio,
                        "batch_size": args.batch_size, "seed": args.seed}
    data["machine"] = machine_info()
    done = {(r["label"], r["ratio"], r["total_steps"], r.get("split_steps", True)) for r in data["rows"]
            if r.get("time_limit", 0.0) == args.time_limit}
    value_range = float(volume.values.max()) - float(volume.values.min())
    for label in args.runs:
        if (label, args.ratio, args.steps, args.split_steps and label != "whole") in done or (
                label == "whole" and (label, args.ratio, args.steps, False) in done):
            continue
        start = time.time()
        row, rec = run_whole(volume, args) if label == "whole" else run_bricks(volume, label, args)
        row.update(label=label, ratio=args.ratio, total_steps=args.steps, time_limit=args.time_limit,
                   wall_seconds=time.time() - start, load_average=list(os.getloadavg()),
                   split_steps=args.split_steps and label != "whole",
                   achieved_ratio=4 * volume.geometry.num_points / row["file_bytes"])
        for size in args.mask_sizes:
            layout = layout_for(volume.geometry, size, 0)
            row[f"mask{size}"] = border_quality(volume.values, rec, volume.geometry, layout, value_range)
        data["rows"].append(row)
        out.write_text(json.dumps(data, indent=1))
        m = row[f"mask{args.mask_sizes[0]}"]
        print(f"{label} ratio {args.ratio:g}: {row['file_bytes']:,} B ({row['achieved_ratio']:.1f}), "
              f"{row['psnr']:.2f} dB, border {m['psnr_border']:.2f} / interior {m['psnr_interior']:.2f}, "
              f"gradient {m['gradient_psnr_border']:.2f} / {m['gradient_psnr_interior']:.2f}, "
              f"{row['steps']} steps, {row['cpu_seconds']:.0f} s CPU", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
