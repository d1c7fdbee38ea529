"""Format version 6: many networks in one container file (fields x time steps x bricks, srnvtk.parts).

Written only for files that need it (more than one field, time step or brick); a single network stays a
format-5 file. The header (deflated JSON, srnvtk.container):
  format, srnvtk_version
  grid      {"extent", "origin", "spacing"}: the source lattice every part lives on
  times     [t0, t1, ...]: one value per time step, strictly increasing
  fields    [[name, dtype, components, [[min, max] per component]], ...]
  bricks    null, or [[size x, y, z], halo] (srnvtk.parts.BrickLayout)
  settings  [{"architecture", "model_config", "pruning_config"}, ...]: shared by the parts that use them
  parts     [[field, step, brick [i, j, k] or null, settings index, structure, coded section or null,
             raw section], ...]
A part's tensors are not described one by one: their dtypes and shapes follow from its settings and structure
(srnvtk.filechecks.tensor_specs, the same checks as format 5), packed in a fixed order into two sections:
  coded  the latent tensor's keep mask (packed bits, pruned grids only), then its uint8 codes; stored raw,
         deflated or LZMA-coded, whichever is smallest (Neurcomp: no coded section)
  raw    the grid's float32 scales and offsets (fV-SRN), the float16 weights, the uint8 k-means indices (clustered
         Neurcomp), then the part's statistics as float64 (STORED_STATS; NaN: not recorded); always raw, so the
         size of everything but the codes is known before training
Format version 10 is the same layout with vector fields: a 3-component field's parts are networks with 3
outputs (settings "outputs": 3; scalar networks' settings leave it out), and every part's statistics add
VECTOR_STATS (the PSNR of each component and of the magnitude; NaN for a scalar part); written for a file with a
vector field.
So a part costs two table entries (26 bytes), its entry in the deflated header and its 40 bytes of statistics
beyond its parameters: 74 bytes a brick, measured (benchmarks/container_overhead.py). A reader checks the whole
header before reading any section, and reads only the sections of the parts it builds (`SRNFile.part_model`).

Format version 9 (what srnvtk writes for scalar fields; 7 and 8 are single-network formats of other features)
keeps the header's grid, times, fields, bricks and settings, and moves the parts into a binary index, so that a
part costs a fixed 51 bytes beyond its parameters however many there are (a brick of a large volume: hundreds of
thousands):
  structures  [structure, ...]: the distinct model structures the parts name (bricks of one size share a few)
  parts       the number of parts
Sections:
  0       the index: one PART_RECORD per part, then the file's statistics (STORED_STATS as float64; NaN: not
          recorded); stored raw, so that a file's size never depends on its statistics (timings differ from run to
          run; a serial and an MPI run make files of the same bytes but for them)
  1 + n   part n's tensors in the fixed order derived from its settings and structure: the grid's float32 scales
          and offsets, the float16 weights, the uint8 k-means indices, then the keep mask's packed bits and the
          uint8 codes; the whole stored raw, deflated or LZMA-coded, whichever is smallest (its size is at most its
          raw size, known before training)
A record (little-endian, 38 bytes): field (u16), step (u32), brick i, j, k (3 x u16; all 0xFFFF: the whole grid),
settings entry (u16), structure entry (u32), then the part's statistics as float32: psnr, train_seconds, steps,
final_loss, pruned_fraction (NaN: not recorded). So a part costs its record and its section's 13-byte table
entry, and its statistics are known without reading it. A reader checks the header, the whole index and every
part's section size before it reads any part. Vector fields are not stored in format 9 yet (format 10).

Format version 11 is format 9 with *delta parts* (srnvtk.delta; written when a series is encoded with time scheme
"delta", srnvtk.series_encode). It also holds vector fields (networks with 3 outputs, as in format 10), but a vector
part's record keeps only STORED_STATS ("psnr": of the three components together; format 12, below, keeps more). Its
record (42 bytes) adds, after the statistics, reference (u32): 0xFFFFFFFF for a full part, stored as in format 9;
else the index of the part whose rebuilt latent grid this part's grid differs from. A delta part's structure is its
dense grid's ({"grid_shape", "keep_shape": null}; a plain fV-SRN only) and its section holds its float16 weights,
one float32 unit per channel and the int8 codes of the differences (C x z x y x x, zero where not kept), coded
whichever way is smallest; its grid is reference grid + codes * unit. A reader checks, before reading any part, that
every reference names another part of the same field and brick at the step just before (so a chain ends at a full
part, its key frame, and never loops), of the same grid shape and channels, and follows the chain back to its key
frame to build a part (srnvtk.fileformat caches the parts it builds, so stepping forward decodes one delta a step).

Format version 12 is format 11 for a file with a vector field: its record (58 bytes) keeps VECTOR_STATS after
STORED_STATS (as format 10 does; NaN for a scalar part), then the reference. Format 11 files with a vector field,
written before version 12, are still read (their vector parts' records keep only STORED_STATS).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import __version__
from .config import ModelConfig, PruningConfig, from_json, model_config_class, stored_model_config
from .container import ENTRY, Container, Encoded, SectionEntry, atomic_writer, encode_section, pack, pack_head
from .delta import can_be_delta, delta_blob, delta_section_bytes
from .errors import FileFormatError, SettingsError, SRNError
from .filechecks import (
    GRID,
    GRID_KEEP,
    GRID_QUANT,
    UINT8,
    WEIGHT_INDICES,
    WEIGHTS,
    check_array_name,
    check_geometry,
    check_header_keys,
    check_source_dtype,
    check_structure,
    check_value_range,
    one_line,
    tensor_specs,
)
from .parts import BrickLayout, FieldInfo, PartData, PartInfo, brick_geometry
from .quantize import StoredModel
from .volume import Geometry

MULTIPART_VERSION = 6
COMPACT_VERSION = 9  # what write_parts writes for scalar fields
VECTOR_VERSION = 10  # format 6 with 3-component fields (see the module docstring)
DELTA_VERSION = 11  # format 9 with delta parts (see the module docstring)
DELTA_VECTOR_VERSION = 12  # format 11 whose records keep a vector part's VECTOR_STATS too
DELTA_VERSIONS = (DELTA_VERSION, DELTA_VECTOR_VERSION)
INDEX_VERSIONS = (COMPACT_VERSION, *DELTA_VERSIONS)  # the formats whose parts are listed in a binary index
FORMAT_NAME = "srnvtk"
STORED_STATS = ("psnr", "train_seconds", "steps", "final_loss", "pruned_fraction")
VECTOR_STATS = ("psnr_x", "psnr_y", "psnr_z", "psnr_magnitude")


def stat_keys(version: int) -> tuple[str, ...]:
    """The statistics every part of a file of this version stores, in order."""
    return STORED_STATS + VECTOR_STATS if version == VECTOR_VERSION else STORED_STATS
HEADER_KEYS = ("format", "srnvtk_version", "grid", "times", "fields", "bricks", "settings", "parts")
MAX_FIELD_COMPONENTS = (1, 3)
CODED_ORDER = (GRID_KEEP, GRID)  # within the coded section
RAW_ORDER = (GRID_QUANT, WEIGHTS, WEIGHT_INDICES)  # within the raw section, before the stats
COMPACT_HEADER_KEYS = ("format", "srnvtk_version", "grid", "times", "fields", "bricks", "settings", "structures",
                       "parts")
PART_RECORD = struct.Struct("<HI3HHI5f")  # field, step, brick i j k, settings, structure, STORED_STATS as f32
PART_BOOKKEEPING_BYTES = PART_RECORD.size + ENTRY.size  # what a format-9 part costs beyond its tensors
DELTA_RECORD = struct.Struct("<HI3HHI5fI")  # format 11: PART_RECORD, then the referenced part (NO_REFERENCE: none)
DELTA_VECTOR_RECORD = struct.Struct("<HI3HHI9fI")  # format 12: DELTA_RECORD with VECTOR_STATS after STORED_STATS
# What a delta part costs beyond its tensors, at most (format 12's longer record; format 11's is 16 bytes less).
DELTA_BOOKKEEPING_BYTES = DELTA_VECTOR_RECORD.size + ENTRY.size
NO_REFERENCE = 0xFFFFFFFF
WHOLE_GRID = 0xFFFF  # a record's brick index for a part of the whole grid


def index_record(version: int) -> tuple[struct.Struct, tuple[str, ...]]:
    """A binary index's record (formats 9, 11, 12) and the statistics of a part it holds, in order."""
    if version == DELTA_VECTOR_VERSION:
        return DELTA_VECTOR_RECORD, STORED_STATS + VECTOR_STATS
    return (DELTA_RECORD if version == DELTA_VERSION else PART_RECORD), STORED_STATS


def bookkeeping_bytes(version: int) -> int:
    """What a part of a format-9, 11 or 12 file costs beyond its tensors: its record and its table entry."""
    return index_record(version)[0].size + ENTRY.size


def parts_bytes(geometry: Geometry, times: Sequence[float], fields: Sequence[FieldInfo], parts: Sequence[PartData],
                bricks: BrickLayout | None = None) -> bytes:
    """The whole format-6 file as bytes, format 10 where a field is a vector (see the module docstring)."""
    version = VECTOR_VERSION if any(f.components != 1 for f in fields) else MULTIPART_VERSION
    settings: list[dict[str, Any]] = []
    sections: list[Encoded] = []
    entries = []
    for part in parts:
        setting = _entry_of(settings, _described(part.model_config, part.pruning))
        part_geometry = brick_geometry(geometry, _part_extent(geometry, bricks, part.brick))
        coded, raw = _part_sections(part, part_geometry, stat_keys(version))
        coded_index = None
        if coded is not None:
            coded_index = len(sections)
            sections.append(encode_section(coded))
        sections.append(encode_section(raw, ("raw",)))
        entries.append([part.field, part.step, None if part.brick is None else list(part.brick),
                        setting, part.stored.structure, coded_index, len(sections) - 1])
    return pack(version, {**_header(geometry, times, fields, bricks, settings), "parts": entries}, sections)


def _header(geometry: Geometry, times: Sequence[float], fields: Sequence[FieldInfo], bricks: BrickLayout | None,
            settings: list[dict[str, Any]]) -> dict[str, Any]:
    """The header entries formats 6 and 9 share."""
    return {
        "format": FORMAT_NAME,
        "srnvtk_version": __version__,
        "grid": {"extent": list(geometry.extent), "origin": list(geometry.origin), "spacing": list(geometry.spacing)},
        "times": [float(t) for t in times],
        "fields": [[f.name, f.dtype, f.components, [list(r) for r in f.value_ranges]] for f in fields],
        "bricks": None if bricks is None else [list(bricks.size), bricks.halo],
        "settings": settings,
    }


def _described(config: ModelConfig, pruning: PruningConfig) -> dict[str, Any]:
    return {"architecture": config.architecture, "model_config": stored_model_config(config),
            "pruning_config": dataclasses.asdict(pruning)}


def _entry_of(entries: list, value: Any) -> int:
    """The index of value in entries, appended if new (settings and structures are stored once each)."""
    if value not in entries:
        entries.append(value)
    return entries.index(value)


def _part_extent(grid: Geometry, bricks: BrickLayout | None, brick: Sequence[int] | None) -> tuple[int, ...]:
    if brick is None:
        return tuple(grid.extent)
    if bricks is None:
        raise FileFormatError("a part names a brick, but the file has no brick layout")
    return bricks.extent(grid, tuple(brick))


def _part_sections(part: PartData, geometry: Geometry, keys: tuple[str, ...]) -> tuple[bytes | None, bytes]:
    """The coded and raw bytes of one part (formats 6 and 10), in the fixed order the reader derives from its
    settings."""
    coded, raw = _part_tensors(part.model_config, part.stored, geometry)
    stats = np.array([float(part.stats.get(key, math.nan)) for key in keys], dtype="<f8")
    return coded, raw + stats.tobytes()


def _part_tensors(config: ModelConfig, stored: StoredModel, geometry: Geometry) -> tuple[bytes | None, bytes]:
    """A part's coded tensors (keep mask and codes; None without a latent grid) and its raw ones, in the fixed
    order the reader derives from its settings and structure."""
    arrays = stored.arrays
    plan = tensor_specs(config, check_structure(config, stored.structure), geometry)
    packed = {WEIGHTS: _repacked(arrays[WEIGHTS], stored.layout, plan.weights_layout)}
    if WEIGHT_INDICES in arrays:
        packed[WEIGHT_INDICES] = _repacked(arrays[WEIGHT_INDICES], stored.index_layout, plan.index_layout)
    coded = None
    if GRID in arrays:
        coded = b"".join(np.ascontiguousarray(arrays[n]).tobytes() for n in CODED_ORDER if n in arrays)
        packed[GRID_QUANT] = arrays[GRID_QUANT]
    return coded, b"".join(np.ascontiguousarray(packed[n]).tobytes() for n in RAW_ORDER if n in packed)


def _repacked(vector: np.ndarray, layout: list[list], order: dict[str, tuple[int, ...]]) -> np.ndarray:
    """A packed vector rearranged from the writer's layout into the order the reader derives."""
    pieces, start = {}, 0
    for name, shape in layout:
        size = math.prod(shape)
        pieces[name] = vector[start:start + size]
        start += size
    return np.concatenate([pieces[name] for name in order]) if order else vector[:0]


# ---------------------------------------------------------------------------------------------------------------
# reading


@dataclasses.dataclass
class MultipartContents:
    """A checked format-6 header: everything but the parts' tensors, which `load_part` reads on demand."""

    geometry: Geometry
    times: tuple[float, ...]
    fields: tuple[FieldInfo, ...]
    bricks: BrickLayout | None
    parts: tuple[PartInfo, ...]
    sections: dict[int, tuple[int | None, int]]  # part index -> (coded, raw) section indices (format 9: None, one)
    srnvtk_version: str
    version: int = MULTIPART_VERSION
    compact: bool = False  # format 9: one section per part, statistics in the index
    stats: dict[str, float] = dataclasses.field(default_factory=dict)  # the file's (format 9)


def read_multipart(container: Container) -> MultipartContents:
    """Check every value of a format-6 header (and every section's size) before any section is read."""
    header = container.header
    geometry, times, fields, bricks, settings = _shared_header(header, HEADER_KEYS)
    entries = header["parts"]
    if not isinstance(entries, list) or not entries:
        raise FileFormatError("the file lists no parts")
    parts, sections, seen, used = [], {}, set(), set()
    for index, entry in enumerate(entries):
        part, coded, raw = _part(index, entry, geometry, times, fields, bricks, settings, container)
        components = fields[part.field].components
        if components != part.model_config.outputs:
            raise FileFormatError(f"part {index}: a {components}-component field, a network with "
                                  f"{part.model_config.outputs} outputs")
        key = (part.field, part.step, part.brick)
        if key in seen:
            raise FileFormatError(f"two parts for field {part.field}, step {part.step}, brick {part.brick}")
        for section in (coded, raw):
            if section is None:
                continue
            if section in used:
                raise FileFormatError(f"section {section} is used by two parts")
            used.add(section)
        seen.add(key)
        parts.append(part)
        sections[index] = (coded, raw)
    if len(used) != len(container.sections):
        raise FileFormatError("the file has sections no part names")
    _check_coverage(parts, geometry, len(times), len(fields), bricks)
    writer = header["srnvtk_version"] if isinstance(header["srnvtk_version"], str) else ""
    return MultipartContents(geometry, times, fields, bricks, tuple(parts), sections, one_line(writer, 40),
                             container.version)


def _shared_header(header: dict, keys: Sequence[str]) -> tuple[Geometry, tuple[float, ...], tuple[FieldInfo, ...],
                                                               BrickLayout | None, list]:
    """What formats 6 and 9 share, checked: the grid, times, fields, brick layout and settings."""
    check_header_keys(header, keys, FORMAT_NAME)
    grid = _object(header["grid"], "the grid")
    geometry = check_geometry(grid.get("extent"), grid.get("origin"), grid.get("spacing"))
    return (geometry, _times(header["times"]), _fields(header["fields"]), _bricks(header["bricks"]),
            _settings(header["settings"]))


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise FileFormatError(f"{what} is not a JSON object")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _times(value: Any) -> tuple[float, ...]:
    if not (isinstance(value, list) and value and all(isinstance(t, (int, float)) and not isinstance(t, bool)
                                                      and math.isfinite(t) for t in value)):
        raise FileFormatError("the time values are not a list of finite numbers")
    if any(b <= a for a, b in itertools.pairwise(value)):
        raise FileFormatError("the time values do not increase")
    return tuple(float(t) for t in value)


def _fields(value: Any) -> tuple[FieldInfo, ...]:
    if not isinstance(value, list) or not value:
        raise FileFormatError("the file lists no fields")
    fields = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 4 and item[2] in MAX_FIELD_COMPONENTS and _is_int(item[2])
                and isinstance(item[3], list) and len(item[3]) == item[2]):
            raise FileFormatError("a field is not [name, dtype, components (1 or 3), value ranges]")
        ranges = []
        for pair in item[3]:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise FileFormatError("a field's value range is not two numbers")
            ranges.append(check_value_range(pair[0], pair[1]))
        fields.append(FieldInfo(check_array_name(item[0]), check_source_dtype(item[1]), item[2], tuple(ranges)))
    if len({f.name for f in fields}) != len(fields):
        raise FileFormatError("two fields have the same name")
    return tuple(fields)


def _bricks(value: Any) -> BrickLayout | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], list) and len(value[0]) == 3
            and all(_is_int(s) for s in value[0]) and _is_int(value[1])):
        raise FileFormatError("the brick layout is not [[size x, y, z], halo]")
    try:
        return BrickLayout(tuple(value[0]), value[1])
    except SRNError as exc:
        raise FileFormatError(str(exc)) from None


def _settings(value: Any) -> list[tuple[Any, PruningConfig]]:
    if not isinstance(value, list) or not value:
        raise FileFormatError("the file lists no settings")
    found = []
    for item in value:
        item = _object(item, "a settings entry")
        if set(item) != {"architecture", "model_config", "pruning_config"} or not isinstance(item["architecture"],
                                                                                              str):
            raise FileFormatError("a settings entry is not {architecture, model_config, pruning_config}")
        try:
            cls = model_config_class(item["architecture"])
            config = from_json(cls, _json_text(item["model_config"]))
            pruning = from_json(PruningConfig, _json_text(item["pruning_config"]))
        except SRNError as exc:
            raise FileFormatError(f"invalid settings ({one_line(exc, 160)})") from None
        found.append((config, pruning))
    return found


def _json_text(value: Any) -> str:
    import json

    return json.dumps(_object(value, "settings"))


def _part(index: int, entry: Any, geometry: Geometry, times: tuple[float, ...], fields: tuple[FieldInfo, ...],
          bricks: BrickLayout | None, settings: list, container: Container) -> tuple[PartInfo, int | None, int]:
    if not (isinstance(entry, list) and len(entry) == 7 and all(_is_int(v) for v in entry[:2])
            and _is_int(entry[3]) and _is_int(entry[6]) and (entry[5] is None or _is_int(entry[5]))):
        raise FileFormatError(f"part {index} is not [field, step, brick, settings, structure, coded, raw]")
    field_index, step, brick, setting, structure, coded, raw = entry
    if not (0 <= field_index < len(fields) and 0 <= step < len(times) and 0 <= setting < len(settings)):
        raise FileFormatError(f"part {index} names a field, step or settings entry the file does not have")
    if brick is not None:
        if bricks is None or not (isinstance(brick, list) and len(brick) == 3 and all(_is_int(b) for b in brick)):
            raise FileFormatError(f"part {index} names a brick the file's layout does not have")
        counts = bricks.counts(geometry)
        if not all(0 <= b < n for b, n in zip(brick, counts, strict=True)):
            raise FileFormatError(f"part {index} names brick {tuple(brick)}, outside the {counts} bricks")
        brick = tuple(brick)
    config, pruning = settings[setting]
    if fields[field_index].components != 1 and container.version != VECTOR_VERSION:
        raise FileFormatError(f"part {index}: a {fields[field_index].components}-component field in a format "
                              f"{container.version} file (vectors are format {VECTOR_VERSION})")
    extent = _part_extent(geometry, bricks, brick)
    structure = check_structure(config, structure)
    plan = tensor_specs(config, structure, brick_geometry(geometry, extent))
    raw_bytes = (sum(_spec_bytes(plan.specs[n]) for n in RAW_ORDER if n in plan.specs)
                 + 8 * len(stat_keys(container.version)))
    _check_section(container, raw, raw_bytes, f"part {index}'s raw section")
    if (GRID in plan.specs) != (coded is not None):
        raise FileFormatError(f"part {index}: a coded section for a model without a latent grid, or none for one")
    stored = container.sections[raw].length
    if coded is not None:
        keep = _spec_bytes(plan.specs[GRID_KEEP]) if GRID_KEEP in plan.specs else 0
        largest = keep + (plan.specs[GRID].max_size or math.prod(plan.specs[GRID].shape))
        _check_section(container, coded, None, f"part {index}'s coded section")
        length = container.sections[coded].raw_length
        if not keep <= length <= largest or (GRID_KEEP not in plan.specs and length != largest):
            raise FileFormatError(f"part {index}'s coded section has {length} bytes; its settings allow "
                                  f"{keep}..{largest}")
        stored += container.sections[coded].length
    info = PartInfo(index, field_index, step, brick, extent, config, pruning, structure, {}, stored)
    return info, coded, raw


def _spec_bytes(spec) -> int:
    return math.prod(spec.shape) * spec.dtype.itemsize


def _check_section(container: Container, index: int, raw_length: int | None, what: str) -> None:
    if not 0 <= index < len(container.sections):
        raise FileFormatError(f"{what} is section {index}, which the file does not have")
    if raw_length is not None and container.sections[index].raw_length != raw_length:
        raise FileFormatError(f"{what} has {container.sections[index].raw_length} bytes, its settings need "
                              f"{raw_length}")


def _check_coverage(parts: list[PartInfo], geometry: Geometry, steps: int, fields: int,
                    bricks: BrickLayout | None) -> None:
    """Every field at every step is covered: by one whole-grid part, or by every brick of the layout."""
    want = {None} if bricks is None else set(bricks.indices(geometry))
    for f in range(fields):
        for s in range(steps):
            have = {p.brick for p in parts if p.field == f and p.step == s}
            if have != want and have != {None}:
                raise FileFormatError(f"field {f} at step {s} is not covered: {len(have)} parts, the layout has "
                                      f"{len(want)} bricks")


def load_part(container: Container, contents: MultipartContents, index: int) -> tuple[StoredModel, dict[str, float]]:
    """One part's stored tensors (read and checked now) and its statistics."""
    part = contents.parts[index]
    coded, raw = contents.sections[index]
    if contents.compact:
        return part_stored(part.model_config, part.structure, brick_geometry(contents.geometry, part.extent),
                           container.read(raw)), dict(part.stats)
    plan = tensor_specs(part.model_config, part.structure, brick_geometry(contents.geometry, part.extent))
    arrays: dict[str, np.ndarray] = {}
    data, offset = container.read(raw), 0
    for name in RAW_ORDER:
        if name in plan.specs:
            spec = plan.specs[name]
            count = math.prod(spec.shape)
            arrays[name] = np.frombuffer(data, dtype=spec.dtype, count=count, offset=offset).reshape(spec.shape).copy()
            offset += count * spec.dtype.itemsize
    stats = stats_from_bytes(data[offset:], stat_keys(contents.version))
    if coded is not None:
        codes, offset = container.read(coded), 0
        if GRID_KEEP in plan.specs:
            spec = plan.specs[GRID_KEEP]
            arrays[GRID_KEEP] = np.frombuffer(codes, dtype=UINT8, count=spec.shape[0]).copy()
            offset = spec.shape[0]
        shape = plan.specs[GRID].shape if GRID_KEEP not in plan.specs else (len(codes) - offset,)
        arrays[GRID] = np.frombuffer(codes, dtype=UINT8, offset=offset).reshape(shape).copy()
    layout = [[name, list(shape)] for name, shape in plan.weights_layout.items()]
    index_layout = [[name, list(shape)] for name, shape in plan.index_layout.items()]
    return StoredModel(arrays, layout, part.structure, index_layout), stats


def stats_from_bytes(data: bytes, keys: tuple[str, ...] = STORED_STATS) -> dict[str, float]:
    """The recorded statistics (STORED_STATS as float64): NaN is "not recorded"; only a PSNR may be infinite
    (lossless)."""
    return _checked_stats(np.frombuffer(data, dtype="<f8").tolist(), "the", keys)


# ---------------------------------------------------------------------------------------------------------------
# format 9: the parts in a binary index, one section each


@dataclasses.dataclass(frozen=True)
class PartEntry:
    """A part's line in the index and the section table, without its bytes (they may lie in another process)."""

    field: int
    step: int
    brick: tuple[int, int, int] | None
    model_config: ModelConfig
    pruning: PruningConfig
    structure: dict[str, Any]
    section: SectionEntry
    stats: dict[str, float] = dataclasses.field(default_factory=dict)
    reference: int | None = None  # a delta part (format 11): the part it differs from


@dataclasses.dataclass(frozen=True)
class EncodedPart:
    """A part as a format-9 file stores it: its entry and its section's stored bytes."""

    entry: PartEntry
    data: bytes

    @property
    def file_bytes(self) -> int:
        """What the part adds to a format-9 file (a format-11 file: DELTA_BOOKKEEPING_BYTES instead)."""
        return len(self.data) + PART_BOOKKEEPING_BYTES


def part_blob(config: ModelConfig, stored: StoredModel, geometry: Geometry) -> bytes:
    """A part's section before coding: its raw tensors, then its coded ones (see the module)."""
    coded, raw = _part_tensors(config, stored, geometry)
    return raw + (coded or b"")


def encode_part(part: PartData, grid: Geometry, bricks: BrickLayout | None = None) -> EncodedPart:
    """A part as a format-9 file stores it (its section coded whichever way is smallest)."""
    geometry = brick_geometry(grid, _part_extent(grid, bricks, part.brick))
    if part.delta is None:
        blob = part_blob(part.model_config, part.stored, geometry)
    else:  # a delta part's stored model holds only its weights
        blob = delta_blob(raw_tensors(part.model_config, part.stored, geometry), part.delta)
    section = encode_section(blob)
    brick = None if part.brick is None else tuple(int(b) for b in part.brick)
    entry = PartEntry(part.field, part.step, brick, part.model_config, part.pruning,
                      check_structure(part.model_config, part.stored.structure), SectionEntry.of(section),
                      {k: float(v) for k, v in part.stats.items()}, part.reference)
    return EncodedPart(entry, section.data)


def raw_tensors(config: ModelConfig, stored: StoredModel, geometry: Geometry) -> bytes:
    """A part's raw tensors (for a delta part: its float16 weights), in the order its section holds them."""
    return _part_tensors(config, stored, geometry)[1]


def part_stored(config: ModelConfig, structure: dict, geometry: Geometry, data: bytes) -> StoredModel:
    """A format-9 part's stored tensors from its section's decoded bytes (whose size the reader checked)."""
    plan = tensor_specs(config, structure, geometry)
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for name in (*RAW_ORDER, GRID_KEEP):
        if name in plan.specs:
            spec = plan.specs[name]
            count = math.prod(spec.shape)
            arrays[name] = np.frombuffer(data, dtype=spec.dtype, count=count, offset=offset).reshape(spec.shape).copy()
            offset += count * spec.dtype.itemsize
    if GRID in plan.specs:
        shape = plan.specs[GRID].shape if GRID_KEEP not in plan.specs else (len(data) - offset,)
        arrays[GRID] = np.frombuffer(data, dtype=UINT8, offset=offset).reshape(shape).copy()
    layout = [[name, list(shape)] for name, shape in plan.weights_layout.items()]
    index_layout = [[name, list(shape)] for name, shape in plan.index_layout.items()]
    return StoredModel(arrays, layout, structure, index_layout)


def _section_bounds(plan) -> tuple[int, int]:
    """The fewest and most decoded bytes a format-9 part's section may hold (a pruned grid's codes vary)."""
    fixed = sum(_spec_bytes(plan.specs[n]) for n in (*RAW_ORDER, GRID_KEEP) if n in plan.specs)
    if GRID not in plan.specs:
        return fixed, fixed
    if GRID_KEEP in plan.specs:
        return fixed, fixed + plan.specs[GRID].max_size
    return (fixed + math.prod(plan.specs[GRID].shape),) * 2


def compact_head(geometry: Geometry, times: Sequence[float], fields: Sequence[FieldInfo],
                 bricks: BrickLayout | None, entries: Sequence[PartEntry],
                 stats: dict[str, float] | None = None) -> bytes:
    """Everything of a format-9 file (format 11 when a part is a delta) before the parts' sections: prefix,
    header, table and index, for parts in the order given (their sections follow in that order)."""
    deltas = any(entry.reference is not None for entry in entries)
    vectors = any(f.components != 1 for f in fields)
    if vectors and not deltas:
        raise SettingsError(f"format {COMPACT_VERSION} holds scalar fields (vectors: format {VECTOR_VERSION})")
    version = (DELTA_VECTOR_VERSION if vectors else DELTA_VERSION) if deltas else COMPACT_VERSION
    record, stat_names = index_record(version)
    settings: list[dict[str, Any]] = []
    structures: list[dict[str, Any]] = []
    records = []
    for entry in entries:
        setting = _entry_of(settings, _described(entry.model_config, entry.pruning))
        structure = _entry_of(structures, dict(entry.structure))
        if len(settings) > 0xFFFF or max(len(fields), entry.field + 1) > 0xFFFF:
            raise SettingsError("more than 65535 settings entries or fields in one file")
        brick = (WHOLE_GRID,) * 3 if entry.brick is None else entry.brick
        if max(brick) > WHOLE_GRID or (entry.brick is not None and max(brick) == WHOLE_GRID):
            raise SettingsError(f"brick {entry.brick} is beyond the 65535 bricks per axis a file holds")
        reference = () if not deltas else (NO_REFERENCE if entry.reference is None else entry.reference,)
        records.append(record.pack(entry.field, entry.step, *brick, setting, structure,
                                   *(float(entry.stats.get(k, math.nan)) for k in stat_names), *reference))
    values = np.array([float((stats or {}).get(k, math.nan)) for k in STORED_STATS], dtype="<f8").tobytes()
    index = encode_section(b"".join(records) + values, ("raw",))
    header = {**_header(geometry, times, fields, bricks, settings), "structures": structures, "parts": len(entries)}
    return pack_head(version, header, [SectionEntry.of(index), *(e.section for e in entries)]) + index.data


def compact_bytes(geometry: Geometry, times: Sequence[float], fields: Sequence[FieldInfo], parts: Sequence[PartData],
                  bricks: BrickLayout | None = None, stats: dict[str, float] | None = None) -> bytes:
    """The whole format-9 file as bytes."""
    encoded = [encode_part(part, geometry, bricks) for part in parts]
    head = compact_head(geometry, times, fields, bricks, [e.entry for e in encoded], stats)
    return b"".join([head, *(e.data for e in encoded)])


def fixed_bytes(geometry: Geometry, times: Sequence[float], fields: Sequence[FieldInfo], bricks: BrickLayout | None,
                entries: Sequence[PartEntry]) -> int:
    """What a format-9 file of these parts costs beyond the parts' `file_bytes`: what rate control leaves for the
    parts is the budget less this."""
    head = compact_head(geometry, times, fields, bricks, entries)
    return len(head) - len(entries) * PART_BOOKKEEPING_BYTES


def write_compact_stream(path: str | os.PathLike, geometry: Geometry, times: Sequence[float],
                         fields: Sequence[FieldInfo], bricks: BrickLayout | None, entries: Sequence[PartEntry],
                         stats: dict[str, float] | None, sections: Iterator[bytes]) -> int:
    """Write a format-9 file atomically from every part's entry and its section's bytes, handed over in the
    entries' order by `sections` (from this process's memory, or received from the process that made the part),
    each checked against its entry's CRC. Returns the file's bytes. On any failure the iterator is run to its end
    (whoever sends into it must not be left waiting), and nothing appears at path."""
    head = compact_head(geometry, times, fields, bricks, entries, stats)
    total = len(head)
    try:
        with atomic_writer(path) as out:
            out.write(head)
            for entry in entries:
                data = next(sections)
                if len(data) != entry.section.length or zlib.crc32(data) != entry.section.crc:
                    raise FileFormatError(f"part {entry.brick or (entry.field, entry.step)}'s bytes arrived damaged")
                out.write(data)
                total += len(data)
    except BaseException:
        for _rest in sections:
            pass
        raise
    return total


def read_compact(container: Container) -> MultipartContents:
    """Check every value of a format-9 or 11 header, the whole index (format 11: every reference) and every
    part's section size before any part's section is read."""
    header = container.header
    geometry, times, fields, bricks, settings = _shared_header(header, COMPACT_HEADER_KEYS)
    structures = header["structures"]
    if not isinstance(structures, list) or not structures:
        raise FileFormatError("the file lists no model structures")
    count = header["parts"]
    if not _is_int(count) or count < 1 or count != len(container.sections) - 1:
        raise FileFormatError(f"the header's part count {one_line(count, 20)} does not match the "
                              f"{len(container.sections)} sections (an index and one per part)")
    record, stat_names = index_record(container.version)
    index_bytes = count * record.size + 8 * len(STORED_STATS)
    if container.sections[0].raw_length != index_bytes:
        raise FileFormatError(f"the index has {container.sections[0].raw_length} bytes, {count} parts need "
                              f"{index_bytes}")
    index = container.read(0)
    counts = None if bricks is None else bricks.counts(geometry)
    checked: dict[tuple[int, int], dict] = {}
    parts, sections, seen = [], {}, set()
    for n in range(count):
        field_index, step, i, j, k, setting, shape, *values = record.unpack_from(index, n * record.size)
        reference = values.pop() if container.version in DELTA_VERSIONS else NO_REFERENCE
        reference = None if reference == NO_REFERENCE else reference
        if not (field_index < len(fields) and step < len(times) and setting < len(settings)
                and shape < len(structures)):
            raise FileFormatError(f"part {n} names a field, step, settings or structure the file does not have")
        brick = None if (i, j, k) == (WHOLE_GRID,) * 3 else (i, j, k)
        if brick is not None and (counts is None or not all(b < c for b, c in zip(brick, counts, strict=True))):
            raise FileFormatError(f"part {n} names brick {brick}, which the file's layout does not have")
        if (field_index, step, brick) in seen:
            raise FileFormatError(f"two parts for field {field_index}, step {step}, brick {brick}")
        seen.add((field_index, step, brick))
        config, pruning = settings[setting]
        components = fields[field_index].components
        if components != 1 and container.version == COMPACT_VERSION:
            raise FileFormatError(f"part {n}: a {components}-component field in a format {COMPACT_VERSION} file "
                                  f"(vectors are format {VECTOR_VERSION}, {DELTA_VERSION} or {DELTA_VECTOR_VERSION})")
        if components != config.outputs:
            raise FileFormatError(f"part {n}: a {components}-component field, a network with {config.outputs} "
                                  f"outputs")
        if (setting, shape) not in checked:
            checked[setting, shape] = check_structure(config, structures[shape])
        structure = checked[setting, shape]
        extent = _part_extent(geometry, bricks, brick)
        part_geometry = brick_geometry(geometry, extent)
        if reference is None:
            low, high = _section_bounds(tensor_specs(config, structure, part_geometry))
        elif not can_be_delta(config) or structure.get("keep_shape") is not None:
            raise FileFormatError(f"part {n} is a delta part, but not a plain fV-SRN with a dense grid")
        else:
            low = high = delta_section_bytes(config, structure, part_geometry)
        length = container.sections[1 + n].raw_length
        if not low <= length <= high:
            raise FileFormatError(f"part {n}'s section has {length} bytes; its settings allow {low}..{high}")
        stats = _checked_stats(values, f"part {n}'s", stat_names)
        parts.append(PartInfo(n, field_index, step, brick, extent, config, pruning, structure, stats,
                              container.sections[1 + n].length, reference))
        sections[n] = (None, 1 + n)
    _check_coverage(parts, geometry, len(times), len(fields), bricks)
    _check_references(parts)
    writer = header["srnvtk_version"] if isinstance(header["srnvtk_version"], str) else ""
    return MultipartContents(geometry, times, fields, bricks, tuple(parts), sections, one_line(writer, 40),
                             version=container.version, compact=True,
                             stats=stats_from_bytes(index[count * record.size:]))


def delta_chain(parts: Sequence[PartInfo], index: int) -> list[int]:
    """The parts a reader builds for part index, its key frame first and index last (references checked by
    read_compact, so the chain ends)."""
    chain = [index]
    while parts[chain[-1]].reference is not None:
        chain.append(parts[chain[-1]].reference)
    return chain[::-1]


def _check_references(parts: Sequence[PartInfo]) -> None:
    """Every delta part references another part of the same field and brick at the step just before, with the
    same latent grid (so every chain ends at a full part and none loops)."""
    for part in parts:
        n, reference = part.index, part.reference
        if reference is None:
            continue
        if not reference < len(parts) or reference == n:
            raise FileFormatError(f"part {n} is a delta of part {reference}, which "
                                  f"{'is itself' if reference == n else 'the file does not have'}")
        other = parts[reference]
        if (other.field, other.brick) != (part.field, part.brick) or other.step != part.step - 1:
            raise FileFormatError(f"part {n} (field {part.field}, step {part.step}) is a delta of part {reference} "
                                  f"(field {other.field}, step {other.step}); it must be the same field's previous "
                                  f"step")
        if not can_be_delta(other.model_config) or (other.model_config.grid_channels,
                                                     tuple(other.structure["grid_shape"])) != (
                part.model_config.grid_channels, tuple(part.structure["grid_shape"])):
            raise FileFormatError(f"part {n} is a delta of part {reference}, whose latent grid has another shape")


def _checked_stats(values: Sequence[float], whose: str, keys: Sequence[str] = STORED_STATS) -> dict[str, float]:
    found = {}
    for key, value in zip(keys, values, strict=True):
        if math.isnan(value):
            continue
        if math.isinf(value) and not (key.startswith("psnr") and value > 0):
            raise FileFormatError(f"{whose} stat {key} is infinite")
        found[key] = float(value)
    return found
