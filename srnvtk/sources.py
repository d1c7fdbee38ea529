"""Where a compressor reads its input: one point array on a uniform grid, read a sub-extent at a time.

A `BrickSource` hands out the values of any sub-extent of its grid; the brick compressor (srnvtk.distributed)
reads one brick (with its halo) at a time, so with a source that streams, a process holds no more than the brick
it trains plus a bounded working set, however large the volume.

Which inputs stream:
- NRRD with raw encoding (`.nrrd` with the data attached, or a `.nhdr` header naming a raw data file): a
  sub-extent is read from the file by offsets (whole x-rows, one read per row run), nothing else is touched.
  srnvtk writes such files (`srnvtk generate --dtype float32 big.nrrd`, `write_nrrd`); ParaView reads them too,
  with update extents (its NRRD reader is a vtkImageReader).
- In memory (`VolumeSource`): a .vti file (VTK's XML reader reads a single-piece .vti whole) or the piece
  ParaView hands the SRN Encoder; it does not stream, it only cuts.
NRRD with gzip or other encodings, and .vti, are read whole.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from .errors import InputError, SettingsError
from .volume import SUPPORTED_DTYPES, Geometry, Volume

Extent = tuple[int, int, int, int, int, int]
MAX_HEADER_BYTES = 1 << 16
READ_CHUNK_BYTES = 1 << 24  # a streamed read asks the OS for at most this much at once


class BrickSource(Protocol):
    """One point array on a uniform grid, read a sub-extent at a time."""

    name: str
    dtype: str
    geometry: Geometry

    def read(self, extent: Extent) -> np.ndarray:
        """values[z, y, x] of the sub-extent (inclusive index ranges within the geometry), a fresh array."""


def check_sub_extent(geometry: Geometry, extent: Extent) -> Extent:
    """extent as ints, SettingsError unless it is a non-empty box inside the geometry's extent."""
    extent = tuple(int(e) for e in extent)
    whole = geometry.extent
    if len(extent) != 6 or any(not (whole[2 * a] <= extent[2 * a] <= extent[2 * a + 1] <= whole[2 * a + 1])
                               for a in range(3)):
        raise SettingsError(f"extent {extent} is not inside the grid's {tuple(whole)}")
    return extent


@dataclass
class VolumeSource:
    """A volume in memory; `available` is the part of the grid it holds (all of it unless it is one MPI rank's
    piece in ParaView), reads beyond it fail."""

    volume: Volume
    grid: Geometry | None = None  # the whole grid, when the volume holds only a piece of it

    @property
    def name(self) -> str:
        return self.volume.name

    @property
    def dtype(self) -> str:
        return self.volume.dtype

    @property
    def geometry(self) -> Geometry:
        return self.grid or self.volume.geometry

    def read(self, extent: Extent) -> np.ndarray:
        held = self.volume.geometry
        extent = check_sub_extent(self.geometry, extent)
        if any(not (held.extent[2 * a] <= extent[2 * a] and extent[2 * a + 1] <= held.extent[2 * a + 1])
               for a in range(3)):
            raise InputError(f"extent {extent} is not in the piece this process holds ({tuple(held.extent)})")
        sl = tuple(slice(extent[2 * a] - held.extent[2 * a], extent[2 * a + 1] - held.extent[2 * a] + 1)
                   for a in (2, 1, 0))
        return np.array(self.volume.values[sl])


# ---------------------------------------------------------------------------------------------------------------
# NRRD (raw encoding)

NRRD_TYPES = {  # NRRD's type names -> numpy's
    "uchar": "uint8", "unsigned char": "uint8", "uint8": "uint8", "uint8_t": "uint8",
    "signed char": "int8", "int8": "int8", "int8_t": "int8",
    "short": "int16", "short int": "int16", "signed short": "int16", "int16": "int16", "int16_t": "int16",
    "ushort": "uint16", "unsigned short": "uint16", "uint16": "uint16", "uint16_t": "uint16",
    "int": "int32", "signed int": "int32", "int32": "int32", "int32_t": "int32",
    "uint": "uint32", "unsigned int": "uint32", "uint32": "uint32", "uint32_t": "uint32",
    "float": "float32", "double": "float64",
}
WRITE_TYPES = {"uint8": "uint8", "int8": "int8", "int16": "int16", "uint16": "uint16", "int32": "int32",
               "uint32": "uint32", "float32": "float", "float64": "double"}


@dataclass
class NrrdSource:
    """A 3D NRRD file with raw encoding, read a sub-extent at a time straight from the file (see the module)."""

    path: Path
    data_path: Path
    offset: int  # of the first value in data_path
    dtype: str
    geometry: Geometry
    name: str = "scalars"
    byte_order: str = "<"

    def read(self, extent: Extent) -> np.ndarray:
        extent = check_sub_extent(self.geometry, extent)
        g = self.geometry.extent
        nx, ny, _nz = self.geometry.dimensions
        x0, x1, y0, y1, z0, z1 = (extent[i] - g[i - i % 2] for i in range(6))
        stored = np.dtype(self.dtype).newbyteorder(self.byte_order)
        out = np.empty((z1 - z0 + 1, y1 - y0 + 1, x1 - x0 + 1), dtype=np.dtype(self.dtype))
        row = nx * stored.itemsize
        rows_per_read = max(1, READ_CHUNK_BYTES // row)
        with open(self.data_path, "rb") as handle:
            for z in range(z0, z1 + 1):
                # rows y0..y1 of a plane lie back to back: read them in runs of at most READ_CHUNK_BYTES, keep x0..x1
                for ya in range(y0, y1 + 1, rows_per_read):
                    yb = min(y1 + 1, ya + rows_per_read)
                    start = self.offset + (z * ny + ya) * row
                    data = _read_exactly(handle, start, (yb - ya) * row, self.data_path)
                    rows = np.frombuffer(data, dtype=stored).reshape(yb - ya, nx)
                    out[z - z0, ya - y0:yb - y0] = rows[:, x0:x1 + 1]
        return out


def _read_exactly(handle: BinaryIO, start: int, size: int, path: Path) -> bytes:
    handle.seek(start)
    data = handle.read(size)
    if len(data) != size:
        raise InputError(f"'{path}' ends before its header's sizes say it does")
    return data


def open_nrrd(path: str | os.PathLike, name: str | None = None) -> NrrdSource:
    """A 3D single-component NRRD file with raw encoding (attached or detached data) as a streamed source.
    InputError for anything else, saying why."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
    if not head.startswith(b"NRRD000"):
        raise InputError(f"'{path}' is not a NRRD file (no NRRD000x magic)")
    end = head.find(b"\n\n")
    if end < 0:
        raise InputError(f"'{path}': no end of the NRRD header within {MAX_HEADER_BYTES} bytes")
    lines = head[:end].decode("latin-1").splitlines()[1:]
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith("#") or ":=" in line.split(":", 1)[0]:
            continue
        if ": " not in line:
            raise InputError(f"'{path}': NRRD header line {line!r} is not 'field: value'")
        key, value = line.split(": ", 1)
        fields[key.strip().lower()] = value.strip()
    kind = NRRD_TYPES.get(fields.get("type", "").lower())
    if kind is None or kind not in SUPPORTED_DTYPES:
        raise InputError(f"'{path}': NRRD type {fields.get('type')!r} is not one srnvtk compresses")
    if fields.get("dimension") != "3":
        raise InputError(f"'{path}': srnvtk reads 3D NRRD volumes of one component, this one has dimension "
                         f"{fields.get('dimension')} (extract a component first)")
    if fields.get("encoding", "").lower() != "raw":
        raise InputError(f"'{path}': NRRD encoding {fields.get('encoding')!r} cannot be read a piece at a time; "
                         "srnvtk streams raw encoding only (unu save -e raw converts)")
    try:
        sizes = [int(v) for v in fields["sizes"].split()]
    except (KeyError, ValueError):
        raise InputError(f"'{path}': NRRD sizes are missing or not integers") from None
    if len(sizes) != 3 or min(sizes) < 1:
        raise InputError(f"'{path}': NRRD sizes {sizes} are not three positive sizes")
    endian = fields.get("endian", "little").lower()
    order = "<" if endian == "little" or np.dtype(kind).itemsize == 1 else ">"
    origin, spacing = _nrrd_space(fields, path)
    if "data file" in fields or "datafile" in fields:
        data_path = path.parent / (fields.get("data file") or fields["datafile"])
        offset = int(fields.get("byte skip", "0"))
    else:
        data_path, offset = path, end + 2
    needed = offset + math.prod(sizes) * np.dtype(kind).itemsize
    if not data_path.is_file() or data_path.stat().st_size < needed:
        raise InputError(f"'{data_path}' is missing or shorter than the {needed:,} bytes the NRRD header describes")
    geometry = Geometry((0, sizes[0] - 1, 0, sizes[1] - 1, 0, sizes[2] - 1), origin, spacing)
    return NrrdSource(path, data_path, offset, kind, geometry, name or _array_name(path.stem), order)


def _array_name(stem: str) -> str:
    """The array name of a NRRD file (which names none): its file name without the extension, if a reader would
    accept that name, else 'scalars'."""
    from .errors import FileFormatError
    from .filechecks import check_array_name

    try:
        return check_array_name(stem)
    except FileFormatError:
        return "scalars"


def _nrrd_space(fields: dict[str, str], path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Origin and spacing from 'space origin' and 'space directions' (axis-aligned only) or 'spacings'."""
    origin = (0.0, 0.0, 0.0)
    spacing = (1.0, 1.0, 1.0)
    numbers = re.compile(r"[-+0-9.eE]+")
    try:
        if "space origin" in fields:
            origin = tuple(float(v) for v in numbers.findall(fields["space origin"]))
        if "space directions" in fields:
            vectors = re.findall(r"\(([^)]*)\)", fields["space directions"])
            rows = [[float(v) for v in numbers.findall(vec)] for vec in vectors]
            if len(rows) != 3 or any(len(r) != 3 for r in rows) or any(
                    rows[a][b] != 0.0 for a in range(3) for b in range(3) if a != b):
                raise InputError(f"'{path}': NRRD space directions must be axis-aligned for image data")
            spacing = tuple(rows[a][a] for a in range(3))
        elif "spacings" in fields:
            spacing = tuple(float(v) for v in fields["spacings"].split())
    except ValueError:
        raise InputError(f"'{path}': NRRD origin or spacing is not numbers") from None
    if len(origin) != 3 or len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"'{path}': NRRD origin and spacing must be three finite numbers, spacing positive")
    return origin, spacing


def nrrd_header(dtype: str, geometry: Geometry, data_file: str | None = None) -> bytes:
    """A NRRD header for raw little-endian values on the geometry (data attached unless data_file is named)."""
    nx, ny, nz = geometry.dimensions
    sx, sy, sz = geometry.spacing
    ox, oy, oz = (geometry.origin[a] + geometry.extent[2 * a] * geometry.spacing[a] for a in range(3))
    lines = ["NRRD0004", f"type: {WRITE_TYPES[dtype]}", "dimension: 3", f"sizes: {nx} {ny} {nz}",
             "encoding: raw", "endian: little", "space: 3D-right-handed",
             f"space directions: ({sx!r},0,0) (0,{sy!r},0) (0,0,{sz!r})", f"space origin: ({ox!r},{oy!r},{oz!r})"]
    if data_file is not None:
        lines.append(f"data file: {data_file}")
    return ("\n".join(lines) + "\n\n").encode("ascii")


def write_nrrd(path: str | os.PathLike, dtype: str, geometry: Geometry, slabs: Iterator[np.ndarray]) -> int:
    """Write a NRRD file (raw, attached) atomically from [z, y, x] slabs that together make the whole grid, in
    order; nothing but one slab is held. Returns the bytes written."""
    from .container import atomic_writer

    if dtype not in WRITE_TYPES:
        raise SettingsError(f"NRRD output of {dtype} is not supported")
    nx, ny, nz = geometry.dimensions
    written_planes = 0
    total = 0
    with atomic_writer(path) as handle:
        head = nrrd_header(dtype, geometry)
        handle.write(head)
        total += len(head)
        for slab in slabs:
            slab = np.ascontiguousarray(slab, dtype=np.dtype(dtype).newbyteorder("<"))
            if slab.shape[1:] != (ny, nx):
                raise SettingsError(f"a slab of shape {slab.shape} does not fit the grid's planes ({ny}, {nx})")
            handle.write(slab.tobytes())
            total += slab.nbytes
            written_planes += slab.shape[0]
        if written_planes != nz:
            raise SettingsError(f"{written_planes} planes written, the grid has {nz}")
    return total


def open_source(path: str | os.PathLike, array: str | None = None) -> BrickSource:
    """The input of `srnvtk compress`: a NRRD file streams (see the module); anything else is read by VTK, whole."""
    path = Path(path)
    if path.suffix.lower() in (".nrrd", ".nhdr"):
        return open_nrrd(path, array)
    from .vtkio import read_vti, volume_from_image

    return VolumeSource(volume_from_image(read_vti(str(path)), array))
