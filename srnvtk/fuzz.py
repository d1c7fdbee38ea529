"""Seeded mutation fuzzing of .srn readers: damaged copies of valid files, each read (and decoded) in a worker
process with a timeout, and every outcome classified.

A case is (sample file, seed): `mutate` applies one to three byte-level mutations drawn from the seed (bit flips,
blocks overwritten with 0x00, 0xFF or random bytes, truncation, a range duplicated or removed, an interesting
integer written at a random offset), so any case can be replayed from its seed alone. The mutated file is read by
a reader function in a long-lived worker (`python -m srnvtk.fuzz --worker`): by default `read_and_decode`, which
reads it with `srnvtk.fileformat.read_srn` and decodes the model on an 8^3 grid. Outcomes:

  clean_error       a FileFormatError with a one-line message (the reader refused the file)
  accepted_same     read and decoded to exactly what the undamaged file gives (the damage missed what matters)
  accepted_changed  read and decoded to something else: damage that went unnoticed
  hang              no answer within the case timeout (the worker is killed and restarted)
  signal            the worker died by a signal (a crash in native code)
  traceback         any other exception, or an error message of several lines

Clean errors are also counted by cause where the message says it: the parse ran out of time ("did not
finish") or its child process crashed ("crashed").

Which files are fuzzed is up to the caller (`Sample`s: a kind and a path), so files of any format version are
fuzzed the same way, and so is the reader (`reader="module:function"`, a function of a path returning
(fingerprint, values)). tests/test_fuzz.py runs a few hundred cases; benchmarks/fuzz.py runs 10^4 and more.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .fuzz_header import HEADER_MUTATIONS, mutate_header

OUTCOMES = ("clean_error", "accepted_same", "accepted_changed", "hang", "signal", "traceback")
MUTATIONS = ("bit_flips", "zero_block", "ff_block", "random_block", "truncate", "duplicate_range", "remove_range",
             "interesting_integer")
INTERESTING = (0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 2**31 - 1, 2**31,
               2**32 - 1, 2**32, 2**48, 2**63 - 1, 2**63, 2**64 - 1)
DECODE_POINTS = (8, 8, 8)
DEFAULT_READER = "srnvtk.fuzz:read_and_decode"


@dataclass(frozen=True)
class Sample:
    """A valid file to damage: its kind (for the counts) and its path."""

    kind: str
    path: Path


# ---------------------------------------------------------------------------------------------------------------
# mutations


def _length(rng: random.Random, size: int) -> int:
    """A block length, mostly short: 1 to 8 bytes half the time, up to 4 KiB rarely."""
    top = rng.choice((8, 8, 64, 512, 4096))
    return max(1, min(size, rng.randint(1, top)))


def mutate(data: bytes, seed: int) -> tuple[bytes, list[str]]:
    """The bytes damaged by one to three mutations drawn from the seed (more when they left the bytes as they were,
    as zeroing zeros does), and their descriptions."""
    rng = random.Random(seed)
    out = bytearray(data)
    done: list[str] = []
    count = rng.choice((1, 1, 1, 2, 3))
    while len(done) < count or (out == data and len(done) < 10):  # a mutation that changed nothing: one more
        if not out:
            break
        kind = rng.choice(MUTATIONS)
        at = rng.randrange(len(out))
        if kind == "bit_flips":
            flips = rng.randint(1, 8)
            for _ in range(flips):
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
            done.append(f"{kind} x{flips}")
            continue
        length = _length(rng, len(out) - at)
        if kind in ("zero_block", "ff_block", "random_block"):
            fill = {"zero_block": bytes(length), "ff_block": b"\xff" * length}.get(kind) or rng.randbytes(length)
            out[at:at + length] = fill
        elif kind == "truncate":
            del out[at:]
        elif kind == "duplicate_range":
            to = rng.randrange(len(out) + 1)
            out[to:to] = out[at:at + length]
            done.append(f"{kind} {length} @ {at} -> {to}")
            continue
        elif kind == "remove_range":
            del out[at:at + length]
        else:
            width = rng.choice((1, 2, 4, 8))
            value = rng.choice(INTERESTING) % (1 << (8 * width))
            length = width
            out[at:at + width] = value.to_bytes(width, "little")[:len(out) - at]
        done.append(f"{kind} {length} @ {at}")
    return bytes(out), done


MUTATORS = {"bytes": (mutate, MUTATIONS), "header": (mutate_header, HEADER_MUTATIONS)}


# ---------------------------------------------------------------------------------------------------------------
# the reader (in the worker)


def read_and_decode(path: str | os.PathLike) -> tuple[str, np.ndarray]:
    """The default reader: read_srn, then decode on an 8^3 grid over the file's bounds; (fingerprint of what was
    read beside the values, the values)."""
    from .decode import decode, resampled_geometry
    from .fileformat import read_srn

    srn = read_srn(path)
    source = srn.source
    output = resampled_geometry(source.geometry, DECODE_POINTS)
    values = np.concatenate([decode(srn, output, field=f, step=s, device="cpu", threads=1, dtype="float32").reshape(-1)
                             for f in range(len(srn.fields)) for s in range(len(srn.times))])  # every network
    bound = None
    if srn.bound is not None:  # an error bound's residual applies on the source lattice only: decode that too
        code = srn.bound
        bound = (code.max_error, code.coder, code.step, code.margin, code.chunk_edge, code.design)
        full = decode(srn, device="cpu", threads=1, dtype="float32")
        values = np.concatenate([values.reshape(-1), full.reshape(-1)])
    fingerprint = repr((source, srn.model_config, srn.pruning, srn.format_version, srn.fields, srn.times,
                        [(p.field, p.step, p.brick, p.model_config, p.pruning) for p in srn.parts], bound))
    return fingerprint, values


def _load_reader(spec: str) -> Callable[[str], tuple[str, np.ndarray]]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def classify(reader: Callable, path: str, reference: tuple[str, np.ndarray] | None) -> dict[str, Any]:
    """Read one file with the reader; the outcome (without hang and signal, which only the harness sees)."""
    from .errors import FileFormatError

    try:
        fingerprint, values = reader(path)
    except FileFormatError as exc:
        message = str(exc)
        outcome = "traceback" if "\n" in message or "internal error" in message else "clean_error"
        return {"outcome": outcome, "message": message}
    except Exception as exc:  # noqa: BLE001 (any other exception is what the fuzzer looks for)
        return {"outcome": "traceback", "message": f"{type(exc).__name__}: {exc}"}
    if reference is None:
        return {"outcome": "accepted_same", "message": "", "fingerprint": fingerprint, "values": values.tolist()}
    same = fingerprint == reference[0] and values.shape == reference[1].shape and np.array_equal(
        values, reference[1], equal_nan=True)
    return {"outcome": "accepted_same" if same else "accepted_changed", "message": "" if same else fingerprint}


def worker(reader_spec: str, read_seconds: float | None) -> int:
    """Serve cases from stdin (JSON lines: {"path", "reference"}), answering JSON lines on stdout."""
    import torch

    torch.set_num_threads(1)
    if read_seconds is not None:
        from . import legacy_hdf5

        legacy_hdf5.READ_SECONDS = read_seconds
    reader = _load_reader(reader_spec)
    references: dict[str, tuple[str, np.ndarray]] = {}
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        if "reference_of" in request:  # read the undamaged sample once: what an accepted case must match
            answer = classify(reader, request["reference_of"], None)
            if answer["outcome"] == "accepted_same":
                references[request["reference_of"]] = (answer["fingerprint"], np.asarray(answer["values"],
                                                                                        dtype=np.float32))
            answer.pop("values", None)
        else:
            answer = classify(reader, request["path"], references[request["sample"]])
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


# ---------------------------------------------------------------------------------------------------------------
# the harness


class Worker:
    """A `python -m srnvtk.fuzz --worker` process, restarted after a hang or a crash."""

    def __init__(self, reader: str, read_seconds: float | None, env: dict[str, str] | None = None) -> None:
        self.reader, self.read_seconds, self.env = reader, read_seconds, env
        self.proc: subprocess.Popen | None = None
        self.references: set[str] = set()

    def start(self) -> None:
        command = [sys.executable, "-m", "srnvtk.fuzz", "--worker", "--reader", self.reader]
        if self.read_seconds is not None:
            command += ["--read-seconds", str(self.read_seconds)]
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("OMP_NUM_THREADS", "1")
        # the worker imports this very srnvtk (not another checkout an installed path may point at)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                     bufsize=1, start_new_session=True)
        self.references = set()

    def ask(self, request: dict, timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready = select.select([self.proc.stdout], [], [], timeout)[0]
        line = self.proc.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if not ready:
            self.stop()
            return {"outcome": "hang", "message": f"no answer in {timeout:g} s"}
        code = self.proc.wait()
        self.proc = None
        if code < 0:
            return {"outcome": "signal", "message": signal.Signals(-code).name}
        return {"outcome": "traceback", "message": f"the worker exited with status {code}"}

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the worker and any reader child it forked
            self.proc.wait()
            self.proc = None


def run(
    samples: Sequence[Sample],
    cases: int,
    seed: int = 0,
    reader: str = DEFAULT_READER,
    timeout: float = 30.0,
    read_seconds: float | None = None,
    folder: str | os.PathLike | None = None,
    progress: Callable[[int, dict], None] | None = None,
    keep: Callable[[dict], bool] | None = None,
    env: dict[str, str] | None = None,
    mutator: str = "bytes",
) -> dict[str, Any]:
    """Fuzz: `cases` mutated files, taken from the samples in turn; case i uses seed `seed + i`.

    timeout: seconds per case before it counts as a hang; read_seconds: the HDF5 reader's own deadline in the
    worker (None: the module's). keep(record): keep that mutated file in folder and list the case (default:
    those neither refused nor unchanged, and refusals because the parse was stopped). Returns the counts
    (overall, per kind, per mutation), the clean errors' causes and the kept cases, with their seeds.
    env: the worker's environment (default: this process's). mutator: 'bytes' (damage anywhere: mutate) or
    'header' (container headers changed with their CRC made valid again: srnvtk.fuzz_header).
    """
    mutate_case, mutation_names = MUTATORS[mutator]
    keep = keep or _notable
    folder = Path(folder or tempfile.mkdtemp(prefix="srnvtk-fuzz-"))
    folder.mkdir(parents=True, exist_ok=True)
    work = Worker(reader, read_seconds, env)
    originals = {str(s.path): Path(s.path).read_bytes() for s in samples}
    counts: Counter = Counter()
    by_kind: dict[str, Counter] = {s.kind: Counter() for s in samples}
    by_mutation: dict[str, Counter] = {m: Counter() for m in mutation_names}
    causes: Counter = Counter()
    notable: list[dict] = []
    started = time.perf_counter()
    try:
        for index in range(cases):
            sample = samples[index % len(samples)]
            key = str(sample.path)
            if key not in work.references:
                answer = work.ask({"reference_of": key}, timeout)
                if answer["outcome"] != "accepted_same":
                    raise RuntimeError(f"the undamaged sample {key} does not read: {answer['message']}")
                work.references.add(key)
            data, mutations = mutate_case(originals[key], seed + index)
            case_path = folder / f"case-{seed + index}{Path(key).suffix}"
            case_path.write_bytes(data)
            answer = work.ask({"path": str(case_path), "sample": key}, timeout)
            record = {"case": index, "seed": seed + index, "kind": sample.kind, "sample": Path(key).name,
                      "mutations": mutations, "outcome": answer["outcome"], "message": answer["message"][:300]}
            counts[record["outcome"]] += 1
            by_kind[sample.kind][record["outcome"]] += 1
            for mutation in {m.split()[0] for m in mutations}:
                by_mutation[mutation][record["outcome"]] += 1
            if record["outcome"] == "clean_error":
                causes[_cause(record["message"])] += 1
            if keep(record):
                notable.append(record)
            else:
                case_path.unlink()
            if progress is not None:
                progress(index, record)
    finally:
        work.stop()
    return {
        "cases": cases, "seed": seed, "mutator": mutator, "reader": reader, "timeout_s": timeout,
        "read_seconds": read_seconds,
        "seconds": round(time.perf_counter() - started, 1),
        "counts": {o: counts[o] for o in OUTCOMES},
        "by_kind": {k: {o: c[o] for o in OUTCOMES} for k, c in by_kind.items()},
        "by_mutation": {m: {o: c[o] for o in OUTCOMES} for m, c in by_mutation.items()},
        "clean_error_causes": dict(causes.most_common()),
        "notable": notable, "folder": str(folder),
    }


def _notable(record: dict) -> bool:
    """Neither refused nor harmless, or refused only because the parse had to be stopped (hang or crash)."""
    return record["outcome"] not in ("clean_error", "accepted_same") or _cause(record["message"]).startswith("parse")


def _cause(message: str) -> str:
    """A short cause for a clean error: contained hangs and crashes first, else the message's gist."""
    if "did not finish" in message:
        return "parse did not finish (child killed)"
    if "crashed" in message:
        return "parse crashed (child)"
    gist = message.split(": ", 1)[-1] if " is not a valid srnvtk file: " in message else message
    if "damaged or not a srnvtk file (" in gist:
        gist = gist.split("(", 1)[1]
    words = [w for w in gist.replace("(", " ").replace(")", " ").split() if not any(c.isdigit() for c in w)]
    return " ".join(words[:6])


def hdf5_unchecked_ranges(path: str | os.PathLike) -> list[tuple[int, int]]:
    """Byte ranges of a legacy (HDF5) file that no checksum covers: contiguous raw data (weights, scales, an
    empty or pruned grid's codes) and the global heap collections (the text attributes). HDF5 1.10's object
    headers carry checksums and deflated chunks their zlib check; these bytes have none."""
    import h5py

    ranges = []
    with h5py.File(path, "r") as f:
        def visit(_name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None:
                ranges.append((obj.id.get_offset(), obj.id.get_offset() + obj.id.get_storage_size()))

        f.visititems(visit)
    data = Path(path).read_bytes()
    at = data.find(b"GCOL")
    while at >= 0:
        ranges.append((at, at + int.from_bytes(data[at + 8:at + 16], "little")))
        at = data.find(b"GCOL", at + 1)
    return ranges


def damage_reaches_unchecked_bytes(original: str | os.PathLike, damaged: str | os.PathLike) -> bool:
    """Whether damage to a legacy file reaches bytes no checksum covers (in place: one of the changed bytes lies
    in them; shifted by an insertion or removal: some of them lie after the first change), which is how a
    damaged legacy file can decode to other values without any check noticing."""
    a, b = Path(original).read_bytes(), Path(damaged).read_bytes()
    ranges = hdf5_unchecked_ranges(original)
    diffs = [i for i in range(min(len(a), len(b))) if a[i] != b[i]]
    if len(a) == len(b):
        return any(lo <= i < hi for i in diffs for lo, hi in ranges)
    first = diffs[0] if diffs else min(len(a), len(b))
    return any(hi > first for _lo, hi in ranges)


def samples_in(folder: str | os.PathLike, pattern: str = "*.srn") -> list[Sample]:
    """Every file matching pattern in the folder as a Sample whose kind is its stem (v1, v2, ...)."""
    return [Sample(p.stem, p) for p in sorted(Path(folder).glob(pattern))]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srnvtk.fuzz", description="srnvtk's fuzzing worker")
    parser.add_argument("--worker", action="store_true", help="serve cases on stdin/stdout (used by run())")
    parser.add_argument("--reader", default=DEFAULT_READER)
    parser.add_argument("--read-seconds", type=float, default=None)
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not args.worker:
        parser.error("only --worker is run from here; benchmarks/fuzz.py runs campaigns")
    return worker(args.reader, args.read_seconds)


if __name__ == "__main__":
    sys.exit(main())
