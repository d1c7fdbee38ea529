"""Long mutation-fuzzing run of the .srn reader over valid files of every kind (issue 12).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz.py --cases 10000 --out benchmarks/results/fuzz_legacy_hdf5.json

By default the valid files are the committed samples in tests/data/formats (v1.srn ... v4.srn: plain, pruned,
wavelet + pruned, Neurcomp k-means); add others with --sample KIND=PATH or another --samples-glob (files of
a newer format version are fuzzed the same way). Each case is one damaged copy, read and decoded in a worker
process with a timeout (srnvtk.fuzz). The counts go to --out as JSON, with every case that was neither a
clean error nor accepted unchanged (its seed replays it: srnvtk.fuzz.mutate(data, seed)); those mutated files
are kept in --keep-folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from results_io import machine, write_results  # benchmarks/ (this script's folder)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's srnvtk, whatever an installed one points at

from srnvtk import fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples-glob", default=str(REPO / "tests" / "data" / "formats" / "*.srn"))
    parser.add_argument("--sample", action="append", default=[], metavar="KIND=PATH", help="one more valid file")
    parser.add_argument("--reader", default=fuzz.DEFAULT_READER, help="module:function of a path (see srnvtk.fuzz)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--read-seconds", type=float, default=None,
                        help="the reader's own parse deadline in the worker (default: srnvtk.legacy_hdf5's)")
    parser.add_argument("--keep-folder", default=None, help="where the notable mutated files are kept")
    parser.add_argument("--mutator", choices=sorted(fuzz.MUTATORS), default="bytes",
                        help="bytes: damage anywhere; header: container headers changed, their CRC made valid again")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    pattern = Path(args.samples_glob)
    samples = fuzz.samples_in(pattern.parent, pattern.name)
    for item in args.sample:
        kind, _, path = item.partition("=")
        samples.append(fuzz.Sample(kind, Path(path)))
    if not samples:
        parser.error("no valid files to fuzz")
    folder = args.keep_folder or tempfile.mkdtemp(prefix="srnvtk-fuzz-")
    started = time.time()

    def progress(index: int, record: dict) -> None:
        if record["outcome"] not in ("clean_error", "accepted_same"):
            print(f"case {index} ({record['kind']}, seed {record['seed']}): {record['outcome']}: "
                  f"{record['message'][:160]}", flush=True)
        if (index + 1) % 500 == 0:
            print(f"{index + 1} cases, {time.time() - started:.0f} s", flush=True)

    result = fuzz.run(samples, args.cases, seed=args.seed, reader=args.reader, timeout=args.timeout,
                      read_seconds=args.read_seconds, folder=folder, progress=progress,
                      mutator=args.mutator)
    # damage a legacy (HDF5) file could not notice: how much of what was accepted changed lies in unchecked bytes
    unchecked = 0
    for record in result["notable"]:
        original = next(s.path for s in samples if Path(s.path).name == record["sample"])
        damaged = Path(folder) / f"case-{record['seed']}{Path(original).suffix}"
        if record["outcome"] == "accepted_changed" and Path(original).read_bytes()[:8] == b"\x89HDF\r\n\x1a\n":
            record["reaches_unchecked_bytes"] = fuzz.damage_reaches_unchecked_bytes(original, damaged)
            unchecked += record["reaches_unchecked_bytes"]
    result["accepted_changed_reaching_unchecked_hdf5_bytes"] = unchecked
    result["samples"] = {s.kind: str(Path(s.path).resolve().relative_to(REPO)) if Path(s.path).resolve().is_relative_to(
        REPO) else str(s.path) for s in samples}
    result["machine"] = machine()
    out = Path(args.out)
    write_results(out, result)
    print(json.dumps(result["counts"]), f"in {result['seconds']} s; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
