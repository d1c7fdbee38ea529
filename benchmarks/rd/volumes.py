"""The benchmark's volumes, as float32 srnvtk Volumes: the shared Richtmyer-Meshkov density, the synthetic
turbulence field (benchmarks/synthetic.py), the synthetic field with sharp features (benchmarks/sharp_field.py),
or any .vti file; optionally a centred crop for quick checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srnvtk.volume import Geometry, Volume

REPO = Path(__file__).resolve().parents[2]
SHARED_RM = REPO.parent / "shared" / "data" / "richtmyer_meshkov_t0020_256.vti"


class VolumeMissingError(Exception):
    """The volume's file is not there (the shared data is not on every machine)."""


@dataclass(frozen=True)
class BenchVolume:
    key: str  # names the result files: rd_<key>.json
    volume: Volume  # float32 values
    source: str  # where it came from, in words

    @property
    def value_range(self) -> float:
        return float(self.volume.values.max()) - float(self.volume.values.min())

    def describe(self) -> dict:
        v = self.volume.values
        return {"key": self.key, "source": self.source, "shape_zyx": list(v.shape), "dtype": "float32",
                "min": float(v.min()), "max": float(v.max()), "value_range": self.value_range}


def read_vti_volume(path: Path, array: str | None) -> Volume:
    from srnvtk.vtkio import read_vti, volume_from_image

    if not path.exists():
        raise VolumeMissingError(f"{path} does not exist")
    volume = volume_from_image(read_vti(str(path)), array)
    return Volume(volume.values.astype(np.float32), volume.geometry, volume.name)


def centred_crop(volume: Volume, size: int) -> Volume:
    """The central size^3 block (smaller where the volume is), on extent 0..n-1 with the same spacing."""
    starts = [max(0, (n - size) // 2) for n in volume.values.shape]
    block = np.ascontiguousarray(volume.values[tuple(slice(s, s + size) for s in starts)])
    nz, ny, nx = block.shape
    geometry = Geometry((0, nx - 1, 0, ny - 1, 0, nz - 1), volume.geometry.origin, volume.geometry.spacing)
    return Volume(block, geometry, volume.name)


def load_volume(name: str, array: str | None = None, size: int = 256, seed: int = 0,
                crop: int | None = None) -> BenchVolume:
    """'rm' (the shared Richtmyer-Meshkov volume), 'turbulence' or 'sharp' (synthetic, size^3, seed) or a .vti
    path."""
    if name == "rm":
        volume, key = read_vti_volume(SHARED_RM, array or "density"), "rm256"
        source = f"shared {SHARED_RM.name} ('density', uint8 3..230) as float32"
    elif name == "turbulence":
        from benchmarks.synthetic import turbulence_volume

        volume, key = turbulence_volume(size, seed), f"turbulence{size}_seed{seed}"
        source = (f"benchmarks/synthetic.py: random Fourier modes, E(k) ~ k^-5/3 with a Gaussian cut-off at half "
                  f"the Nyquist wavenumber, {size}^3, seed {seed}")
    elif name == "sharp":
        from benchmarks.sharp_field import sharp_volume

        volume, key = sharp_volume(size, seed), f"sharp{size}_seed{seed}"
        source = (f"benchmarks/sharp_field.py: wrinkled Voronoi materials (a third with fine -5/3 texture), three "
                  f"rippled blast waves and a plane shock, {size}^3, seed {seed}")
    else:
        path = Path(name)
        volume, key = read_vti_volume(path, array), path.stem
        source = f"{path.name} ('{volume.name}') as float32"
    if crop:
        volume, key, source = centred_crop(volume, crop), f"{key}_crop{crop}", f"{source}, central {crop}^3 crop"
    return BenchVolume(key, volume, source)
