"""The README demo: srnvtk's test volume -> SRN Encoder -> out/default.srn -> SRN Reader -> out/demo.png.

    plugin/srnvtk-paraview pvpython examples/demo_paraview.py [--ratio R] [--steps N] [--size N]

Generates the built-in volume (srnvtk.datasets.default_volume, uint8 array 'density'), compresses it
in ParaView with the SRN Encoder at a target compression ratio, opens the .srn file with
OpenDataFile (which picks the SRN Reader), prints the ratio and PSNR stored in the file, and renders
the same isosurfaces of the original (left) and of the reconstruction (right) side by side.
Debian's ParaView renders through X only: without a display the script starts an Xvfb
of its own.
"""

import argparse
import os
import sys

from pvsupport import ensure_display, field_value, load_plugin, run_and_exit

ISOVALUES = [70.0, 185.0]  # of density (0-255): the light/heavy interface region and the blobs


def show_isosurfaces(simple, source, view, title):
    contour = simple.Contour(Input=source, ContourBy=["POINTS", "density"], Isosurfaces=ISOVALUES,
                             ComputeScalars=1)
    display = simple.Show(contour, view)
    simple.ColorBy(display, ("POINTS", "density"))
    lut = simple.GetColorTransferFunction("density")
    lut.ApplyPreset("Cool to Warm", True)
    lut.RescaleTransferFunction(0.0, 255.0)
    display.Specular = 0.3
    outline = simple.Show(simple.Outline(Input=source), view)
    outline.AmbientColor = outline.DiffuseColor = [0.3, 0.3, 0.3]
    label = simple.Show(simple.Text(Text=title), view)
    label.WindowLocation = "Upper Center"
    label.FontSize = 11
    label.Color = [0.1, 0.1, 0.1]
    view.OrientationAxesVisibility = 0
    if hasattr(view, "UseColorPaletteForBackground"):  # 5.11 and later
        view.UseColorPaletteForBackground = 0
    view.Background = [1.0, 1.0, 1.0]
    # z up (the heavy fluid lies below), seen from the front-left and a little above.
    x0, x1, y0, y1, z0, z1 = source.GetDataInformation().GetBounds()
    center = [(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2]
    view.CameraFocalPoint = center
    view.CameraPosition = [center[0] + 1.2, center[1] - 2.0, center[2] + 0.9]
    view.CameraViewUp = [0.0, 0.0, 1.0]
    view.ResetCamera()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="points per axis of the test volume (default 64)")
    parser.add_argument("--ratio", type=float, default=20.0, help="target compression ratio (default 20)")
    parser.add_argument("--steps", type=int, default=600, help="training steps (default 600)")
    parser.add_argument("--batch-size", type=int, default=16384, help="points per training step (default 16384)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", default="out", help="output folder (default ./out)")
    args = parser.parse_args()
    ensure_display()

    from paraview import simple

    load_plugin(simple)
    from srnvtk.datasets import default_volume
    from srnvtk.vtkio import write_vti

    os.makedirs(args.out, exist_ok=True)
    vti = os.path.abspath(os.path.join(args.out, "default.vti"))
    srn = os.path.abspath(os.path.join(args.out, "default.srn"))
    png = os.path.join(args.out, "demo.png")
    write_vti(default_volume((args.size,) * 3), vti)  # the original, so ParaView can open it too
    original = simple.OpenDataFile(vti)

    print(f"compressing {args.size}^3 'density' to ratio {args.ratio:g} with {args.steps} steps ...", flush=True)
    encoder = simple.SRNEncoder(Input=original, FileName=srn, TargetRatio=args.ratio, Steps=args.steps,
                                BatchSize=args.batch_size, Device=args.device)
    encoder.Scalars = ["POINTS", "density"]
    encoder.UpdatePipeline()
    if field_value(encoder, "psnr") is None or not os.path.isfile(srn):
        sys.exit("compression failed; the error is printed above")

    reader = simple.OpenDataFile(srn)  # the .srn extension picks the SRN Reader
    reader.UpdatePipeline()
    ratio, psnr = field_value(reader, "ratio"), field_value(reader, "psnr")
    print(f"{srn}: {reader.GetXMLLabel()}, ratio {ratio:.1f}, PSNR {psnr:.2f} dB, "
          f"{os.path.getsize(srn)} bytes (grid resolution {field_value(encoder, 'grid_resolution'):.0f})")

    layout = simple.CreateLayout("srnvtk demo")
    layout.SplitHorizontal(0, 0.5)
    left, right = simple.CreateView("RenderView"), simple.CreateView("RenderView")
    simple.AssignViewToLayout(view=left, layout=layout, hint=1)
    simple.AssignViewToLayout(view=right, layout=layout, hint=2)
    float32_kib = 4 * args.size**3 / 1024  # srnvtk states ratios against float32 bytes
    show_isosurfaces(simple, original, left, f"original: {args.size}^3 points ({float32_kib:.0f} KiB as float32)")
    show_isosurfaces(simple, reader, right,
                     f"fV-SRN .srn: {os.path.getsize(srn) / 1024:.0f} KiB, ratio {ratio:.1f}, PSNR {psnr:.1f} dB")
    simple.SaveScreenshot(png, layout, ImageResolution=[1400, 640])
    print(f"wrote {png}")


if __name__ == "__main__":
    run_and_exit(main)
