"""Rate-distortion benchmark: srnvtk and classic codecs at target ratios, one PSNR definition.

Classic codecs (fast; their parameter is searched on compressed size so the ratio lands at or just above each
target), on the shared Richtmyer-Meshkov volume and the synthetic turbulence field:

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.rd --only classic

srnvtk (one training per preset and ratio, --srnvtk-time-limit seconds each), merged into the same results and
saved after every row; --resume skips the rows already measured with the same settings:

    .venv/bin/python -m benchmarks.rd --only srnvtk --srnvtk-time-limit 300 --device cuda --resume

Writes benchmarks/results/rd_<volume>.json (every row; rows of other codecs are kept), .md and .png.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import sys
from collections.abc import Iterator
from pathlib import Path

from .classic import run_codec
from .codecs import TTHRESH_BRICK, classic_codecs
from .report import load_results, merge_rows, save_results, write_reports
from .srn import PRESET_NAMES, SRNSettings, run_srnvtk, same_run
from .volumes import BenchVolume, VolumeMissingError, load_volume

RESULTS = Path(__file__).resolve().parents[1] / "results"
RATIOS = (50.0, 100.0, 200.0, 500.0, 1000.0)
@contextlib.contextmanager
def results_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside a results file: two runs (two training slots) merge their rows into it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rd", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--volumes", nargs="+", default=["rm", "turbulence"],
                   help="'rm' (shared Richtmyer-Meshkov), 'turbulence' or 'sharp' (synthetic) or .vti paths")
    p.add_argument("--array", help="point-data array of a .vti volume (default: the active scalars)")
    p.add_argument("--turbulence-size", type=int, default=256, help="size of the synthetic volumes")
    p.add_argument("--seed", type=int, default=0, help="of the synthetic volume and of srnvtk's training")
    p.add_argument("--crop", type=int, help="use the central N^3 block (results named rd_<volume>_cropN)")
    p.add_argument("--ratios", nargs="+", type=float, default=list(RATIOS))
    p.add_argument("--only", choices=("all", "classic", "srnvtk"), default="all")
    p.add_argument("--codecs", nargs="+", choices=list(classic_codecs()), help="classic codecs (default: all)")
    p.add_argument("--ratio-tol", type=float, default=0.005,
                   help="classic search stops once the ratio is within target * (1 + tol)")
    p.add_argument("--tthresh-brick", type=int, default=TTHRESH_BRICK)
    p.add_argument("--srnvtk-presets", nargs="+", choices=PRESET_NAMES, default=["fvsrn"])
    p.add_argument("--srnvtk-time-limit", type=float, default=300.0, help="seconds of training per ratio")
    p.add_argument("--srnvtk-clock", choices=("wall", "cpu"), default="wall",
                   help="what the time limit counts: wall-clock or this process's CPU seconds (TrainConfig.time_clock)")
    p.add_argument("--srnvtk-batch-size", type=int, help="sample points per step (default: srnvtk's)")
    p.add_argument("--srnvtk-grid-bits", type=int, help="fV-SRN latent code bits (default: srnvtk's)")
    p.add_argument("--srnvtk-sampling", help="TrainConfig.sampling: auto, error or uniform (default: srnvtk's)")
    p.add_argument("--srnvtk-steps", type=int, help="training steps (default: srnvtk's; the time limit still holds)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="srnvtk's device")
    p.add_argument("--threads", type=int, default=0, help="srnvtk's torch threads (0: torch's default)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--resume", action="store_true",
                   help="skip srnvtk rows already in the results with the same settings")
    p.add_argument("--report-only", action="store_true", help="only rewrite the .md and .png from the .json")
    return p.parse_args(argv)


def run_volume(bench: BenchVolume, args: argparse.Namespace, path: Path) -> list[dict]:
    """Every row asked for; srnvtk rows are also merged into the results file as each one is measured."""
    rows = []
    if args.only in ("all", "classic"):
        codecs = classic_codecs(args.tthresh_brick)
        for name in args.codecs or list(codecs):
            print(f"{bench.key}: {codecs[name].label}", flush=True)
            rows += run_codec(codecs[name], bench, args.ratios, args.ratio_tol)
    if args.only in ("all", "srnvtk"):
        settings = SRNSettings(args.srnvtk_time_limit, args.srnvtk_steps, args.device, args.threads, args.seed,
                               args.srnvtk_clock, args.srnvtk_batch_size, args.srnvtk_grid_bits, args.srnvtk_sampling)
        print(f"{bench.key}: srnvtk {', '.join(args.srnvtk_presets)}, {len(args.ratios)} ratios, "
              f"~{args.srnvtk_time_limit:g}s of training each", flush=True)
        stored = load_results(path)["rows"]
        measured = {(r["codec"], float(r["target_ratio"])) for r in stored if same_run(r, settings)}

        def save(row: dict) -> None:
            with results_lock(path):
                save_results(path, bench.describe(), merge_rows(load_results(path)["rows"], [row]))

        rows += run_srnvtk(bench, args.srnvtk_presets, args.ratios, settings,
                           done=lambda codec, target: args.resume and (codec, target) in measured, on_row=save)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in args.volumes:
        try:
            bench = load_volume(name, args.array, args.turbulence_size, args.seed, args.crop)
        except VolumeMissingError as exc:
            print(f"skipping volume '{name}': {exc}", file=sys.stderr)
            continue
        path = args.out_dir / f"rd_{bench.key}.json"
        new = [] if args.report_only else run_volume(bench, args, path)  # srnvtk rows are saved as they come
        with results_lock(path):  # merge into what is there now
            data = save_results(path, bench.describe(), merge_rows(load_results(path)["rows"], new))
        for written in (path, *write_reports(data, path)):
            print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
