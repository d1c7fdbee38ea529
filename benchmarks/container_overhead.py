"""What a multi-network file costs beyond its networks' parameters: the fixed bytes of a file and the bookkeeping
per brick, for format 6 and format 9 (srnvtk.multipart), measured on real files (issue 14, item 5: under 2 kB
fixed, under 64 bytes a brick).

Bricks of a small grid, each a tiny fV-SRN trained for one step (the bookkeeping does not depend on what the
networks learned), written in both formats. A part's parameters are its coded and raw tensors: in format 9 its
one section; in format 6 its two sections less the 40 bytes of float64 statistics its raw section ends with.
Everything else (prefix, header, table entries, index, statistics) is bookkeeping. Two brick counts give the
per-brick cost (the slope) and the fixed cost (the intercept). No timing: the numbers are exact bytes.

    .venv/bin/python benchmarks/container_overhead.py [--out benchmarks/results/container_overhead.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results_io import write_results  # noqa: E402
from srnvtk.config import FVSRNConfig, PruningConfig, TrainConfig  # noqa: E402
from srnvtk.container import Container  # noqa: E402
from srnvtk.multipart import COMPACT_VERSION, MULTIPART_VERSION, STORED_STATS, compact_bytes, parts_bytes  # noqa: E402
from srnvtk.parts import BrickLayout, FieldInfo, PartData, brick_geometry  # noqa: E402
from srnvtk.quantize import apply_storage_precision  # noqa: E402
from srnvtk.train import train  # noqa: E402
from srnvtk.volume import Geometry, Volume  # noqa: E402

CONFIG = FVSRNConfig(grid_channels=2, grid_resolution=3, mlp_width=4, mlp_layers=1, fourier_features=0)
FIELD = [FieldInfo("density", "float32", 1, ((0.0, 1.0),))]
STATS = {"psnr": 30.0, "steps": 1.0, "train_seconds": 0.25, "final_loss": 0.01}


def parts_for(grid: Geometry, layout: BrickLayout) -> list[PartData]:
    parts = []
    for n, brick in enumerate(layout.indices(grid)):
        geometry = brick_geometry(grid, layout.extent(grid, brick))
        values = np.random.default_rng(n).random(geometry.shape_zyx).astype(np.float32)
        model = train(Volume(values, geometry, "density"), CONFIG, TrainConfig(steps=1, device="cpu", seed=n),
                      value_range=(0.0, 1.0)).model
        parts.append(PartData(0, 0, brick, CONFIG, PruningConfig(), apply_storage_precision(model), STATS))
    return parts


def bookkeeping(path: Path) -> tuple[int, int]:
    """(file bytes, bytes that are not parameters)."""
    container = Container.open(path)
    if container.version == COMPACT_VERSION:
        parameters = sum(s.length for s in container.sections[1:])
    else:
        parameters = sum(s.length for s in container.sections) - 8 * len(STORED_STATS) * len(container.header["parts"])
    return container.size, container.size - parameters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "container_overhead.json"))
    parser.add_argument("--folder", default="/tmp")
    args = parser.parse_args(argv)
    rows = []
    for counts in ((4, 4, 4), (8, 8, 8)):
        grid = Geometry((0, 5 * counts[0] - 1, 0, 4 * counts[1] - 1, 0, 3 * counts[2] - 1))
        layout = BrickLayout((5, 4, 3), 1)
        parts = parts_for(grid, layout)
        for version, data in ((MULTIPART_VERSION, parts_bytes(grid, [0.0], FIELD, parts, layout)),
                              (COMPACT_VERSION, compact_bytes(grid, [0.0], FIELD, parts, layout))):
            path = Path(args.folder) / f"container_overhead_v{version}.srn"
            path.write_bytes(data)
            size, overhead = bookkeeping(path)
            rows.append({"version": version, "bricks": len(parts), "file_bytes": size, "bookkeeping": overhead})
            path.unlink()
    summary = {"rows": rows, "per_version": {}}
    for version in (MULTIPART_VERSION, COMPACT_VERSION):
        few, many = (r for r in rows if r["version"] == version)
        per_brick = (many["bookkeeping"] - few["bookkeeping"]) / (many["bricks"] - few["bricks"])
        fixed = few["bookkeeping"] - per_brick * few["bricks"]
        summary["per_version"][version] = {"per_brick": per_brick, "fixed": fixed}
        print(f"format {version}: {per_brick:.1f} bytes a brick, {fixed:.0f} fixed "
              f"(files of {few['bricks']} and {many['bricks']} bricks: {few['file_bytes']:,} and "
              f"{many['file_bytes']:,} bytes)")
    write_results(args.out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
