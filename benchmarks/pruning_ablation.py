"""Pruning ablation: PSNR against file bytes for fV-SRN and Neurcomp, unpruned and with each pruning method,
at several sizes, all with the same training budget, on a 128^3 region of the shared Richtmyer-Meshkov volume.

Each size is a target ratio; the network is sized for it unpruned (encoder.config_for_ratio), so a pruned
run with the same network ends with a smaller file. The unpruned runs also cover smaller sizes (twice and
four times the largest ratio), so every pruned point can be compared with an unpruned network of the same
file bytes: `gain_db` is the pruned PSNR minus the unpruned curve's PSNR at that many bytes (interpolated
linearly in log bytes). A pruned file smaller than every unpruned one gets a lower bound instead: its PSNR
minus that of the smallest unpruned file (`gain_is_bound`; unpruned PSNR only falls with fewer bytes). A
pruned file larger than every unpruned one gets no gain.

A control separates the schedule from the pruning: 'schedule-only' runs the pruning schedule (mask phase,
bake, fine-tuning restarted at a lower rate) with binary masks that cannot move (no penalty, a vanishing
mask learning rate), so nothing is pruned: its gain is what the two-phase schedule alone buys.

    .venv/bin/python benchmarks/pruning_ablation.py            # the full ablation (see --help for the budget)
    .venv/bin/python benchmarks/pruning_ablation.py --quick    # smoke test: 48^3 region, 30 steps, 2 sizes

Writes benchmarks/results/pruning_ablation.json (settings and one row per run), .md (the tables) and .png
(the plot). The json is rewritten after every run; a rerun with the same training settings (volume, region,
steps, batch size, device, seed) keeps its rows and skips finished runs, so an interrupted ablation resumes
and `--archs fvsrn` then `--archs neurcomp` fill one table. Other training settings need another --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from srnvtk.config import FVSRNConfig, NeurcompConfig, PruningConfig, TrainConfig
from srnvtk.encoder import compress, config_for_ratio
from srnvtk.errors import SettingsError
from srnvtk.fileformat import read_srn
from srnvtk.pruning import pruned_fractions
from srnvtk.volume import Geometry, Volume

HERE = Path(__file__).resolve().parent
DEFAULT_VOLUME = HERE.parent.parent / "shared" / "data" / "richtmyer_meshkov_t0020_256.vti"
METHODS = ("none", "smallify", "variational", "binary", "schedule-only")
# The pruning settings of each method (the library's defaults but for the method; see the control above).
PRUNING = {
    "none": PruningConfig(),
    "smallify": PruningConfig(method="smallify"),
    "variational": PruningConfig(method="variational"),
    "binary": PruningConfig(method="binary"),
    "schedule-only": PruningConfig(method="binary", l1_weight=0.0, mask_learning_rate=1e-12),
}
# Each network's defaults; the plain Neurcomp (every layer prunable) is there on request (--archs).
ARCHITECTURES = {"fvsrn": FVSRNConfig(), "neurcomp": NeurcompConfig(), "neurcomp-plain": NeurcompConfig(residual=False)}
# The region: x, y, z start and edge length. z from 64 takes in the flat part below the mixing layer
# (z < 80 is constant) and the rolled-up interface above it, where pruning has something to choose.
REGION = (64, 64, 64, 128)


def add_region_arguments(parser: argparse.ArgumentParser) -> None:
    """--volume, --array and --region: where the benchmarks on a region of the shared volume read it."""
    parser.add_argument("--volume", default=str(DEFAULT_VOLUME))
    parser.add_argument("--array", default="density")
    parser.add_argument("--region", type=int, nargs=4, default=list(REGION), metavar=("X0", "Y0", "Z0", "N"))


def ablation_parser(description: str, name: str) -> argparse.ArgumentParser:
    """The options every ablation shares (region, sizes, training, output, --quick); callers add their own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_region_arguments(parser)
    parser.add_argument("--ratios", type=float, nargs="+", default=[50.0, 100.0, 200.0],
                        help="sizes, as ratios of the unpruned file (default 50 100 200)")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of every run (default 3000)")
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "results" / name),
                        help="output path without extension (.json, .md, .png are written)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: a 48^3 region, 30 steps of 2048, ratios 4 and 8 (results under /tmp)")
    return parser


def apply_quick(args: argparse.Namespace, parser: argparse.ArgumentParser, name: str) -> argparse.Namespace:
    """--quick: the smoke-test settings, results under the temporary folder unless --out was given."""
    if args.quick:
        args.region = [104, 104, 80, 48]
        args.ratios, args.steps, args.batch_size = [4.0, 8.0], 30, 2048
        if args.out == parser.get_default("out"):
            args.out = str(Path(tempfile.gettempdir()) / f"{name}_quick")
    return args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ablation_parser(__doc__, "pruning_ablation")
    parser.add_argument("--archs", nargs="+", choices=list(ARCHITECTURES), default=["fvsrn", "neurcomp"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    return apply_quick(parser.parse_args(argv), parser, "pruning_ablation")


def load_region(args: argparse.Namespace) -> Volume | None:
    """The region as a Volume with the source's spacing; None when the volume file is absent."""
    if not Path(args.volume).is_file():
        return None
    from srnvtk.vtkio import read_vti, volume_from_image

    source = volume_from_image(read_vti(args.volume), args.array)
    x0, y0, z0, n = args.region
    values = np.ascontiguousarray(source.values[z0:z0 + n, y0:y0 + n, x0:x0 + n])
    if values.shape != (n, n, n):
        raise SystemExit(f"region {args.region} does not fit the volume {source.values.shape[::-1]} (x, y, z)")
    geometry = Geometry((0, n - 1, 0, n - 1, 0, n - 1), (0.0, 0.0, 0.0), source.geometry.spacing)
    return Volume(values, geometry, source.name)


def plan(args: argparse.Namespace) -> list[dict]:
    """Every run: (arch, method, ratio); the unpruned runs add two smaller sizes as a baseline curve."""
    largest = max(args.ratios)
    runs = []
    for arch in args.archs:
        for method in args.methods:
            ratios = list(args.ratios) + ([2 * largest, 4 * largest] if method == "none" else [])
            runs += [{"arch": arch, "method": method, "target_ratio": ratio} for ratio in sorted(ratios)]
    return runs


def run_one(volume: Volume, spec: dict, args: argparse.Namespace) -> dict:
    pruning = PRUNING[spec["method"]]
    model_config = config_for_ratio(spec["target_ratio"], volume.geometry, ARCHITECTURES[spec["arch"]], pruning)
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, device=args.device,
                               threads=args.threads, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.srn"
        start = time.perf_counter()
        # The encoder measures the model rounded to what the file stores: the PSNR a reader decodes
        # (tests/test_pruning.py checks the round trip is exact).
        result = compress(volume, model_config=model_config, train_config=train_config, path=path, pruning=pruning)
        seconds = time.perf_counter() - start
        file_bytes = os.path.getsize(path)
        pruned = pruned_fractions(read_srn(path).model)
    return {
        **spec,
        "model_config": dataclasses.asdict(model_config),
        "pruning_config": dataclasses.asdict(pruning),
        "file_bytes": file_bytes,
        "ratio": 4 * volume.values.size / file_bytes,
        "psnr": result.stats["psnr"],
        "pruned_fraction": result.stats["pruned_fraction"],
        "pruned_fractions": pruned,
        "steps": int(result.stats["steps"]),
        "seconds": seconds,
    }


def psnr_at_bytes(curve: list[tuple[float, float]], file_bytes: float) -> float | None:
    """PSNR of a sorted (file bytes, PSNR) curve at this many bytes, linear in log bytes; None outside it."""
    for (b0, p0), (b1, p1) in zip(curve, curve[1:], strict=False):
        if b0 <= file_bytes <= b1:
            t = 0.0 if b1 == b0 else (math.log(file_bytes) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return p0 + t * (p1 - p0)
    return None


def gain_against(reference: list[dict], row: dict) -> tuple[float | None, bool]:
    """(row's PSNR minus the reference runs' curve at row's file bytes, whether that is a lower bound).

    Inside the curve: interpolated in log bytes. A file smaller than every reference file: against the
    smallest, a lower bound (the reference PSNR only falls with fewer bytes). Larger than all: (None, False).
    """
    curve = sorted((r["file_bytes"], r["psnr"]) for r in reference)
    value = psnr_at_bytes(curve, row["file_bytes"])
    if value is not None:
        return row["psnr"] - value, False
    if curve and row["file_bytes"] < curve[0][0]:
        return row["psnr"] - curve[0][1], True
    return None, False


def with_gains(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        gain, bound = None, False
        if row["method"] != "none":
            unpruned = [r for r in rows if r["arch"] == row["arch"] and r["method"] == "none"]
            gain, bound = gain_against(unpruned, row)
        out.append({**row, "gain_db": gain, "gain_is_bound": bound})
    return out


def markdown(rows: list[dict], settings: dict) -> str:
    lines = [
        "# Pruning ablation",
        "",
        f"Volume `{settings['volume']}`, region x,y,z from {settings['region'][:3]}, {settings['region'][3]}^3 "
        f"points; {settings['steps']} steps of {settings['batch_size']} on {settings['device']} for every run. "
        "PSNR = 20 log10(range / RMSE) of the file as a reader decodes it; ratio = float32 bytes / file bytes. "
        "Gain: PSNR minus the unpruned curve's at the same file bytes (interpolated in log bytes); "
        "'>=' marks a lower bound for files smaller than every unpruned one (against the smallest), "
        "'-' a file larger than every unpruned one. schedule-only: the pruning schedule with masks that "
        "cannot move (nothing pruned), the share of any gain that the two-phase schedule alone buys.",
        "",
    ]
    for arch in settings["archs"]:
        lines += [f"## {arch}", "", "| target ratio | method | file bytes | ratio | PSNR (dB) | pruned | gain (dB) |",
                  "|---|---|---|---|---|---|---|"]
        for row in sorted((r for r in rows if r["arch"] == arch), key=lambda r: (r["target_ratio"], r["method"])):
            gain = "-" if row["gain_db"] is None else f"{'>= ' if row['gain_is_bound'] else ''}{row['gain_db']:+.2f}"
            lines.append(f"| {row['target_ratio']:g} | {row['method']} | {row['file_bytes']:,} | {row['ratio']:.1f} "
                         f"| {row['psnr']:.2f} | {100 * row['pruned_fraction']:.1f}% | {gain} |")
        gains = [r for r in rows if r["arch"] == arch and r["gain_db"] is not None]
        if gains:
            best = max(gains, key=lambda r: r["gain_db"])
            at_least = "at least " if best["gain_is_bound"] else ""
            lines += ["", f"Best gain at equal bytes: {at_least}{best['gain_db']:+.2f} dB ({best['method']}, target "
                          f"ratio {best['target_ratio']:g}, {100 * best['pruned_fraction']:.0f}% pruned)."]
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict], settings: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = settings["archs"]
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 4.5), squeeze=False)
    for ax, arch in zip(axes[0], archs, strict=True):
        for method in settings["methods"]:
            points = sorted((r["file_bytes"], r["psnr"]) for r in rows if r["arch"] == arch and r["method"] == method)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=method)
        ax.set_xscale("log")
        ax.set_xlabel("file bytes")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"{arch}: {settings['steps']} steps each")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle(f"Pruning ablation, {settings['region'][3]}^3 region of {Path(settings['volume']).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


TRAINING_SETTINGS = ("volume", "array", "region", "steps", "batch_size", "device", "seed")


def settings_of(training: dict, rows: list[dict]) -> dict:
    """The training settings plus the architectures, methods and ratios the rows cover, in a fixed order."""
    archs = [a for a in ARCHITECTURES if any(r["arch"] == a for r in rows)]
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    return {**training, "archs": archs, "methods": methods,
            "ratios": sorted({r["target_ratio"] for r in rows})}


def resume_rows(json_path: Path, training: dict) -> list[dict]:
    """The finished runs of an earlier call with the same training settings (derived gains dropped)."""
    if not json_path.is_file():
        return []
    previous = json.loads(json_path.read_text())
    before = {key: previous.get("settings", {}).get(key) for key in TRAINING_SETTINGS}
    if before != training:
        raise SystemExit(f"{json_path} holds runs with other training settings ({before}); "
                         "choose another --out or remove it")
    return [{k: v for k, v in r.items() if not k.startswith("gain_")} for r in previous["rows"]]


def start_run(args: argparse.Namespace) -> tuple[Volume, dict, Path, list[dict]] | None:
    """Region, training settings, output stem and the finished rows to resume from; None (said why) when
    the shared volume is absent. Shared by the ablation scripts."""
    volume = load_region(args)
    if volume is None:
        print(f"skipped: {args.volume} not found (the shared Richtmyer-Meshkov volume)", file=sys.stderr)
        return None
    if args.threads:
        torch.set_num_threads(args.threads)
    training = {key: getattr(args, key) for key in TRAINING_SETTINGS}
    training["volume"] = Path(args.volume).name
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return volume, training, out, resume_rows(out.with_suffix(".json"), training)


def pending_runs(specs: list[dict], rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """The planned runs that rows (resumed from an earlier run) do not cover yet; keys name a run."""
    done = {tuple(r[k] for k in keys) for r in rows}
    todo = [spec for spec in specs if tuple(spec[k] for k in keys) not in done]
    print(f"{len(todo)} runs to do, {len(done)} already done", file=sys.stderr)
    return todo


def machine_info() -> dict:
    return {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run(args)
    if started is None:
        return 0
    volume, training, out, rows = started
    json_path = out.with_suffix(".json")
    todo = pending_runs(plan(args), rows, ("arch", "method", "target_ratio"))
    machine = machine_info()
    for i, spec in enumerate(todo, 1):
        label = f"[{i}/{len(todo)}] {spec['arch']} {spec['method']} ratio {spec['target_ratio']:g}"
        try:
            row = run_one(volume, spec, args)
        except SettingsError as exc:  # a ratio too high for any network of this architecture
            print(f"{label}: skipped ({exc})", file=sys.stderr)
            continue
        rows.append(row)
        print(f"{label}: {row['file_bytes']:,} bytes, {row['psnr']:.2f} dB, {100 * row['pruned_fraction']:.1f}% "
              f"pruned, {row['seconds']:.0f} s", file=sys.stderr)
        json_path.write_text(json.dumps({"settings": settings_of(training, rows), "machine": machine,
                                         "rows": with_gains(rows)}, indent=1))
    rows = with_gains(rows)
    settings = settings_of(training, rows)
    json_path.write_text(json.dumps({"settings": settings, "machine": machine, "rows": rows}, indent=1))
    out.with_suffix(".md").write_text(markdown(rows, settings))
    if rows:
        plot(rows, settings, out.with_suffix(".png"))
    print(f"wrote {json_path}, {out.with_suffix('.md')} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
