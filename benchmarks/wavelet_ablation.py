"""Wavelet ablation: the fV-SRN latent grid trained directly ('plain') or as its 3D wavelet coefficients (haar, db2,
bior2.2), unpruned and pruned (variational dropout, binary masks), at several sizes, all with the same training
budget, on a 128^3 region of the shared Richtmyer-Meshkov volume.

Each size is a target ratio; every network is sized for it unpruned (encoder.config_for_ratio, which counts a
wavelet grid's extra scales), so a pruned run ends with a smaller file. Comparisons at equal file bytes, along a
curve of runs (interpolated in log bytes, pruning_ablation.gain_against):
  gain vs plain     PSNR minus the plain grid's with the same pruning method: does the wavelet grid beat the
                    plain grid with that method?
  gain vs unpruned  PSNR minus the unpruned plain grid's
A file smaller than every file of the reference curve is compared with the smallest, a lower bound ('>='); one
larger than all gets no gain ('-'). The plain runs add a larger and a smaller size (half the smallest and twice
the largest ratio; the unpruned ones also four times) to widen the curves compared against; sizes too small for
any network are skipped. The pruned fraction shown is the latent grid's (of its values or of its
wavelet coefficients), as in the thesis; the json also has the fraction of all parameters.

    .venv/bin/python benchmarks/wavelet_ablation.py            # the full ablation (see --help for the budget)
    .venv/bin/python benchmarks/wavelet_ablation.py --quick    # smoke test: 48^3 region, 30 steps, 2 sizes

Writes benchmarks/results/wavelet_ablation.json (settings and one row per run), .md (tables and the verdict) and
.png (PSNR against file bytes; pruned fractions). The json is rewritten after every run; a rerun with the same
training settings (volume, region, steps, batch size, device, seed) keeps its rows and skips finished runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from pruning_ablation import ablation_parser, apply_quick, gain_against, machine_info, pending_runs, start_run

from srnvtk.config import PRUNING_METHODS, FVSRNConfig, PruningConfig, TrainConfig
from srnvtk.encoder import compress, config_for_ratio
from srnvtk.errors import SettingsError
from srnvtk.fileformat import read_srn
from srnvtk.pruning import pruned_fractions
from srnvtk.volume import Volume

PLAIN = "plain"
GRIDS = (PLAIN, "haar", "db2", "bior2.2")
METHODS = ("none", "variational", "binary")  # the pruning ablation's best methods on the plain grid


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ablation_parser(__doc__, "wavelet_ablation")
    parser.add_argument("--grids", nargs="+", default=list(GRIDS),
                        help=f"'{PLAIN}' and PyWavelets wavelet names (default {' '.join(GRIDS)})")
    parser.add_argument("--methods", nargs="+", choices=PRUNING_METHODS, default=list(METHODS))
    args = parser.parse_args(argv)
    if PLAIN not in args.grids:
        parser.error(f"--grids needs '{PLAIN}': every comparison is against the plain grid")
    for grid in args.grids:
        if grid != PLAIN:
            try:
                FVSRNConfig(wavelet=grid)
            except SettingsError as exc:
                parser.error(str(exc))
    return apply_quick(args, parser, "wavelet_ablation")


def model_settings(grid: str) -> FVSRNConfig:
    return FVSRNConfig(wavelet=None if grid == PLAIN else grid)


def plan(args: argparse.Namespace) -> list[dict]:
    """Every run: (grid, method, ratio); the plain runs add sizes on both sides to widen the curves compared against."""
    smallest, largest = min(args.ratios), max(args.ratios)
    runs = []
    for grid in args.grids:
        for method in args.methods:
            extra = [] if grid != PLAIN else [smallest / 2, 2 * largest] + ([4 * largest] if method == "none" else [])
            runs += [{"grid": grid, "method": method, "target_ratio": r} for r in sorted(list(args.ratios) + extra)]
    return runs


def run_one(volume: Volume, spec: dict, args: argparse.Namespace) -> dict:
    pruning = PruningConfig(method=spec["method"])
    model_config = config_for_ratio(spec["target_ratio"], volume.geometry, model_settings(spec["grid"]), pruning)
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, device=args.device,
                               threads=args.threads, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.srn"
        start = time.perf_counter()
        # The encoder measures the model as the file stores it: the PSNR a reader decodes.
        result = compress(volume, model_config=model_config, train_config=train_config, path=path, pruning=pruning)
        seconds = time.perf_counter() - start
        file_bytes = os.path.getsize(path)
        model = read_srn(path).model
    fractions = pruned_fractions(model)
    return {
        **spec,
        "model_config": dataclasses.asdict(model_config),
        "wavelet_levels": model.structure().get("wavelet_levels"),
        "file_bytes": file_bytes,
        "ratio": 4 * volume.values.size / file_bytes,
        "psnr": result.stats["psnr"],
        "grid_pruned_fraction": fractions[model.latent_name],
        "pruned_fraction": result.stats["pruned_fraction"],
        "steps": int(result.stats["steps"]),
        "seconds": seconds,
    }


def with_gains(rows: list[dict]) -> list[dict]:
    """Each row with its gains at equal bytes against the plain grid with the same method and unpruned."""
    out = []
    for row in rows:
        same = [r for r in rows if r["grid"] == PLAIN and r["method"] == row["method"]]
        unpruned = [r for r in rows if r["grid"] == PLAIN and r["method"] == "none"]
        vs_plain = gain_against(same, row) if row["grid"] != PLAIN else (None, False)
        vs_unpruned = gain_against(unpruned, row) if row["method"] != "none" or row["grid"] != PLAIN else (None, False)
        out.append({**row, "gain_vs_plain_db": vs_plain[0], "gain_vs_plain_is_bound": vs_plain[1],
                    "gain_vs_unpruned_db": vs_unpruned[0], "gain_vs_unpruned_is_bound": vs_unpruned[1]})
    return out


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summary(rows: list[dict], grids: list[str], methods: list[str]) -> list[dict]:
    """Per wavelet grid and method: mean pruned fraction (and the plain grid's), mean gains, counts.

    The mean gain against the plain grid with the same method uses exact comparisons only (its lower bounds are
    listed apart); the mean gain against the unpruned plain grid counts lower bounds too (how many, is noted)."""
    out = []
    for grid in (g for g in grids if g != PLAIN):
        for method in methods:
            mine = [r for r in rows if r["grid"] == grid and r["method"] == method]
            plain = [r for r in rows if r["grid"] == PLAIN and r["method"] == method
                     and r["target_ratio"] in {m["target_ratio"] for m in mine}]
            if not mine:
                continue
            exact = [r["gain_vs_plain_db"] for r in mine if r["gain_vs_plain_db"] is not None
                     and not r["gain_vs_plain_is_bound"]]
            unpruned = [r for r in mine if r["gain_vs_unpruned_db"] is not None]
            out.append({
                "grid": grid, "method": method, "runs": len(mine),
                "grid_pruned": mean([r["grid_pruned_fraction"] for r in mine]),
                "plain_grid_pruned": mean([r["grid_pruned_fraction"] for r in plain]),
                "gain_vs_plain_db": mean(exact), "exact_comparisons": len(exact),
                "lower_bounds_vs_plain": [r["gain_vs_plain_db"] for r in mine if r["gain_vs_plain_is_bound"]],
                "gain_vs_unpruned_db": mean([r["gain_vs_unpruned_db"] for r in unpruned]),
                "unpruned_lower_bounds": sum(r["gain_vs_unpruned_is_bound"] for r in unpruned),
            })
    return out


def verdicts(table: list[dict]) -> list[str]:
    """Per wavelet: its best pruning method (highest mean gain over the unpruned plain grid, lower bounds
    included) against the plain grid pruned with the same method, at equal bytes."""
    lines = []
    for grid in dict.fromkeys(s["grid"] for s in table):
        pruned = [s for s in table if s["grid"] == grid and s["method"] != "none"
                  and s["gain_vs_unpruned_db"] is not None]
        if not pruned:
            continue
        best = max(pruned, key=lambda s: s["gain_vs_unpruned_db"])
        gain, bounds = best["gain_vs_plain_db"], best["lower_bounds_vs_plain"]
        if gain is None and not bounds:
            lines.append(f"- {grid}: best method {best['method']}; no plain {best['method']} run of comparable size.")
            continue
        beats = (gain is not None and gain > 0) or (gain is None and min(bounds) > 0)
        sizes = best["exact_comparisons"]
        said = f"{gain:+.2f} dB at {sizes} size{'s' * (sizes != 1)}" if gain is not None else "no exact comparison"
        extra = f", lower bounds {', '.join(f'{b:+.2f}' for b in bounds)} dB" if bounds else ""
        lines.append(f"- {grid}: best method {best['method']} ({100 * best['grid_pruned']:.0f}% of the coefficients "
                     f"pruned, plain grid {100 * (best['plain_grid_pruned'] or 0):.0f}%); against the plain grid with "
                     f"{best['method']} at equal bytes: {said}{extra}: "
                     f"{'beats it' if beats else 'does not beat it'}.")
    return lines


def _gain(row: dict, key: str) -> str:
    value = row[f"{key}_db"]
    return "-" if value is None else f"{'>= ' if row[f'{key}_is_bound'] else ''}{value:+.2f}"


def _bounds_note(line: dict) -> str:
    count = line["unpruned_lower_bounds"]
    return f" ({count} lower bound{'s' * (count != 1)})" if count else ""


def _number(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(scale * value, spec)


def markdown(rows: list[dict], settings: dict) -> str:
    lines = [
        "# Wavelet ablation",
        "",
        f"Volume `{settings['volume']}`, region x,y,z from {settings['region'][:3]}, {settings['region'][3]}^3 "
        f"points; fV-SRN defaults but the grid, sized per target ratio; {settings['steps']} steps of "
        f"{settings['batch_size']} on {settings['device']} for every run. PSNR = 20 log10(range / RMSE) of the file "
        "as a reader decodes it; ratio = float32 bytes / file bytes; pruned: share of the latent grid's values "
        "(plain) or wavelet coefficients removed. Gains at equal file bytes (interpolated in log bytes): against the "
        "plain grid with the same pruning method, and against the unpruned plain grid; '>=' a lower bound for "
        "files smaller than every reference file, '-' none.",
        "",
    ]
    for method in settings["methods"]:
        lines += [f"## pruning: {method}", "",
                  "| grid | target ratio | levels (z, y, x) | file bytes | ratio | PSNR (dB) | pruned | "
                  "gain vs plain (dB) | gain vs unpruned (dB) |", "|---|---|---|---|---|---|---|---|---|"]
        chosen = sorted((r for r in rows if r["method"] == method),
                        key=lambda r: (settings["grids"].index(r["grid"]), r["target_ratio"]))
        for r in chosen:
            levels = "-" if r["wavelet_levels"] is None else " ".join(map(str, r["wavelet_levels"]))
            lines.append(f"| {r['grid']} | {r['target_ratio']:g} | {levels} | {r['file_bytes']:,} | {r['ratio']:.1f} "
                         f"| {r['psnr']:.2f} | {100 * r['grid_pruned_fraction']:.1f}% | {_gain(r, 'gain_vs_plain')} "
                         f"| {_gain(r, 'gain_vs_unpruned')} |")
        lines.append("")
    table = summary(rows, settings["grids"], settings["methods"])
    if table:
        lines += ["## Summary", "",
                  "| grid | method | pruned (plain grid) | mean gain vs plain (dB, exact sizes) | lower bounds | "
                  "mean gain vs unpruned (dB) |", "|---|---|---|---|---|---|"]
        for s in table:
            plain = _number(s["plain_grid_pruned"], ".0f", 100)
            lines.append(f"| {s['grid']} | {s['method']} | {100 * s['grid_pruned']:.0f}% ({plain}%) "
                         f"| {_number(s['gain_vs_plain_db'], '+.2f')} ({s['exact_comparisons']}) "
                         f"| {' '.join(f'{b:+.2f}' for b in s['lower_bounds_vs_plain']) or '-'} "
                         f"| {_number(s['gain_vs_unpruned_db'], '+.2f')}{_bounds_note(s)} |")
        lines += ["", "Verdict (thesis: wavelets prune 40-75% instead of 0-25% and gain 0.5-1.5 dB):", "",
                  *verdicts(table), ""]
    return "\n".join(lines)


def plot(rows: list[dict], settings: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {grid: f"C{i}" for i, grid in enumerate(settings["grids"])}
    styles = dict(zip(settings["methods"], ["-", "--", ":", "-."], strict=False))
    markers = dict(zip(settings["methods"], ["o", "s", "^", "D"], strict=False))
    for grid in settings["grids"]:
        for method in settings["methods"]:
            points = sorted((r["file_bytes"], r["psnr"]) for r in rows if r["grid"] == grid and r["method"] == method)
            if points:
                left.plot(*zip(*points, strict=True), color=colors[grid], linestyle=styles[method],
                          marker=markers[method], label=f"{grid}, {method}")
    left.set_xscale("log")
    left.set_xlabel("file bytes")
    left.set_ylabel("PSNR (dB)")
    left.set_title(f"PSNR at equal bytes ({settings['steps']} steps each)")
    left.grid(True, which="both", alpha=0.3)
    pruned_methods = [m for m in settings["methods"] if m != "none"]
    ratios = settings["ratios"]
    width = 0.8 / max(1, len(settings["grids"]) * len(pruned_methods))
    for i, (grid, method) in enumerate((g, m) for m in pruned_methods for g in settings["grids"]):
        values = [next((r["grid_pruned_fraction"] for r in rows if (r["grid"], r["method"], r["target_ratio"])
                        == (grid, method, ratio)), 0.0) for ratio in ratios]
        right.bar([k + i * width for k in range(len(ratios))], [100 * v for v in values], width,
                  color=colors[grid], hatch="" if method == pruned_methods[0] else "//", edgecolor="white",
                  label=f"{grid}, {method}")
    right.set_xticks([k + 0.4 - width / 2 for k in range(len(ratios))], [f"{r:g}" for r in ratios])
    right.set_xlabel("target ratio (unpruned file)")
    right.set_ylabel("latent grid pruned (%)")
    right.set_title("pruned values (plain) or coefficients (wavelet)")
    right.grid(True, axis="y", alpha=0.3)
    for ax in (left, right):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"Wavelet ablation, {settings['region'][3]}^3 region of {Path(settings['volume']).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def settings_of(training: dict, rows: list[dict], args: argparse.Namespace) -> dict:
    """The training settings plus the grids, methods and ratios the rows cover, in a fixed order."""
    grids = list(dict.fromkeys([*args.grids, *(r["grid"] for r in rows)]))
    grids = [g for g in grids if any(r["grid"] == g for r in rows)]
    methods = [m for m in PRUNING_METHODS if any(r["method"] == m for r in rows)]
    return {**training, "grids": grids, "methods": methods, "ratios": sorted({r["target_ratio"] for r in rows})}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_run(args)
    if started is None:
        return 0
    volume, training, out, rows = started
    json_path = out.with_suffix(".json")
    todo = pending_runs(plan(args), rows, ("grid", "method", "target_ratio"))
    machine = machine_info()

    def save() -> dict:
        settings = settings_of(training, rows, args)
        json_path.write_text(json.dumps({"settings": settings, "machine": machine, "rows": with_gains(rows)},
                                        indent=1))
        return settings

    for i, spec in enumerate(todo, 1):
        label = f"[{i}/{len(todo)}] {spec['grid']} {spec['method']} ratio {spec['target_ratio']:g}"
        try:
            row = run_one(volume, spec, args)
        except SettingsError as exc:  # a ratio too high for any network
            print(f"{label}: skipped ({exc})", file=sys.stderr)
            continue
        rows.append(row)
        print(f"{label}: {row['file_bytes']:,} bytes, {row['psnr']:.2f} dB, {100 * row['grid_pruned_fraction']:.1f}% "
              f"of the grid pruned, {row['seconds']:.0f} s", file=sys.stderr)
        save()
    settings = save()
    out.with_suffix(".md").write_text(markdown(with_gains(rows), settings))
    if rows:
        plot(rows, settings, out.with_suffix(".png"))
    print(f"wrote {json_path}, {out.with_suffix('.md')} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
