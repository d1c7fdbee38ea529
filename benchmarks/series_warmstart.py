"""Warm start across time steps: how many training steps a time step needs when its network starts from the
previous step's, against a fresh start, on srnvtk's generated series (srnvtk.series_data, scalar 'density').

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/series_warmstart.py --size 128 --series-steps 6
    .venv/bin/python benchmarks/series_warmstart.py --quick     # smoke test: 20^3, 3 steps, a few small steps

Every network has the same size: the fV-SRN that encoder.config_for_ratio sizes for --ratio (one file per step).
Schemes, each trained with each budget B (steps of --batch-size voxels, the full learning-rate schedule over B)
of its list:
- cold: every time step from a fresh initialisation (what independent per-step files get), budgets --budgets.
- warm: step 0 cold with the largest budget; every later step starts from a copy of the previous step's stored
  model (rounded as a file stores it) and trains B steps of --warm-budgets, so a chain compounds what warm
  starting gives or loses.
- warm-lr: warm, with the initial (and so the final) learning rate times --warm-lr-factor: fine-tuning rather
  than learning afresh.
- frozen: warm, but only the latent grid trains after step 0; the MLP stays step 0's (stored once per series
  in a file that shares it: each later step then stores only its grid).
PSNR is of the stored model (uint8 grid, fp16 MLP) decoded on the step's grid, over that step's value range.
Each row records the training steps and seconds (one thread) beside its PSNR. The summary gives, per scheme and
time step >= 1, the budget at which the scheme reaches the PSNR that cold reaches with the largest budget
(interpolated in log budget between the budgets measured), as a fraction of the largest budget.
Writes OUT.json (rows, settings, summary; resumable per chain) and OUT.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pruning_ablation import machine_info

from srnvtk.config import FVSRNConfig, TrainConfig
from srnvtk.datasets import default_geometry
from srnvtk.decode import decode
from srnvtk.encoder import config_for_ratio, estimated_file_bytes, latent_code_bytes
from srnvtk.fileformat import SRNFile
from srnvtk.metrics import psnr
from srnvtk.models import default_learning_rate
from srnvtk.quantize import apply_storage_precision
from srnvtk.series_data import generate_series
from srnvtk.train import train
from srnvtk.volume import Volume

HERE = Path(__file__).resolve().parent
SCHEMES = ("cold", "warm", "warm-lr", "frozen")
FIELD = "density"
EXTRAPOLATION = 1.5  # a needed budget is extrapolated at most this far beyond the largest budget run
# What a resumed run must share with the rows it continues (the budgets may differ: more chains are added).
RESUME_KEYS = ("series", "size", "series_steps", "ratio", "batch_size", "warm_lr_factor", "quick", "model")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="points per axis (default 128)")
    parser.add_argument("--series-steps", type=int, default=6, help="time steps of the series used (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="the series' seed (default 0)")
    parser.add_argument("--ratio", type=float, default=100.0, help="sizes the network (default 100)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000],
                        help="training steps per time step of cold starts; the largest is the reference")
    parser.add_argument("--warm-budgets", type=int, nargs="+", default=[250, 500, 1000, 2000],
                        help="training steps per time step (after step 0) of the warm schemes")
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.add_argument("--warm-lr-factor", type=float, default=0.25)
    parser.add_argument("--schemes", nargs="+", choices=SCHEMES, default=list(SCHEMES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="output stem (default benchmarks/results/series_warmstart_SIZE)")
    parser.add_argument("--quick", action="store_true",
                        help="20^3, 3 steps, budgets 10 20 (warm 5 10 20) of 2048 voxels, a tiny network")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.series_steps, args.budgets, args.warm_budgets = 20, 3, [10, 20], [5, 10, 20]
        args.batch_size = 2048
    args.budgets, args.warm_budgets = sorted(set(args.budgets)), sorted(set(args.warm_budgets))
    if args.out is None:
        args.out = str(HERE / "results" / f"series_warmstart_{args.size}{'_quick' if args.quick else ''}")
    return args


def model_config(args: argparse.Namespace, geometry) -> FVSRNConfig:
    if args.quick:
        return FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=16, mlp_layers=2, fourier_features=2)
    return config_for_ratio(args.ratio, geometry, FVSRNConfig())


def settings_of(args: argparse.Namespace, config: FVSRNConfig, geometry) -> dict:
    full = estimated_file_bytes(config, geometry)
    return {
        "series": f"srnvtk.series_data seed {args.seed}, field '{FIELD}'", "size": args.size,
        "series_steps": args.series_steps, "ratio": args.ratio, "reference_budget": max(args.budgets),
        "batch_size": args.batch_size, "warm_lr_factor": args.warm_lr_factor, "quick": args.quick,
        "model": dataclasses.asdict(config), "estimated_file_bytes": full,
        # What one more step costs in a file that shares the MLP: the grid's codes (before gzip) only.
        "latent_code_bytes": latent_code_bytes(config, geometry),
        "float32_bytes_per_step": 4 * geometry.num_points,
    }


class Runner:
    """Trains and measures; keeps the series' volumes and the cold step-0 model every chain starts from."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        shape = (args.size,) * 3
        self.geometry = default_geometry(shape)
        self.volumes, self.times = [], []
        start = time.perf_counter()
        for t, arrays in generate_series(shape, args.series_steps, args.seed):
            self.volumes.append(Volume(arrays[FIELD], self.geometry, FIELD))
            self.times.append(t)
        print(f"series: {args.series_steps} steps of {args.size}^3 in {time.perf_counter() - start:.1f} s",
              file=sys.stderr, flush=True)
        self.config = model_config(args, self.geometry)
        self.base_lr = default_learning_rate(self.config)
        self._first: tuple[dict, torch.nn.Module] | None = None

    def train_step(self, step: int, budget: int, lr: float, initial=None, frozen=()) -> tuple[dict, torch.nn.Module]:
        volume = self.volumes[step]
        config = TrainConfig(steps=budget, batch_size=self.args.batch_size, learning_rate=lr, device="cpu",
                             threads=self.args.threads, seed=step)
        result = train(volume, self.config, config, initial_model=initial, frozen=frozen)
        model = result.model
        apply_storage_precision(model)
        start = time.perf_counter()
        decoded = decode(SRNFile.of_model(model, self.geometry, result.value_range), device="cpu",
                         threads=self.args.threads)
        decode_seconds = time.perf_counter() - start
        quality = psnr(volume.values, decoded, result.value_range[1] - result.value_range[0])
        row = {"step": step, "time": self.times[step], "budget": budget, "steps": result.steps, "learning_rate": lr,
               "psnr": quality, "train_seconds": result.seconds, "decode_seconds": decode_seconds,
               "final_loss": result.final_loss}
        return row, model

    def first(self) -> tuple[dict, torch.nn.Module]:
        """Step 0, cold, with the largest budget: the start of every warm chain."""
        if self._first is None:
            self._first = self.train_step(0, max(self.args.budgets), self.base_lr)
        return self._first

    def chain(self, scheme: str, budget: int) -> list[dict]:
        """Rows of one scheme at one budget over the series' steps."""
        if scheme == "cold":
            return [self.train_step(step, budget, self.base_lr)[0] for step in range(self.args.series_steps)]
        lr = self.base_lr * (self.args.warm_lr_factor if scheme == "warm-lr" else 1.0)
        frozen = ("mlp.",) if scheme == "frozen" else ()
        row, model = self.first()
        rows = [dict(row, budget=budget)]  # keyed by the chain's budget; its "steps" say what it trained
        for step in range(1, self.args.series_steps):
            row, model = self.train_step(step, budget, lr, initial=model, frozen=frozen)
            rows.append(row)
        return rows


def needed_budget(curve: list[tuple[int, float]], target: float) -> tuple[float | None, str]:
    """The budget at which a PSNR-vs-budget curve (increasing budgets) reaches the target: interpolated in log
    budget between the last budget below and the first at or above it. ('at most', smallest budget) when the
    smallest already reaches it. When no budget does: extrapolated along the line through the last two points
    (in log budget) while that line still rises and the extrapolation stays within EXTRAPOLATION of the largest
    budget; else (None, 'not reached')."""
    for i, (budget, value) in enumerate(curve):
        if value >= target:
            if i == 0:
                return float(budget), "at most"
            b0, v0 = curve[i - 1]
            fraction = (target - v0) / (value - v0)
            return math.exp(math.log(b0) + fraction * (math.log(budget) - math.log(b0))), "interpolated"
    if len(curve) >= 2:
        (b0, v0), (b1, v1) = curve[-2:]
        if v1 > v0:
            budget = math.exp(math.log(b1) + (target - v1) / (v1 - v0) * (math.log(b1) - math.log(b0)))
            if budget <= EXTRAPOLATION * b1:
                return budget, "extrapolated"
    return None, "not reached"


def summarize(rows: list[dict], args: argparse.Namespace) -> dict:
    largest = max(args.budgets)
    by = {(r["scheme"], r["budget"], r["step"]): r for r in rows}
    summary: dict = {}
    budgets = sorted({r["budget"] for r in rows})
    for scheme in SCHEMES:
        if scheme == "cold" or not any(r["scheme"] == scheme for r in rows):
            continue
        per_step = []
        for step in range(1, args.series_steps):
            cold = by.get(("cold", largest, step))
            curve = [(b, by[(scheme, b, step)]["psnr"]) for b in budgets if (scheme, b, step) in by]
            if cold is None or not curve:
                continue
            budget, how = needed_budget(curve, cold["psnr"])
            per_step.append({"step": step, "cold_psnr": cold["psnr"], "needed_budget": budget, "how": how,
                             "fraction": None if budget is None else budget / largest})
        fractions = [p["fraction"] for p in per_step]
        summary[scheme] = {
            "per_step": per_step,
            "bound": any(p["how"] == "at most" for p in per_step),  # the mean is then an upper bound
            "extrapolated": any(p["how"] == "extrapolated" for p in per_step),
            "mean_fraction": (float(np.mean(fractions)) if fractions and None not in fractions else None),
            "max_fraction": (max(fractions) if fractions and None not in fractions else None),
        }
    return summary


def mean_over_steps(rows: list[dict], scheme: str, budget: int, key: str) -> float | None:
    values = [r[key] for r in rows if r["scheme"] == scheme and r["budget"] == budget and r["step"] >= 1]
    return float(np.mean(values)) if values else None


def markdown(rows: list[dict], settings: dict, summary: dict, machine: dict) -> str:
    model = settings["model"]
    lines = [
        "# Warm start across time steps",
        "",
        f"Generated series (srnvtk.series_data, seed {settings['series'].split('seed ')[1]}), {settings['size']}^3, "
        f"{settings['series_steps']} steps; fV-SRN {model['grid_channels']} ch x grid {model['grid_resolution']}, "
        f"MLP {model['mlp_layers']} x {model['mlp_width']} (about {settings['estimated_file_bytes']:,} B per "
        f"independent file, ratio {settings['float32_bytes_per_step'] / settings['estimated_file_bytes']:.0f}); "
        f"batch {settings['batch_size']}; {machine['threads']} thread(s). PSNR of the stored model; steps 1 to "
        f"{settings['series_steps'] - 1} (step 0 is cold, with the largest budget, in every warm chain).",
        "",
        "| scheme | budget (steps) | mean PSNR, steps >= 1 | per step (dB) | mean train s per step |",
        "|---|---|---|---|---|",
    ]
    for scheme in SCHEMES:
        for budget in sorted({r["budget"] for r in rows}):
            chosen = sorted((r for r in rows if r["scheme"] == scheme and r["budget"] == budget and r["step"] >= 1),
                            key=lambda r: r["step"])
            if not chosen:
                continue
            per_step = " ".join(f"{r['psnr']:.2f}" for r in chosen)
            lines.append(f"| {scheme} | {budget} | {mean_over_steps(rows, scheme, budget, 'psnr'):.2f} | {per_step} | "
                         f"{mean_over_steps(rows, scheme, budget, 'train_seconds'):.1f} |")
    lines += ["", f"Budget needed to reach cold's PSNR at {settings['reference_budget']} steps, as a fraction of it "
              "(per step; '<=' where the smallest budget already reaches it, '~' extrapolated beyond the largest "
              "budget run):", "",
              "| scheme | mean fraction | largest | per step |", "|---|---|---|---|"]
    for scheme, entry in summary.items():
        cells = []
        for p in entry["per_step"]:
            if p["fraction"] is None:
                cells.append(f"{p['step']}: not reached")
            else:
                mark = {"at most": "<= ", "extrapolated": "~"}.get(p["how"], "")
                cells.append(f"{p['step']}: {mark}{p['fraction']:.3f}")
        bound = ("<= " if entry["bound"] else "") + ("~" if entry["extrapolated"] else "")
        mean = "not reached" if entry["mean_fraction"] is None else f"{bound}{entry['mean_fraction']:.3f}"
        largest = "-" if entry["max_fraction"] is None else f"{entry['max_fraction']:.3f}"
        lines.append(f"| {scheme} | {mean} | {largest} | {', '.join(cells)} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    runner = Runner(args)
    settings = settings_of(args, runner.config, runner.geometry)
    rows: list[dict] = []
    if json_path.is_file():  # resume: keep the chains already run with the same settings (budgets may differ)
        previous = json.loads(json_path.read_text())
        if {k: previous["settings"].get(k) for k in RESUME_KEYS} != {k: settings[k] for k in RESUME_KEYS}:
            raise SystemExit(f"{json_path} holds runs with other settings; choose another --out or remove it")
        rows = previous["rows"]
    machine = machine_info()
    done = {(r["scheme"], r["budget"]) for r in rows}
    # Cold runs first: every summary needs cold's largest budget.
    plan = [(s, b) for s in args.schemes
            for b in (sorted(args.budgets, reverse=True) if s == "cold" else args.warm_budgets) if (s, b) not in done]
    print(f"{len(plan)} chains to run, {len(done)} already done", file=sys.stderr, flush=True)
    for i, (scheme, budget) in enumerate(plan, 1):
        start = time.perf_counter()
        chain = [{"scheme": scheme, **row} for row in runner.chain(scheme, budget)]
        rows.extend(chain)
        psnrs = " ".join(f"{r['psnr']:.2f}" for r in chain)
        print(f"[{i}/{len(plan)}] {scheme} {budget}: {psnrs} dB ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr, flush=True)
        summary = summarize(rows, args)
        json_path.write_text(json.dumps({"settings": settings, "machine": machine, "summary": summary,
                                         "rows": rows}, indent=1))
    summary = summarize(rows, args)
    json_path.write_text(json.dumps({"settings": settings, "machine": machine, "summary": summary, "rows": rows},
                                    indent=1))
    out.with_suffix(".md").write_text(markdown(rows, settings, summary, machine))
    print(f"wrote {json_path} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
