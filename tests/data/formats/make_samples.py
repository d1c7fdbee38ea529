"""Make one committed sample file of each format version beside this script (HDF5 versions 1-4, container 5
to 12).

    .venv/bin/python tests/data/formats/make_samples.py v5      # writes v5.srn only

Each is a tiny model trained for a few steps on a 12 x 10 x 9 instance of srnvtk's generated volume. Versions 3
and 4 were written by the HDF5 writer (tests/legacy_writer.py); versions 1 and 2 are version-3 files whose
attributes are edited back to what those versions wrote. The kinds differ so that every code path has a sample:
  v1.srn  fV-SRN, plain grid, unpruned (no model_structure, pruning_config or pruned_fraction)
  v2.srn  fV-SRN, plain grid pruned per position (binary masks; settings without the wavelet keys)
  v3.srn  fV-SRN, db2 wavelet grid pruned per position and channel (smallify)
  v4.srn  Neurcomp, residual, hidden matrices as 16 k-means shared values
  v5.srn  fV-SRN, haar wavelet grid pruned per position (variational dropout), in the container format
  v6.srn  many networks: a scalar field at two time steps, each cut into 2 x 1 x 1 bricks with a halo of 1
  v7.srn  fV-SRN, plain grid with 5-bit latent codes (grid_bits), in the container format
  v8.srn  fV-SRN, plain grid, plus its residual quantised to a max error of 4 (the error-bounded format)
  v9.srn  bricks in the compact multipart format (srnvtk.multipart): 2 x 2 x 2 bricks of 6 x 6 x 6 points with a
          halo of 1, the last ones thinner, from the brick compressor (srnvtk.distributed)
  v10.srn many networks with a vector field: the generated series' velocity (one network with 3 outputs per
          step) and density at two time steps (srnvtk.series_encode; the second step warm-started)
  v11.srn delta parts: the generated series' density at three time steps with time scheme "delta" at ratio 3
          (steps 1 and 2 are their grids' largest differences to the previous step's that fit, srnvtk.delta)
  v12.srn delta parts with a vector field: the generated series' velocity and density at two time steps with time
          scheme "delta" at ratio 3 (the records keep the velocity's PSNR per component and of the magnitude)

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
from srnvtk.encoder import compress, source_info
from srnvtk.metrics import psnr
from srnvtk.quantize import apply_storage_precision
from srnvtk.train import train
from srnvtk.volume import Volume

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for the legacy HDF5 writer
from legacy_writer import write_legacy_srn  # noqa: E402

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
    "v5": (FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=12, mlp_layers=2, fourier_features=2,
                       wavelet="haar"),
           PruningConfig(method="variational", kl_weight=1.0, mask_learning_rate=0.1)),
    "v6": (FVSRN, PruningConfig()),
    "v7": (FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=12, mlp_layers=2, fourier_features=2,
                       grid_bits=5), PruningConfig()),
    "v8": (FVSRN, PruningConfig()),
    "v9": (FVSRN, PruningConfig()),
    "v10": (FVSRN, PruningConfig()),
    "v11": (FVSRN, PruningConfig()),
    "v12": (FVSRN, PruningConfig()),
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


def write_legacy(volume: Volume, name: str, config, pruning: PruningConfig, path: Path) -> float:
    """A version 3/4 HDF5 file (then edited to 1 or 2); returns its PSNR."""
    result = train(volume, config, TRAIN, pruning=pruning)
    stored = apply_storage_precision(result.model)
    from srnvtk.decode import decode
    from srnvtk.fileformat import SRNFile

    source = source_info(volume)
    decoded = decode(SRNFile(result.model, result.model.config, source, pruning=pruning), device="cpu")
    quality = psnr(volume.values, decoded, 255.0)
    stats = {"psnr": quality, "train_seconds": result.seconds, "steps": result.steps,
             "final_loss": result.final_loss, "pruned_fraction": 0.0}
    write_legacy_srn(path, result.model.config, stored, source, stats, pruning)
    if name == "v1":
        to_version_1(path)
    elif name == "v2":
        to_version_2(path)
    return quality


def write_series(volume: Volume, path: Path) -> float:
    """Format 6: two time steps (the second the volume shifted by one point along x), two bricks each."""
    import numpy as np

    from srnvtk.container import write_atomically
    from srnvtk.fileformat import read_srn
    from srnvtk.multipart import parts_bytes
    from srnvtk.parts import BrickLayout, FieldInfo, PartData, brick_geometry

    config, _pruning = KINDS["v6"]
    layout = BrickLayout((6, 10, 9), 1)
    grid = volume.geometry
    parts = []
    for step, values in enumerate((volume.values, np.roll(volume.values, 1, axis=2))):
        for brick in layout.indices(grid):
            extent = layout.extent(grid, brick)
            block = np.ascontiguousarray(values[extent[4]:extent[5] + 1, extent[2]:extent[3] + 1,
                                                extent[0]:extent[1] + 1])
            result = train(Volume(block, brick_geometry(grid, extent), "density"), config, TRAIN,
                           value_range=(0.0, 255.0))
            stats = {"steps": result.steps, "train_seconds": result.seconds, "final_loss": result.final_loss}
            parts.append(PartData(0, step, brick, result.model.config, PruningConfig(),
                                  apply_storage_precision(result.model), stats))
    write_atomically(path, parts_bytes(grid, [0.0, 0.25], [FieldInfo("density", "uint8", 1, ((0.0, 255.0),))],
                                       parts, layout))
    from srnvtk.decode import decode

    return psnr(volume.values, decode(read_srn(path), device="cpu"), 255.0)


def write_bricks(volume: Volume, path: Path) -> float:
    """Format 9: the brick compressor (srnvtk.distributed) on one process."""
    from srnvtk.config import EncoderSettings
    from srnvtk.distributed import compress_bricks
    from srnvtk.sources import VolumeSource

    config, pruning = KINDS["v9"]
    run = compress_bricks(VolumeSource(volume), EncoderSettings(fvsrn=config, pruning=pruning, train=TRAIN),
                          brick_size=6, halo=1, path=path)
    return run.stats["psnr"]


V8_MAX_ERROR = 4.0


def write_bounded(volume: Volume, config: FVSRNConfig, path: Path) -> float:
    """A network and its residual quantised (the coder that needs no optional package) to V8_MAX_ERROR."""
    from srnvtk.bounded import finish, network_candidates, train_for_bound
    from srnvtk.config import EncodeConfig, EncoderSettings

    settings = EncoderSettings(encode=EncodeConfig(), fvsrn=config, train=TRAIN)
    network = train_for_bound(volume, settings, 3_000)
    candidate = network_candidates(volume, network, V8_MAX_ERROR, coder_names=("quant",))[0]
    return finish(volume, source_info(volume), candidate, [candidate], path).stats["psnr"]


def write_vector_series(path: Path) -> float:
    """Format 10: the generated series (srnvtk.series_data) on the samples' grid, velocity and density, two steps;
    returns the velocity's mean PSNR over the steps."""
    from srnvtk.config import EncoderSettings
    from srnvtk.series import series_from_arrays
    from srnvtk.series_data import generate_series
    from srnvtk.series_encode import encode_series

    config, pruning = KINDS["v10"]
    steps = list(generate_series(SHAPE, 2, seed=0))
    series = series_from_arrays(default_geometry(SHAPE), [t for t, _ in steps], [a for _, a in steps])
    result = encode_series(series, EncoderSettings(fvsrn=config, pruning=pruning, train=TRAIN),
                           arrays=["velocity", "density"], path=path)
    return float(np.mean([p.stats["psnr"] for p in result.parts if p.field == "velocity"]))


def write_delta_series(path: Path, arrays: tuple[str, ...] = ("density",), steps: int = 3) -> float:
    """Formats 11 and 12: the generated series' arrays, later steps delta parts; returns the first array's mean
    PSNR."""
    from srnvtk.config import EncodeConfig, EncoderSettings
    from srnvtk.series import series_from_arrays
    from srnvtk.series_data import generate_series
    from srnvtk.series_encode import encode_series

    config, pruning = KINDS["v11"]
    generated = list(generate_series(SHAPE, steps, seed=0))
    series = series_from_arrays(default_geometry(SHAPE), [t for t, _ in generated], [a for _, a in generated])
    encode = EncodeConfig(ratio=3.0, architecture="fvsrn", time_scheme="delta")
    result = encode_series(series, EncoderSettings(encode=encode, fvsrn=config, pruning=pruning, train=TRAIN),
                           arrays=list(arrays), path=path)
    return float(np.mean([p.stats["psnr"] for p in result.parts if p.field == arrays[0]]))


def main(names: list[str]) -> int:
    geometry = default_geometry(SHAPE)
    volume = Volume(default_volume_values(SHAPE), geometry, "density")
    for name in names:
        config, pruning = KINDS[name]
        path = HERE / f"{name}.srn"
        if name == "v6":
            quality = write_series(volume, path)
        elif name == "v9":
            quality = write_bricks(volume, path)
        elif name == "v10":
            quality = write_vector_series(path)
        elif name == "v11":
            quality = write_delta_series(path)
        elif name == "v12":
            quality = write_delta_series(path, ("velocity", "density"), steps=2)
        elif name == "v8":
            quality = write_bounded(volume, config, path)
        elif name in ("v5", "v7"):
            result = compress(volume, model_config=config, train_config=TRAIN, path=path, pruning=pruning)
            quality = result.stats["psnr"]
        else:
            quality = write_legacy(volume, name, config, pruning, path)
        print(f"{path.name}: {path.stat().st_size} bytes, {quality:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or sorted(KINDS)))
