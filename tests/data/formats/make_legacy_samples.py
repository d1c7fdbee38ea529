"""Regenerate the committed legacy sample files v1.srn .. v4.srn (HDF5 format versions 1-4) beside this script.

    .venv/bin/python tests/data/formats/make_legacy_samples.py

Each is a tiny model trained for a few steps on a 12 x 10 x 9 instance of srnvtk's generated volume, written by
the HDF5 writer (format version 3, or 4 for clustered weights). Versions 1 and 2 are made the way
tests/test_fileformat.py makes them: a version-3 file whose attributes are edited back to what those versions
wrote. The kinds differ so that every legacy code path has a sample:
  v1.srn  fV-SRN, plain grid, unpruned (no model_structure, pruning_config or pruned_fraction)
  v2.srn  fV-SRN, plain grid pruned per position (binary masks; settings without the wavelet keys)
  v3.srn  fV-SRN, db2 wavelet grid pruned per position and channel (smallify)
  v4.srn  Neurcomp, residual, hidden matrices as 16 k-means shared values

These files are a compatibility promise: once committed they are never regenerated. Running this script again
writes new files with other bytes (training is deterministic, HDF5's layout of a rewritten file may not be),
and tests/test_legacy_samples.py would then need its expected numbers updated, which defeats the point.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np

from srnvtk.config import FVSRNConfig, NeurcompConfig, PruningConfig, TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.encoder import compress
from srnvtk.volume import Volume

HERE = Path(__file__).resolve().parent
SHAPE = (12, 10, 9)  # x, y, z point counts
FVSRN = FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=12, mlp_layers=2, fourier_features=2)
TRAIN = TrainConfig(steps=200, batch_size=1024, seed=0, device="cpu")
KINDS = {
    "v1": (FVSRN, PruningConfig()),
    "v2": (FVSRN, PruningConfig(method="binary", l1_weight=0.0005, mask_learning_rate=0.05)),
    "v3": (FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=12, mlp_layers=2, fourier_features=2,
                       wavelet="db2"),
           PruningConfig(method="smallify", granularity="position_channel", l1_weight=0.002, sign_momentum=0.15,
                         mask_learning_rate=0.1)),
    "v4": (NeurcompConfig(width=10, blocks=2, weight_clusters=16), PruningConfig()),
}


def to_version_1(path: Path) -> None:
    """As tests/test_fileformat.py does: no model_structure, pruning_config or pruned_fraction."""
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.int64(1)
        for key in ("model_structure", "pruning_config"):
            del f.attrs[key]
        del f["stats"].attrs["pruned_fraction"]


def to_version_2(path: Path) -> None:
    """As tests/test_fileformat.py does: the settings without the wavelet grid's keys."""
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.int64(2)
        settings = json.loads(f.attrs["model_config"])
        f.attrs["model_config"] = json.dumps({k: v for k, v in settings.items() if not k.startswith("wavelet")})


def main() -> int:
    geometry = default_geometry(SHAPE)
    volume = Volume(default_volume_values(SHAPE), geometry, "density")
    for name, (config, pruning) in KINDS.items():
        path = HERE / f"{name}.srn"
        result = compress(volume, model_config=config, train_config=TRAIN, path=path, pruning=pruning)
        if name == "v1":
            to_version_1(path)
        elif name == "v2":
            to_version_2(path)
        print(f"{path.name}: {path.stat().st_size} bytes, {result.stats['psnr']:.2f} dB, "
              f"pruned {100 * result.stats['pruned_fraction']:.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
