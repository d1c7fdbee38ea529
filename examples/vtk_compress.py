"""Plain VTK (pip's vtk, no ParaView): compress a volume with SRNEncoder, read it back with SRNReader.

    .venv/bin/python examples/vtk_compress.py [IN.vti] [--array NAME] [--ratio R] [--steps S]

Without IN.vti it uses srnvtk's generated default volume. Writes out/example.srn and
out/example_stride2.vti (a stride-2 reconstruction read back from the file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vtkmodules.vtkCommonExecutionModel import vtkTrivialProducer

from srnvtk.datasets import default_volume
from srnvtk.vtkalgorithms import SRNEncoder, SRNReader
from srnvtk.vtkio import read_vti, write_vti


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", help=".vti file (default: the generated 64^3 volume)")
    parser.add_argument("--array", default="density")
    parser.add_argument("--ratio", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)

    image = read_vti(args.input) if args.input else default_volume()
    producer = vtkTrivialProducer()
    producer.SetOutput(image)

    encoder = SRNEncoder()
    encoder.SetInputConnection(producer.GetOutputPort())
    encoder.SetInputArrayToProcess(0, 0, 0, 0, args.array)  # 0 = point data
    encoder.SetTargetRatio(args.ratio)
    encoder.SetSteps(args.steps)
    encoder.SetFileName(str(out / "example.srn"))
    encoder.Update()
    if encoder.GetOutputDataObject(0).GetNumberOfPoints() == 0:
        raise SystemExit("compression failed (see the error above)")
    stats = encoder.last_stats
    print(f"ratio {stats['ratio']:.1f}, PSNR {stats['psnr']:.2f} dB, {stats['file_bytes']} bytes, "
          f"trained {stats['train_seconds']:.1f} s")

    reader = SRNReader()
    reader.SetFileName(str(out / "example.srn"))
    reader.SetStride(2, 2, 2)
    reader.Update()
    subsampled = reader.GetOutputDataObject(0)
    write_vti(subsampled, str(out / "example_stride2.vti"))
    print(f"stride-2 reconstruction: dimensions {subsampled.GetDimensions()} -> {out / 'example_stride2.vti'}")


if __name__ == "__main__":
    main()
