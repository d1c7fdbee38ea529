"""Hostile and damaged HDF5 .srn files (issue 12): each is refused with a one-line FileFormatError within 5 s,
with the reading process growing by less than 100 MB, and nothing outside the given file is ever read.

Each case crafts its file from a small valid one with h5py (references to other files, unwritten or enormous
datasets, a gzip bomb, impossible numbers, markup in the array name, ...). Two are committed regression files
(tests/data/hostile/): copies of tests/data/formats/v1.srn damaged by the fuzzer (srnvtk.fuzz.mutate with seeds
100776, a zeroed block, and 100688, a 0xFF block) inside the global heap that holds the text attributes,
which made HDF5 loop forever; they are now refused before HDF5 parses them, and a parse that still does not
finish is stopped by the reader's deadline (tested by switching the heap check off).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from legacy_writer import write_legacy_srn

from srnvtk import legacy_hdf5
from srnvtk.cli import main as cli_main
from srnvtk.config import FVSRNConfig
from srnvtk.datasets import default_geometry
from srnvtk.errors import FileFormatError
from srnvtk.fileformat import SourceInfo, read_srn, write_srn
from srnvtk.models import build_model
from srnvtk.quantize import apply_storage_precision

HOSTILE = Path(__file__).resolve().parent / "data" / "hostile"
CONFIG = FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=8, mlp_layers=2, fourier_features=1)
SECONDS = 5.0
GROWTH = 100 << 20
SECRET = bytes(range(256)) * 2  # known content: every byte value, so any of it would show


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A valid plain fV-SRN file (untrained: nothing here depends on its values)."""
    path = tmp_path_factory.mktemp("base") / "base.srn"
    geometry = default_geometry((12, 10, 9))
    stored = apply_storage_precision(build_model(CONFIG, geometry))
    write_legacy_srn(path, CONFIG, stored, SourceInfo("density", "float32", geometry, (0.0, 1.0)), {"psnr": 30.0})
    return path


def _status(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def read_measured(path: Path) -> tuple[Exception | None, float, int]:
    """read_srn(path): the exception, the seconds and how far this process's peak memory rose above where it was."""
    with open("/proc/self/clear_refs", "w") as refs:  # reset the peak (VmHWM) to the current resident size
        refs.write("5")
    before = _status("VmRSS")
    start = time.perf_counter()
    error = None
    try:
        read_srn(path)
    except Exception as exc:  # noqa: BLE001 (the tests check which)
        error = exc
    return error, time.perf_counter() - start, _status("VmHWM") - before


def assert_refused(path: Path, fragment: str) -> str:
    error, seconds, growth = read_measured(path)
    assert isinstance(error, FileFormatError), f"{type(error).__name__}: {error}"
    message = str(error)
    assert "\n" not in message and str(path) in message and len(message) < 1000, message
    assert fragment in message, message
    assert seconds < SECONDS, (seconds, message)
    assert growth < GROWTH, (growth, message)
    return message


def edit(path: Path, change) -> None:
    with h5py.File(path, "r+") as f:
        change(f)


def replace(f: h5py.File, name: str, **kwargs) -> h5py.Dataset:
    """Replace a dataset (keeping its attributes) by one made with these create_dataset arguments."""
    attrs = dict(f[name].attrs)
    del f[name]
    dataset = f.create_dataset(name, **kwargs)
    for key, value in attrs.items():
        dataset.attrs[key] = value
    return dataset


def claim_volume(f: h5py.File, points: int) -> None:
    """The source claims points^3 points (so that large models pass the model-to-volume limit)."""
    f["source"].attrs["extent"] = np.array([0, points - 1] * 3, dtype=np.int64)


def claim_grid(f: h5py.File, grid_shape: list[int], points: int, **dataset) -> None:
    claim_volume(f, points)
    f.attrs["model_structure"] = json.dumps({"grid_shape": grid_shape, "keep_shape": None})
    replace(f, "tensors/grid", shape=(CONFIG.grid_channels, *grid_shape), dtype=np.uint8, **dataset)


def zero_stream(size: int) -> bytes:
    """A zlib stream of size zero bytes, made 1 MiB at a time (so making a bomb needs no memory)."""
    squeeze = zlib.compressobj(9)
    block = bytes(min(size, 1 << 20))
    parts = [squeeze.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + squeeze.flush()


def gzip_bomb_declared(f: h5py.File) -> None:
    """4 GiB of grid codes declared and stored as deflated zeros (4 MB): refused by size before any is read."""
    claim_grid(f, [1024, 1024, 1024], 2048, chunks=(1, 256, 1024, 1024), compression="gzip")
    stream = zero_stream(256 << 20)
    grid = f["tensors/grid"]
    for c in range(CONFIG.grid_channels):
        for z in range(0, 1024, 256):
            grid.id.write_direct_chunk((c, z, 0, 0), stream)


def gzip_bomb_chunk(f: h5py.File, size: int) -> None:
    """A grid of the right shape whose every chunk inflates to size bytes (its 120 declared ones are far fewer)."""
    shape = f["tensors/grid"].shape
    grid = replace(f, "tensors/grid", shape=shape, dtype=np.uint8, chunks=(1, *shape[1:]), compression="gzip")
    stream = zero_stream(size)
    for c in range(shape[0]):
        grid.id.write_direct_chunk((c, 0, 0, 0), stream)


def set_attr(where: str, key: str, value):
    return lambda f: f[where].attrs.__setitem__(key, value)


def retype(name: str, dtype):
    return lambda f: replace(f, name, data=f[name][()].astype(dtype))


CASES = {
    # things from outside the file
    "virtual-dataset": (None, "is a virtual dataset"),
    "external-link": (None, "is an external link"),
    "soft-link": (lambda f: (f.move("tensors/grid", "tensors/grid_hidden"),
                             f["tensors"].__setitem__("grid", h5py.SoftLink("/tensors/grid_hidden"))),
                  "/tensors/grid is a soft link"),
    "extra-dataset": (lambda f: f.create_dataset("tensors/extra", data=np.zeros(10)),
                      "/tensors/extra is an object the format does not define"),
    "extra-group": (lambda f: f.create_group("more"), "/more is an object the format does not define"),
    "extra-attribute": (set_attr("source", "note", "hi"), "attribute 'note' the format does not define"),
    "tensors-is-a-dataset": (lambda f: (f.__delitem__("tensors"), f.create_dataset("tensors", data=np.zeros(3))),
                             "/tensors is not a group"),
    # sizes the file claims
    "unwritten-2GB-extra": (lambda f: f.create_dataset("tensors/huge", shape=(2**31,), dtype=np.uint8),
                            "/tensors/huge is an object the format does not define"),
    "unwritten-grid": (lambda f: claim_grid(f, [256, 256, 256], 512),
                       "declares 67,108,864 bytes but stores 0 (unwritten data)"),
    "unwritten-chunked-grid": (lambda f: claim_grid(f, [256, 256, 256], 512, chunks=(1, 256, 256, 256),
                                                    compression="gzip"),
                               "stores 0 chunks of the 4 its shape needs"),
    "fill-value-93GiB": (lambda f: claim_grid(f, [2924] * 3, 4096), f"claims {4 * 2924**3:,} stored entries"),
    "gzip-bomb-declared-4GiB": (gzip_bomb_declared, "claims 4,294,967,296 stored entries"),
    # deflate gives at most about 1000:1, so a chunk stored in more bytes than deflate makes of its declared size
    # is refused unread, and a stream small enough to pass that is stopped where it passes the declared size
    "gzip-bomb-in-a-chunk": (lambda f: gzip_bomb_chunk(f, 256 << 20), "has a chunk of 260922 bytes for 120"),
    "deflate-overrun-in-a-chunk": (lambda f: gzip_bomb_chunk(f, 100_000),
                                   "has a chunk that inflates beyond its declared 120 bytes"),
    "grid-512-cubed": (set_attr("/", "model_structure", json.dumps({"grid_shape": [512] * 3, "keep_shape": None})),
                       "claims 536,870,912 stored entries, more than the 16,777,216 allowed"),
    "huge-text": (set_attr("/", "model_config", "x" * (2 << 20)), "longer than 1048576 bytes"),
    "many-attributes": (lambda f: [f["stats"].attrs.__setitem__(f"a{i}", 1.0) for i in range(40)],
                        "/stats has 47 attributes"),
    # numbers
    "nan-origin": (set_attr("source", "origin", np.array([np.nan, 0, 0])), "origin (nan, 0.0, 0.0) is not finite"),
    "inf-origin": (set_attr("source", "origin", np.array([0, np.inf, 0])), "is not finite"),
    "nan-spacing": (set_attr("source", "spacing", np.array([1, np.nan, 1.0])), "is not finite and positive"),
    "inf-spacing": (set_attr("source", "spacing", np.array([1, 1, np.inf])), "is not finite and positive"),
    "negative-spacing": (set_attr("source", "spacing", np.array([1, -1.0, 1])), "is not finite and positive"),
    "extent-2e62": (set_attr("source", "extent", np.array([0, 2e62, 0, 9, 0, 8])),
                    "attribute extent of /source is not an integer"),
    "fractional-extent": (set_attr("source", "extent", np.array([0, 11.5, 0, 9, 0, 8])),
                          "attribute extent of /source is not an integer"),
    "extent-beyond-vtk": (set_attr("source", "extent", np.array([0, 2**40, 0, 9, 0, 8], dtype=np.int64)),
                          "outside VTK's integer range"),
    "reversed-extent": (set_attr("source", "extent", np.array([11, 0, 0, 9, 0, 8], dtype=np.int64)),
                        "fewer than 2 points"),
    "string-version": (set_attr("/", "format_version", "3"), "attribute format_version of / is not an integer"),
    "float-version": (set_attr("/", "format_version", 3.0), "attribute format_version of / is not an integer"),
    "int32-weights": (retype("tensors/weights", np.int32), "packed weights has the wrong type or shape: stored int32"),
    "float64-weights": (retype("tensors/weights", np.float64), "packed weights has the wrong type or shape: stored "
                                                               "float64"),
    "big-endian-weights": (retype("tensors/weights", ">f2"), "packed weights has the wrong type or shape"),
    "float64-scale": (retype("tensors/grid_quant", np.float64), "grid scale/offset has the wrong type or shape"),
    "int8-grid": (retype("tensors/grid", np.int8), "latent grid has the wrong type or shape: stored int8"),
    "value-range-1e308": (lambda f: (f["source"].attrs.__setitem__("value_min", -1e308),
                                     f["source"].attrs.__setitem__("value_max", 1e308)), "is not finite"),
    "nan-value-range": (set_attr("source", "value_min", np.nan), "is not finite"),
    "int-value-range": (set_attr("source", "value_max", np.int64(255)), "attribute value_max of /source is not a "
                                                                         "number"),
    # names that end up in output formats
    "markup-array-name": (set_attr("source", "array_name", 'x"/><ImageData WholeExtent="0 1'),
                          "holds control or markup characters"),
    "control-array-name": (set_attr("source", "array_name", "red\x1b[31m\n"), "holds control or markup characters"),
    # layouts srnvtk never writes
    "shuffle-filter": (lambda f: replace(f, "tensors/grid", data=f["tensors/grid"][()], shuffle=True,
                                         compression="gzip"), "uses filters [2, 1]"),
    "user-block": (None, "does not start with an HDF5 signature"),
}


def make_case(case: str, base: Path, tmp_path: Path) -> Path:
    path = tmp_path / "data" / "case.srn"
    path.parent.mkdir()
    shutil.copyfile(base, path)
    change = CASES[case][0]
    if change is not None:
        edit(path, change)
    elif case == "virtual-dataset":
        secret = tmp_path / "secret.h5"
        with h5py.File(path, "r") as f:
            shape = f["tensors/grid"].shape
        with h5py.File(secret, "w") as s:
            s["data"] = np.frombuffer(SECRET, np.uint8)[:np.prod(shape)].reshape(shape)
        layout = h5py.VirtualLayout(shape=shape, dtype=np.uint8)
        layout[...] = h5py.VirtualSource(str(secret), "data", shape=shape)
        edit(path, lambda f: (f.__delitem__("tensors/grid"), f.create_virtual_dataset("tensors/grid", layout)))
    elif case == "external-link":
        other = tmp_path / "other.srn"
        shutil.copyfile(base, other)
        edit(path, lambda f: (f.__delitem__("tensors"), f.__setitem__("tensors", h5py.ExternalLink(str(other),
                                                                                                   "/tensors"))))
    elif case == "user-block":
        with h5py.File(base, "r") as src, h5py.File(path, "w", userblock_size=512, libver=("v110", "v110")) as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for name in src:
                src.copy(src[name], dst, name=name)
    return path


@pytest.mark.parametrize("case", CASES)
def test_hostile_file_is_refused_quickly_in_one_line(case, base, tmp_path) -> None:
    assert_refused(make_case(case, base, tmp_path), CASES[case][1])


def test_the_base_file_reads(base) -> None:
    error, seconds, growth = read_measured(base)
    assert error is None and seconds < SECONDS and growth < GROWTH


def test_the_memory_measure_sees_growth(base, monkeypatch) -> None:
    """read_measured would notice a reader that allocates what a file claims."""
    import srnvtk.fileformat

    def greedy(_path):
        block = np.ones(GROWTH // 8 + (16 << 20), dtype=np.float64)
        raise FileFormatError(f"allocated {block.nbytes} bytes")

    monkeypatch.setattr(sys.modules[__name__], "read_srn", greedy)
    assert srnvtk.fileformat.read_srn is not greedy
    _error, _seconds, growth = read_measured(base)
    assert growth > GROWTH


# ---------------------------------------------------------------------------------------------
# nothing outside the file is read


def external_storage(base: Path, folder: Path, target: str) -> Path:
    """A copy of base whose grid codes are stored in the file named target (HDF5 external storage)."""
    path = folder / "case.srn"
    shutil.copyfile(base, path)

    def change(f: h5py.File) -> None:
        shape = f["tensors/grid"].shape
        replace(f, "tensors/grid", shape=shape, dtype=np.uint8, external=[(target, 0, int(np.prod(shape)))])

    edit(path, change)
    return path


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_external_storage_is_never_read(how, base, tmp_path) -> None:
    """The grid's codes stored in a secret file of known content that would make a valid grid: refused, and
    `srnvtk decompress` writes nothing, so none of the secret's bytes can reach an output."""
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    path = external_storage(base, folder, str(secret) if how == "absolute" else "../../secret.bin")
    with h5py.File(path, "r") as f:  # h5py itself would follow it: the secret's bytes become grid codes
        if how == "absolute":
            assert f["tensors/grid"][()].reshape(-1).tobytes() == SECRET[:f["tensors/grid"].size]
    assert_refused(path, "keeps its data in other files (external storage)")
    out = tmp_path / "out.vti"
    previous = os.getcwd()
    os.chdir(folder)  # where the relative name would resolve
    try:
        assert cli_main(["decompress", str(path), str(out), "--quiet"]) == 2
    finally:
        os.chdir(previous)
    assert not out.exists()


def test_external_storage_in_a_fifo_is_not_even_opened(base, tmp_path) -> None:
    """The external file is a named pipe with no writer: opening it to read would block, so a quick refusal
    naming external storage shows the reader never opened it."""
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    path = external_storage(base, tmp_path, str(fifo))
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    message = assert_refused(path, "external storage")
    assert "did not finish" not in message


# ---------------------------------------------------------------------------------------------
# HDF5 that would never finish parsing


@pytest.mark.parametrize("name", ["zeroed_global_heap.srn", "ff_block_global_heap.srn"])
def test_damaged_global_heap_is_refused_before_hdf5_parses_it(name) -> None:
    message = assert_refused(HOSTILE / name, "global heap at byte 2048 is corrupted")
    assert "did not finish" not in message


def test_a_parse_that_does_not_finish_is_stopped(monkeypatch) -> None:
    """Without the heap check HDF5 loops forever on this file: the deadline kills the child process."""
    monkeypatch.setattr(legacy_hdf5, "_check_global_heaps", lambda raw, size: None)
    monkeypatch.setattr(legacy_hdf5, "READ_SECONDS", 1.0)
    children = _children()
    message = assert_refused(HOSTILE / "zeroed_global_heap.srn", "reading it did not finish in 1 s")
    assert message.endswith("is damaged or not a srnvtk file (reading it did not finish in 1 s)")
    assert _children() == children  # the child was killed and collected: no zombie


def _children() -> set[int]:
    """Processes (zombies included) whose parent is this one."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                found.add(int(entry.name))
    return found


def test_interrupting_a_read_kills_the_child(monkeypatch) -> None:
    """Ctrl-C while the child parses: KeyboardInterrupt in the caller, and the child is gone."""
    import signal
    import threading

    monkeypatch.setattr(legacy_hdf5, "_check_global_heaps", lambda raw, size: None)
    children = _children()
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        read_srn(HOSTILE / "zeroed_global_heap.srn")
    assert time.perf_counter() - start < 2.0
    timer.join()
    assert _children() == children


# ---------------------------------------------------------------------------------------------
# the command line: one line, exit status 2


@pytest.mark.parametrize("command", ["info", "decompress"])
@pytest.mark.parametrize("case", ["deflate-overrun-in-a-chunk", "markup-array-name", "external-link"])
def test_cli_reports_one_line(command, case, base, tmp_path, capsys) -> None:
    path = make_case(case, base, tmp_path)
    out = tmp_path / "out.vti"
    argv = [command, str(path)] + ([str(out), "--quiet"] if command == "decompress" else ["--json"])
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("srnvtk: error: ")
    assert not out.exists()


def test_info_json_is_valid_with_non_finite_stats(base, tmp_path, capsys) -> None:
    """NaN and infinite stats (which a file may hold: they are only informational): valid JSON, NaN left out,
    infinities as null; the text form shows what is there."""
    path = tmp_path / "stats.srn"
    shutil.copyfile(base, path)
    edit(path, lambda f: [f["stats"].attrs.__setitem__(k, v) for k, v in
                          {"psnr": np.inf, "ratio": np.nan, "train_seconds": -np.inf, "final_loss": np.nan}.items()])
    assert cli_main(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out  # json.loads would accept those: look at the text
    info = json.loads(out)
    assert info["stats"]["psnr"] is None and info["stats"]["train_seconds"] is None
    assert "ratio" not in info["stats"] and "final_loss" not in info["stats"]
    assert cli_main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "inf (lossless)" in text and "nan" not in text.lower() and "train time" not in text


def test_info_json_has_no_non_finite_numbers(base, tmp_path, capsys) -> None:
    path = tmp_path / "stats.srn"
    shutil.copyfile(base, path)
    edit(path, lambda f: f["stats"].attrs.__setitem__("ratio", np.inf))
    assert cli_main(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    for token in ("NaN", "Infinity"):
        assert token not in out
    assert json.loads(out)["stats"]["ratio"] is None


@pytest.mark.parametrize(("name", "spacing", "fragment"), [
    ('x"/><b', (0.1, 0.1, 0.1), "markup characters"),
    ("density", (0.1, -0.1, 0.1), "spacing"),
])
def test_what_would_not_read_back_is_never_written(tmp_path, name, spacing, fragment) -> None:
    from srnvtk.errors import InputError
    from srnvtk.volume import Geometry

    geometry = Geometry((0, 11, 0, 9, 0, 8), (0.0, 0.0, 0.0), spacing)
    stored = apply_storage_precision(build_model(CONFIG, default_geometry((12, 10, 9))))
    with pytest.raises(InputError, match=fragment):
        write_srn(tmp_path / "x.srn", CONFIG, stored, SourceInfo(name, "float32", geometry, (0.0, 1.0)), {})
    assert list(tmp_path.iterdir()) == []
