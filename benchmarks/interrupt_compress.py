"""Interrupt `srnvtk compress` at random moments, as Ctrl-C would, and count what goes wrong (issue 12).

    .venv/bin/python benchmarks/interrupt_compress.py --trials 100 --out benchmarks/results/interrupt_compress.json

Each trial starts `python -m srnvtk compress` on a small generated volume in its own process group, waits a
seeded random time, then sends SIGINT to the whole group (the terminal does the same: the compiler building a C
kernel gets it too). Every other trial builds its C kernels into a fresh cache, so interrupts also land in kernel
builds. The time is drawn between 0 and the length of a current uninterrupted run of the same kind (kernel build or
not): the median of the last five that ended before their signal, starting from two reference runs. Counted per trial:

  interrupted  exit status 130 ("srnvtk: interrupted")
  finished     exit status 0: the run ended before the signal
  crash        ended by a signal (SIGSEGV, SIGABRT, or SIGINT's default action: Python's own exit after an
               interrupt it considers unhandled): never allowed
  other        any other status (an error message or a traceback): never allowed
  hang         still running 60 s after the signal: never allowed
  partial      something left behind besides a complete .srn: a temporary file beside the output or in the kernel
               cache, or an output that does not read: never allowed

Python's faulthandler is on in the runs, so a crash leaves the stacks of every thread in the record.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from results_io import machine, write_results  # benchmarks/ (this script's folder)

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ["--grid-channels", "8", "--grid-resolution", "12", "--mlp-width", "16", "--mlp-layers", "2",
            "--steps", "40", "--batch-size", "1024", "--device", "cpu", "--quiet"]


def environment(cache: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONFAULTHANDLER="1", SRNVTK_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def compress_command(volume: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "srnvtk", "compress", str(volume), str(output), *SETTINGS]


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name not in keep)


def output_reads(path: Path, env: dict[str, str]) -> bool:
    check = subprocess.run([sys.executable, "-m", "srnvtk", "info", str(path)], env=env, capture_output=True,
                           timeout=120)
    return check.returncode == 0


def trial(index: int, delay: float, volume: Path, folder: Path, shared_cache: Path, fresh_cache: bool) -> dict:
    work = folder / f"trial-{index}"
    work.mkdir()
    cache = work / "kernels" if fresh_cache else shared_cache
    env = environment(cache)
    output = work / "out.srn"
    started = time.perf_counter()
    proc = subprocess.Popen(compress_command(volume, output), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    while time.perf_counter() < started + delay and proc.poll() is None:  # polled: a run's end is its length
        time.sleep(0.02)
    signalled = proc.poll() is None
    if signalled:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        elapsed = time.perf_counter() - started
    try:
        out, err = proc.communicate(timeout=60)
        status = proc.returncode
        if signalled:
            elapsed = time.perf_counter() - started
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        status, elapsed = None, None
    if status is None:
        outcome = "hang"
    elif status < 0:
        outcome = "crash"
    elif status == 130:
        outcome = "interrupted"
    elif status == 0:
        outcome = "finished"
    else:
        outcome = "other"
    left = leftovers(work, {"out.srn"})
    if fresh_cache:  # a finished kernel library is fine; its temporary (".name-XXXX.so") is a leftover
        left = [p for p in left if not (p.startswith("kernels/") and p.endswith(".so") and "/." not in p)]
    partial = bool(left) or (output.exists() and not output_reads(output, env))
    record = {"trial": index, "delay_s": round(delay, 3), "signalled": signalled, "fresh_cache": fresh_cache,
              "status": status, "outcome": outcome, "partial": partial, "left": left[:10],
              "output_exists": output.exists(), "seconds": None if elapsed is None else round(elapsed, 2)}
    if outcome == "crash":
        record["signal"] = signal.Signals(-status).name
    if outcome in ("crash", "other", "hang"):
        record["stderr"] = err.decode(errors="replace")[-6000:]
    shutil.rmtree(work, ignore_errors=True)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 32, 32])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="srnvtk-interrupt-"))
    shared_cache = folder / "shared-kernels"
    volume = folder / "volume.vti"
    subprocess.run([sys.executable, "-m", "srnvtk", "generate", str(volume), "--shape", *map(str, args.shape)],
                   env=environment(shared_cache), check=True)
    lengths = []  # uninterrupted runs: with a kernel build (the shared cache is empty), then without
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(compress_command(volume, folder / "reference.srn"), env=environment(shared_cache), check=True)
        lengths.append(time.perf_counter() - start)
    # how long a run takes now, per kind: the machine's load changes it, so the trials that finish before their
    # signal keep the window up to date (the median of the last five)
    durations = {True: [lengths[0]], False: [lengths[1]]}
    rng = random.Random(args.seed)
    records = []
    for index in range(args.trials):
        fresh = index % 2 == 1
        delay = rng.uniform(0.0, statistics.median(durations[fresh][-5:]))
        record = trial(index, delay, volume, folder, shared_cache, fresh_cache=fresh)
        if record["outcome"] == "finished":
            durations[fresh].append(record["seconds"])
        records.append(record)
        print(f"trial {index}: {delay:.2f} s -> {record['outcome']}" + (" PARTIAL" if record["partial"] else ""),
              flush=True)
    counts = Counter(r["outcome"] for r in records)
    result = {
        "trials": args.trials, "seed": args.seed, "shape": args.shape, "settings": SETTINGS,
        "uninterrupted_seconds": {"with_kernel_build": round(lengths[0], 2), "cached_kernels": round(lengths[1], 2)},
        "counts": {k: counts[k] for k in ("interrupted", "finished", "crash", "other", "hang")},
        "partial": sum(r["partial"] for r in records),
        "machine": machine(),
        "records": records,
    }
    shutil.rmtree(folder, ignore_errors=True)
    out = Path(args.out)
    write_results(out, result)
    print(json.dumps(result["counts"]), f"partial: {result['partial']}; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
