"""The .srn file: one HDF5 file that plain h5py can read; no pickle anywhere.

Layout (format_version 3):
  /                 attrs: format="srnvtk", format_version, architecture ("fvsrn" or "neurcomp"),
                    model_config, model_structure, pruning_config (JSON each), srnvtk_version
  /source           attrs: array_name, dtype, extent, origin, spacing, value_min, value_max
  /stats            attrs: psnr, train_seconds, steps, final_loss, file_bytes, ratio, pruned_fraction
  /tensors/grid        fV-SRN: uint8 codes of the latent tensor, gzip: (C, z, y, x), or when pruned (K,), the K
                       kept entries in channel-major order. The latent tensor is the latent grid, or with a
                       wavelet (model_config's wavelet) its 3D wavelet coefficients in the packed layout of
                       srnvtk.wavelet (approximation first, then details from coarsest to finest)
  /tensors/grid_quant  fV-SRN: float32 (2, C): per-channel scale and offset (value = code * scale + offset);
                       wavelet grids: (2, C, L + 1), per channel for the approximation and for each of the L
                       levels' details, coarsest first (srnvtk.wavelet.level_groups)
  /tensors/grid_keep   pruned fV-SRN: uint8, np.packbits of the keep mask (model_structure's keep_shape:
                       (1, z, y, x) per position or (C, z, y, x) per entry), gzip; pruned entries are zero
  /tensors/weights     float16 vector: every other parameter, packed; attr weights_layout: JSON [[name, shape]]
  /tensors/weight_indices  Neurcomp with weight_clusters (format version 4): uint8 vector: the k-means
                       indices of every clustered matrix, packed; attr indices_layout: JSON [[name, shape]]. Each
                       matrix's shared values (its codebook) are among the packed weights
model_structure holds the shapes beyond the settings: fV-SRN {"grid_shape", "keep_shape"} plus, for a wavelet
grid, "wavelet_levels" (the per-axis levels (z, y, x) in use), Neurcomp {"widths"} (every sine layer's width
after pruning; the stored matrices have these sizes) and "clustered_layers" (sine layers whose matrix is
codebook[indices]). A reader of a wavelet grid runs the inverse DWT once.
Version 4 is written only for files with clustered weights, so every other file stays readable by version-3
readers.
Version 3 added the wavelet grid (model_config's wavelet and wavelet_levels); versions 2 (the same layout
without wavelets) and 1 (fV-SRN, unpruned, no model_structure or pruning_config) are still read.
HDF5 1.10 object format (libver v110), so ParaView 5.11's HDF5 reads it. Files are written to a
temporary name beside the target, then renamed, so a crash never leaves half a file.
Reading is srnvtk.legacy_hdf5's: HDF5 parses in a forked child with a deadline and a memory cap, only the objects
above are accepted (no links, external storage or virtual datasets), and every type, shape and size is checked
against what the settings imply (srnvtk.filechecks) before any data is read.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from . import __version__
from .config import ModelConfig, PruningConfig, from_json, model_config_class, to_json
from .errors import DamagedFileError, FileFormatError, InputError, SRNError
from .filechecks import check_array_name, check_geometry, check_source_dtype, check_value_range
from .kmeans import ClusteredLinear
from .legacy_hdf5 import LegacyContents, read_legacy
from .metrics import compression_ratio
from .models import model_from_structure
from .quantize import (
    GRID,
    GRID_KEEP,
    INDICES_LAYOUT,
    WEIGHT_INDICES,
    WEIGHTS,
    WEIGHTS_LAYOUT,
    StoredModel,
    stored_state,
)
from .volume import Geometry

FORMAT_NAME = "srnvtk"
FORMAT_VERSION = 3  # what a file without clustered weights is written as
CLUSTERED_FORMAT_VERSION = 4  # what a file with them is written as
READABLE_VERSIONS = (1, 2, 3, 4)
STAT_KEYS = ("psnr", "train_seconds", "steps", "final_loss", "file_bytes", "ratio", "pruned_fraction")
# Not the k-means indices: near-uniformly used clusters leave gzip little, and uncompressed they keep a
# Neurcomp file's size independent of its values, so rate control can size it exactly.
COMPRESSED = (GRID, GRID_KEEP)


@dataclass(frozen=True)
class SourceInfo:
    """What a reader needs to rebuild the original array: name, type, geometry and value range."""

    array_name: str
    dtype: str
    geometry: Geometry
    value_range: tuple[float, float]


@dataclass
class SRNFile:
    """A loaded .srn file: the ready-to-run model plus everything stored beside it."""

    model: torch.nn.Module
    model_config: ModelConfig
    source: SourceInfo
    stats: dict[str, float] = field(default_factory=dict)
    tensor_bytes: dict[str, int] = field(default_factory=dict)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    format_version: int = FORMAT_VERSION
    srnvtk_version: str = ""  # of the srnvtk that wrote the file


def write_srn(
    path: str | os.PathLike,
    model_config: ModelConfig,
    stored: StoredModel,
    source: SourceInfo,
    stats: dict[str, float],
    pruning: PruningConfig | None = None,
) -> int:
    """Write atomically; the stats gain file_bytes and ratio of the final file. Returns the file's bytes.

    InputError, before anything is written, for a source that no reader would accept back (srnvtk.filechecks:
    an array name with markup or control characters, non-positive spacing, ...)."""
    path = Path(path)
    _check_readable_source(source)
    if path.parent and not path.parent.exists():
        raise FileFormatError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        os.chmod(tmp_name, 0o666 & ~_current_umask())  # mkstemp makes it owner-only
        # The file records its own size: write once with placeholders, then again with the measured
        # size; the stats have fixed-size types, so the second file has exactly the same bytes.
        file_bytes = 0
        for _attempt in range(2):
            final_stats = {**stats, "file_bytes": file_bytes,
                           "ratio": compression_ratio(source.geometry.num_points, max(file_bytes, 1))}
            _write_file(tmp_name, model_config, stored, source, final_stats, pruning)
            measured, file_bytes = file_bytes, os.path.getsize(tmp_name)
        if measured != file_bytes:
            raise FileFormatError("internal error: the file's size changed between two identical writes")
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
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
    """The bytes write_srn would write for this model (the stats' values do not change the size): written to
    a temporary folder, measured and removed. Rate control asks this rather than trusting an estimate."""
    with tempfile.TemporaryDirectory(prefix="srnvtk-size-") as folder:
        probe = Path(folder) / "probe.srn"
        _write_file(probe, model_config, stored, source, {}, pruning)
        return os.path.getsize(probe)


def _write_file(
    name: str | os.PathLike, model_config: ModelConfig, stored: StoredModel, source: SourceInfo, stats,
    pruning: PruningConfig | None,
) -> None:
    with h5py.File(name, "w", libver=("v110", "v110")) as f:
        _write_contents(f, model_config, stored, source, stats, pruning or PruningConfig())


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_contents(
    f: h5py.File, model_config: ModelConfig, stored: StoredModel, source: SourceInfo, stats, pruning: PruningConfig
) -> None:
    f.attrs["format"] = FORMAT_NAME
    clustered = WEIGHT_INDICES in stored.arrays
    f.attrs["format_version"] = np.int64(CLUSTERED_FORMAT_VERSION if clustered else FORMAT_VERSION)
    f.attrs["architecture"] = model_config.architecture
    f.attrs["model_config"] = to_json(model_config)
    f.attrs["model_structure"] = json.dumps(stored.structure, sort_keys=True)
    f.attrs["pruning_config"] = to_json(pruning)
    f.attrs["srnvtk_version"] = __version__
    src = f.create_group("source")
    src.attrs["array_name"] = source.array_name
    src.attrs["dtype"] = source.dtype
    src.attrs["extent"] = np.asarray(source.geometry.extent, dtype=np.int64)
    src.attrs["origin"] = np.asarray(source.geometry.origin, dtype=np.float64)
    src.attrs["spacing"] = np.asarray(source.geometry.spacing, dtype=np.float64)
    src.attrs["value_min"] = np.float64(source.value_range[0])
    src.attrs["value_max"] = np.float64(source.value_range[1])
    st = f.create_group("stats")
    for key in STAT_KEYS:
        value = stats.get(key, 0)
        st.attrs[key] = np.int64(value) if key in ("steps", "file_bytes") else np.float64(value)
    tensors = f.create_group("tensors")
    for name, array in stored.arrays.items():
        if name in COMPRESSED and array.size:
            # One chunk per channel: h5py's guessed chunks pad the grid's edges (up to a few percent
            # more bytes for noise-like codes), which broke encoder.estimated_file_bytes as a bound.
            # A pruned grid's kept values and keep mask are vectors: one chunk each.
            chunks = (1, *array.shape[1:]) if array.ndim == 4 else array.shape
            tensors.create_dataset(name, data=array, chunks=chunks, compression="gzip",
                                   compression_opts=9, track_times=False)
        else:
            tensors.create_dataset(name, data=array, track_times=False)
    tensors[WEIGHTS].attrs[WEIGHTS_LAYOUT] = json.dumps(stored.layout)
    if clustered:
        tensors[WEIGHT_INDICES].attrs[INDICES_LAYOUT] = json.dumps(stored.index_layout)


def read_srn(path: str | os.PathLike) -> SRNFile:
    """Load and validate a .srn file; any problem becomes a FileFormatError naming the file.

    The HDF5 parsing and every check of sizes, types and links happen in srnvtk.legacy_hdf5 (in a bounded child
    process); here the checked contents become a model."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"no such .srn file: '{path}'")
    try:
        return _read_contents(read_legacy(path))
    except DamagedFileError as exc:
        raise FileFormatError(f"'{path}' is truncated, corrupted or not a srnvtk file ({exc})") from None
    except SRNError as exc:
        raise FileFormatError(f"'{path}' is not a valid srnvtk file: {exc}") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise FileFormatError(f"'{path}' is truncated, corrupted or not a srnvtk file ({exc})") from None


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


def _model_from_stored(config: ModelConfig, geometry: Geometry, stored: StoredModel) -> torch.nn.Module:
    if config.architecture == "fvsrn":
        grid = stored.arrays.get(GRID)
        pruned = GRID_KEEP in stored.arrays
        if grid is None or (not pruned and (grid.ndim != 4 or grid.shape[0] != config.grid_channels)):
            raise FileFormatError("the latent grid is missing or has the wrong shape")
    try:
        model = model_from_structure(config, geometry, stored.structure)
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"the model structure {stored.structure} does not fit the settings ({exc})") from None
    state, keep = stored_state(stored, model)
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
