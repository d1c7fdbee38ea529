"""The byte layout of .srn files from format version 5 on: a checked header and checked sections.

    offset  size
    0       8      magic b"\\x89SRN\\r\\n\\x1a\\n" (a high byte and line endings: text-mode damage shows at once)
    8       2      format version, little-endian
    10      2      flags, 0
    12      4      header length H (bytes of the compressed header)
    16      4      section count N
    20      4      CRC-32 of bytes 0..20 and of the header and the section table
    24      H      the header: JSON, deflated (raw deflate, at most MAX_HEADER_BYTES once inflated)
    24+H    13 N   the section table: per section its stored length (u32), CRC-32 (u32), codec (u8) and
                   length once decoded (u32)
    ...            the sections' bytes, one after the other, to the end of the file

Everything a reader needs before it touches the data (the header, the table, and so every section's size)
is checked in one CRC before it is parsed, so damaged files are refused in microseconds; sections are
checked by their own CRC when read, so a reader of one piece reads and checks only that piece's
sections. Nothing points outside the file, sizes are known before any allocation, and decoding a section
never produces more than its declared length: a hostile file can make the reader do no more work than
its own bytes and the caller's limits allow.

Codecs: raw, zlib (deflate) and LZMA2 (raw stream; the dictionary size is in the codec byte, at most
MAX_LZMA_DICT, which bounds the decoder's memory). `encode_section` keeps the smallest of those it tries.
Fixed cost of a file: 24 bytes plus the compressed header; per section 13 bytes.
"""

from __future__ import annotations

import json
import lzma
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DamagedFileError, FileFormatError

MAGIC = b"\x89SRN\r\n\x1a\n"
PREFIX = struct.Struct("<8sHHIII")  # magic, version, flags, header length, section count, CRC
ENTRY = struct.Struct("<IIBI")  # stored length, CRC-32, codec, decoded length
MAX_HEADER_BYTES = 1 << 24  # inflated; a header describes settings and shapes, never data
MAX_SECTIONS = 1 << 22
MAX_SECTION_BYTES = (1 << 32) - 1  # a u32 length
RAW, ZLIB, LZMA = 0, 1, 2
CODEC_NAMES = {RAW: "raw", ZLIB: "zlib", LZMA: "lzma"}
MIN_LZMA_DICT_LOG2, MAX_LZMA_DICT_LOG2 = 16, 26  # 64 KiB .. 64 MiB
MAX_LZMA_DICT = 1 << MAX_LZMA_DICT_LOG2


def _lzma_filters(dict_log2: int, preset: int | None = None) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {"id": lzma.FILTER_LZMA2, "dict_size": 1 << dict_log2}
    if preset is not None:
        spec["preset"] = preset
    return [spec]


@dataclass(frozen=True)
class Encoded:
    """A section ready to store: its bytes, codec byte and decoded length."""

    data: bytes
    codec: int
    raw_length: int


def encode_section(raw: bytes, codecs: Sequence[str] = ("raw", "zlib", "lzma")) -> Encoded:
    """The smallest encoding of raw among the codecs tried (raw always qualifies as a fallback)."""
    if len(raw) > MAX_SECTION_BYTES:
        raise FileFormatError(f"a section of {len(raw)} bytes is beyond the format's {MAX_SECTION_BYTES}")
    best = Encoded(bytes(raw), RAW, len(raw))
    if "zlib" in codecs and raw:
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = deflater.compress(raw) + deflater.flush()
        if len(data) < len(best.data):
            best = Encoded(data, ZLIB, len(raw))
    if "lzma" in codecs and raw:
        dict_log2 = min(max(MIN_LZMA_DICT_LOG2, (len(raw) - 1).bit_length()), MAX_LZMA_DICT_LOG2)
        data = lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_lzma_filters(dict_log2, 9 | lzma.PRESET_EXTREME))
        if len(data) < len(best.data):
            best = Encoded(data, LZMA | (dict_log2 << 3), len(raw))
    return best


def decode_section(data: bytes, codec: int, raw_length: int) -> bytes:
    """The decoded bytes, exactly raw_length of them; FileFormatError otherwise (never more is produced)."""
    kind, dict_log2 = codec & 0x7, codec >> 3
    if kind == RAW and dict_log2 == 0:
        out = data
    elif raw_length == 0:  # zlib reads a limit of 0 as "no limit"
        raise DamagedFileError("a compressed section of no bytes")
    elif kind == ZLIB and dict_log2 == 0:
        out = _inflate_exactly(zlib.decompressobj(-15), data, raw_length)
    elif kind == LZMA and MIN_LZMA_DICT_LOG2 <= dict_log2 <= MAX_LZMA_DICT_LOG2:
        decoder = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_lzma_filters(dict_log2))
        out = _inflate_exactly(decoder, data, raw_length)
    else:
        raise DamagedFileError(f"unknown section codec {codec}")
    if len(out) != raw_length:
        raise DamagedFileError(f"a section holds {len(out)} bytes, its table says {raw_length}")
    return out


def _inflate_exactly(decoder: Any, data: bytes, limit: int) -> bytes:
    """Decode at most limit bytes; the stream must end there, with no input left over."""
    try:
        out = decoder.decompress(data, limit)
        if not decoder.eof:  # the output may have filled up just before the end-of-stream mark
            rest = getattr(decoder, "unconsumed_tail", b"")
            if decoder.decompress(rest, 1) or not decoder.eof:
                raise DamagedFileError("a section decodes to more or fewer bytes than declared")
    except (zlib.error, lzma.LZMAError) as exc:
        raise DamagedFileError(f"a section does not decode: {exc}") from None
    if decoder.unused_data:
        raise DamagedFileError("a section has bytes after its end")
    return out


def _deflate(raw: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    return deflater.compress(raw) + deflater.flush()


def pack(version: int, header: dict[str, Any], sections: Sequence[Encoded]) -> bytes:
    """The whole file as bytes."""
    if len(sections) > MAX_SECTIONS:
        raise FileFormatError(f"{len(sections)} sections, the format allows {MAX_SECTIONS}")
    text = json.dumps(header, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")
    if len(text) > MAX_HEADER_BYTES:
        raise FileFormatError(f"a header of {len(text)} bytes is beyond the format's {MAX_HEADER_BYTES}")
    compressed = _deflate(text)
    table = b"".join(ENTRY.pack(len(s.data), zlib.crc32(s.data), s.codec, s.raw_length) for s in sections)
    start = struct.pack("<8sHHII", MAGIC, version, 0, len(compressed), len(sections))
    crc = zlib.crc32(table, zlib.crc32(compressed, zlib.crc32(start)))
    return b"".join([start, struct.pack("<I", crc), compressed, table, *(s.data for s in sections)])


def write_atomically(path: str | os.PathLike, data: bytes) -> int:
    """Write to a temporary name beside path, then rename: a crash never leaves half a file under the name."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileFormatError(f"cannot write '{path}': folder '{folder}' does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_current_umask())  # mkstemp makes it owner-only
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return len(data)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_container(prefix: bytes) -> bool:
    return prefix.startswith(MAGIC)


@dataclass(frozen=True)
class Section:
    """Where one section lies in a file and how to check and decode it."""

    offset: int
    length: int
    crc: int
    codec: int
    raw_length: int


class Container:
    """A container file opened for reading: its version, header and section table, all checked. Section
    data is read (and checked) only when asked for."""

    def __init__(self, path: str | os.PathLike, version: int, header: dict[str, Any], sections: list[Section],
                 size: int) -> None:
        self.path, self.version, self.header, self.sections, self.size = Path(path), version, header, sections, size

    @classmethod
    def open(cls, path: str | os.PathLike) -> Container:
        """Read and check the prefix, header and section table; FileFormatError for anything amiss."""
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(PREFIX.size)
            if len(prefix) < PREFIX.size or not is_container(prefix):
                raise DamagedFileError("not a srnvtk container (no magic number)")
            _magic, version, flags, header_length, count, crc = PREFIX.unpack(prefix)
            table_length = ENTRY.size * count
            if count > MAX_SECTIONS or PREFIX.size + header_length + table_length > size:
                raise DamagedFileError("truncated: its header and section table run past its end")
            compressed = handle.read(header_length)
            table = handle.read(table_length)
        expected = zlib.crc32(table, zlib.crc32(compressed, zlib.crc32(prefix[:20])))
        if crc != expected:
            raise DamagedFileError("checksum mismatch in the header")
        if flags != 0:
            raise FileFormatError(f"unsupported container flags {flags}")
        header = _parse_header(compressed)
        sections, offset = [], PREFIX.size + header_length + table_length
        for index in range(count):
            length, section_crc, codec, raw_length = ENTRY.unpack_from(table, index * ENTRY.size)
            sections.append(Section(offset, length, section_crc, codec, raw_length))
            offset += length
        if offset != size:
            state = "truncated" if offset > size else "longer than its sections"
            raise DamagedFileError(f"{state}: {size} bytes, its table says {offset}")
        return cls(path, version, header, sections, size)

    def read(self, index: int) -> bytes:
        """One section's decoded bytes, checked against its CRC and declared length."""
        if not 0 <= index < len(self.sections):
            raise FileFormatError(f"the header names section {index}; the file has {len(self.sections)}")
        section = self.sections[index]
        with open(self.path, "rb") as handle:
            handle.seek(section.offset)
            data = handle.read(section.length)
        if len(data) != section.length or zlib.crc32(data) != section.crc:
            raise DamagedFileError(f"checksum mismatch in section {index}")
        return decode_section(data, section.codec, section.raw_length)


def _parse_header(compressed: bytes) -> dict[str, Any]:
    inflater = zlib.decompressobj(-15)
    try:
        text = inflater.decompress(compressed, MAX_HEADER_BYTES)
    except zlib.error:
        raise DamagedFileError("the header does not inflate") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise DamagedFileError(f"the header is beyond the format's {MAX_HEADER_BYTES} bytes, or damaged")
    try:
        header = json.loads(text.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FileFormatError(f"the header is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise FileFormatError("the header is not a JSON object")
    return header


def _no_constant(name: str) -> float:
    raise FileFormatError(f"the header holds the non-number {name}")
