"""Training speed on a GPU: the graphed step (srnvtk.gpu.graphed_step) against the eager loop, and the time to
reach a PSNR on the shared 256^3 volume at a target ratio (issue 15: 40 dB at ratio >= 100 within 10 s).

Every run is srnvtk.encoder.compress, as `srnvtk compress` does it: train, round to the stored precision, decode
the full grid, write the file (into a temporary folder); PSNR is the stored model's, ratio = float32 bytes / file
bytes. Model: config_for_ratio(--ratio) (the default fV-SRN with the largest grid whose file fits), batch 16,384,
the default schedule. Runs, after a short warm-up run (kernel compilation, allocator):
1. --steps steps at the same seed with the graphed step and with SRNVTK_CUDA_GRAPHS=0 (the eager loop): steps/s of
   each (steps over train seconds) and their PSNRs (the same training within noise);
2. the graphed step with each time limit of --time-limits (the schedule follows the clock): PSNR and ratio per
   limit; `time_to_target_s` is the first limit whose file reaches --target-db.

Volume: --volume, a .vti (needs VTK) or a .npy / .npz array [z, y, x] (the GPU machine has no VTK:
benchmarks/gpu_check.sh --prepare converts the shared volume).

    python3 benchmarks/train_speed.py --volume .gpu/rm256.npz [--out benchmarks/results/train_speed_h200.json]
    .venv/bin/python benchmarks/train_speed.py --smoke     # anywhere: a tiny generated volume on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from results_io import device_slug, write_results

from srnvtk.config import TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.encoder import compress, config_for_ratio
from srnvtk.metrics import compression_ratio
from srnvtk.volume import Geometry, Volume

HERE = Path(__file__).resolve().parent
DEFAULT_VOLUME = HERE.parent.parent / "shared" / "data" / "richtmyer_meshkov_t0020_256.vti"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volume", default=str(DEFAULT_VOLUME))
    parser.add_argument("--array", default="density", help="point array of a .vti, or key of a .npz")
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--target-db", type=float, default=40.0)
    parser.add_argument("--steps", type=int, default=4000, help="steps of the graphed-vs-eager comparison")
    parser.add_argument("--time-limits", type=float, nargs="*", default=[3.0, 5.0, 7.0, 10.0])
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--smoke", action="store_true", help="a tiny generated volume on the CPU, a few steps")
    parser.add_argument("--out", default=None, help="JSON results (default: results/train_speed_<gpu>.json; none in "
                        "smoke mode)")
    args = parser.parse_args()
    if args.smoke:
        shape = (40, 32, 24)
        volume = Volume(default_volume_values(shape), default_geometry(shape), "density")
        device, ratio, steps, limits = "cpu", 4.0, 10, [0.2]
        args.batch_size = 1024
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device (use --smoke to check the script on the CPU)")
        volume = load_volume(Path(args.volume), args.array)
        device, ratio, steps, limits = "cuda", args.ratio, args.steps, args.time_limits
    model_config = config_for_ratio(ratio, volume.geometry)
    base = TrainConfig(batch_size=args.batch_size, device=device, seed=0)
    summary = {"machine": machine(), "volume": Path(args.volume).name if not args.smoke else "generated 40x32x24",
               "target_ratio": ratio, "target_db": args.target_db, "batch_size": args.batch_size,
               "model": {"grid_channels": model_config.grid_channels, "grid_resolution": model_config.grid_resolution,
                         "mlp": f"{model_config.mlp_layers}x{model_config.mlp_width}"}, "smoke": args.smoke}
    if not args.smoke:
        run(volume, model_config, TrainConfig(**{**vars(base), "steps": 50}), graphs=True)  # warm-up
    rows = []
    for graphs in (True, False):
        row = run(volume, model_config, TrainConfig(**{**vars(base), "steps": steps}), graphs)
        row["steps_per_s"] = row["steps"] / row["train_seconds"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary["fixed_steps"] = rows
    summary["speedup_steps_per_s"] = rows[0]["steps_per_s"] / rows[1]["steps_per_s"]
    summary["psnr_graphed_minus_eager_db"] = rows[0]["psnr_db"] - rows[1]["psnr_db"]
    timed = []
    for limit in limits:
        config = TrainConfig(**{**vars(base), "steps": 10_000_000, "time_limit": limit})
        row = run(volume, model_config, config, graphs=True)
        row["time_limit_s"] = limit
        timed.append(row)
        print(json.dumps(row), flush=True)
    summary["time_limited"] = timed
    reached = [row["time_limit_s"] for row in timed if row["psnr_db"] >= args.target_db and row["ratio"] >= ratio]
    summary["time_to_target_s"] = min(reached) if reached else None
    print(f"graphed {rows[0]['steps_per_s']:.0f} steps/s vs eager {rows[1]['steps_per_s']:.0f} "
          f"({summary['speedup_steps_per_s']:.2f}x), PSNR {rows[0]['psnr_db']:.2f} vs {rows[1]['psnr_db']:.2f} dB; "
          + "; ".join(f"{r['time_limit_s']:g} s: {r['psnr_db']:.2f} dB at ratio {r['ratio']:.1f}" for r in timed))
    name = f"train_speed_{device_slug(summary['machine']['device'])}.json"
    out = args.out or (None if args.smoke else HERE / "results" / name)
    if out is not None:
        write_results(out, summary)


def run(volume: Volume, model_config, train_config: TrainConfig, graphs: bool) -> dict:
    """One compression with or without the graphed step; its file's PSNR and ratio and the times."""
    previous = os.environ.get("SRNVTK_CUDA_GRAPHS")
    os.environ["SRNVTK_CUDA_GRAPHS"] = "1" if graphs else "0"
    try:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            result = compress(volume, model_config=model_config, train_config=train_config,
                              path=Path(folder) / "volume.srn")
            seconds = time.perf_counter() - start
    finally:
        if previous is None:
            del os.environ["SRNVTK_CUDA_GRAPHS"]
        else:
            os.environ["SRNVTK_CUDA_GRAPHS"] = previous
    return {"graphed": graphs, "steps": int(result.stats["steps"]), "train_seconds": result.stats["train_seconds"],
            "encode_seconds": seconds, "psnr_db": result.stats["psnr"], "file_bytes": result.file_bytes,
            "ratio": compression_ratio(volume.values.size, result.file_bytes)}


def load_volume(path: Path, array: str) -> Volume:
    """A .vti's point array, or a [z, y, x] .npy / .npz array on a unit-spaced grid."""
    if path.suffix == ".vti":
        from srnvtk.vtkio import read_vti, volume_from_image

        return volume_from_image(read_vti(path), array)
    values = np.load(path)
    if isinstance(values, np.lib.npyio.NpzFile):
        values = values[array]
    nz, ny, nx = values.shape
    return Volume(values, Geometry((0, nx - 1, 0, ny - 1, 0, nz - 1)), array)


def machine() -> dict:
    info = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
    return info



if __name__ == "__main__":
    main()
