"""Probe for issue #13's missed bytes target: would later steps stored as pruned differences to the previous
step's latent grid make a series file much smaller? Not a scheme srnvtk writes: a measurement of what one
would buy, to decide whether to build it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/series_delta_probe.py --size 64 --series-steps 4 --ratio 40

One field of the generated series (srnvtk.series_data). Step 0 is trained cold and stored as srnvtk stores a
part (8-bit codes, per-channel scale); every later step is warm-started from the previous trained network, as
srnvtk.series_encode does. Then, for each kept fraction f, step t's grid is stored as the difference to the
previous step's *reconstructed* grid, in step 0's code units (so no drift builds up), keeping only the largest
fraction f of the differences (the rest zero), and the MLP is fine-tuned for --mlp-steps with that grid frozen.
Grid bytes are measured with the file's own section coder (srnvtk.container.encode_section: the best of raw,
zlib and LZMA) for the full codes and for the int8 differences alike; the MLP's fp16 bytes are the same for
every scheme and reported apart. Writes OUT.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pruning_ablation import machine_info

from srnvtk.config import FVSRNConfig, TrainConfig
from srnvtk.container import encode_section
from srnvtk.datasets import default_geometry
from srnvtk.decode import decode
from srnvtk.fileformat import SRNFile
from srnvtk.metrics import psnr
from srnvtk.quantize import apply_storage_precision, quantize_grid
from srnvtk.ratecontrol import plan_for_ratio
from srnvtk.series_data import generate_series
from srnvtk.series_encode import warm_config
from srnvtk.train import train
from srnvtk.volume import Volume


def decoded_psnr(model, volume: Volume, value_range: tuple[float, float]) -> float:
    out = decode(SRNFile.of_model(model, volume.geometry, value_range, "float32", volume.name), device="cpu")
    return psnr(volume.values, out, value_range[1] - value_range[0])


def with_grid(model, grid: np.ndarray, volume: Volume, value_range, mlp_steps: int, seed: int):
    """The model with this latent grid, its MLP fine-tuned for mlp_steps with the grid frozen (0: as is)."""
    model.grid.data = torch.from_numpy(grid.astype(np.float32))
    if mlp_steps:
        config = TrainConfig(steps=mlp_steps, batch_size=16384, seed=seed, device="cpu", threads=1)
        model = train(volume, model.config, config, value_range=value_range, initial_model=model,
                      frozen=("grid",)).model
        apply_storage_precision(model)
        model.grid.data = torch.from_numpy(grid.astype(np.float32))  # the grid as the file would give it back
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--series-steps", type=int, default=4)
    parser.add_argument("--field", default="density")
    parser.add_argument("--ratio", type=float, default=40.0, help="of one part: sizes the grid and MLP")
    parser.add_argument("--steps", type=int, default=600, help="cold training steps (warm: the default fraction)")
    parser.add_argument("--mlp-steps", type=int, default=100)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1, 0.05])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "series_delta_probe.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    shape = (args.size,) * 3
    geometry = default_geometry(shape)
    steps = [arrays[args.field] for _t, arrays in generate_series(shape, args.series_steps, args.seed)]
    value_range = (float(min(s.min() for s in steps)), float(max(s.max() for s in steps)))
    volumes = [Volume(np.ascontiguousarray(s), geometry, args.field) for s in steps]
    model_config, budget = plan_for_ratio(args.ratio, volumes[0], FVSRNConfig())
    cold = TrainConfig(steps=args.steps, batch_size=16384, seed=args.seed, device="cpu", threads=1)
    start = time.process_time()
    models, previous = [], None
    for volume in volumes:
        config = cold if previous is None else warm_config(cold)
        previous = train(volume, model_config, config, value_range=value_range, initial_model=previous).model
        stored = apply_storage_precision(previous)
        models.append((previous, stored))
    mlp_bytes = sum(v.numel() * 2 for k, v in models[0][0].state_dict().items() if k.startswith("mlp."))
    rows = []
    full = []  # every step stored whole, as series_encode stores it
    for t, (model, _stored) in enumerate(models):
        grid = model.grid.detach().numpy()
        codes, _scale, _offset = quantize_grid(grid)
        full.append({"step": t, "grid_bytes": len(encode_section(codes.tobytes()).data),
                     "psnr": decoded_psnr(model, volumes[t], value_range)})
    grid0 = models[0][0].grid.detach().numpy().astype(np.float64)
    _codes0, scale, _offset0 = quantize_grid(grid0)
    unit = scale.astype(np.float64)[:, None, None, None]
    for fraction in args.fractions:
        reference = grid0.copy()
        for t in range(1, len(models)):
            model = models[t][0]
            target = model.grid.detach().numpy().astype(np.float64)
            delta = np.clip(np.rint((target - reference) / unit), -127, 127)
            if fraction < 1.0:
                keep = int(round(fraction * delta.size))
                order = np.argsort(np.abs(delta), axis=None)
                delta.reshape(-1)[order[:delta.size - keep]] = 0.0
            reference = reference + delta * unit
            trained_grid = model.grid.detach().clone()  # with_grid changes the grid in place: restored below
            as_is = decoded_psnr(with_grid(model, reference, volumes[t], value_range, 0, args.seed), volumes[t],
                                 value_range)
            tuned = with_grid(model, reference, volumes[t], value_range, args.mlp_steps, args.seed)
            tuned_psnr = decoded_psnr(tuned, volumes[t], value_range)
            model.grid.data = trained_grid
            rows.append({"fraction": fraction, "step": t, "nonzero": float(np.count_nonzero(delta) / delta.size),
                         "grid_bytes": len(encode_section(delta.astype(np.int8).tobytes()).data),
                         "psnr": as_is, "psnr_mlp_tuned": tuned_psnr})
            print(f"f={fraction:g} step {t}: {rows[-1]['grid_bytes']:,} B grid (full {full[t]['grid_bytes']:,}), "
                  f"{as_is:.2f} dB, MLP tuned {tuned_psnr:.2f} (full {full[t]['psnr']:.2f})", file=sys.stderr,
                  flush=True)
    result = {"settings": vars(args), "machine": machine_info(), "model": model_config.__dict__, "budget": budget,
              "mlp_bytes": mlp_bytes, "full": full, "delta": rows, "cpu_seconds": time.process_time() - start}
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
