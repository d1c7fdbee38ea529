"""Compress a volume with the SRN Encoder in pvpython, reopen the .srn and save a picture of it.

    plugin/srnvtk-paraview pvpython examples/pvpython_compress.py [VOLUME] [options]

VOLUME is any file ParaView opens as image data (.vti, .mha, .nrrd, ...). Without one, srnvtk's
built-in test volume (64^3, array 'density') is generated. Writes OUT/NAME.srn and OUT/NAME.png.
The launcher puts srnvtk and torch on ParaView's Python path and loads the plugin; with a plain
pvpython, set PYTHONPATH as plugin/README.md explains. Debian's ParaView renders through X only:
without a display the script starts an Xvfb of its own.
"""

import argparse
import os
import sys

from pvsupport import ensure_display, field_value, load_plugin, run_and_exit


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("volume", nargs="?", help="image-data file to compress (default: generated test volume)")
    parser.add_argument("--array", help="point array to compress (default: the first point array)")
    parser.add_argument("--ratio", type=float, default=20.0, help="target compression ratio (default 20)")
    parser.add_argument("--steps", type=int, default=500, help="training steps (default 500)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", default="out", help="output folder (default ./out)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    ensure_display()
    from paraview import simple

    load_plugin(simple)
    os.makedirs(args.out, exist_ok=True)

    if args.volume:
        name = os.path.splitext(os.path.basename(args.volume))[0]
        source = simple.OpenDataFile(args.volume)
        if source is None:
            sys.exit(f"ParaView cannot open '{args.volume}'")
    else:
        from srnvtk.datasets import default_volume
        from srnvtk.vtkio import write_vti

        name = "default"
        vti = os.path.join(args.out, "default.vti")
        write_vti(default_volume(), vti)
        source = simple.OpenDataFile(vti)
    source.UpdatePipeline()
    arrays = source.PointData.keys()
    array = args.array or (arrays[0] if arrays else None)
    if array not in arrays:
        sys.exit(f"no point array {array!r} in the input; it has: {', '.join(arrays) or 'none'}")

    srn = os.path.abspath(os.path.join(args.out, name + ".srn"))
    encoder = simple.SRNEncoder(Input=source, FileName=srn, TargetRatio=args.ratio, Steps=args.steps,
                                Device=args.device)
    encoder.Scalars = ["POINTS", array]
    ex = source.GetDataInformation().GetExtent()
    size = " x ".join(str(ex[2 * a + 1] - ex[2 * a] + 1) for a in range(3))
    print(f"compressing '{array}' ({size} points) to ratio {args.ratio:g} with {args.steps} steps ...", flush=True)
    encoder.UpdatePipeline()
    psnr, ratio = field_value(encoder, "psnr"), field_value(encoder, "ratio")
    if psnr is None or not os.path.isfile(srn):
        sys.exit("compression failed; the error is printed above")
    print(f"wrote {srn}: ratio {ratio:.1f}, PSNR {psnr:.2f} dB, {os.path.getsize(srn)} bytes")

    reader = simple.OpenDataFile(srn)  # picks the SRN Reader by the .srn extension
    view = simple.CreateView("RenderView")
    view.OrientationAxesVisibility = 0
    display = simple.Show(reader, view)
    display.SetRepresentationType("Volume")
    simple.ColorBy(display, ("POINTS", array))
    display.RescaleTransferFunctionToDataRange(False, True)
    simple.Show(simple.Outline(Input=reader), view)
    view.ResetCamera()
    camera = view.GetActiveCamera()
    camera.Elevation(25)
    camera.Azimuth(35)
    view.ResetCamera()
    png = os.path.join(args.out, name + ".png")
    simple.SaveScreenshot(png, view, ImageResolution=[800, 600])
    print(f"wrote {png}")


if __name__ == "__main__":
    run_and_exit(main)
