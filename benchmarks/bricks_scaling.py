"""Bricked compression on 1 and on 2 MPI ranks (issue 14's scaling check): wall-clock speed-up, PSNR, file bytes and
peak resident memory per rank, with the load average beside every run (this machine is shared).

A generated volume (`srnvtk generate`, float32 raw NRRD, written a slab at a time and read brick by brick) is
compressed by `mpirun -np R srnvtk compress IN.nrrd OUT.srn --brick-size B --ratio X --steps S` for each R. Both
runs train the same bricks with the same seeds; the files must agree brick for brick (the index's timings aside),
so PSNR and bytes agree exactly and the speed-up is the only thing the rank count changes. Every run is timed
inside `/work/bin/train-slot` (twice nested for two ranks: two trainings hold two slots) when that script exists.

    .venv/bin/python benchmarks/bricks_scaling.py --shape 512 --brick-size 128 --steps 100 \\
        --out benchmarks/results/bricks_scaling_512.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results_io import write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SLOT = Path("/work/bin/train-slot")
UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
TIMED = ("import subprocess, sys, time; t = time.perf_counter(); r = subprocess.call(sys.argv[1:]); "
         "print(f'WALL {time.perf_counter() - t:.3f}'); sys.exit(r)")


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run_ranks(ranks: int, nrrd: Path, out: Path, args: argparse.Namespace) -> dict:
    command = [shutil.which("mpirun") or "mpirun", "--allow-run-as-root", "--oversubscribe", "-x", "PYTHONPATH",
               "-x", "OMP_NUM_THREADS", "-np", str(ranks), sys.executable, "-m", "srnvtk", "compress", str(nrrd),
               str(out), "--mpi", "on", "--brick-size", str(args.brick_size), "--halo", str(args.halo), "--ratio",
               str(args.ratio), "--steps", str(args.steps), "--threads", "1", "--device", "cpu"]
    # timed inside the slots, so that waiting for them does not count
    command = [sys.executable, "-c", TIMED, *command]
    if SLOT.exists() and args.slots:
        command = [str(SLOT)] * ranks + command
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    before = load()
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{ranks} rank(s) failed:\n{proc.stderr[-3000:]}")
    memory = re.search(r"peak memory (.*) \(", proc.stdout).group(1)
    rss = [float(v) * UNITS[u] for v, u in re.findall(r"([\d.]+) (B|KiB|MiB|GiB)", memory)]
    info = json.loads(subprocess.run([sys.executable, "-m", "srnvtk", "info", "--json", str(out)], env=env,
                                     capture_output=True, text=True, check=True).stdout)
    return {"ranks": ranks, "wall_seconds": float(re.search(r"WALL ([\d.]+)", proc.stdout).group(1)),
            "wall_seconds_with_slot_wait": wall, "psnr": info["stats"]["psnr"],
            "file_bytes": info["stats"]["file_bytes"], "ratio": info["stats"]["ratio"],
            "steps": info["stats"]["steps"], "train_seconds": info["stats"]["train_seconds"],
            "peak_rss_bytes_per_rank": rss, "load_before": before, "load_after": load(), "stdout": proc.stdout}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, default=512)
    parser.add_argument("--brick-size", type=int, default=128)
    parser.add_argument("--halo", type=int, default=4)
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--folder", default="/tmp/bricks_scaling")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bricks_scaling.json"))
    parser.add_argument("--no-slots", dest="slots", action="store_false",
                        help="run without training slots: a check of this script, its timings mean nothing")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    nrrd = folder / f"generated{args.shape}.nrrd"
    if not nrrd.exists():
        subprocess.run([sys.executable, "-m", "srnvtk", "generate", str(nrrd), "--shape", *[str(args.shape)] * 3,
                        "--dtype", "float32"], env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    rows = [run_ranks(r, nrrd, folder / f"ranks{r}.srn", args) for r in (1, 2)]
    one, two = rows
    summary = {"settings": vars(args), "rows": rows,
               "speedup_wall": one["wall_seconds"] / two["wall_seconds"],
               "speedup_train_seconds": one["train_seconds"] / two["train_seconds"],
               "psnr_difference_db": two["psnr"] - one["psnr"],
               "file_bytes_difference": two["file_bytes"] - one["file_bytes"]}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    write_results(args.out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
