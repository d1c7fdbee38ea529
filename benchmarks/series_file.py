"""Issue #13's acceptance runs: one series file against independent files, and a vector network against three
scalar ones, on srnvtk's generated series (srnvtk.series_data: density, temperature, velocity).

    OMP_NUM_THREADS=1 /work/bin/train-slot .venv/bin/python benchmarks/series_file.py --size 128 --series-steps 20
    .venv/bin/python benchmarks/series_file.py --quick     # smoke test: 16^3, 2 steps, a few small steps

Part A, every array and step, at each ratio of --ratios (float32 bytes of everything / file bytes):
  series       srnvtk.series_encode: one file; step 0 cold with --steps, every later step warm-started from the
               previous one with --warm-fraction of them; the budget shared equally between the parts.
  delta        as series, with time scheme "delta" (format 11, srnvtk.delta): every later step's latent grid
               stored as the largest differences to the previous step's that fit its share; a key frame every
               --key-interval steps (0: only step 0).
  independent  every array at every step on its own: a one-step, one-array file at the same ratio (of its own
               float32 bytes), each trained cold with --steps (what compressing the steps one by one gives).
  The summary compares them at equal mean PSNR: for each series point, the independent bytes and training
  seconds at the series' mean PSNR, interpolated (log bytes and log seconds against PSNR) between the ratios
  run; 'bytes_factor' > 1 means the series (or delta) file is that many times smaller.
Part C ('cold-share'), the warm-start target: every array at every step in a one-step, one-array file trained
  cold with --steps, each given the network bytes one part gets in the series file at that ratio (its equal
  share, srnvtk.series_encode.part_budget). The summary sets each later step of the 'series' row (warm, with
  --warm-fraction of the steps) against that cold network of the same bytes, per array.
Part B, the velocity alone at each ratio: one network with 3 outputs per step ('vector') against its three
  components compressed as three scalar arrays ('components', the same total bytes): PSNR per component and of
  the magnitude (the latter by the magnitude's range at each step), averaged over the steps.
Writes OUT.json (settings, machine, rows, summary; resumable: runs already in it are kept) and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pruning_ablation import machine_info
from results_io import code_version, device_name, write_results

from srnvtk.config import EncodeConfig, EncoderSettings, FVSRNConfig, TrainConfig
from srnvtk.datasets import default_geometry
from srnvtk.decode import decode
from srnvtk.fileformat import read_srn
from srnvtk.metrics import psnr
from srnvtk.series import series_from_arrays
from srnvtk.series_data import generate_series
from srnvtk.series_encode import PART_FIT_ALLOWANCE, encode_series, part_budget

ARRAYS = ("density", "temperature", "velocity")
COMPONENTS = ("velocity_x", "velocity_y", "velocity_z")
SCHEMES_A = ("series", "delta", "independent")
RESUME_KEYS = ("size", "series_steps", "steps", "warm_fraction", "batch_size", "seed", "grid_channels", "mlp_width",
               "mlp_layers")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--series-steps", type=int, default=20)
    parser.add_argument("--ratios", type=float, nargs="+", default=[50.0, 100.0, 200.0, 400.0])
    parser.add_argument("--steps", type=int, default=4000, help="training steps of a cold network")
    parser.add_argument("--warm-fraction", type=float, default=TrainConfig().warm_start_fraction)
    parser.add_argument("--batch-size", type=int, default=16384)
    model = FVSRNConfig()
    parser.add_argument("--grid-channels", type=int, default=model.grid_channels)
    parser.add_argument("--mlp-width", type=int, default=model.mlp_width)
    parser.add_argument("--mlp-layers", type=int, default=model.mlp_layers)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (srnvtk.devices); rows record it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", nargs="+", default=["A", "B"], choices=["A", "B", "C"])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES_A), choices=SCHEMES_A,
                        help="part A's schemes to run")
    parser.add_argument("--key-interval", type=int, default=EncodeConfig().key_interval,
                        help="the delta scheme's key frames (recorded in its rows)")
    parser.add_argument("--out", default="benchmarks/results/series_file")
    parser.add_argument("--quick", action="store_true", help="16^3, 2 steps, ratios 2 and 4, 30 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.series_steps, args.ratios, args.steps, args.batch_size = 16, 2, [2.0, 4.0], 30, 1024
        args.grid_channels, args.mlp_width, args.mlp_layers = 4, 12, 2
    return args


def settings_for(args: argparse.Namespace, ratio: float, scheme: str = "warm") -> EncoderSettings:
    train = TrainConfig(steps=args.steps, batch_size=args.batch_size, device=args.device, threads=args.threads,
                        warm_start_fraction=args.warm_fraction)
    model = FVSRNConfig(grid_channels=args.grid_channels, mlp_width=args.mlp_width, mlp_layers=args.mlp_layers)
    encode = EncodeConfig(ratio=ratio, time_scheme=scheme, key_interval=args.key_interval)
    return EncoderSettings(encode=encode, fvsrn=model, train=train)


class Runner:
    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args, self.scratch = args, scratch
        shape = (args.size,) * 3
        generated = list(generate_series(shape, args.series_steps, seed=args.seed))
        self.geometry = default_geometry(shape)
        self.times = [t for t, _ in generated]
        self.steps = [a for _, a in generated]
        for arrays in self.steps:  # part B's three scalar arrays
            for c, name in enumerate(COMPONENTS):
                arrays[name] = np.ascontiguousarray(arrays["velocity"][..., c])

    def series(self, names, steps=None):
        steps = range(len(self.times)) if steps is None else steps
        return series_from_arrays(self.geometry, [self.times[s] for s in steps],
                                  [{n: self.steps[s][n] for n in names} for s in steps])

    def encode(self, names, ratio: float, steps=None, scheme: str = "warm") -> dict:
        """One file; its bytes, seconds of training and per-part stats."""
        path = self.scratch / "run.srn"
        result = encode_series(self.series(names, steps), settings_for(self.args, ratio, scheme), arrays=list(names),
                               path=path)
        return {"bytes": result.file_bytes, "float32_bytes": result.float32_bytes, "path": path,
                "train_seconds": sum(p.stats["train_seconds"] for p in result.parts),
                "parts": [{"field": p.field, "step": p.step, **p.stats} for p in result.parts]}

    def part_a(self, scheme: str, ratio: float) -> dict:
        extra = {}
        if scheme in ("series", "delta"):
            run = self.encode(ARRAYS, ratio, scheme="warm" if scheme == "series" else "delta")
            parts = run["parts"]
            total, seconds = run["bytes"], run["train_seconds"]
            if scheme == "delta":
                extra["key_interval"] = self.args.key_interval
        else:
            parts, total, seconds = [], 0, 0.0
            for step in range(len(self.times)):
                for name in ARRAYS:
                    run = self.encode([name], ratio, [step])
                    parts += [dict(p, step=step) for p in run["parts"]]
                    total, seconds = total + run["bytes"], seconds + run["train_seconds"]
        return {"part": "A", "scheme": scheme, "ratio": ratio, "bytes": total, "train_seconds": seconds,
                "mean_psnr": float(np.mean([p["psnr"] for p in parts])), "parts": parts, **extra}

    def run(self, part: str, scheme: str, ratio: float) -> dict:
        if part == "A":
            return self.part_a(scheme, ratio)
        return self.part_b(scheme, ratio) if part == "B" else self.part_c(ratio)

    def part_c(self, ratio: float) -> dict:
        """Every array at every step cold, in a file whose network takes the bytes a series part gets."""
        one_step = sum(self.steps[0][name].nbytes for name in ARRAYS)
        share = part_budget(one_step * len(self.times), ratio, len(ARRAYS) * len(self.times))
        parts, total, seconds = [], 0, 0.0
        for step in range(len(self.times)):
            for name in ARRAYS:
                own_ratio = self.steps[step][name].nbytes / (share + PART_FIT_ALLOWANCE)
                run = self.encode([name], own_ratio, [step])
                parts += [dict(p, step=step, file_bytes=run["bytes"]) for p in run["parts"]]
                total, seconds = total + run["bytes"], seconds + run["train_seconds"]
        return {"part": "C", "scheme": "cold-share", "ratio": ratio, "share_bytes": share, "bytes": total,
                "train_seconds": seconds, "mean_psnr": float(np.mean([p["psnr"] for p in parts])), "parts": parts}

    def part_b(self, scheme: str, ratio: float) -> dict:
        names = ["velocity"] if scheme == "vector" else list(COMPONENTS)
        run = self.encode(names, ratio)
        srn = read_srn(run["path"])
        per_step = []
        for step in range(len(self.times)):
            original = self.steps[step]["velocity"].astype(np.float64)
            if scheme == "vector":
                decoded = decode(srn, field=0, step=step, device="cpu").astype(np.float64)
            else:
                decoded = np.stack([decode(srn, field=c, step=step, device="cpu") for c in range(3)], axis=-1)
            ranges = srn.fields[0].value_ranges if scheme == "vector" else [f.value_ranges[0] for f in srn.fields]
            row = {f"psnr_{axis}": psnr(original[..., c], decoded[..., c], ranges[c][1] - ranges[c][0])
                   for c, axis in enumerate("xyz")}
            magnitude = np.linalg.norm(original, axis=-1)
            row["psnr_magnitude"] = psnr(magnitude, np.linalg.norm(decoded, axis=-1), magnitude.max() - magnitude.min())
            per_step.append(row)
        means = {k: float(np.mean([r[k] for r in per_step])) for k in per_step[0]}
        return {"part": "B", "scheme": scheme, "ratio": ratio, "bytes": run["bytes"],
                "train_seconds": run["train_seconds"], **means, "per_step": per_step}


def at_psnr(points: list[tuple[float, float]], target: float) -> float | None:
    """The value (bytes or seconds) at target PSNR on a curve of (PSNR, value) points, interpolated in log value
    between the two points around it; None outside the PSNRs measured."""
    points = sorted(points)
    for (p0, v0), (p1, v1) in zip(points, points[1:], strict=False):
        if p0 <= target <= p1 and p1 > p0:
            fraction = (target - p0) / (p1 - p0)
            return math.exp(math.log(v0) + fraction * (math.log(v1) - math.log(v0)))
    for p, v in points:
        if p == target:
            return v
    return None


def summarize(rows: list[dict]) -> dict:
    series = [r for r in rows if r["part"] == "A" and r["scheme"] in ("series", "delta")]
    independent = [r for r in rows if r["part"] == "A" and r["scheme"] == "independent"]
    comparisons = []
    for row in sorted(series, key=lambda r: (r["scheme"] != "series", r["ratio"])):
        target = row["mean_psnr"]
        other_bytes = at_psnr([(r["mean_psnr"], r["bytes"]) for r in independent], target)
        other_seconds = at_psnr([(r["mean_psnr"], r["train_seconds"]) for r in independent], target)
        comparisons.append({
            "scheme": row["scheme"], "ratio": row["ratio"], "mean_psnr": target, "series_bytes": row["bytes"],
            "series_seconds": row["train_seconds"], "independent_bytes": other_bytes,
            "independent_seconds": other_seconds,
            "bytes_factor": None if other_bytes is None else other_bytes / row["bytes"],
            "time_factor": None if other_seconds is None else other_seconds / row["train_seconds"]})
    return {"equal_psnr": comparisons, "warm_vs_cold": warm_against_cold(rows)}


def warm_against_cold(rows: list[dict]) -> list[dict]:
    """Per array, each later step of a warm series row against part C's cold network of the same bytes."""
    cold_rows = {r["ratio"]: r for r in rows if r["part"] == "C"}
    found = []
    for row in (r for r in rows if r["part"] == "A" and r["scheme"] == "series" and r["ratio"] in cold_rows):
        cold = {(p["field"], p["step"]): p for p in cold_rows[row["ratio"]]["parts"]}
        for name in ARRAYS:
            later = sorted((p for p in row["parts"] if p["field"] == name and p["step"] > 0), key=lambda p: p["step"])
            gains = [p["psnr"] - cold[(name, p["step"])]["psnr"] for p in later]
            found.append({"ratio": row["ratio"], "field": name, "later_steps": len(gains),
                          "reaching_cold": sum(g >= 0 for g in gains), "min_gain": min(gains), "max_gain": max(gains),
                          "warm_steps": later[0]["steps"], "cold_steps": cold[(name, 0)]["steps"]})
    return found


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = ["# One series file against independent files (issue #13)", "",
             f"Generated series, {s['size']}^3, {s['series_steps']} steps, arrays {', '.join(ARRAYS)}; fV-SRN "
             f"{s['grid_channels']} channels, MLP {s['mlp_layers']} x {s['mlp_width']}, grid sized per part for the "
             f"ratio; cold {s['steps']} steps, warm {s['warm_fraction']:g} of them; "
             f"batch {s['batch_size']}; {result['machine']['threads']} thread(s)."
             + "".join(f" Delta rows: key interval {k} (0: only step 0)." for k in sorted(
                 {r["key_interval"] for r in result["rows"] if "key_interval" in r})), "",
             "| part | scheme | ratio | bytes | mean PSNR (B: of the magnitude) | train s |",
             "|---|---|---|---|---|---|"]
    for r in sorted(result["rows"], key=lambda r: (r["part"], r["scheme"], r["ratio"])):
        quality = r.get("mean_psnr", r.get("psnr_magnitude"))
        lines.append(f"| {r['part']} | {r['scheme']} | {r['ratio']:g} | {r['bytes']:,} | {quality:.2f} | "
                     f"{r['train_seconds']:.0f} |")
    lines += ["", "At equal mean PSNR (independent interpolated):", "",
              "| scheme | ratio | mean PSNR | series bytes | independent bytes | bytes factor | time factor |",
              "|---|---|---|---|---|---|---|"]
    for c in result["summary"]["equal_psnr"]:
        def cell(value, fmt):
            return "outside the range run" if value is None else format(value, fmt)
        lines.append(f"| {c.get('scheme', 'series')} | {c['ratio']:g} | {c['mean_psnr']:.2f} | {c['series_bytes']:,} | "
                     f"{cell(c['independent_bytes'], ',.0f')} | {cell(c['bytes_factor'], '.2f')} | "
                     f"{cell(c['time_factor'], '.2f')} |")
    if result["summary"].get("warm_vs_cold"):
        lines += ["", "Warm start against a cold start of the same bytes (part C), every step after the first:", "",
                  "| ratio | array | warm steps / cold steps | later steps at or above cold | PSNR gain min .. max |",
                  "|---|---|---|---|---|"]
        for w in result["summary"]["warm_vs_cold"]:
            lines.append(f"| {w['ratio']:g} | {w['field']} | {w['warm_steps']} / {w['cold_steps']} | "
                         f"{w['reaching_cold']} of {w['later_steps']} | {w['min_gain']:+.2f} .. {w['max_gain']:+.2f} |")
    vectors = [r for r in result["rows"] if r["part"] == "B"]
    if vectors:
        lines += ["", "Velocity: one 3-output network per step against three scalar networks (equal bytes):", "",
                  "| ratio | scheme | bytes | PSNR x | y | z | magnitude |", "|---|---|---|---|---|---|---|"]
        for r in sorted(vectors, key=lambda r: (r["ratio"], r["scheme"])):
            lines.append(f"| {r['ratio']:g} | {r['scheme']} | {r['bytes']:,} | {r['psnr_x']:.2f} | "
                         f"{r['psnr_y']:.2f} | {r['psnr_z']:.2f} | {r['psnr_magnitude']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    settings = {k: getattr(args, k) for k in RESUME_KEYS}
    rows: list[dict] = []
    if json_path.is_file():
        previous = json.loads(json_path.read_text())
        if previous["settings"] != settings:
            raise SystemExit(f"{json_path} holds runs with other settings; choose another --out or remove it")
        rows = previous["rows"]
    scratch = out.parent / f".{out.name}-scratch"
    scratch.mkdir(exist_ok=True)
    runner = Runner(args, scratch)
    machine = machine_info()
    device = device_name(args.device)
    done = {(r["part"], r["scheme"], r["ratio"]) for r in rows}
    plan = [(part, scheme, ratio) for part in args.parts
            for scheme in {"A": args.schemes, "B": ("vector", "components"), "C": ("cold-share",)}[part]
            for ratio in args.ratios if (part, scheme, ratio) not in done]
    print(f"{len(plan)} runs to do, {len(done)} already done", file=sys.stderr, flush=True)
    try:
        for i, (part, scheme, ratio) in enumerate(plan, 1):
            start = time.perf_counter()
            row = runner.run(part, scheme, ratio)
            rows.append(dict(row, code=code_version(), device=device))
            print(f"[{i}/{len(plan)}] {part} {scheme} ratio {ratio:g}: {row['bytes']:,} bytes "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
            write_results(json_path, {"settings": settings, "machine": machine, "rows": rows,
                                      "summary": summarize(rows)})
    finally:
        (scratch / "run.srn").unlink(missing_ok=True)
        scratch.rmdir()
    result = {"settings": settings, "machine": machine, "rows": rows, "summary": summarize(rows)}
    write_results(json_path, result)
    out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {json_path} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
