"""The .srn file: a model, what it was trained on and how, in srnvtk's own container; no pickle anywhere.

Format version 5 (what srnvtk writes) is a srnvtk.container file: a CRC-checked, deflated JSON header and
CRC-checked binary sections. The header:
  format          "srnvtk"
  srnvtk_version  of the writer
  source          array_name, dtype, extent, origin, spacing, value_range: what a reader rebuilds
  architecture    "fvsrn" or "neurcomp"
  model_config, pruning_config   the settings (srnvtk.config), as JSON objects
  structure       the shapes beyond the settings: fV-SRN {"grid_shape", "keep_shape"} and for a wavelet grid
                  "wavelet_levels" (per axis, z y x); Neurcomp {"widths", "clustered_layers"}
  layouts         {"weights": [[name, shape], ...], "weight_indices": [[name, shape], ...]}: what the packed
                  vectors hold, in order
  tensors         {name: [section, dtype, shape]} for the stored tensors (srnvtk.quantize):
                    grid            uint8 codes of the latent tensor (C, z, y, x), or the K kept entries (K,)
                    grid_quant      float32 scale and offset per channel (2, C), or per channel and wavelet level
                                    group (2, C, G)
                    grid_keep       uint8 packed bits of the keep mask (pruned grids)
                    weights         float16: every other parameter, packed
                    weight_indices  uint8: Neurcomp's k-means indices, packed
  stats           [section, names]: the training statistics as float64 values of these names in that section
                  (psnr, train_seconds, steps, final_loss, pruned_fraction; NaN: not recorded, inf: lossless);
                  binary and fixed in size, so a file's size never depends on them and rate control measures
                  it exactly before they are known
Grid codes and keep masks are stored deflated or LZMA-coded, whichever is smaller; weights and indices raw, so
that a Neurcomp file's size does not depend on its values (rate control sizes it before training). The file's
size and ratio are not stored: a reader measures them. Every tensor's dtype and shape is derived from the
settings and structure and checked (srnvtk.filechecks) before any section is read.

Format version 9 (srnvtk.multipart) holds many networks (fields x time steps x bricks, srnvtk.parts) at 51 bytes
of bookkeeping each; it is written by `write_parts` only for files that need it, so a single network stays a
version-5 file. Version 6, its first layout (about 74 bytes a part), is still read. Version 10 is version 6 with
vector fields; version 11 is version 9 with delta parts (a time step's latent grid stored as pruned differences
to the previous step's, srnvtk.delta), written only for a series encoded with time scheme "delta"; version 12
is version 11 for a file with a vector field, whose part records keep each component's and the magnitude's PSNR.

Format version 7 is version 5 for an fV-SRN whose latent codes have fewer than 8 bits (model_config.grid_bits,
from 2 to 7; codes from 0 to 2^bits - 1, value = code * scale + offset as before): the only version written
with grid_bits in the header. A file with 8-bit codes is still written as version 5, without the key, so
srnvtk releases that read only version 5 read it.

Format version 8 is version 5 or 7 plus a guaranteed pointwise error bound (srnvtk.errorbound), written only for
files that hold one:
  bound           max_error, coder, step, margin, chunk_edge, design, sections (one per chunk of the source
                  grid, -1 for a chunk with nothing to correct), and max_rel_error when the bound was relative
and, where the file holds no network (design "residual only"), architecture "none" with model_config,
pruning_config, structure and layouts null and no tensors. Every bound number is checked against the source
(srnvtk.errorbound.check_bound_header) and every chunk's size against its shape before it is decoded.

Versions 1-4 were HDF5 files (srnvtk.legacy_hdf5 documents and reads them, in a bounded child process):
4 added k-means Neurcomp weights, 3 wavelet grids, 2 pruning; all are still read.
Files are written to a temporary name beside the target, then renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import __version__
from .config import FVSRNConfig, ModelConfig, PruningConfig, from_json, model_config_class, stored_model_config
from .container import ENTRY, Container, encode_section, is_container, pack, write_atomically
from .container import MAGIC as CONTAINER_MAGIC
from .delta import delta_stored, reconstruct
from .errorbound import ResidualCode, check_bound_header, max_payload_bytes
from .errors import DamagedFileError, FileFormatError, InputError, SettingsError, SRNError
from .filechecks import (
    check_array_name,
    check_geometry,
    check_header_keys,
    check_layout,
    check_object_keys,
    check_source_dtype,
    check_structure,
    check_value_range,
    one_line,
    tensor_specs,
)
from .kmeans import ClusteredLinear
from .legacy_hdf5 import LEGACY_VERSIONS, LegacyContents, read_legacy
from .metrics import compression_ratio
from .models import model_from_structure
from .multipart import (
    INDEX_VERSIONS,
    MULTIPART_VERSION,
    STORED_STATS,
    VECTOR_VERSION,
    EncodedPart,
    compact_bytes,
    delta_chain,
    load_part,
    part_stored,
    parts_bytes,
    read_compact,
    read_multipart,
    stats_from_bytes,
)
from .parts import BrickLayout, FieldInfo, PartData, PartInfo, brick_geometry
from .quantize import (
    GRID,
    GRID_KEEP,
    INDICES_LAYOUT,
    WEIGHT_INDICES,
    WEIGHTS,
    WEIGHTS_LAYOUT,
    StoredModel,
    code_levels,
    stored_state,
)
from .volume import Geometry

if TYPE_CHECKING:
    from .models.protocol import SRNModel

SECTION_ENTRY_BYTES = ENTRY.size  # each section's entry in the container's table

FORMAT_NAME = "srnvtk"
FORMAT_VERSION = 5  # what srnvtk writes for one network, unless it needs a later version's feature
GRID_BITS_VERSION = 7  # an fV-SRN whose latent codes have fewer than 8 bits (FVSRNConfig.grid_bits)
BOUNDED_VERSION = 8  # a file with an error bound (version 5 or 7 plus the bound and its residual)
SINGLE_NETWORK_VERSIONS = (FORMAT_VERSION, GRID_BITS_VERSION, BOUNDED_VERSION)  # many networks: COMPACT_VERSION
# Many networks: COMPACT_VERSION, VECTOR_VERSION where a field is a vector, DELTA_VERSION with delta parts
# (DELTA_VECTOR_VERSION with a vector too); MULTIPART_VERSION is still read.
MANY_NETWORK_VERSIONS = (MULTIPART_VERSION, VECTOR_VERSION, *INDEX_VERSIONS)
READABLE_VERSIONS = tuple(sorted((*LEGACY_VERSIONS, *SINGLE_NETWORK_VERSIONS, *MANY_NETWORK_VERSIONS)))
FULL_GRID_BITS = 8  # latent codes of versions 1-5: the default, never written into a header
NO_NETWORK = "none"  # the architecture of a bounded file that holds only the residual
# What a file's reader keeps of the networks it has built (their tensors' bytes) before it forgets the least
# recently used: enough for every part of a step, or a brick file's parts, in the common case.
PART_CACHE_BYTES = 1 << 30
STAT_KEYS = ("psnr", "train_seconds", "steps", "final_loss", "file_bytes", "ratio", "pruned_fraction")
# Coded sections: the latent codes and the keep mask. Not the weights or k-means indices: those keep a
# Neurcomp file's size independent of its values, so rate control can size it exactly before training.
CODECS = {GRID: ("raw", "zlib", "lzma"), GRID_KEEP: ("raw", "zlib", "lzma")}
HEADER_KEYS = ("format", "srnvtk_version", "source", "architecture", "model_config", "pruning_config", "structure",
               "layouts", "tensors", "stats")
SOURCE_KEYS = ("array_name", "dtype", "extent", "origin", "spacing", "value_range")
BOUND_KEY = "bound"  # format 8 only


@dataclass(frozen=True)
class SourceInfo:
    """What a reader needs to rebuild the original array: name, type, geometry and value range."""

    array_name: str
    dtype: str
    geometry: Geometry
    value_range: tuple[float, float]


@dataclass
class SRNFile:
    """A loaded .srn file: its networks (parts) and everything stored beside them.

    A file of one network (format 5 and older, or a trained model in memory) has `model`, `model_config`,
    `source` and `stats` for it, and one part. A file of many (format 6: fields x time steps x bricks,
    srnvtk.parts) has `model` None: `part_model(i)` builds a part's network when it is first asked for, reading
    only that part's sections (`sections_read` counts them); `source`, `model_config` and `pruning` then describe
    its first field and part, and `stats` the whole file. A bounded file (format 8) has `bound`, and `model`
    and `model_config` None when it holds only the residual.
    """

    model: torch.nn.Module | None
    model_config: ModelConfig | None
    source: SourceInfo
    stats: dict[str, float] = field(default_factory=dict)
    tensor_bytes: dict[str, int] = field(default_factory=dict)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    format_version: int = FORMAT_VERSION
    srnvtk_version: str = __version__  # of the srnvtk that wrote the file
    fields: tuple[FieldInfo, ...] = ()
    times: tuple[float, ...] = (0.0,)
    parts: tuple[PartInfo, ...] = ()
    bricks: BrickLayout | None = None
    part_loader: Callable[[int], SRNModel] | None = None
    sections_read: int = 0
    bound: ResidualCode | None = None  # the error bound and its residual (format 8)

    def __post_init__(self) -> None:
        source = self.source
        if not self.fields:
            self.fields = (FieldInfo(source.array_name, source.dtype, 1, (source.value_range,)),)
        if not self.parts and self.model is not None:
            structure = self.model.structure()
            self.parts = (PartInfo(0, 0, 0, None, tuple(source.geometry.extent), self.model_config, self.pruning,
                                   structure, dict(self.stats), sum(self.tensor_bytes.values())),)
        self._models: OrderedDict[int, SRNModel] = OrderedDict()  # least recently used first
        self._model_bytes: dict[int, int] = {}  # each cached network's tensors' bytes
        self._cached_bytes = 0  # their sum, kept as networks come and go (a brick file may hold very many)
        self.cache_bytes = PART_CACHE_BYTES

    @classmethod
    def of_model(cls, model: torch.nn.Module, geometry: Geometry, value_range: tuple[float, float],
                 dtype: str = "float32", array_name: str = "values", pruning: PruningConfig | None = None) -> SRNFile:
        """A file's contents for a model in memory (not written), e.g. to decode what was just trained."""
        source = SourceInfo(array_name, dtype, geometry, (float(value_range[0]), float(value_range[1])))
        return cls(model, model.config, source, pruning=pruning or PruningConfig())

    @property
    def geometry(self) -> Geometry:
        """The source lattice every part lives on."""
        return self.source.geometry

    def has_model(self, index: int) -> bool:
        """Whether part index's network is built and still cached."""
        return index in self._models

    def part_model(self, index: int) -> SRNModel:
        """The network of part `index`, built (and its sections read) on first use."""
        if self.part_loader is None:
            if index != 0 or self.model is None:
                raise SettingsError(f"this file has no part {index}")
            return self.model
        if index in self._models:
            self._models.move_to_end(index)
            return self._models[index]
        model = self._models[index] = self.part_loader(index)
        self._model_bytes[index] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        self._cached_bytes += self._model_bytes[index]
        # Forget the least recently used networks while the cached ones take more than cache_bytes (the newest is
        # kept whatever its size): stepping through a long series would otherwise keep every step's network.
        while self._cached_bytes > self.cache_bytes and len(self._models) > 1:
            oldest, _ = self._models.popitem(last=False)
            self._cached_bytes -= self._model_bytes.pop(oldest)
        return model

    def parts_of(self, field_index: int = 0, step: int = 0) -> list[PartInfo]:
        """The parts that together hold one field at one time step; SettingsError when the file has neither."""
        if not 0 <= field_index < len(self.fields):
            names = ", ".join(f.name for f in self.fields)
            raise SettingsError(f"the file has no field {field_index} (it has {len(self.fields)}: {names})")
        if not 0 <= step < len(self.times):
            raise SettingsError(f"the file has no time step {step} (it has {len(self.times)})")
        return [p for p in self.parts if p.field == field_index and p.step == step]


def write_srn(
    path: str | os.PathLike,
    model_config: ModelConfig,
    stored: StoredModel,
    source: SourceInfo,
    stats: dict[str, float],
    pruning: PruningConfig | None = None,
    bound: ResidualCode | None = None,
) -> int:
    """Write atomically; the stats gain file_bytes and ratio of the file. Returns the file's bytes.
    With a bound (format 8) model_config and stored may be None: a file without a network.

    InputError, before anything is written, for a source that no reader would accept back (srnvtk.filechecks:
    an array name with markup or control characters, non-positive spacing, ...)."""
    _check_readable_source(source)
    file_bytes = write_atomically(path, srn_bytes(model_config, stored, source, stats, pruning, bound))
    stats["file_bytes"] = file_bytes
    stats["ratio"] = compression_ratio(source.geometry.num_points, file_bytes)
    return file_bytes


def _check_readable_source(source: SourceInfo) -> None:
    """The same checks as reading applies: a file this srnvtk would refuse to read is never written."""
    geometry = source.geometry
    try:
        check_array_name(source.array_name)
        check_source_dtype(source.dtype)
        check_geometry(geometry.extent, geometry.origin, geometry.spacing)
        check_value_range(*source.value_range)
    except FileFormatError as exc:
        raise InputError(f"the volume cannot be stored: {exc}") from None


def srn_file_bytes(
    model_config: ModelConfig, stored: StoredModel, source: SourceInfo, pruning: PruningConfig | None = None
) -> int:
    """The bytes write_srn writes for this model, whatever its stats: rate control measures this rather than
    trusting an estimate."""
    return len(srn_bytes(model_config, stored, source, {}, pruning))


def srn_bytes(
    model_config: ModelConfig,
    stored: StoredModel,
    source: SourceInfo,
    stats: dict[str, float],
    pruning: PruningConfig | None = None,
    bound: ResidualCode | None = None,
) -> bytes:
    """The whole single-network file as bytes (format 5 or 7), or format 8 with a bound (see the module docstring)."""
    sections, tensors = [], {}
    for name, array in (stored.arrays.items() if stored is not None else ()):
        array = np.ascontiguousarray(array)
        tensors[name] = [len(sections), array.dtype.str, list(array.shape)]
        sections.append(encode_section(array.tobytes(), CODECS.get(name, ("raw",))))
    stats_values = np.array([float(stats.get(key, math.nan)) for key in STORED_STATS], dtype="<f8")
    stats_section = [len(sections), list(STORED_STATS)]
    sections.append(encode_section(stats_values.tobytes(), ("raw",)))
    settings, layouts = None, None
    if model_config is not None:
        settings = stored_model_config(model_config)  # `outputs` only for a vector network
        if settings.get("grid_bits") == FULL_GRID_BITS:  # a version-5 header holds what srnvtk 0.1 reads
            del settings["grid_bits"]
    if stored is not None:
        layouts = {"weights": stored.layout}
        if stored.index_layout:
            layouts["weight_indices"] = stored.index_layout
    geometry = source.geometry
    header = {
        "format": FORMAT_NAME,
        "srnvtk_version": __version__,
        "source": {"array_name": source.array_name, "dtype": source.dtype, "extent": list(geometry.extent),
                   "origin": list(geometry.origin), "spacing": list(geometry.spacing),
                   "value_range": list(source.value_range)},
        "architecture": model_config.architecture if model_config is not None else NO_NETWORK,
        "model_config": settings,
        "pruning_config": dataclasses.asdict(pruning or PruningConfig()) if model_config is not None else None,
        "structure": stored.structure if stored is not None else None,
        "layouts": layouts,
        "tensors": tensors,
        "stats": stats_section,
    }
    if bound is None:
        if model_config is None or stored is None:
            raise ValueError("a file without an error bound needs a network")
        return pack(format_version_for(model_config), header, sections)
    chunk_sections, bound.chunk_bytes = [], []
    for index in range(bound.chunks):
        payload = bound.payload(index)
        if payload is None:
            chunk_sections.append(-1)
            bound.chunk_bytes.append(0)
            continue
        chunk_sections.append(len(sections))
        if index not in bound.encoded:
            bound.encoded[index] = encode_section(payload)
        sections.append(bound.encoded[index])
        bound.chunk_bytes.append(len(sections[-1].data) + SECTION_ENTRY_BYTES)
    header[BOUND_KEY] = bound.header(chunk_sections)
    return pack(BOUNDED_VERSION, header, sections)


def format_version_for(model_config: ModelConfig) -> int:
    """The version a file of this model is written as: the oldest whose readers understand everything in it."""
    return GRID_BITS_VERSION if grid_bits(model_config) != FULL_GRID_BITS else FORMAT_VERSION


def grid_bits(model_config: ModelConfig) -> int:
    """Bits of the latent codes (8 for an architecture without a latent grid)."""
    return model_config.grid_bits if isinstance(model_config, FVSRNConfig) else FULL_GRID_BITS


def read_srn(path: str | os.PathLike) -> SRNFile:
    """Load and validate a .srn file; any problem becomes a FileFormatError naming the file.

    Format 5: the container's checks, then every header value, then the sections the header names (see the
    module docstring). Versions 1-4 (HDF5): srnvtk.legacy_hdf5 parses and checks them in a bounded child
    process; here the checked contents become a model."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"no such .srn file: '{path}'")
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(len(CONTAINER_MAGIC))
        if is_container(prefix):
            container = Container.open(path)
            if container.version in MANY_NETWORK_VERSIONS:
                return _read_multipart(container)
            return _read_container(container)
        return _read_contents(read_legacy(path))
    except DamagedFileError as exc:
        raise FileFormatError(f"'{path}' is damaged or not a srnvtk file ({exc})") from None
    except SRNError as exc:
        raise FileFormatError(f"'{path}' is not a valid srnvtk file: {exc}") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise FileFormatError(f"'{path}' is damaged or not a srnvtk file ({exc})") from None


def _read_contents(f: LegacyContents) -> SRNFile:
    version = f.version  # legacy_hdf5 checked the marker, the version and every type, shape and size
    architecture = str(f.root["architecture"])
    config = from_json(model_config_class(architecture), f.root["model_config"])
    pruning = from_json(PruningConfig, f.root["pruning_config"]) if "pruning_config" in f.root else PruningConfig()
    source = _read_source(f.source)
    stats = {key: float(f.stats[key]) for key in STAT_KEYS if key in f.stats}
    arrays = dict(f.arrays)
    tensor_bytes = dict(f.tensor_bytes)
    layout = _json(f.layouts[WEIGHTS_LAYOUT], "weights_layout") if WEIGHTS in arrays else []
    index_layout = []
    if WEIGHT_INDICES in arrays:
        index_layout = _json(f.layouts[INDICES_LAYOUT], "indices_layout")
    if "model_structure" in f.root:
        structure = _json(f.root["model_structure"], "model_structure")
    else:  # version 1: an unpruned fV-SRN whose grid codes carry the shape
        grid = arrays.get(GRID)
        structure = {"grid_shape": list(grid.shape[1:]) if grid is not None else None, "keep_shape": None}
    model = _model_from_stored(config, source.geometry, StoredModel(arrays, layout, structure, index_layout))
    return SRNFile(model, config, source, stats, tensor_bytes, pruning, version,
                   str(f.root.get("srnvtk_version", "")))


def _json(text, what: str):
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise FileFormatError(f"{what} is not valid JSON ({exc})") from None


def _read_source(source: dict) -> SourceInfo:
    dtype = check_source_dtype(source["dtype"])
    geometry = check_geometry(source["extent"], source["origin"], source["spacing"])
    value_range = check_value_range(source["value_min"], source["value_max"])
    return SourceInfo(check_array_name(source["array_name"]), dtype, geometry, value_range)


def _model_from_stored(config: ModelConfig, geometry: Geometry, stored: StoredModel,
                       latent: np.ndarray | None = None) -> torch.nn.Module:
    """The network of stored tensors; latent: its latent grid when the file stores it otherwise (a delta part's,
    srnvtk.delta), checked against the model's shape like every other tensor."""
    if config.architecture == "fvsrn" and latent is None:
        grid = stored.arrays.get(GRID)
        pruned = GRID_KEEP in stored.arrays
        if grid is None or (not pruned and (grid.ndim != 4 or grid.shape[0] != config.grid_channels)):
            raise FileFormatError("the latent grid is missing or has the wrong shape")
    try:
        model = model_from_structure(config, geometry, stored.structure)
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"the model structure {stored.structure} does not fit the settings ({exc})") from None
    grid = stored.arrays.get(GRID)
    bits = grid_bits(config)
    if grid is not None and grid.size and int(grid.max()) > code_levels(bits):
        raise FileFormatError(f"latent codes reach {int(grid.max())}, beyond the {code_levels(bits)} of {bits} bits")
    state, keep = stored_state(stored, model)
    if latent is not None:
        state[model.latent_name] = torch.from_numpy(latent)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise FileFormatError(f"stored tensors {found} do not match the model's {expected}")
    if not all(torch.isfinite(t).all() for t in state.values()):
        raise FileFormatError("stored tensors hold NaN or infinite values")
    model.load_state_dict(state)
    for layer in model.modules():
        if isinstance(layer, ClusteredLinear) and layer.indices.numel() and int(layer.indices.max()) >= len(
                layer.codebook):
            raise FileFormatError(f"weight indices reach {int(layer.indices.max())}, beyond the "
                                  f"{len(layer.codebook)} shared values")
    if keep is not None:
        model.set_grid_keep(keep)
    model.eval()
    return model


def _read_container(container: Container) -> SRNFile:
    if container.version not in SINGLE_NETWORK_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise FileFormatError(f"format version {container.version} is not supported (this srnvtk reads versions "
                              f"{readable})")
    header = container.header
    keys = HEADER_KEYS + ((BOUND_KEY,) if container.version == BOUNDED_VERSION else ())
    check_header_keys(header, keys, FORMAT_NAME)
    source_fields = _json_object(header["source"], "the source")
    check_object_keys(source_fields, SOURCE_KEYS, "the source")
    value_range = source_fields.get("value_range")
    if not (isinstance(value_range, list) and len(value_range) == 2):
        raise FileFormatError("the source's value range is not two numbers")
    source = _read_source({**source_fields, "value_min": value_range[0], "value_max": value_range[1]})
    architecture = header["architecture"]
    if not isinstance(architecture, str):
        raise FileFormatError("the architecture is not a name")
    if container.version == BOUNDED_VERSION:
        return _read_bounded(container, header, source, architecture)
    return _read_network_file(container, header, source, architecture)


def _read_network_file(container: Container, header: dict, source: SourceInfo, architecture: str,
                       bound_sections: frozenset[int] = frozenset()) -> SRNFile:
    """A file's network (format 5 or 7, or the network of a format 8 file whose bound uses bound_sections)."""
    config = _settings(model_config_class(architecture), header["model_config"], "model settings")
    if container.version != BOUNDED_VERSION and format_version_for(config) != container.version:
        raise FileFormatError(f"format version {container.version} does not fit its settings (version "
                              f"{format_version_for(config)} files store latent codes of fewer than 8 bits)")
    pruning = _settings(PruningConfig, header["pruning_config"], "pruning settings")
    structure = check_structure(config, header["structure"])
    plan = tensor_specs(config, structure, source.geometry)
    layouts = _json_object(header["layouts"], "the layouts")
    check_object_keys(layouts, ("weights", "weight_indices"), "the layouts")
    layout = check_layout(layouts.get("weights"), plan.weights_layout, "weights_layout")
    index_layout = check_layout(layouts.get("weight_indices"), plan.index_layout, "indices_layout") \
        if plan.index_layout else []
    stats_index = _stats_section(header["stats"], container)
    arrays, tensor_bytes = _read_tensors(container, _json_object(header["tensors"], "the tensors"), plan.specs,
                                         reserved={stats_index, *bound_sections})
    model = _model_from_stored(config, source.geometry, StoredModel(arrays, layout, structure, index_layout))
    stats, writer = _file_stats(container, header, stats_index, source)
    return SRNFile(model, config, source, stats, tensor_bytes, pruning, container.version, writer)


def _file_stats(container: Container, header: dict, stats_index: int,
                source: SourceInfo) -> tuple[dict[str, float], str]:
    """A single-network file's stored statistics plus its measured size and ratio, and the srnvtk that wrote it."""
    stats = stats_from_bytes(container.read(stats_index))
    stats["file_bytes"] = float(container.size)
    stats["ratio"] = compression_ratio(source.geometry.num_points, container.size)
    writer = header["srnvtk_version"] if isinstance(header["srnvtk_version"], str) else ""
    return stats, one_line(writer, 40)


def _read_bounded(container: Container, header: dict, source: SourceInfo, architecture: str) -> SRNFile:
    """A format 8 file: its bound (checked before anything else), then its network, if it has one."""
    network = architecture != NO_NETWORK
    entry = check_bound_header(header[BOUND_KEY], source.dtype, source.geometry, source.value_range, network)
    sections = entry["sections"]
    used = frozenset(s for s in sections if s >= 0)
    if any(s >= len(container.sections) for s in used):
        raise FileFormatError("the residual names a section the file does not have")
    code = ResidualCode(float(entry["max_error"]), entry["coder"], float(entry["step"]), float(entry["margin"]),
                        entry["chunk_edge"], entry["design"], source.dtype, source.geometry.shape_zyx,
                        max_rel_error=entry.get("max_rel_error"))
    for index in range(code.chunks):
        limit = max_payload_bytes(code.coder, code.chunk_shape(index), source.dtype)
        section = sections[index]
        if section >= 0 and container.sections[section].raw_length > limit:
            raise FileFormatError(f"residual chunk {index} declares {container.sections[section].raw_length} "
                                  f"bytes, its shape allows at most {limit}")
    code.chunk_bytes = [container.sections[s].length + SECTION_ENTRY_BYTES if s >= 0 else 0 for s in sections]

    def read_chunk(index: int) -> bytes | None:
        """A chunk's payload, read and checked (CRC, declared length) only when a decode needs it."""
        if sections[index] < 0:
            return None
        try:
            return container.read(sections[index])
        except FileFormatError as exc:
            raise FileFormatError(f"'{container.path}' has a damaged residual ({exc})") from None

    code.reader = read_chunk
    if network:
        srn = _read_network_file(container, header, source, architecture, used)
    else:
        if any(header[key] is not None for key in ("model_config", "pruning_config", "structure", "layouts")) \
                or header["tensors"] != {}:
            raise FileFormatError("a file without a network describes a model")
        stats_index = _stats_section(header["stats"], container)
        if len(container.sections) != len(used) + 1 or stats_index in used:
            raise FileFormatError("the file has sections nothing names, or names one twice")
        stats, writer = _file_stats(container, header, stats_index, source)
        srn = SRNFile(None, None, source, stats, {}, PruningConfig(), container.version, writer)
    srn.bound = code
    return srn


def _json_object(value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise FileFormatError(f"{what} is not a JSON object")
    return value


def _settings(cls: type, value: object, what: str):
    try:
        return from_json(cls, json.dumps(_json_object(value, what)))
    except SRNError as exc:
        raise FileFormatError(f"the {what} are invalid ({one_line(exc, 160)})") from None


def _read_tensors(container: Container, described: dict, specs: dict,
                  reserved: set[int]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Every tensor the settings call for, checked against its spec and its section's size before it is read;
    reserved: sections the header uses for other things."""
    if set(described) != set(specs):
        raise FileFormatError(f"the file stores tensors {one_line(sorted(described), 100)}, the settings call for "
                              f"{sorted(specs)}")
    arrays, stored_bytes, used = {}, {}, set(reserved)
    for name, spec in specs.items():
        entry = described[name]
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], int)
                and isinstance(entry[1], str) and isinstance(entry[2], list)
                and all(isinstance(n, int) and not isinstance(n, bool) for n in entry[2])):
            raise FileFormatError(f"the tensor {name} is not described as [section, dtype, shape]")
        index, dtype, shape = entry
        try:
            matches = spec.matches(dtype, shape)
        except TypeError:
            matches = False
        if not matches:
            raise FileFormatError(f"the tensor {name} is stored as {one_line(dtype, 20)} {one_line(shape, 60)}, "
                                  f"the settings call for {spec.describe()}")
        if index in used or not 0 <= index < len(container.sections):
            raise FileFormatError(f"the tensor {name} names section {index}, which is missing or used twice")
        used.add(index)
        expected = math.prod(shape) * np.dtype(dtype).itemsize
        if container.sections[index].raw_length != expected:
            raise FileFormatError(f"the tensor {name} has {container.sections[index].raw_length} bytes, its shape "
                                  f"needs {expected}")
        arrays[name] = np.frombuffer(container.read(index), dtype=np.dtype(dtype)).reshape(shape)
        stored_bytes[name] = container.sections[index].length
    if len(used) != len(container.sections):
        raise FileFormatError("the file has sections no tensor names")
    return arrays, stored_bytes


def _stats_section(description: object, container: Container) -> int:
    """The index of the stats section, checked: [index, the names srnvtk stores], float64 each."""
    if not (isinstance(description, list) and len(description) == 2 and isinstance(description[0], int)
            and not isinstance(description[0], bool) and description[1] == list(STORED_STATS)):
        raise FileFormatError("the stats are not described as [section, names]")
    index = description[0]
    if not 0 <= index < len(container.sections) or container.sections[index].raw_length != 8 * len(STORED_STATS):
        raise FileFormatError("the stats section is missing or has the wrong size")
    return index


def write_parts(path: str | os.PathLike, geometry: Geometry, times: Sequence[float], fields: Sequence[FieldInfo],
                parts: Sequence[PartData], bricks: BrickLayout | None = None,
                stats: dict[str, float] | None = None) -> int:
    """Write a file of many networks atomically (srnvtk.multipart: format 9, 11 where a part is a delta; else
    format 10 where a field is a vector, which format 9 does not hold); returns its bytes. stats: the whole file's
    (STORED_STATS, formats 9 and 11 only), beside each part's own."""
    if any(f.components != 1 for f in fields) and not any(part.delta is not None for part in parts):
        return write_atomically(path, parts_bytes(geometry, times, fields, parts, bricks))
    return write_atomically(path, compact_bytes(geometry, times, fields, parts, bricks, stats))


def encoded_part_model(part: EncodedPart, grid: Geometry, bricks: BrickLayout | None = None) -> SRNModel:
    """The network of a part encoded in memory (srnvtk.multipart.encode_part), built as a reader builds it from a
    file: what a reader will decode, bit for bit."""
    from .container import decode_section

    entry = part.entry
    extent = tuple(grid.extent) if entry.brick is None else bricks.extent(grid, entry.brick)
    geometry = brick_geometry(grid, extent)
    data = decode_section(part.data, entry.section.codec, entry.section.raw_length)
    return _model_from_stored(entry.model_config, geometry, part_stored(entry.model_config, entry.structure,
                                                                        geometry, data))


def _read_multipart(container: Container) -> SRNFile:
    compact = container.version in INDEX_VERSIONS
    contents = read_compact(container) if compact else read_multipart(container)
    srn = None

    def load(index: int) -> SRNModel:
        part = contents.parts[index]
        geometry = brick_geometry(contents.geometry, part.extent)
        srn.sections_read += sum(s is not None for s in contents.sections[index])
        # Parts load lazily, often inside decode's inference mode: build ordinary tensors all the same (a
        # wavelet grid's cache reads its coefficients' version counter, which inference tensors lack).
        with torch.inference_mode(False):
            if part.reference is None:
                stored, part.stats = load_part(container, contents, index)
                return _model_from_stored(part.model_config, geometry, stored)
            chain = delta_chain(contents.parts, index)[:-1]
            newest = next((i for i in range(len(chain) - 1, -1, -1) if srn.has_model(chain[i])), 0)
            for earlier in chain[newest:]:  # built oldest first (from the newest still known): no deep recursion
                srn.part_model(earlier)
            reference = srn.part_model(part.reference).latent.detach().cpu().numpy()
            stored, delta = delta_stored(part.model_config, part.structure, geometry,
                                         container.read(contents.sections[index][1]))
            return _model_from_stored(part.model_config, geometry, stored, reconstruct(reference, delta))

    first_field, first = contents.fields[0], contents.parts[0]
    source = SourceInfo(first_field.name, first_field.dtype, contents.geometry, first_field.value_ranges[0])
    stats = {**contents.stats, "file_bytes": float(container.size),
             "ratio": compression_ratio(contents.geometry.num_points * sum(f.components for f in contents.fields)
                                        * len(contents.times), container.size)}
    srn = SRNFile(None, first.model_config, source, stats, {}, first.pruning, container.version,
                  contents.srnvtk_version, contents.fields, contents.times, contents.parts, contents.bricks, load)
    return srn
