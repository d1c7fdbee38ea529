"""Bricked .srn files: one fV-SRN per brick of the grid (srnvtk.bricks) in one container file, at a few dozen bytes
of bookkeeping per brick, read brick by brick.

Format version 7 (a srnvtk.container file; 6 is the multi-part format of fields and time steps). Many bricks must
not mean many described objects: the header describes the layout and the settings once, a binary index holds one
fixed-size record per brick, and each brick's tensors are one section. The header (deflated JSON):
  format "srnvtk", srnvtk_version
  source    array_name, dtype, extent, origin, spacing, value_range: the whole grid and the value range every
            brick's network is trained on (srnvtk.bricks)
  bricks    [[size x, y, z], halo]: the layout (srnvtk.bricks.BrickLayout)
  settings  [{"architecture", "model_config", "pruning_config"}, ...]: the settings bricks share (a brick names
            its entry; rate control may give small bricks a smaller MLP); an entry's grid resolution is not used,
            a brick's grid shape is in its record
  index     the index section's number (0) and the names of its file statistics
Sections:
  0       the index: one INDEX_RECORD per brick of the layout, in brick order (x fastest), then the file's
          statistics as float64 (psnr, train_seconds, steps, final_loss, pruned_fraction; NaN: not recorded);
          stored raw, so the header and the index have sizes that depend on the brick count alone
  1 + n   brick n's tensors in a fixed order derived from its settings and grid shape
          (srnvtk.filechecks.tensor_specs): the codes' float32 scales and offsets, the float16 MLP weights, the
          keep mask's packed bits (pruned grids), the uint8 codes; the whole stored raw, deflated or LZMA-coded,
          whichever is smallest
An index record (little-endian, INDEX_RECORD.size = 24 bytes): grid shape z, y, x (3 x u16); keep mask (u8: 0
none, 1 one bit per grid position, 2 per position and channel); settings entry (u8); training steps (u32); train
seconds, final loss and the PSNR of the brick's own network on its core (3 x f32; NaN: not recorded).
So a brick costs its tensors plus 37 bytes (its record and its section's 13-byte table entry); the fixed cost of a
file is the container's 24 bytes, the deflated header (a few hundred bytes) and the index section's entry and
statistics (53 bytes).

A reader checks the header, the table and the whole index (every brick's section size against its settings and
grid shape) before it reads any brick, and then reads only the sections of the bricks it is asked for: read_srn
gives an SRNFile of one part per brick (srnvtk.parts), whose networks `part_model` builds on demand, and which
srnvtk.decode decodes like a format-6 file of bricks. The file's size and ratio are not stored: a reader
measures them.

Why not format 6: there a part costs two table entries (26 bytes), its entry in the JSON header and 40 bytes of
float64 statistics, about 80 bytes besides its parameters (benchmarks/README.md, bricks: the container); here 37.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__
from .bricks import Brick
from .config import FVSRNConfig, PruningConfig, from_json
from .container import Container, Encoded, SectionEntry, atomic_writer, encode_section, pack_head
from .errors import FileFormatError, SettingsError, SRNError
from .filechecks import (
    GRID,
    GRID_KEEP,
    GRID_QUANT,
    WEIGHTS,
    check_array_name,
    check_geometry,
    check_header_keys,
    check_source_dtype,
    check_value_range,
    one_line,
    tensor_specs,
)
from .fileformat import SourceInfo, SRNFile, _model_from_stored
from .metrics import compression_ratio
from .multipart import stats_from_bytes
from .parts import BrickLayout, FieldInfo, PartInfo, brick_geometry
from .quantize import StoredModel
from .volume import Geometry

BRICKED_VERSION = 7
FORMAT_NAME = "srnvtk"
HEADER_KEYS = ("format", "srnvtk_version", "source", "bricks", "settings", "index")
STORED_STATS = ("psnr", "train_seconds", "steps", "final_loss", "pruned_fraction")
INDEX_RECORD = struct.Struct("<3HBBIfff")  # grid z y x, keep, settings, steps, seconds, loss, core psnr
TABLE_ENTRY_BYTES = 13  # srnvtk.container's section table entry
BRICK_BOOKKEEPING_BYTES = INDEX_RECORD.size + TABLE_ENTRY_BYTES
TENSOR_ORDER = (GRID_QUANT, WEIGHTS, GRID_KEEP, GRID)  # within a brick's section
KEEP_NONE, KEEP_POSITION, KEEP_ENTRY = 0, 1, 2
MAX_GRID_AXIS = 65535  # a u16


@dataclass(frozen=True)
class BrickSettings:
    """What bricks share: the network's settings (grid resolution unused) and pruning."""

    model_config: FVSRNConfig
    pruning: PruningConfig

    def describe(self) -> dict[str, Any]:
        return {"architecture": self.model_config.architecture,
                "model_config": dataclasses.asdict(self.model_config),
                "pruning_config": dataclasses.asdict(self.pruning)}


def canonical(config: FVSRNConfig) -> FVSRNConfig:
    """The settings a file stores for a brick: its grid shape lives in the brick's record, so the resolution the
    planner chose (and rate control may have grown) is dropped for a fixed value, and bricks share entries."""
    return dataclasses.replace(config, grid_resolution=2, grid_shape=None)


@dataclass
class StoredBrick:
    """One brick as a file stores it: its record's values and its encoded section."""

    brick: Brick
    grid_shape: tuple[int, int, int]
    keep: int
    settings: BrickSettings
    section: Encoded
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def file_bytes(self) -> int:
        """What this brick adds to a file."""
        return len(self.section.data) + BRICK_BOOKKEEPING_BYTES


def brick_tensors(model, keep=None) -> tuple[bytes, tuple[int, int, int], int]:
    """(section bytes before coding, grid shape, keep kind) of a trained brick network (srnvtk.quantize's storage
    tensors, in TENSOR_ORDER); keep: measure as if only these latent entries were kept (rate control)."""
    from .quantize import storage_tensors

    stored = storage_tensors(model, keep)
    arrays = stored.arrays
    if set(arrays) - set(TENSOR_ORDER):
        raise SettingsError("bricks store fV-SRN networks only")
    plan = tensor_specs(model.config, stored.structure, Geometry((0, 1, 0, 1, 0, 1)))
    weights = _reordered(arrays[WEIGHTS], stored.layout, plan.weights_layout)
    parts = {**arrays, WEIGHTS: weights}
    blob = b"".join(np.ascontiguousarray(parts[n]).tobytes() for n in TENSOR_ORDER if n in parts)
    keep_shape = stored.structure.get("keep_shape")
    kind = KEEP_NONE if keep_shape is None else (KEEP_POSITION if keep_shape[0] == 1 else KEEP_ENTRY)
    return blob, tuple(int(s) for s in stored.structure["grid_shape"]), kind


def _reordered(vector: np.ndarray, layout: list[list], order: dict[str, tuple[int, ...]]) -> np.ndarray:
    """A packed vector rearranged from the writer's layout into the order the reader derives from the settings."""
    pieces, start = {}, 0
    for name, shape in layout:
        size = math.prod(shape)
        pieces[name] = vector[start:start + size]
        start += size
    return np.concatenate([pieces[name] for name in order])


def store_brick(brick: Brick, model, stats: dict[str, float], pruning: PruningConfig | None = None) -> StoredBrick:
    """A trained brick network (at its stored precision) as a file stores it."""
    blob, grid_shape, kind = brick_tensors(model)
    if max(grid_shape) > MAX_GRID_AXIS:
        raise SettingsError(f"a brick's latent grid of {grid_shape} points is beyond {MAX_GRID_AXIS} per axis")
    settings = BrickSettings(canonical(model.config), pruning or PruningConfig())
    return StoredBrick(brick, grid_shape, kind, settings, encode_section(blob), dict(stats))


def brick_file_bytes(model, keep=None) -> int:
    """The bytes a brick network adds to a file (its section coded as a writer codes it, and its bookkeeping),
    if it kept only the given latent entries (None: its own): rate control's measure."""
    blob, _shape, _kind = brick_tensors(model, keep)
    return len(encode_section(blob).data) + BRICK_BOOKKEEPING_BYTES


# ---------------------------------------------------------------------------------------------------------------
# writing


def _header(source: SourceInfo, layout: BrickLayout, settings: Sequence[BrickSettings]) -> dict[str, Any]:
    g = source.geometry
    return {
        "format": FORMAT_NAME,
        "srnvtk_version": __version__,
        "source": {"array_name": source.array_name, "dtype": source.dtype, "extent": list(g.extent),
                   "origin": list(g.origin), "spacing": list(g.spacing), "value_range": list(source.value_range)},
        "bricks": [list(layout.size), layout.halo],
        "settings": [s.describe() for s in settings],
        "index": [0, list(STORED_STATS)],
    }


@dataclass(frozen=True)
class BrickEntry:
    """A brick's line in the index and the table, without its bytes (they may lie in another process's file)."""

    brick: Brick
    grid_shape: tuple[int, int, int]
    keep: int
    settings: BrickSettings
    section: SectionEntry
    stats: dict[str, float]

    @classmethod
    def of(cls, stored: StoredBrick) -> BrickEntry:
        return cls(stored.brick, stored.grid_shape, stored.keep, stored.settings, SectionEntry.of(stored.section),
                   stored.stats)


def bricked_head(source: SourceInfo, layout: BrickLayout, entries: Sequence[BrickEntry],
                 stats: dict[str, float]) -> bytes:
    """Everything of a bricked file before the bricks' sections: prefix, header, table and index. entries: every
    brick of the layout, in any order."""
    order = {brick: n for n, brick in enumerate(layout.indices(source.geometry))}
    by_brick = {e.brick: e for e in entries}
    if set(by_brick) != set(order) or len(entries) != len(order):
        raise SettingsError(f"a bricked file needs every brick of the layout once: {len(order)} bricks, "
                            f"{len(entries)} given")
    ordered = [by_brick[b] for b in order]
    settings: list[BrickSettings] = []
    for entry in ordered:
        if entry.settings not in settings:
            settings.append(entry.settings)
    if len(settings) > 255:
        raise SettingsError("more than 255 different brick settings in one file")
    records = b"".join(INDEX_RECORD.pack(*e.grid_shape, e.keep, settings.index(e.settings),
                                         int(e.stats.get("steps", 0)),
                                         *(_f32(e.stats.get(k)) for k in ("train_seconds", "final_loss", "psnr")))
                       for e in ordered)
    values = np.array([float(stats.get(k, math.nan)) for k in STORED_STATS], dtype="<f8").tobytes()
    index = Encoded(records + values, 0, len(records) + len(values))
    head = pack_head(BRICKED_VERSION, _header(source, layout, settings),
                     [SectionEntry.of(index), *(e.section for e in ordered)])
    return head + index.data


def _f32(value: float | None) -> float:
    return math.nan if value is None else float(value)


def fixed_bytes(source: SourceInfo, layout: BrickLayout, settings: Sequence[BrickSettings]) -> int:
    """The bytes of a bricked file beyond its bricks' `file_bytes`: what rate control leaves for the bricks is
    the budget less this."""
    sample = Encoded(b"", 0, 0)
    bricks = layout.indices(source.geometry)
    entries = [BrickEntry(b, (1, 1, 1), KEEP_NONE, settings[n % len(settings)], SectionEntry.of(sample), {})
               for n, b in enumerate(bricks)]
    return len(bricked_head(source, layout, entries, {})) - len(bricks) * BRICK_BOOKKEEPING_BYTES


def write_bricked(path: str | os.PathLike, source: SourceInfo, layout: BrickLayout, bricks: Iterable[StoredBrick],
                  stats: dict[str, float]) -> int:
    """Write a bricked file atomically from bricks in memory; returns its bytes."""
    bricks = list(bricks)
    by_brick = {b.brick: b for b in bricks}
    head = bricked_head(source, layout, [BrickEntry.of(b) for b in bricks], stats)
    with atomic_writer(path) as handle:
        handle.write(head)
        for brick in layout.indices(source.geometry):
            handle.write(by_brick[brick].section.data)
    return len(head) + sum(len(b.section.data) for b in bricks)


def assemble_stream(path: str | os.PathLike, source: SourceInfo, layout: BrickLayout, entries: Sequence[BrickEntry],
                    stats: dict[str, float], sections: Iterator[bytes]) -> int:
    """Write a bricked file atomically from every brick's entry and its section's bytes, handed over in brick
    order by `sections` (srnvtk.distributed: from this process's memory or received from the rank that trained
    the brick), each checked against its entry's CRC. Returns the file's bytes. On any failure the iterator is
    run to its end (the ranks sending into it must not be left waiting), and nothing appears at path."""
    head = bricked_head(source, layout, entries, stats)
    by_brick = {e.brick: e for e in entries}
    total = len(head)
    try:
        with atomic_writer(path) as out:
            out.write(head)
            for brick in layout.indices(source.geometry):
                entry = by_brick[brick]
                data = next(sections)
                if len(data) != entry.section.length or zlib.crc32(data) != entry.section.crc:
                    raise FileFormatError(f"brick {brick}'s bytes arrived damaged")
                out.write(data)
                total += len(data)
    except BaseException:
        for _rest in sections:
            pass
        raise
    return total


# ---------------------------------------------------------------------------------------------------------------
# reading


def _structure(config: FVSRNConfig, grid_shape: tuple[int, int, int], keep: int) -> dict[str, Any]:
    channels = config.grid_channels
    keep_shape = None if keep == KEEP_NONE else [1 if keep == KEEP_POSITION else channels, *grid_shape]
    structure: dict[str, Any] = {"grid_shape": list(grid_shape), "keep_shape": keep_shape}
    if config.wavelet is not None:
        from .wavelet import resolve_levels

        structure["wavelet_levels"] = list(resolve_levels(grid_shape, config.wavelet, config.wavelet_levels))
    return structure


def _model_from_section(data: bytes, settings_config: FVSRNConfig, grid_shape: tuple[int, int, int], keep: int,
                        geometry: Geometry):
    """A brick's network from its section's decoded bytes (see the module for their order)."""
    config = dataclasses.replace(settings_config, grid_shape=tuple(grid_shape))
    structure = _structure(config, grid_shape, keep)
    plan = tensor_specs(config, structure, geometry)
    arrays, offset = {}, 0
    for name in TENSOR_ORDER:
        if name not in plan.specs:
            continue
        spec = plan.specs[name]
        if name == GRID and GRID_KEEP in plan.specs:
            count = len(data) - offset
            if not 0 <= count <= spec.max_size:
                raise FileFormatError(f"{count} kept grid codes, at most {spec.max_size} possible")
            shape: tuple[int, ...] = (count,)
        else:
            shape = spec.shape
        size = math.prod(shape) * spec.dtype.itemsize
        if offset + size > len(data):
            raise FileFormatError("the brick's section is shorter than its settings need")
        arrays[name] = np.frombuffer(data, dtype=spec.dtype, count=math.prod(shape), offset=offset).reshape(shape)
        offset += size
    if offset != len(data):
        raise FileFormatError("the brick's section is longer than its settings need")
    layout = [[n, list(s)] for n, s in plan.weights_layout.items()]
    return _model_from_stored(config, geometry, StoredModel(arrays, layout, structure))


def build_brick_model(stored: StoredBrick, grid: Geometry, layout: BrickLayout):
    """The network of a brick stored in memory (another rank's, received for blending), as a reader builds it."""
    from .container import decode_section

    data = decode_section(stored.section.data, stored.section.codec, stored.section.raw_length)
    return _model_from_section(data, stored.settings.model_config, stored.grid_shape, stored.keep,
                               brick_geometry(grid, layout.extent(grid, stored.brick)))


def read_bricked(container: Container) -> SRNFile:
    """A format-7 file as an SRNFile of parts (one per brick, srnvtk.parts.PartInfo) whose networks are built on
    demand, each from its own section (`part_model`; `sections_read` counts the reads). The header, the table
    and the whole index are checked first, every brick's section size against its settings and grid shape."""
    header = container.header
    check_header_keys(header, HEADER_KEYS, FORMAT_NAME)
    src = header["source"]
    if not isinstance(src, dict) or not isinstance(src.get("value_range"), list) or len(src["value_range"]) != 2:
        raise FileFormatError("the source is not described with a value range of two numbers")
    geometry = check_geometry(src.get("extent"), src.get("origin"), src.get("spacing"))
    value_range = check_value_range(*src["value_range"])
    source = SourceInfo(check_array_name(src.get("array_name")), check_source_dtype(src.get("dtype")), geometry,
                        value_range)
    layout = _layout(header["bricks"], geometry)
    settings = _settings(header["settings"])
    if header["index"] != [0, list(STORED_STATS)]:
        raise FileFormatError("the index is not described as [0, the names srnvtk stores]")
    bricks = layout.indices(geometry)
    if len(container.sections) != 1 + len(bricks):
        raise FileFormatError(f"{len(container.sections)} sections for {len(bricks)} bricks and an index")
    index_bytes = len(bricks) * INDEX_RECORD.size + 8 * len(STORED_STATS)
    if container.sections[0].raw_length != index_bytes:
        raise FileFormatError(f"the index has {container.sections[0].raw_length} bytes, {len(bricks)} bricks need "
                              f"{index_bytes}")
    index = container.read(0)
    parts = []
    for n, brick in enumerate(bricks):
        z, y, x, keep, entry, steps, seconds, loss, core_psnr = INDEX_RECORD.unpack_from(index, n * INDEX_RECORD.size)
        if keep not in (KEEP_NONE, KEEP_POSITION, KEEP_ENTRY) or entry >= len(settings) or min(z, y, x) < 1:
            raise FileFormatError(f"brick {brick}'s record is damaged")
        config = dataclasses.replace(settings[entry].model_config, grid_shape=(z, y, x))
        extent = layout.extent(geometry, brick)
        structure = _structure(config, (z, y, x), keep)
        _check_section_size(container, 1 + n, tensor_specs(config, structure, brick_geometry(geometry, extent)), brick)
        stats = {k: v for k, v in (("steps", float(steps)), ("train_seconds", seconds), ("final_loss", loss),
                                   ("psnr", core_psnr)) if not math.isnan(v)}
        parts.append(PartInfo(n, 0, 0, brick, extent, config, settings[entry].pruning, structure, stats,
                              container.sections[1 + n].length))
    stats = stats_from_bytes(index[len(bricks) * INDEX_RECORD.size:])
    stats["file_bytes"] = float(container.size)
    stats["ratio"] = compression_ratio(geometry.num_points, container.size)
    writer = header["srnvtk_version"] if isinstance(header["srnvtk_version"], str) else ""
    srn: SRNFile | None = None

    def load(index: int):
        part = parts[index]
        data = container.read(1 + index)
        srn.sections_read += 1
        try:
            return _model_from_section(data, part.model_config, part.model_config.grid_shape,
                                       _keep_kind(part.structure), brick_geometry(geometry, part.extent))
        except SRNError as exc:
            raise FileFormatError(f"'{container.path}': brick {part.brick}: {exc}") from None
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise FileFormatError(f"'{container.path}': brick {part.brick} is damaged ({exc})") from None

    srn = SRNFile(None, parts[0].model_config, source, stats, {}, parts[0].pruning, BRICKED_VERSION,
                  one_line(writer, 40), (FieldInfo(source.array_name, source.dtype, 1, (value_range,)),), (0.0,),
                  tuple(parts), layout, load)
    return srn


def _keep_kind(structure: dict[str, Any]) -> int:
    keep = structure.get("keep_shape")
    return KEEP_NONE if keep is None else (KEEP_POSITION if keep[0] == 1 else KEEP_ENTRY)


def _check_section_size(container: Container, section: int, plan, brick: Brick) -> None:
    """A brick's section holds exactly what its settings and grid shape call for (a pruned grid: at most)."""
    fixed = sum(math.prod(plan.specs[n].shape) * plan.specs[n].dtype.itemsize
                for n in (GRID_QUANT, WEIGHTS, GRID_KEEP) if n in plan.specs)
    codes = plan.specs[GRID]
    length = container.sections[section].raw_length
    largest = fixed + (codes.max_size if GRID_KEEP in plan.specs else math.prod(codes.shape))
    if not (fixed <= length <= largest) or (GRID_KEEP not in plan.specs and length != largest):
        raise FileFormatError(f"brick {brick}'s section has {length} bytes, its settings and grid call for "
                              f"{fixed}..{largest}")


def _layout(value: Any, geometry: Geometry) -> BrickLayout:
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], list) and len(value[0]) == 3
            and all(isinstance(s, int) and not isinstance(s, bool) for s in (*value[0], value[1]))):
        raise FileFormatError("the brick layout is not [[size x, y, z], halo]")
    try:
        layout = BrickLayout(tuple(value[0]), value[1])
    except SRNError as exc:
        raise FileFormatError(str(exc)) from None
    if math.prod(layout.counts(geometry)) > (1 << 22):
        raise FileFormatError(f"{layout.counts(geometry)} bricks are more than a file may hold")
    return layout


def _settings(value: Any) -> list[BrickSettings]:
    if not isinstance(value, list) or not 1 <= len(value) <= 255:
        raise FileFormatError("the file lists no brick settings, or too many")
    found = []
    for item in value:
        if not (isinstance(item, dict) and set(item) == {"architecture", "model_config", "pruning_config"}
                and item["architecture"] == "fvsrn" and isinstance(item["model_config"], dict)
                and isinstance(item["pruning_config"], dict)):
            raise FileFormatError("a brick settings entry is not {architecture fvsrn, model_config, pruning_config}")
        try:
            config = from_json(FVSRNConfig, json.dumps(item["model_config"]))
            pruning = from_json(PruningConfig, json.dumps(item["pruning_config"]))
        except SRNError as exc:
            raise FileFormatError(f"invalid brick settings ({one_line(exc, 160)})") from None
        found.append(BrickSettings(config, pruning))
    return found
