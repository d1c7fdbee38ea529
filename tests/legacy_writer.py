"""The HDF5 writer srnvtk used for format versions 3 and 4, kept for tests only: they craft legacy files (valid,
damaged and hostile) to check that srnvtk.legacy_hdf5 reads them, or refuses them cleanly. srnvtk itself writes
format 5 (srnvtk.fileformat) and never HDF5.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from srnvtk import __version__
from srnvtk.config import ModelConfig, PruningConfig, to_json
from srnvtk.fileformat import SourceInfo
from srnvtk.metrics import compression_ratio
from srnvtk.quantize import GRID, GRID_KEEP, INDICES_LAYOUT, WEIGHT_INDICES, WEIGHTS, WEIGHTS_LAYOUT, StoredModel

FORMAT_NAME = "srnvtk"
FORMAT_VERSION = 3  # a file without clustered weights
CLUSTERED_FORMAT_VERSION = 4  # a file with them
STAT_KEYS = ("psnr", "train_seconds", "steps", "final_loss", "file_bytes", "ratio", "pruned_fraction")
COMPRESSED = (GRID, GRID_KEEP)


def write_legacy_srn(
    path: str | os.PathLike,
    model_config: ModelConfig,
    stored: StoredModel,
    source: SourceInfo,
    stats: dict[str, float],
    pruning: PruningConfig | None = None,
) -> int:
    """A version 3 (or, with clustered weights, 4) HDF5 .srn file, as srnvtk wrote them; returns its bytes. The
    file records its own size: written twice, the second time with the measured size."""
    file_bytes = 0
    for _attempt in range(2):
        final_stats = {**stats, "file_bytes": file_bytes,
                       "ratio": compression_ratio(source.geometry.num_points, max(file_bytes, 1))}
        with h5py.File(path, "w", libver=("v110", "v110")) as f:
            _write_contents(f, model_config, stored, source, final_stats, pruning or PruningConfig())
        file_bytes = os.path.getsize(path)
    return file_bytes


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
