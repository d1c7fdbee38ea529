"""srnvtk.legacy_hdf5's isolation: what happens when the parsing child crashes, runs out of its memory, sends
what the settings do not allow or cannot be started; and the contents it returns for a good file.

The child is a fork of this process, so a monkeypatched function runs in the child as patched."""

from __future__ import annotations

import errno
import math
import os
import signal
import struct
from pathlib import Path

import numpy as np
import pytest

from srnvtk import legacy_hdf5
from srnvtk.errors import DamagedFileError, FileFormatError
from srnvtk.fileformat import read_srn

FORMATS = Path(__file__).resolve().parent / "data" / "formats"


def test_contents_of_a_good_file() -> None:
    contents = legacy_hdf5.read_legacy(FORMATS / "v3.srn")
    assert contents.version == 3 and contents.root["format"] == "srnvtk"
    assert contents.source["extent"] == [0, 11, 0, 9, 0, 8] and contents.source["array_name"] == "density"
    assert set(contents.arrays) == {"grid", "grid_keep", "grid_quant", "weights"}
    assert contents.arrays["weights"].dtype == np.float16 and contents.arrays["grid_quant"].shape == (2, 4, 2)
    assert contents.tensor_bytes["grid_keep"] < contents.arrays["grid_keep"].nbytes  # stored deflated
    assert set(contents.layouts) == {"weights_layout"}


def test_the_contents_match_what_h5py_reads() -> None:
    import h5py

    for name in ("v1", "v2", "v3", "v4"):
        contents = legacy_hdf5.read_legacy(FORMATS / f"{name}.srn")
        with h5py.File(FORMATS / f"{name}.srn", "r") as f:
            for key, array in contents.arrays.items():
                assert np.array_equal(array, f["tensors"][key][()]) and array.dtype == f["tensors"][key].dtype
            assert contents.source["origin"] == list(f["source"].attrs["origin"])


def test_a_crashing_parse_is_reported(monkeypatch) -> None:
    monkeypatch.setattr(legacy_hdf5, "_parse", lambda path, announce: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(DamagedFileError, match=r"reading it crashed \(SIGSEGV\)"):
        legacy_hdf5.read_legacy(FORMATS / "v1.srn")


def test_the_child_cannot_allocate_what_a_file_claims(monkeypatch) -> None:
    def greedy(path, announce):
        return np.ones(legacy_hdf5.PARSE_MEMORY // 8 + (64 << 20), dtype=np.float64)  # more than it may have

    monkeypatch.setattr(legacy_hdf5, "_parse", greedy)
    with pytest.raises(DamagedFileError, match="needs more than 512 MiB"):
        legacy_hdf5.read_legacy(FORMATS / "v1.srn")


def test_the_parent_checks_what_the_child_announces(monkeypatch) -> None:
    real = legacy_hdf5._parse

    def lying(path, announce):
        header, arrays = real(path, lambda planned: None)
        arrays["weights"] = np.zeros(arrays["weights"].size + 1, dtype=np.float16)  # one more than the layout
        planned = [[n, a.dtype.str, list(a.shape)] for n, a in arrays.items()]
        announce(planned)
        header["arrays"] = planned
        return header, arrays

    monkeypatch.setattr(legacy_hdf5, "_parse", lying)
    with pytest.raises(DamagedFileError, match=r"the reader sent weights as <f2 \(410,\)"):
        legacy_hdf5.read_legacy(FORMATS / "v1.srn")


def test_the_parent_refuses_a_tensor_no_file_holds(monkeypatch) -> None:
    def huge(path, announce):
        announce([["grid", "|u1", [2**20, 2**20]]])
        return {}, {}

    monkeypatch.setattr(legacy_hdf5, "_parse", huge)
    with pytest.raises(DamagedFileError, match="larger than any file holds"):
        legacy_hdf5.read_legacy(FORMATS / "v1.srn")
    assert math.prod([2**20, 2**20]) > legacy_hdf5.fc.MAX_MODEL_ENTRIES


def test_without_fork_the_checks_still_apply(monkeypatch) -> None:
    def no_fork():
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(legacy_hdf5, "_fork", no_fork)
    with pytest.warns(RuntimeWarning, match="without a time or memory bound"):
        srn = read_srn(FORMATS / "v2.srn")
    assert srn.format_version == 2
    with pytest.warns(RuntimeWarning), pytest.raises(FileFormatError, match="global heap"):
        read_srn(Path(__file__).resolve().parent / "data" / "hostile" / "zeroed_global_heap.srn")


def test_no_pickle_in_the_protocol() -> None:
    source = Path(legacy_hdf5.__file__).read_text()
    assert "pickle" not in source.replace("never pickle", "") and "marshal" not in source


@pytest.mark.parametrize("libver", ["earliest", "v108", "latest"])
def test_a_file_saved_in_another_hdf5_object_format_reads(libver, tmp_path) -> None:
    """Superblock versions 0, 2 and 3 and the older object headers: a legacy file re-saved by another tool."""
    import h5py

    path = tmp_path / f"{libver}.srn"
    with h5py.File(FORMATS / "v3.srn", "r") as src, h5py.File(path, "w", libver=libver) as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in src:
            src.copy(src[name], dst, name=name)
    assert path.read_bytes()[8] == {"earliest": 0, "v108": 2, "latest": 3}[libver]
    original, copy = read_srn(FORMATS / "v3.srn"), read_srn(path)
    assert copy.format_version == 3 and copy.source == original.source
    for (name, a), (_n, b) in zip(original.model.state_dict().items(), copy.model.state_dict().items(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), name


def _heap(objects: list[tuple[int, int]], size: int = 4096) -> bytes:
    """A global heap collection: (index, object size) records, then the free space as object 0."""
    body = b""
    for index, length in objects:
        body += struct.pack("<HHIQ", index, 1, 0, length) + bytes((length + 7) & ~7)
    free = size - 16 - len(body)
    return b"GCOL\x01\x00\x00\x00" + struct.pack("<Q", size) + body + struct.pack("<HHIQ", 0, 0, 0, free) + \
        bytes(free - 16)


@pytest.mark.parametrize("at", [100, (1 << 22) - 2, (1 << 22) + 5])  # the middle one straddles a read block
def test_global_heap_walk(tmp_path, at) -> None:
    """A well-formed collection passes; one whose walk reaches an object of size 0 (a zeroed block) is refused
    wherever it lies in the file."""
    good, bad = _heap([(1, 20), (2, 5)]), bytearray(_heap([(1, 20), (2, 5)]))
    bad[16 + 16 + 24:16 + 16 + 24 + 16] = bytes(16)  # the second object's header zeroed
    for heap, refused in ((good, False), (bytes(bad), True)):
        path = tmp_path / "heap.bin"
        path.write_bytes(bytes(at) + heap + bytes(64))
        with open(path, "rb") as raw:
            if refused:
                with pytest.raises(DamagedFileError, match=f"global heap at byte {at} is corrupted"):
                    legacy_hdf5._check_global_heaps(raw, path.stat().st_size)
            else:
                legacy_hdf5._check_global_heaps(raw, path.stat().st_size)
