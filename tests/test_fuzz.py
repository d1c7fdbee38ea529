"""The mutation fuzzer (srnvtk.fuzz) in CI: a few hundred damaged copies of valid files of every kind (the
committed samples of each format version, plus format-5 files of the kinds its sample is not), each read and
decoded in a worker with a timeout: no hang, no crash by signal, no traceback; damage that goes unnoticed only
where the legacy HDF5 format has no checksum (never in format 5, whose every byte a CRC covers). Also: the harness
tells those outcomes apart.

tests/data/formats holds the committed samples: a file of a newer kind placed there is fuzzed the same way.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from srnvtk import fuzz

HERE = Path(__file__).resolve().parent
FORMATS = HERE / "data" / "formats"
CASES = 320
SEED = 1_000_000


def test_mutations_are_seeded() -> None:
    data = (FORMATS / "v1.srn").read_bytes()
    first, what = fuzz.mutate(data, 7)
    assert fuzz.mutate(data, 7) == (first, what) and 1 <= len(what) <= 3
    outputs = {fuzz.mutate(data, seed)[0] for seed in range(200)}
    assert len(outputs) > 180 and data not in outputs
    kinds = {m.split()[0] for seed in range(400) for m in fuzz.mutate(data, seed)[1]}
    assert kinds == set(fuzz.MUTATIONS)


@pytest.fixture(scope="module")
def new_kinds(tmp_path_factory) -> list[fuzz.Sample]:
    """Format-5 files of the kinds v5.srn (a pruned wavelet grid) is not: a plain grid, k-means Neurcomp; format-8
    files beside v8.srn: a network and its residual, a residual alone."""
    from srnvtk.config import FVSRNConfig, NeurcompConfig, TrainConfig
    from srnvtk.datasets import default_geometry, default_volume_values
    from srnvtk.encoder import compress
    from srnvtk.volume import Volume

    folder = tmp_path_factory.mktemp("v5")
    volume = Volume(default_volume_values((12, 10, 9)), default_geometry((12, 10, 9)), "density")
    train = TrainConfig(steps=20, batch_size=512, device="cpu")
    kinds = {"v5-plain": FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=8, mlp_layers=2),
             "v5-kmeans": NeurcompConfig(width=10, blocks=2, weight_clusters=16)}
    for kind, config in kinds.items():
        compress(volume, model_config=config, train_config=train, path=folder / f"{kind}.srn")
    # format 8: an error bound, with a network (quantised residual) and without one (SZ3 where pysz is there)
    from srnvtk.bounded import finish, network_candidates, residual_only, train_for_bound
    from srnvtk.config import EncodeConfig, EncoderSettings
    from srnvtk.encoder import source_info

    source = source_info(volume)
    settings = EncoderSettings(encode=EncodeConfig(), fvsrn=kinds["v5-plain"], train=train)
    network = train_for_bound(volume, settings, 3_000)
    bounded = {"v8-network": network_candidates(volume, network, 3.0, coder_names=("quant",))[0],
               "v8-residual": residual_only(volume, source, 3.0, None)[-1]}
    for kind, candidate in bounded.items():
        finish(volume, source, candidate, [candidate], folder / f"{kind}.srn")
    return [fuzz.Sample(kind, folder / f"{kind}.srn") for kind in (*kinds, *bounded)]


def test_fuzz_every_kind(tmp_path, new_kinds) -> None:
    samples = fuzz.samples_in(FORMATS) + new_kinds
    # legacy plain, pruned, wavelet, Neurcomp k-means; format 5 pruned wavelet, plain, Neurcomp k-means; format 6
    # (many networks: a series of bricks); format 7 (5-bit codes); format 8 (an error bound, with and without a
    # network); format 9 (bricks, compact index)
    assert {s.kind for s in samples} >= {"v1", "v2", "v3", "v4", "v5", "v5-plain", "v5-kmeans", "v6", "v7", "v8",
                                         "v8-network", "v8-residual", "v9"}
    start = time.perf_counter()
    result = fuzz.run(samples, CASES, seed=SEED, timeout=20.0, read_seconds=2.0, folder=tmp_path)
    counts = result["counts"]
    bad = [r for r in result["notable"] if r["outcome"] in ("hang", "signal", "traceback")]
    assert counts["hang"] == counts["signal"] == counts["traceback"] == 0, bad[:5]
    assert sum(counts.values()) == CASES and counts["clean_error"] > CASES // 2 and counts["accepted_same"] > 0
    for kind, kind_counts in result["by_kind"].items():
        assert sum(kind_counts.values()) in (CASES // len(samples), CASES // len(samples) + 1), kind
    for record in result["notable"]:
        if record["outcome"] == "accepted_changed":  # only a legacy file, which has no checksum over these bytes
            original = Path(next(s.path for s in samples if Path(s.path).name == record["sample"]))
            assert original.read_bytes().startswith(b"\x89HDF"), record
            assert fuzz.damage_reaches_unchecked_bytes(original, tmp_path / f"case-{record['seed']}.srn"), record
    assert time.perf_counter() - start < 600  # about 30 s on an idle 2-core machine; a loose bound for busy ones


def test_header_mutations_keep_the_checksum_and_meet_the_readers_checks(tmp_path, new_kinds) -> None:
    """Headers changed behind a valid CRC (srnvtk.fuzz_header) reach the parser: every case is refused with a
    clean error or read as a file, never a hang, a crash or a traceback."""
    from srnvtk.container import Container
    from srnvtk.fuzz_header import mutate_header

    samples = [s for s in fuzz.samples_in(FORMATS) + new_kinds if s.path.read_bytes()[:4] == b"\x89SRN"]
    assert {s.kind for s in samples} >= {"v5", "v6", "v7", "v8", "v8-residual"}
    data, done = mutate_header(samples[0].path.read_bytes(), 3)
    (tmp_path / "one.srn").write_bytes(data)
    assert done and Container.open(tmp_path / "one.srn")  # the CRC holds: only the header's meaning changed
    result = fuzz.run(samples, 120, seed=SEED, timeout=20.0, folder=tmp_path, mutator="header")
    counts = result["counts"]
    assert counts["hang"] == counts["signal"] == counts["traceback"] == 0, result["notable"][:5]
    assert counts["clean_error"] > 60  # (a changed header may also be a valid file: another origin, say)


# readers for the harness test below (run in the worker, which imports this module)
def hang(_path):
    time.sleep(60)


def crash(_path):
    os.kill(os.getpid(), signal.SIGSEGV)


def fail(_path):
    raise IndexError("a bug")


def two_lines(_path):
    from srnvtk.errors import FileFormatError

    raise FileFormatError("first\nsecond")


@pytest.mark.parametrize(("reader", "outcome"), [("hang", "hang"), ("crash", "signal"), ("fail", "traceback"),
                                                 ("two_lines", "traceback"), ("read_and_decode", "accepted_same")])
def test_the_harness_tells_outcomes_apart(reader, outcome) -> None:
    spec = f"srnvtk.fuzz:{reader}" if reader == "read_and_decode" else f"test_fuzz:{reader}"
    worker = fuzz.Worker(spec, None, dict(os.environ, PYTHONPATH=str(HERE)))
    try:  # the first answer includes the worker's start (imports): generous, except where it must hang
        answer = worker.ask({"reference_of": str(FORMATS / "v1.srn")}, timeout=8.0 if reader == "hang" else 60.0)
    finally:
        worker.stop()
    assert answer["outcome"] == outcome, answer
