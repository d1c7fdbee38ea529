"""Tighter storage of an fV-SRN, measured on real trained models of the shared Richtmyer-Meshkov volume (256^3):
bytes of every candidate and the PSNR of the model a reader would rebuild.

One network per target ratio is planned by rate control (ratecontrol.plan_for_ratio), trained for a fixed
number of steps (no time limit: the result does not depend on the machine's load) with the budget fit
(srnvtk.budget), exactly as `srnvtk compress --ratio` trains it, and saved. Then, on that model:

  coders    the stored latent codes (and keep mask) raw, zlib 9, LZMA (srnvtk.container's settings), zstd 19 and
            22 (zstandard), each as stored (channel-major) and in two rearrangements: position-major (a
            position's channels together) and channel-major differences (each code minus the previous one of
            its channel); beside them the codes' order-0 entropy, a floor for any coder that codes each
            code on its own
  bits      the codes requantised to 8..4 bits (per-channel scale and offset as now), LZMA bytes and PSNR,
            without fine-tuning; then, from the same start, a short fine-tune with the codes' quantisation in
            the forward pass (straight-through gradients, "quantisation-aware"), against the same fine-tune
            at 8 bits (the control: a fine-tune gains by itself)
  mlp       the MLP's bytes as fp16 (now), as int8 with a scale per output row, and as k-means shared values
            (srnvtk.kmeans) with uint8 indices, and the PSNR of each

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/storage_ablation.py --ratios 200 1000
    .venv/bin/python benchmarks/storage_ablation.py --quick     # smoke test: 64^3 crop, few steps

Writes benchmarks/results/storage_ablation.json and .md; trained models are kept in --work (reused by a rerun).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import lzma
import math
import platform
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.rd.volumes import load_volume  # noqa: E402
from srnvtk.budget import budget_fit  # noqa: E402
from srnvtk.config import TrainConfig  # noqa: E402
from srnvtk.container import encode_section  # noqa: E402
from srnvtk.decode import decode  # noqa: E402
from srnvtk.encoder import source_info  # noqa: E402
from srnvtk.fileformat import SRNFile, srn_file_bytes  # noqa: E402
from srnvtk.kmeans import kmeans_1d  # noqa: E402
from srnvtk.metrics import psnr  # noqa: E402
from srnvtk.quantize import GRID, GRID_KEEP, WEIGHTS, apply_storage_precision, storage_tensors  # noqa: E402
from srnvtk.ratecontrol import plan_for_ratio  # noqa: E402
from srnvtk.sampling import voxel_positions  # noqa: E402
from srnvtk.train import normalized_values, train  # noqa: E402

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--volume", default="rm")
    p.add_argument("--crop", type=int)
    p.add_argument("--ratios", nargs="+", type=float, default=[200.0, 1000.0])
    p.add_argument("--steps", type=int, default=3000, help="training steps of each model")
    p.add_argument("--finetune-steps", type=int, default=600, help="steps of each fine-tune (bits)")
    p.add_argument("--bits", nargs="+", type=int, default=[8, 7, 6, 5, 4])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("/tmp/srnvtk_storage_ablation"))
    p.add_argument("--out", type=Path, default=HERE / "results" / "storage_ablation")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.crop, args.steps, args.finetune_steps, args.ratios = 64, 30, 10, [50.0]
    return args


# -- coders -------------------------------------------------------------------------------------------------
def zstd_bytes(raw: bytes, level: int) -> int:
    import zstandard

    return len(zstandard.ZstdCompressor(level=level).compress(raw))


def coder_sizes(raw: bytes) -> dict[str, int]:
    return {"raw": len(raw), "zlib9": len(zlib.compress(raw, 9)),
            "lzma (srnvtk)": len(encode_section(raw, ("lzma",)).data),
            "lzma default": len(lzma.compress(raw, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])),
            "zstd19": zstd_bytes(raw, 19), "zstd22": zstd_bytes(raw, 22)}


def entropy_bytes(codes: np.ndarray) -> float:
    """Order-0 entropy of each channel's codes (rows), summed, in bytes."""
    total = 0.0
    for row in codes:
        counts = np.bincount(row, minlength=256).astype(np.float64)
        p = counts[counts > 0] / row.size
        total += -(p * np.log2(p)).sum() * row.size / 8
    return total


def channel_rows(stored_codes: np.ndarray, channels: int) -> np.ndarray:
    """The stored codes as (C, N): a kept-entry vector is channel-major (srnvtk.quantize)."""
    return stored_codes.reshape(channels, -1)


def coder_table(model) -> dict:
    stored = storage_tensors(model)
    channels = model.config.grid_channels
    rows = channel_rows(stored.arrays[GRID], channels)
    if rows.shape[1] * channels != stored.arrays[GRID].size:
        raise ValueError("position-major rearrangement needs per-position keep masks")
    arrangements = {
        "channel-major (stored)": rows.tobytes(),
        "position-major": np.ascontiguousarray(rows.T).tobytes(),
        "channel-major differences": np.diff(rows, axis=1, prepend=0).astype(np.uint8).tobytes(),
    }
    table = {"codes": {name: coder_sizes(raw) for name, raw in arrangements.items()},
             "codes_entropy_order0": entropy_bytes(rows),
             "differences_entropy_order0": entropy_bytes(np.diff(rows, axis=1, prepend=0).astype(np.uint8)),
             "values": int(rows.size)}
    if GRID_KEEP in stored.arrays:
        table["keep_mask"] = coder_sizes(stored.arrays[GRID_KEEP].tobytes())
        table["kept_fraction"] = float(model.grid_keep.float().mean())
    table["mlp_fp16_bytes"] = int(stored.arrays[WEIGHTS].nbytes)
    return table


# -- quality ------------------------------------------------------------------------------------------------
def quality(model, volume, value_range) -> float:
    srn = SRNFile.of_model(model, volume.geometry, value_range, volume.dtype)
    return psnr(volume.values, decode(srn, device="cpu"), value_range[1] - value_range[0])


def requantize_grid(model, bits: int) -> None:
    """Round the latent grid in place to `bits`-bit codes, per channel over the kept entries (as quantize does
    at 8 bits)."""
    with torch.no_grad():
        model.latent.copy_(fake_quantize(model.latent, bits, model.grid_keep))


def fake_quantize(grid: torch.Tensor, bits: int, keep: torch.Tensor | None) -> torch.Tensor:
    """grid rounded to 2^bits levels between each channel's min and max (kept entries), straight-through."""
    channels = grid.shape[0]
    flat = grid.reshape(channels, -1)
    if keep is None:
        low, high = flat.min(dim=1).values, flat.max(dim=1).values
    else:
        kept = keep.expand_as(grid).reshape(channels, -1)
        low = torch.where(kept, flat, torch.inf).min(dim=1).values
        high = torch.where(kept, flat, -torch.inf).max(dim=1).values
    low, high = low.detach(), high.detach()
    step = ((high - low) / (2**bits - 1)).clamp(min=1e-12)[:, None]
    rounded = torch.round((flat - low[:, None]) / step) * step + low[:, None]
    if keep is not None:
        rounded = rounded * kept
    return (flat + (rounded - flat).detach()).reshape(grid.shape)


def finetune(model, volume, value_range, steps: int, bits: int | None, rate: float, seed: int = 1) -> None:
    """Adam for `steps` random batches, the rate decaying 10x; with bits, the latent is fake-quantised in every
    forward pass."""
    targets = normalized_values(volume, value_range)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=rate)
    plain = type(model).latent_grid
    if bits is not None:
        model.latent_grid = lambda: fake_quantize(plain(model), bits, model.grid_keep)
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = rate * 0.1 ** (step / max(steps, 1))
        index = torch.randint(targets.numel(), (16384,), generator=generator)
        loss = F.mse_loss(model(voxel_positions(index, volume.geometry.shape_zyx)), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if bits is not None:
        del model.latent_grid
    model.eval()


def grid_code_bytes(model, bits: int) -> int:
    """LZMA bytes of the model's codes at `bits` bits (the grid already rounded to them)."""
    stored = storage_tensors(model)
    rows = channel_rows(stored.arrays[GRID], model.config.grid_channels).astype(np.int32)
    # The stored codes are 8-bit over the same min..max: map them back to the coarser levels exactly.
    levels = np.rint(rows * (2**bits - 1) / 255.0).astype(np.uint8)
    return len(encode_section(levels.tobytes(), ("lzma",)).data)


def bits_table(model, volume, value_range, bits_list, finetune_steps) -> list[dict]:
    rows = []
    rate = 2e-2 * 0.1  # the fine-tune's start after the rate fit (train.py, default fvsrn rate)
    for bits in bits_list:
        plain = copy.deepcopy(model)
        requantize_grid(plain, bits)
        row = {"bits": bits, "code_bytes_lzma": grid_code_bytes(plain, bits), "psnr_no_finetune": quality(
            plain, volume, value_range)}
        tuned = copy.deepcopy(model)
        start = time.perf_counter()
        finetune(tuned, volume, value_range, finetune_steps, bits, rate)
        requantize_grid(tuned, bits)
        row.update(psnr_after_qat=quality(tuned, volume, value_range), qat_code_bytes_lzma=grid_code_bytes(tuned, bits),
                   finetune_seconds=time.perf_counter() - start)
        rows.append(row)
        print(f"    bits {bits}: {row}", flush=True)
    return rows


# -- MLP ----------------------------------------------------------------------------------------------------
def mlp_table(model, volume, value_range) -> list[dict]:
    rows = []
    matrices = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    weights = sum(m.weight.numel() for m in matrices)
    biases = sum(m.bias.numel() for m in matrices)
    rows.append({"mlp": "fp16 (now)", "bytes": 2 * (weights + biases), "psnr": quality(model, volume, value_range)})
    int8 = copy.deepcopy(model)
    with torch.no_grad():
        for m in (x for x in int8.mlp if isinstance(x, torch.nn.Linear)):
            scale = m.weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
            m.weight.copy_(torch.round(m.weight / scale) * scale)
    rows.append({"mlp": "int8, fp16 scale per row", "bytes": weights + 2 * sum(m.out_features for m in matrices)
                 + 2 * biases, "psnr": quality(int8, volume, value_range)})
    for clusters in (256, 64, 16):
        shared = copy.deepcopy(model)
        with torch.no_grad():
            for m in (x for x in shared.mlp if isinstance(x, torch.nn.Linear)):
                codebook, indices = kmeans_1d(m.weight, clusters)
                m.weight.copy_(codebook[indices.long()])
        index_bytes = weights * math.ceil(math.log2(clusters)) / 8
        rows.append({"mlp": f"k-means {clusters} per matrix", "bytes": int(index_bytes + 2 * clusters * len(matrices)
                     + 2 * biases), "psnr": quality(shared, volume, value_range)})
    return rows


# -- driver -------------------------------------------------------------------------------------------------
def trained_model(bench, ratio: float, args: argparse.Namespace):
    """The rate-controlled model for this ratio, trained for args.steps (cached in args.work)."""
    path = args.work / f"{bench.key}_r{ratio:g}_s{args.steps}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    config, budget = plan_for_ratio(ratio, bench.volume)
    source = source_info(bench.volume)
    train_config = TrainConfig(steps=args.steps, threads=args.threads, device="cpu")
    result = train(bench.volume, config, train_config, fit=budget_fit(budget, source, None))
    budget_fit(budget, source, None, grow=False)(result.model)
    apply_storage_precision(result.model)
    stored = {"model": result.model, "value_range": result.value_range, "budget": budget,
              "file_bytes": srn_file_bytes(result.model.config, storage_tensors(result.model), source),
              "train_seconds": result.seconds}
    args.work.mkdir(parents=True, exist_ok=True)
    torch.save(stored, path)
    return stored


def markdown(data: dict) -> str:
    lines = ["# Storage ablation", "", f"Volume {data['volume']}; models trained {data['steps']} steps with the "
             "budget fit; fine-tunes " f"{data['finetune_steps']} steps.", ""]
    for entry in data["models"]:
        c = entry["coders"]
        lines += [f"## Target ratio {entry['target_ratio']:g}: grid {entry['grid_shape']} x "
                  f"{entry['channels']} channels, {c['values']:,} stored codes, file {entry['file_bytes']:,} B "
                  f"(budget {entry['budget']:,}), PSNR {entry['psnr']:.2f} dB", "",
                  "| codes as | raw | zlib9 | lzma (srnvtk) | lzma default | zstd19 | zstd22 |",
                  "|---|---|---|---|---|---|---|"]
        for name, sizes in c["codes"].items():
            lines.append(f"| {name} | " + " | ".join(f"{v:,}" for v in sizes.values()) + " |")
        if "keep_mask" in c:
            lines.append("| keep mask | " + " | ".join(f"{v:,}" for v in c["keep_mask"].values()) + " |")
        lines += ["", f"Order-0 entropy of the codes: {c['codes_entropy_order0']:,.0f} B; of the differences: "
                  f"{c['differences_entropy_order0']:,.0f} B. MLP fp16: {c['mlp_fp16_bytes']:,} B.", "",
                  "| bits | code bytes (lzma) | PSNR, rounded | PSNR, quantisation-aware fine-tune | code bytes "
                  "after |",
                  "|---|---|---|---|---|"]
        for r in entry["bits"]:
            lines.append(f"| {r['bits']} | {r['code_bytes_lzma']:,} | {r['psnr_no_finetune']:.2f} | "
                         f"{r['psnr_after_qat']:.2f} | {r['qat_code_bytes_lzma']:,} |")
        lines += ["", "| MLP stored as | bytes | PSNR |", "|---|---|---|"]
        for r in entry["mlp"]:
            lines.append(f"| {r['mlp']} | {r['bytes']:,} | {r['psnr']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    bench = load_volume(args.volume, crop=args.crop)
    data = {"volume": bench.key, "steps": args.steps, "finetune_steps": args.finetune_steps,
            "machine": {"processor": platform.processor(), "threads": args.threads}, "models": []}
    for ratio in args.ratios:
        print(f"ratio {ratio:g}: training {args.steps} steps", flush=True)
        stored = trained_model(bench, ratio, args)
        model, value_range = stored["model"], stored["value_range"]
        entry = {"target_ratio": ratio, "budget": stored["budget"], "file_bytes": stored["file_bytes"],
                 "train_seconds": stored["train_seconds"], "grid_shape": list(model.latent.shape[1:]),
                 "channels": model.config.grid_channels, "model_config": dataclasses.asdict(model.config),
                 "psnr": quality(model, bench.volume, value_range), "coders": coder_table(model)}
        print(f"  coders: {entry['coders']}", flush=True)
        entry["mlp"] = mlp_table(model, bench.volume, value_range)
        print(f"  mlp: {entry['mlp']}", flush=True)
        entry["bits"] = bits_table(model, bench.volume, value_range, args.bits, args.finetune_steps)
        data["models"].append(entry)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
