"""Which fV-SRN settings reach the best PSNR for a fixed number of training steps?

Run on a GPU to explore quickly what the CPU can afford later; every point is trained, rounded to the
stored precision and decoded on the full grid, exactly as `srnvtk compress` does.

    python benchmarks/hparam_sweep.py VOLUME.npy --steps 4000 --out results.jsonl
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from srnvtk.config import FVSRNConfig, TrainConfig
from srnvtk.decode import decode
from srnvtk.encoder import estimated_file_bytes
from srnvtk.fileformat import SRNFile
from srnvtk.metrics import psnr
from srnvtk.quantize import apply_storage_precision
from srnvtk.train import train
from srnvtk.volume import Geometry, Volume

# (label, model settings, training settings) relative to the defaults
SWEEP = [
    ("c16 r32", {}, {}),
    ("c16 r34", {"grid_resolution": 34}, {}),
    ("c8 r43", {"grid_channels": 8, "grid_resolution": 43}, {}),
    ("c4 r54", {"grid_channels": 4, "grid_resolution": 54}, {}),
    ("c32 r27", {"grid_channels": 32, "grid_resolution": 27}, {}),
    ("c16 r32 lr5e-3", {}, {"learning_rate": 5e-3}),
    ("c16 r32 lr2e-2", {}, {"learning_rate": 2e-2}),
    ("c16 r32 w64x2", {"mlp_width": 64, "mlp_layers": 2}, {}),
    ("c16 r32 w32x2", {"mlp_layers": 2}, {}),
    ("c16 r32 ff0", {"fourier_features": 0}, {}),
    ("c16 r32 b16k x4", {}, {"batch_size": 16384, "steps_factor": 4}),
    # second round: small batches, many steps (what the first round favoured), at CPU-affordable counts
    ("b16k lr2e-2 s8k", {}, {"batch_size": 16384, "learning_rate": 2e-2, "steps": 8000}),
    ("b16k lr2e-2 s12k", {}, {"batch_size": 16384, "learning_rate": 2e-2, "steps": 12000}),
    ("b16k lr1e-2 s12k", {}, {"batch_size": 16384, "learning_rate": 1e-2, "steps": 12000}),
    ("b8k lr2e-2 s24k", {}, {"batch_size": 8192, "learning_rate": 2e-2, "steps": 24000}),
    ("b16k lr2e-2 s12k r34", {"grid_resolution": 34}, {"batch_size": 16384, "learning_rate": 2e-2, "steps": 12000}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("volume", help=".npy array [z, y, x]")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="sweep.jsonl")
    parser.add_argument("--only", nargs="*", help="labels to run")
    args = parser.parse_args()
    values = np.load(args.volume)
    nz, ny, nx = values.shape
    geometry = Geometry((0, nx - 1, 0, ny - 1, 0, nz - 1), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    volume = Volume(values, geometry, "density")
    with open(args.out, "a") as out:
        for label, model_change, train_change in SWEEP:
            if args.only and label not in args.only:
                continue
            train_change = dict(train_change)
            steps = train_change.pop("steps", args.steps) * train_change.pop("steps_factor", 1)
            model_config = FVSRNConfig(**model_change)
            train_config = TrainConfig(steps=steps, device=args.device, **train_change)
            start = time.perf_counter()
            result = train(volume, model_config, train_config)
            apply_storage_precision(result.model)
            rec = decode(SRNFile.of_model(result.model, geometry, result.value_range, volume.dtype), device=args.device)
            row = {
                "label": label, "steps": steps, "batch": train_config.batch_size,
                "lr": train_config.learning_rate, "model": model_change,
                "psnr": psnr(values, rec, result.value_range[1] - result.value_range[0]),
                "bytes_estimate": estimated_file_bytes(model_config, geometry),
                "train_s": result.seconds, "total_s": time.perf_counter() - start,
            }
            print(json.dumps(row), flush=True)
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
