"""Decode throughput of the current decoder on one device (voxels/s), fp32, for a 16x32^3 grid + 4x32 MLP."""

from __future__ import annotations

import json
import sys
import time

import torch

from srnvtk.config import FVSRNConfig
from srnvtk.decode import decode
from srnvtk.fileformat import SRNFile
from srnvtk.models import build_model
from srnvtk.volume import Geometry


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "auto"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    geometry = Geometry((0, n - 1, 0, n - 1, 0, n - 1))
    model = build_model(FVSRNConfig(), geometry)
    for batch in (1 << 18, 1 << 21, 1 << 23):
        decode(SRNFile.of_model(model, geometry, (0.0, 1.0), "float32"), device=device, batch_points=batch)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        decode(SRNFile.of_model(model, geometry, (0.0, 1.0), "float32"), device=device, batch_points=batch)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(json.dumps({"device": device, "batch_points": batch, "voxels": n**3, "seconds": seconds,
                          "voxels_per_s": n**3 / seconds}), flush=True)


if __name__ == "__main__":
    main()
