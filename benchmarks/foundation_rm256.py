"""Foundation benchmark: compress the shared 256^3 Richtmyer-Meshkov volume at a target ratio on the CPU.

Records file bytes, ratio (float32 bytes / file bytes), PSNR (20 log10(range / RMSE)) of the file as a
reader decodes it, wall-clock encode time (training + final reconstruction + write) and decode voxels/s.

    .venv/bin/python benchmarks/foundation_rm256.py --ratio 100 --time-limit 540
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from srnvtk.config import TrainConfig
from srnvtk.decode import decode
from srnvtk.encoder import compress, config_for_ratio
from srnvtk.fileformat import read_srn
from srnvtk.metrics import compression_ratio, psnr
from srnvtk.vtkio import read_vti, volume_from_image

HERE = Path(__file__).resolve().parent
DEFAULT_VOLUME = HERE.parent.parent / "shared" / "data" / "richtmyer_meshkov_t0020_256.vti"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volume", default=str(DEFAULT_VOLUME))
    parser.add_argument("--array", default="density")
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--steps", type=int, default=TrainConfig().steps)
    parser.add_argument("--time-limit", type=float, default=540.0, help="seconds of training at most")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(HERE / "results" / "foundation_rm256.json"))
    args = parser.parse_args()

    volume = volume_from_image(read_vti(args.volume), args.array)
    model_config = config_for_ratio(args.ratio, volume.geometry)
    train_config = TrainConfig(steps=args.steps, time_limit=args.time_limit, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rm256.srn"
        start = time.perf_counter()
        result = compress(volume, model_config=model_config, train_config=train_config, path=path)
        encode_seconds = time.perf_counter() - start
        file_bytes = os.path.getsize(path)
        start = time.perf_counter()
        srn = read_srn(path)
        decoded = decode(srn, device=args.device)
        decode_seconds = time.perf_counter() - start
    value_range = float(volume.values.max()) - float(volume.values.min())
    row = {
        "volume": Path(args.volume).name,
        "target_ratio": args.ratio,
        "model": {"grid_channels": model_config.grid_channels, "grid_resolution": model_config.grid_resolution,
                  "mlp": f"{model_config.mlp_layers}x{model_config.mlp_width}"},
        "steps_done": int(result.stats["steps"]),
        "batch_size": train_config.batch_size,
        "file_bytes": file_bytes,
        "ratio": compression_ratio(volume.values.size, file_bytes),
        "psnr_db": psnr(volume.values, decoded, value_range),
        "psnr_db_encoder_stats": result.stats["psnr"],
        "train_seconds": result.stats["train_seconds"],
        "encode_seconds": encode_seconds,
        "decode_seconds": decode_seconds,
        "decode_voxels_per_s": volume.values.size / decode_seconds,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "command": "benchmarks/foundation_rm256.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("volume", "out")),
    }
    print(json.dumps(row, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
