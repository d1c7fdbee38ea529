"""What storing a model costs in PSNR: the float model against the stored one, at the same configuration and
training, on a 128^3 region of the shared Richtmyer-Meshkov volume.

    .venv/bin/python benchmarks/quantization_cost.py            # ~20 min on one CPU core
    .venv/bin/python benchmarks/quantization_cost.py --quick    # smoke test: 48^3 region, 20 steps

Rows:
- fvsrn: uint8 latent grid (per-channel scale and offset) + fp16 MLP. Float = the trained model as it is.
- neurcomp-fp16: every weight in fp16.
- neurcomp-kmeans: hidden matrices as 256 shared values (k-means) + uint8 indices, with the end of training
  fine-tuning the shared values (quantization-aware). Float = the same network trained with the same two-phase
  schedule (the same split and learning-rate restart) without clustering. The row also reports post-training
  clustering of that float model (no fine-tuning), to show what the fine-tuning buys.
The networks are sized for the target ratio (encoder.config_for_ratio); a clustered Neurcomp is wider for the
same bytes. PSNR = 20 log10(range / RMSE) of the reconstruction in the source's type (uint8), as the encoder
reports it. Writes benchmarks/results/quantization_cost.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch
from pruning_ablation import add_region_arguments, load_region

from srnvtk.config import FVSRNConfig, NeurcompConfig, TrainConfig
from srnvtk.decode import decode
from srnvtk.encoder import config_for_ratio, estimated_file_bytes
from srnvtk.fileformat import SRNFile
from srnvtk.metrics import psnr
from srnvtk.quantize import apply_storage_precision
from srnvtk.train import train
from srnvtk.volume import Volume

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_region_arguments(parser)
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.add_argument("--clusters", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / "results" / "quantization_cost"))
    parser.add_argument("--quick", action="store_true", help="48^3 region, 20 steps, ratio 8: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.region, args.steps, args.ratio = [96, 96, 96, 48], 20, 8.0
    return args


def quality(model: torch.nn.Module, volume: Volume, value_range: tuple[float, float]) -> float:
    decoded = decode(SRNFile.of_model(model, volume.geometry, value_range, volume.dtype), device="cpu")
    return psnr(volume.values, decoded, value_range[1] - value_range[0])


def float_and_stored(volume: Volume, config, train_config: TrainConfig, split: bool) -> dict:
    """Train; PSNR of the float model, then of the model rounded to what a file stores. split: the two-phase
    schedule of rate control / clustering (a fit that changes nothing), so float and clustered runs match."""
    start = time.perf_counter()
    result = train(volume, config, train_config, fit=(lambda _model: None) if split else None)
    seconds = time.perf_counter() - start
    float_psnr = quality(result.model, volume, result.value_range)
    model = result.model
    apply_storage_precision(model)
    return {"float_psnr": float_psnr, "stored_psnr": quality(model, volume, result.value_range),
            "train_seconds": seconds, "steps": result.steps, "model": model, "value_range": result.value_range}


def rows_for(volume: Volume, args: argparse.Namespace) -> list[dict]:
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, device="cpu", threads=args.threads)
    geometry = volume.geometry
    rows = []

    def row(name: str, config, float_psnr: float, stored_psnr: float, **extra) -> dict:
        line = {"name": name, "config": {"architecture": config.architecture, **dataclasses.asdict(config)},
                "estimated_bytes": estimated_file_bytes(config, geometry), "float_psnr": float_psnr,
                "stored_psnr": stored_psnr, "cost_db": float_psnr - stored_psnr, **extra}
        print(f"{name}: float {float_psnr:.2f} dB, stored {stored_psnr:.2f} dB, cost {line['cost_db']:.3f} dB",
              file=sys.stderr, flush=True)
        return line

    fvsrn = config_for_ratio(args.ratio, geometry, FVSRNConfig())
    run = float_and_stored(volume, fvsrn, train_config, split=False)
    rows.append(row("fvsrn", fvsrn, run["float_psnr"], run["stored_psnr"], train_seconds=run["train_seconds"]))

    neurcomp = config_for_ratio(args.ratio, geometry, NeurcompConfig())
    run = float_and_stored(volume, neurcomp, train_config, split=False)
    rows.append(row("neurcomp-fp16", neurcomp, run["float_psnr"], run["stored_psnr"],
                    train_seconds=run["train_seconds"]))

    clustered = config_for_ratio(args.ratio, geometry, NeurcompConfig(weight_clusters=args.clusters))
    reference = float_and_stored(volume, dataclasses.replace(clustered, weight_clusters=0), train_config,
                                 split=True)
    model = reference["model"]  # post-training clustering of the (fp16-rounded) float network, no fine-tuning
    model.config = clustered
    model.share_weights()
    apply_storage_precision(model)
    post_training = quality(model, volume, reference["value_range"])
    aware = float_and_stored(volume, clustered, train_config, split=False)
    rows.append(row("neurcomp-kmeans", clustered, reference["float_psnr"], aware["stored_psnr"],
                    post_training_clustering_psnr=post_training, train_seconds=aware["train_seconds"]))
    return rows


def markdown(rows: list[dict], args: argparse.Namespace, machine: dict) -> str:
    lines = [
        "# Quantization cost: float model vs stored model",
        "",
        f"Region {args.region[3]}^3 at x, y, z = {args.region[:3]} of {Path(args.volume).name}; target ratio "
        f"{args.ratio:g}; {args.steps} steps of {args.batch_size}; one run each; {machine['threads']} CPU thread(s).",
        "",
        "| model | stored as | size | float PSNR | stored PSNR | cost (dB) |",
        "|---|---|---|---|---|---|",
    ]
    stored_as = {"fvsrn": "uint8 grid (per-channel scale/offset) + fp16 MLP", "neurcomp-fp16": "fp16 weights",
                 "neurcomp-kmeans": f"hidden matrices: {args.clusters} shared values + uint8 indices, "
                                    "shared values fine-tuned; other weights fp16"}
    for r in rows:
        c = r["config"]
        size = (f"grid {c['grid_resolution']}, {c['grid_channels']} ch" if c["architecture"] == "fvsrn"
                else f"width {c['width']}")
        lines.append(f"| {r['name']} | {stored_as[r['name']]} | {size} | {r['float_psnr']:.2f} | "
                     f"{r['stored_psnr']:.2f} | {r['cost_db']:.3f} |")
    clustered = next(r for r in rows if r["name"] == "neurcomp-kmeans")
    post = clustered["post_training_clustering_psnr"]
    lines += [
        "",
        f"Post-training clustering of the float Neurcomp (no fine-tuning): {post:.2f} dB, a cost of "
        f"{clustered['float_psnr'] - post:.3f} dB; with the shared values fine-tuned: {clustered['cost_db']:.3f} dB.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    volume = load_region(args)
    if volume is None:
        print(f"skipped: {args.volume} not found (the shared Richtmyer-Meshkov volume)", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    machine = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    rows = rows_for(volume, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("volume", "array", "region", "ratio", "steps", "batch_size", "clusters")}
    settings["volume"] = Path(args.volume).name
    out.with_suffix(".json").write_text(json.dumps({"settings": settings, "machine": machine, "rows": rows},
                                                   indent=1))
    out.with_suffix(".md").write_text(markdown(rows, args, machine))
    print(f"wrote {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
