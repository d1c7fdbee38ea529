"""The byte container of format version 5+ (srnvtk.container): round trips, codecs, and every damage it
must refuse before parsing or decoding."""

from __future__ import annotations

import lzma
import os
import struct
import zlib

import numpy as np
import pytest

from srnvtk.container import (
    ENTRY,
    LZMA,
    PREFIX,
    RAW,
    ZLIB,
    Container,
    Encoded,
    decode_section,
    encode_section,
    pack,
    write_atomically,
)
from srnvtk.errors import FileFormatError

HEADER = {"format": "srnvtk", "fields": [{"name": "density"}], "numbers": [1.5, -2, 3]}


def _sections() -> list[Encoded]:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    smooth = np.repeat(np.arange(50, dtype=np.uint8), 200).tobytes()
    return [encode_section(noise), encode_section(smooth), encode_section(b""), encode_section(b"abc" * 3000)]


@pytest.fixture
def written(tmp_path):
    path = tmp_path / "c.srn"
    data = pack(7, HEADER, _sections())
    assert write_atomically(path, data) == len(data) == os.path.getsize(path)
    return path


def test_round_trip(written) -> None:
    container = Container.open(written)
    assert container.version == 7 and container.header == HEADER and len(container.sections) == 4
    rng = np.random.default_rng(0)
    assert container.read(0) == rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert container.read(1) == np.repeat(np.arange(50, dtype=np.uint8), 200).tobytes()
    assert container.read(2) == b"" and container.read(3) == b"abc" * 3000
    with pytest.raises(FileFormatError, match="names section 4; the file has 4"):
        container.read(4)


def test_the_smallest_codec_is_kept_and_noise_stays_raw() -> None:
    noise, smooth, empty, text = _sections()
    assert noise.codec == RAW and len(noise.data) == 5000
    assert smooth.codec & 7 in (ZLIB, LZMA) and len(smooth.data) < 300
    assert empty.codec == RAW and text.codec & 7 in (ZLIB, LZMA)
    only_zlib = encode_section(b"abc" * 3000, codecs=("zlib",))
    assert only_zlib.codec == ZLIB and decode_section(only_zlib.data, ZLIB, 9000) == b"abc" * 3000


def test_fixed_overhead_is_small() -> None:
    data = pack(5, {}, [])
    assert len(data) == PREFIX.size + len(zlib.compress(b"{}")) - 6  # raw deflate: no zlib header or trailer
    assert len(pack(5, {}, [encode_section(b"x")])) == len(data) + ENTRY.size + 1


def _flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_damage_in_the_header_or_table_is_refused_before_parsing(written) -> None:
    size = os.path.getsize(written)
    container = Container.open(written)
    first_data = container.sections[0].offset
    for offset in (9, 13, 17, 21, 30, first_data - 3):
        original = written.read_bytes()
        _flip(written, offset)
        with pytest.raises(FileFormatError, match="checksum mismatch|not a srnvtk|truncated"):
            Container.open(written)
        written.write_bytes(original)
    assert os.path.getsize(written) == size


def test_damage_in_a_section_is_found_when_that_section_is_read(written) -> None:
    container = Container.open(written)
    _flip(written, container.sections[1].offset + 5)
    damaged = Container.open(written)  # the header and table are intact
    assert damaged.read(0) == container.read(0)
    with pytest.raises(FileFormatError, match="checksum mismatch in section 1"):
        damaged.read(1)


@pytest.mark.parametrize("cut", [1, 10, 100, 3000])
def test_truncated_and_extended_files_are_refused(written, cut) -> None:
    data = written.read_bytes()
    written.write_bytes(data[:-cut])
    with pytest.raises(FileFormatError, match="truncated|damaged"):
        Container.open(written)
    written.write_bytes(data + b"\0" * cut)
    with pytest.raises(FileFormatError, match="longer than its sections"):
        Container.open(written)


def test_not_a_container(tmp_path) -> None:
    path = tmp_path / "x.srn"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(FileFormatError, match="no magic number"):
        Container.open(path)
    path.write_bytes(b"")
    with pytest.raises(FileFormatError, match="no magic number"):
        Container.open(path)


def _forged(path, header_bytes: bytes, table: bytes = b"", body: bytes = b"", count: int = 0) -> None:
    """A file with a valid CRC around arbitrary header bytes, as a crafted file would have."""
    start = struct.pack("<8sHHII", b"\x89SRN\r\n\x1a\n", 5, 0, len(header_bytes), count)
    crc = zlib.crc32(table, zlib.crc32(header_bytes, zlib.crc32(start)))
    path.write_bytes(start + struct.pack("<I", crc) + header_bytes + table + body)


def _deflated(text: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    return deflater.compress(text) + deflater.flush()


@pytest.mark.parametrize(("text", "message"), [
    (b"[1, 2]", "not a JSON object"),
    (b'{"a": NaN}', "non-number NaN"),
    (b'{"a": Infinity}', "non-number Infinity"),
    (b"{" * 100_000, "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_crafted_headers_are_refused(tmp_path, text, message) -> None:
    path = tmp_path / "h.srn"
    _forged(path, _deflated(text))
    with pytest.raises(FileFormatError, match=message):
        Container.open(path)


def test_a_header_that_inflates_beyond_the_limit_is_refused(tmp_path) -> None:
    path = tmp_path / "bomb.srn"
    _forged(path, _deflated(b'{"a": "' + b"x" * (1 << 25) + b'"}'))
    with pytest.raises(FileFormatError, match="beyond the format"):
        Container.open(path)


def test_sections_decode_to_exactly_their_declared_length(tmp_path) -> None:
    bomb = encode_section(b"\0" * (1 << 22))
    assert len(bomb.data) < 10_000
    # declared smaller than what the data inflates to: refused after producing at most the declared bytes
    with pytest.raises(FileFormatError, match="more or fewer|beyond|after its end"):
        decode_section(bomb.data, bomb.codec, 1000)
    with pytest.raises(FileFormatError):
        decode_section(bomb.data, bomb.codec, (1 << 22) + 1)
    with pytest.raises(FileFormatError, match="no bytes"):
        decode_section(bomb.data, bomb.codec, 0)
    with pytest.raises(FileFormatError, match="unknown section codec"):
        decode_section(b"abc", 7, 3)
    with pytest.raises(FileFormatError, match="unknown section codec"):
        decode_section(b"abc", LZMA | (40 << 3), 3)  # a dictionary beyond the limit: never allocated
    with pytest.raises(FileFormatError, match="does not decode"):
        decode_section(b"garbage", ZLIB, 10)
    with pytest.raises(FileFormatError, match="holds 3 bytes"):
        decode_section(b"abc", RAW, 4)
    lzma_data = lzma.compress(b"hello", format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
    assert decode_section(lzma_data, LZMA | (23 << 3), 5) == b"hello"


def test_a_crafted_table_cannot_point_outside_the_file(tmp_path) -> None:
    path = tmp_path / "t.srn"
    header = _deflated(b"{}")
    table = ENTRY.pack(1 << 31, 0, RAW, 1 << 31)
    _forged(path, header, table, b"abc", count=1)
    with pytest.raises(FileFormatError, match="truncated"):
        Container.open(path)
    _forged(path, header, b"", b"", count=1 << 30)
    with pytest.raises(FileFormatError, match="truncated"):
        Container.open(path)


def test_write_is_atomic(tmp_path, monkeypatch) -> None:
    path = tmp_path / "a.srn"
    path.write_bytes(b"old")

    def broken(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, b"new contents")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.srn"]
