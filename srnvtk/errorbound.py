"""A guaranteed pointwise error bound: the residual of a prediction, coded so that every decoded voxel lies
within max_error of the original.

The prediction is what a reader decodes before casting to the output type: the network's values, or the
constant minimum of the value range when a file holds no network. The residual r = original - prediction
(float64) is coded per chunk of the source grid (CHUNK_EDGE^3 points, fewer at the far edges) by one of:

- quant: r quantised to integer codes q = round(r / step); the reader adds step * q. For a float output
  step = 2 (E - margin), so |r - step q| <= E - margin; for an integer output the reader rounds, and
  step = 2 floor(E) + 1 - 2 margin keeps p + step q within floor(E) + 0.5 - margin of the integer original,
  which rounds to within floor(E) (E < 0.5: lossless). The codes are stored as they are or as 3D Lorenzo
  differences (whichever is smaller per chunk; the reader undoes them with cumulative sums), zigzagged,
  as little-endian byte planes of 1, 2 or 4 bytes, and the container LZMA- or zlib-codes the section.
- sz3: SZ3 (pysz) on the residual chunk as float32 with an absolute bound of E - margin (floats) or
  floor(E) + 0.5 - margin (integers); the reader adds SZ3's decoded values.
- exact: the chunk's original values, byte for byte (a float array with E = 0; nothing else is lossless for
  floats).

margin: a network decoded on another machine or path (fused C kernel or torch, CPU or CUDA fp32) differs
from the encoder's decode by ~1e-6 of the value range; the margin (DECODE_MARGIN of the range, 0 without a
network, whose constant prediction is exact) absorbs that, and a float32 output's rounding of large values.
Every chunk also carries exceptions: voxels whose decoded value, computed by the same code as the reader's
(srnvtk.decode), would still miss the bound store their exact original value. The encoder checks the bound
on every voxel, in float64 against the original, before anything is written.

A chunk whose codes are all zero and that has no exceptions has no section. A reader of a sub-extent, a
piece or a strided grid reads only the chunks its points fall in and applies the residual at those points
(BoundedField); a grid whose points are not on the source lattice (resampled) gets no residual and the bound
does not apply there.

Payloads (a section's decoded bytes; the header names the coder, the sizes follow from the geometry and
are checked before anything is allocated):
    quant  u8 mode (0 codes, 1 Lorenzo differences), u8 width (1, 2, 4), u32 exceptions n,
           width * V bytes of byte planes, n u32 indices into the chunk (z, y, x order), n source values
    sz3    u8 mode (2), u32 n, u32 stream length L, L bytes of SZ3 stream, n u32 indices, n source values
    exact  u8 mode (3), V source values
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import FileFormatError, SettingsError
from .volume import Geometry

CODERS = ("quant", "sz3", "exact")
CHUNK_EDGE = 64
# The chunk edges the encoder tries per coder, keeping the smallest file: SZ3's predictor and Huffman tables
# work better on larger blocks (the 256^3 shared volume at a bound of 6.5: 137 / 151 / 158 x at edges 64 / 128
# / 256), LZMA hardly minds; smaller chunks let a piece decode less of the residual.
CODER_CHUNK_EDGES = {"quant": (128,), "sz3": (64, 128, 256), "exact": (128,)}
MAX_CHUNK_EDGE = 1024
DECODE_MARGIN = 1e-5  # of the value range, with a network (see the module docstring)
MODE_CODES, MODE_LORENZO, MODE_SZ3, MODE_EXACT = 0, 1, 2, 3
QUANT_HEAD = struct.Struct("<BBI")
SZ3_HEAD = struct.Struct("<BII")
MAX_CODE = 2**30  # codes beyond this (a bound far below the data's resolution) use exact chunks
LATTICE_TOLERANCE = 1e-6  # of a source spacing: how far an output point may sit from a lattice point


# ---------------------------------------------------------------------------------------------------------
# the bound's numbers


def absolute_bound(max_error: float | None, max_rel_error: float | None, value_range: tuple[float, float]) -> float:
    """E in the array's units, from an absolute or a relative (to max - min) bound."""
    if max_error is not None:
        bound = float(max_error)
    elif max_rel_error is not None:
        bound = float(max_rel_error) * (value_range[1] - value_range[0])
    else:
        raise SettingsError("no error bound given")
    if not math.isfinite(bound) or bound < 0:
        raise SettingsError(f"the error bound must be a finite number >= 0, got {bound}")
    return bound


def is_integer_dtype(dtype: str) -> bool:
    return np.dtype(dtype).kind in "iu"


def decode_margin(value_range: tuple[float, float], dtype: str, network: bool) -> float:
    """How far inside the bound the codes aim (module docstring): decoding differences and float32 rounding."""
    margin = DECODE_MARGIN * (value_range[1] - value_range[0]) if network else 0.0
    if np.dtype(dtype) == np.float32:  # the cast of the corrected value to float32 rounds by half an ulp
        margin += 2.0**-23 * max(abs(value_range[0]), abs(value_range[1]))
    return margin


def quant_step(bound: float, dtype: str, margin: float) -> float:
    """The codes' bin width (module docstring); 0 where no bin fits inside the bound (exact chunks then)."""
    if is_integer_dtype(dtype):
        return max(2.0 * math.floor(bound) + 1.0 - 2.0 * margin, 0.0)
    return max(2.0 * (bound - margin), 0.0)


def sz3_bound(bound: float, dtype: str, margin: float) -> float:
    if is_integer_dtype(dtype):
        return math.floor(bound) + 0.5 - margin
    return bound - margin


def sz3_available() -> bool:
    try:
        import pysz  # noqa: F401
    except ImportError:
        return False
    return True


def _pysz() -> Any:
    try:
        import pysz
    except ImportError:
        raise SettingsError("the sz3 residual coder needs pysz (pip install pysz==1.1.0)") from None
    return pysz


# ---------------------------------------------------------------------------------------------------------
# chunks


def chunk_grid(shape_zyx: tuple[int, int, int], edge: int) -> tuple[int, int, int]:
    return tuple(-(-n // edge) for n in shape_zyx)


def chunk_slices(shape_zyx: tuple[int, int, int], edge: int) -> Iterator[tuple[slice, slice, slice]]:
    """Every chunk's slices of the source grid, z-major (the order of the header's section list)."""
    nz, ny, nx = chunk_grid(shape_zyx, edge)
    for cz in range(nz):
        for cy in range(ny):
            for cx in range(nx):
                yield tuple(slice(c * edge, min((c + 1) * edge, n)) for c, n in zip((cz, cy, cx), shape_zyx,
                                                                                     strict=True))


def _zigzag(q: np.ndarray) -> np.ndarray:
    return np.where(q >= 0, 2 * q, -2 * q - 1).astype(np.uint64)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.int64)
    return (z >> 1) ^ -(z & 1)


def _lorenzo(q: np.ndarray) -> np.ndarray:
    for axis in range(3):
        q = np.diff(q, axis=axis, prepend=0)
    return q


def _unlorenzo(d: np.ndarray) -> np.ndarray:
    for axis in range(3):
        d = np.cumsum(d, axis=axis)
    return d


def _planes(values: np.ndarray) -> tuple[int, bytes]:
    """(width, byte planes) of non-negative integers: the low bytes of every value, then the next bytes."""
    top = int(values.max()) if values.size else 0
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4
    return width, values.astype(f"<u{width}").view(np.uint8).reshape(-1, width).T.tobytes()


def _from_planes(data: bytes, width: int, count: int) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8).reshape(width, count)
    return np.ascontiguousarray(planes.T).view(f"<u{width}").reshape(count)


def _cheap_size(data: bytes) -> int:
    import zlib

    return len(zlib.compress(data, 6))


@dataclass
class Chunk:
    """One decoded chunk: what the reader adds to the prediction, and the voxels set exactly."""

    add: np.ndarray | None  # float64, the chunk's shape; None: nothing to add (exact chunks)
    indices: np.ndarray  # flat indices into the chunk of exactly stored voxels
    values: np.ndarray  # their values, in the source dtype
    shape: tuple[int, int, int]  # the chunk's (z, y, x) points


def quant_payload(codes: np.ndarray, indices: np.ndarray, values: np.ndarray) -> bytes:
    """A quant chunk's payload: plain or Lorenzo codes, whichever deflates smaller."""
    best = None
    for mode in (MODE_CODES, MODE_LORENZO):
        width, planes = _planes(_zigzag(codes if mode == MODE_CODES else _lorenzo(codes)))
        size = _cheap_size(planes)
        if best is None or size < best[0]:
            best = (size, mode, width, planes)
    _, mode, width, planes = best
    return QUANT_HEAD.pack(mode, width, len(indices)) + planes + _exceptions(indices, values)


def sz3_payload(stream: bytes, indices: np.ndarray, values: np.ndarray) -> bytes:
    return SZ3_HEAD.pack(MODE_SZ3, len(indices), len(stream)) + stream + _exceptions(indices, values)


def exact_payload(values: np.ndarray, dtype: str) -> bytes:
    return bytes([MODE_EXACT]) + np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def _exceptions(indices: np.ndarray, values: np.ndarray) -> bytes:
    return indices.astype("<u4").tobytes() + values.astype(values.dtype.newbyteorder("<")).tobytes()


def max_payload_bytes(coder: str, shape: tuple[int, ...], dtype: str) -> int:
    """The most bytes a chunk of this shape may decode to (checked before a section is read)."""
    count = math.prod(shape)
    item = np.dtype(dtype).itemsize
    if coder == "exact":
        return 1 + count * item
    exceptions = count * (4 + item)
    if coder == "quant":
        return QUANT_HEAD.size + 4 * count + exceptions
    return SZ3_HEAD.size + 8 * count + 1024 + exceptions  # SZ3 never needs twice the float64 input


def parse_payload(data: bytes, coder: str, shape: tuple[int, int, int], dtype: str, step: float) -> Chunk:
    """A chunk's payload as the values to add and the exactly stored voxels; FileFormatError for any size,
    mode or index that does not fit the chunk."""
    count = math.prod(shape)
    source = np.dtype(dtype).newbyteorder("<")
    if coder == "exact":
        if len(data) != 1 + count * source.itemsize or data[0] != MODE_EXACT:
            raise FileFormatError("an exact residual chunk has the wrong size or mode")
        values = np.frombuffer(data, dtype=source, offset=1).astype(np.dtype(dtype))
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise FileFormatError("an exact residual chunk holds NaN or infinite values")
        return Chunk(None, np.arange(count), values, shape)
    if coder == "quant":
        if len(data) < QUANT_HEAD.size:
            raise FileFormatError("a residual chunk is truncated")
        mode, width, n = QUANT_HEAD.unpack_from(data)
        head, body = QUANT_HEAD.size, width * count
        if mode not in (MODE_CODES, MODE_LORENZO) or width not in (1, 2, 4):
            raise FileFormatError(f"a residual chunk has mode {mode} and width {width}")
    else:
        if len(data) < SZ3_HEAD.size:
            raise FileFormatError("a residual chunk is truncated")
        mode, n, body = SZ3_HEAD.unpack_from(data)
        head = SZ3_HEAD.size
        if mode != MODE_SZ3:
            raise FileFormatError(f"an SZ3 residual chunk has mode {mode}")
    if n > count or len(data) != head + body + n * (4 + source.itemsize):
        raise FileFormatError("a residual chunk's size does not match its codes and exceptions")
    end = head + body
    indices = np.frombuffer(data, dtype="<u4", count=n, offset=end).astype(np.int64)
    values = np.frombuffer(data, dtype=source, count=n, offset=end + 4 * n).astype(np.dtype(dtype))
    if n and int(indices.max()) >= count:
        raise FileFormatError("a residual chunk's exception lies outside the chunk")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise FileFormatError("a residual chunk's exception is NaN or infinite")
    if coder == "quant":
        codes = _unzigzag(_from_planes(data[head:end], width, count)).reshape(shape)
        if mode == MODE_LORENZO:
            codes = _unlorenzo(codes)
        add = codes.astype(np.float64) * step
    else:
        pysz = _pysz()
        stream = np.frombuffer(data, dtype=np.uint8, count=body, offset=head)
        try:
            decoded, _ = pysz.sz.decompress(stream, np.float32, shape)
        except Exception as exc:  # noqa: BLE001 (the C library's errors have no common type)
            raise FileFormatError(f"an SZ3 residual chunk does not decode ({exc})") from None
        add = np.asarray(decoded, dtype=np.float64).reshape(shape)
        if not np.isfinite(add).all():
            raise FileFormatError("an SZ3 residual chunk decodes to NaN or infinite values")
    return Chunk(add, indices, values, shape)


# ---------------------------------------------------------------------------------------------------------
# what a file stores


@dataclass
class ResidualCode:
    """A file's bound and residual: the header entry's numbers and each chunk's payload (or a way to read it)."""

    max_error: float
    coder: str
    step: float
    margin: float
    chunk_edge: int
    design: str  # "network + residual" or "residual only"
    dtype: str
    shape_zyx: tuple[int, int, int]
    payloads: list[bytes | None] = field(default_factory=list)  # in memory (the encoder's)
    reader: Callable[[int], bytes | None] | None = None  # a file's: chunk number -> payload (None: all zero)
    chunk_bytes: list[int] = field(default_factory=list)  # stored bytes per chunk (0: no section)
    max_rel_error: float | None = None  # the relative bound asked for, when it was relative
    # encoded sections by chunk (the encoder measures a file, then writes it: LZMA runs once per chunk)
    encoded: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def chunks(self) -> int:
        return math.prod(chunk_grid(self.shape_zyx, self.chunk_edge))

    def payload(self, index: int) -> bytes | None:
        if self.reader is not None:
            return self.reader(index)
        return self.payloads[index]

    def chunk_shape(self, index: int) -> tuple[int, int, int]:
        grid = chunk_grid(self.shape_zyx, self.chunk_edge)
        cz, rest = divmod(index, grid[1] * grid[2])
        cy, cx = divmod(rest, grid[2])
        return tuple(min(self.chunk_edge, n - c * self.chunk_edge) for c, n in zip((cz, cy, cx), self.shape_zyx,
                                                                                   strict=True))

    def chunk(self, index: int) -> Chunk | None:
        data = self.payload(index)
        if data is None:
            return None
        return parse_payload(data, self.coder, self.chunk_shape(index), self.dtype, self.step)

    def header(self, sections: list[int]) -> dict:
        entry = {"max_error": self.max_error, "coder": self.coder, "step": self.step, "margin": self.margin,
                 "chunk_edge": self.chunk_edge, "design": self.design, "sections": sections}
        if self.max_rel_error is not None:
            entry["max_rel_error"] = self.max_rel_error
        return entry

    @property
    def residual_bytes(self) -> int:
        return sum(self.chunk_bytes)


BOUND_KEYS = {"max_error", "coder", "step", "margin", "chunk_edge", "design", "sections", "max_rel_error"}
DESIGNS = ("network + residual", "residual only")


def check_bound_header(entry: Any, dtype: str, geometry: Geometry, value_range: tuple[float, float],
                       network: bool) -> dict:
    """The header's bound entry, every number checked against what the source implies (a crafted entry cannot
    change the step, or point the residual outside the grid's chunks)."""
    if not isinstance(entry, dict) or set(entry) - BOUND_KEYS or not BOUND_KEYS - {"max_rel_error"} <= set(entry):
        raise FileFormatError("the error bound entry does not have the expected keys")
    bound, margin, step = entry["max_error"], entry["margin"], entry["step"]
    numbers = (bound, margin, step)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        raise FileFormatError("the error bound's numbers are not finite")
    if bound < 0 or bound > 1e300:
        raise FileFormatError(f"the error bound {bound!r} is not a number >= 0")
    if entry["coder"] not in CODERS or entry["design"] not in DESIGNS:
        raise FileFormatError("the error bound names an unknown coder or design")
    if (entry["design"] == "network + residual") != network:
        raise FileFormatError("the error bound's design does not match whether the file holds a network")
    # The margin is the writer's choice (a later srnvtk may change DECODE_MARGIN); the step must follow from it.
    if not 0 <= margin <= max(bound, 0.5) or (not network and margin > decode_margin(value_range, dtype, False)):
        raise FileFormatError(f"the error bound's margin {margin!r} is outside what the bound allows")
    if entry["coder"] == "quant" and (step != quant_step(bound, dtype, margin) or step <= 0):
        raise FileFormatError("the residual's step does not match the error bound")
    rel = entry.get("max_rel_error")
    if rel is not None and not (isinstance(rel, (int, float)) and not isinstance(rel, bool) and 0 <= rel <= 1e300):
        raise FileFormatError("the relative error bound is not a number >= 0")
    edge = entry["chunk_edge"]
    if not (isinstance(edge, int) and not isinstance(edge, bool) and 1 <= edge <= MAX_CHUNK_EDGE):
        raise FileFormatError(f"the residual's chunk edge {edge!r} is not an integer in [1, {MAX_CHUNK_EDGE}]")
    sections = entry["sections"]
    count = math.prod(chunk_grid(geometry.shape_zyx, edge))
    if not (isinstance(sections, list) and len(sections) == count
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= -1 for s in sections)):
        raise FileFormatError(f"the residual does not name one section (or -1) for each of its {count} chunks")
    used = [s for s in sections if s >= 0]
    if len(set(used)) != len(used):
        raise FileFormatError("the residual names a section twice")
    return entry


# ---------------------------------------------------------------------------------------------------------
# encoding


def encode_residual(original: np.ndarray, prediction: np.ndarray, bound: float, dtype: str, margin: float,
                    coder: str, design: str, chunk_edge: int = CHUNK_EDGE,
                    finish: Callable[[np.ndarray], np.ndarray] | None = None) -> ResidualCode:
    """Code original - prediction so that the reader's output is within bound everywhere (module docstring).

    prediction: float64, exactly what the reader computes before the residual. finish: the reader's cast of
    corrected float64 values to the output (srnvtk.decode.to_dtype), so that exceptions are found on exactly
    the values a reader produces."""
    step = quant_step(bound, dtype, margin)
    if coder == "quant" and (step <= 0 or np.abs(original.astype(np.float64) - prediction).max() / step > MAX_CODE):
        coder = "exact"  # no bin fits inside the bound, or codes would overflow: store the values
    code = ResidualCode(bound, coder, step, margin, chunk_edge, design, dtype, tuple(original.shape))
    finish = finish or (lambda v: v.astype(np.dtype(dtype)))
    for where in chunk_slices(code.shape_zyx, chunk_edge):
        x = original[where]
        if coder == "exact":
            code.payloads.append(exact_payload(x, dtype))
            continue
        residual = x.astype(np.float64) - prediction[where]
        if coder == "quant":
            codes = np.round(residual / step).astype(np.int64)
            stream = b""
        else:
            codes, stream = None, _sz3_compress(residual, sz3_bound(bound, dtype, margin))
        chunk = parse_payload(_payload(coder, codes, stream, [], x), coder, x.shape, dtype, step)
        wrong = np.flatnonzero(_misses(x, prediction[where] + chunk.add, bound, dtype, margin, finish))
        payload = _payload(coder, codes, stream, wrong, x)
        if coder == "quant" and not len(wrong) and not codes.any():
            payload = None  # nothing to correct: no section
        code.payloads.append(payload)
    return code


def _payload(coder: str, codes: np.ndarray | None, stream: bytes, wrong: Any, original: np.ndarray) -> bytes:
    indices = np.asarray(wrong, dtype=np.int64)
    values = original.reshape(-1)[indices]
    return quant_payload(codes, indices, values) if coder == "quant" else sz3_payload(stream, indices, values)


def _misses(original: np.ndarray, corrected: np.ndarray, bound: float, dtype: str, margin: float,
            finish: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Flat mask of the voxels to store exactly: the reader's value misses the bound, or would miss it if its
    prediction differed by the margin (a network decoded on another path)."""
    x = original.astype(np.float64)
    integer = is_integer_dtype(dtype)
    decoded = finish(np.round(corrected) if integer else corrected.copy()).astype(np.float64)
    limit = bound - margin / 2 if margin > 0 and not integer else bound
    wrong = np.abs(decoded - x) > limit
    if integer and margin > 0:  # rounding must not flip when the prediction moves by the margin
        wrong |= np.abs(corrected - x) > math.floor(bound) + 0.5 - margin / 2
    return wrong.reshape(-1)


def _sz3_compress(residual: np.ndarray, bound: float) -> bytes:
    pysz = _pysz()
    config = pysz.szConfig()
    config.errorBoundMode = pysz.szErrorBoundMode.ABS
    config.absErrorBound = float(max(bound, 0.0))
    config.openmp = False
    stream, _ = pysz.sz.compress(np.ascontiguousarray(residual, dtype=np.float32), config)
    return np.asarray(stream).tobytes()


# ---------------------------------------------------------------------------------------------------------
# decoding: the residual at an output grid's points


def lattice_indices(source: Geometry, output: Geometry) -> list[np.ndarray] | None:
    """Per axis (x, y, z) the source grid index (from 0) of every output point, or None when any point is not
    on the source lattice (a resampled grid)."""
    indices = []
    for a in range(3):
        lo, hi = output.extent[2 * a], output.extent[2 * a + 1]
        world = output.origin[a] + output.spacing[a] * np.arange(lo, hi + 1, dtype=np.float64)
        position = (world - source.origin[a]) / source.spacing[a]
        nearest = np.round(position)
        if np.abs(position - nearest).max(initial=0.0) > LATTICE_TOLERANCE:
            return None
        index = nearest.astype(np.int64) - source.extent[2 * a]
        if index.min(initial=0) < 0 or index.max(initial=0) > source.extent[2 * a + 1] - source.extent[2 * a]:
            return None
        indices.append(index)
    return indices


class BoundedField:
    """The residual at the points of one output grid on the source lattice, slab by slab in z (srnvtk.decode);
    reads only the chunks those points fall in, each once."""

    def __init__(self, code: ResidualCode, indices: list[np.ndarray], integer: bool) -> None:
        self.code, self.integer = code, integer
        self.ix, self.iy, self.iz = indices
        self._cache: dict[int, Chunk | None] = {}
        self.grid = chunk_grid(code.shape_zyx, code.chunk_edge)

    def _touched(self, axis_indices: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(chunk number along the axis, output positions, positions inside the chunk) per chunk touched."""
        edge = self.code.chunk_edge
        chunk_of = axis_indices // edge
        found = []
        for c in np.unique(chunk_of):
            where = np.flatnonzero(chunk_of == c)
            found.append((int(c), where, axis_indices[where] - c * edge))
        return found

    def _chunk(self, number: int) -> Chunk | None:
        if number not in self._cache:
            self._cache[number] = self.code.chunk(number)
        return self._cache[number]

    def apply(self, values: np.ndarray, z0: int, z1: int, finish: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """values: the prediction (float64, output points z0..z1) -> the reader's output for those points."""
        zs = self.iz[z0:z1]
        planes = self._touched(zs)
        rows, columns = self._touched(self.iy), self._touched(self.ix)
        exact = []
        for cz, oz, lz in planes:
            for cy, oy, ly in rows:
                for cx, ox, lx in columns:
                    number = (cz * self.grid[1] + cy) * self.grid[2] + cx
                    chunk = self._chunk(number)
                    if chunk is None:
                        continue
                    if chunk.add is not None:
                        values[np.ix_(oz, oy, ox)] += chunk.add[np.ix_(lz, ly, lx)]
                    if len(chunk.indices):
                        exact.append((chunk, (oz, oy, ox), (lz, ly, lx)))
        # Chunks wholly before the next slab are done with.
        last = int(zs[-1]) // self.code.chunk_edge if len(zs) else 0
        for number in [n for n in self._cache if n // (self.grid[1] * self.grid[2]) < last]:
            del self._cache[number]
        if self.integer:
            np.round(values, out=values)
        out = finish(values)
        for chunk, (oz, oy, ox), (lz, ly, lx) in exact:
            _set_exact(out, chunk, (oz, oy, ox), (lz, ly, lx))
        return out


def _set_exact(out: np.ndarray, chunk: Chunk, outputs: tuple, locals_: tuple) -> None:
    """Write a chunk's exactly stored voxels that the output samples."""
    oz, oy, ox = outputs
    lz, ly, lx = locals_
    shape = chunk.shape
    z, rest = np.divmod(chunk.indices, shape[1] * shape[2])
    y, x = np.divmod(rest, shape[2])
    maps = []
    for local, output, size, coordinate in ((lz, oz, shape[0], z), (ly, oy, shape[1], y), (lx, ox, shape[2], x)):
        lookup = np.full(size, -1, dtype=np.int64)
        lookup[local] = output
        maps.append(lookup[coordinate])
    sampled = (maps[0] >= 0) & (maps[1] >= 0) & (maps[2] >= 0)
    out[maps[0][sampled], maps[1][sampled], maps[2][sampled]] = chunk.values[sampled]
