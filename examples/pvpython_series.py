"""Compress a time series with several arrays in pvpython, then step through the compressed file.

    plugin/srnvtk-paraview pvpython examples/pvpython_series.py [SERIES.pvd] [options]

SERIES.pvd is any time series ParaView opens as image data; without one, srnvtk's generated series (a stirred
mixing layer: density, temperature, velocity) is written first. The SRN Encoder compresses the chosen point arrays
of every time step into OUT/NAME.srn (All Time Steps: step 0 trained from scratch, each later step warm-started
from the one before and stored as differences to its grid), the SRN Reader opens it, and the animation steps
through its times, saving a slice of the first array at each as OUT/NAME_<step>.png. Debian's ParaView renders
through X only: without a display the script restarts itself under `xvfb-run -a`.
"""

import argparse
import os
import sys

from pvsupport import ensure_display, field_value, load_plugin, run_and_exit


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("series", nargs="?", help=".pvd series to compress (default: the generated series)")
    parser.add_argument("--arrays", default="density,temperature",
                        help="comma-separated point arrays (default density,temperature)")
    parser.add_argument("--ratio", type=float, default=50.0, help="target ratio of the whole file (default 50)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of step 0 (default 1000)")
    parser.add_argument("--size", type=int, default=48, help="points per axis of the generated series (default 48)")
    parser.add_argument("--time-steps", type=int, default=5, help="time steps of the generated series (default 5)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", default="out", help="output folder (default ./out)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    ensure_display()
    from paraview import simple

    load_plugin(simple)
    os.makedirs(args.out, exist_ok=True)
    if args.series:
        name, pvd = os.path.splitext(os.path.basename(args.series))[0], args.series
    else:
        from srnvtk.series_data import write_generated_series

        name, pvd = "series", os.path.join(args.out, "series.pvd")
        write_generated_series(pvd, (args.size,) * 3, args.time_steps)
    source = simple.OpenDataFile(pvd)
    if source is None:
        sys.exit(f"ParaView cannot open '{pvd}'")
    arrays = [a for a in args.arrays.split(",") if a]
    missing = [a for a in arrays if a not in source.PointData.keys()]
    if missing:
        sys.exit(f"no point array {missing[0]!r} in the input; it has: {', '.join(source.PointData.keys())}")

    srn = os.path.abspath(os.path.join(args.out, name + ".srn"))
    encoder = simple.SRNEncoder(Input=source, FileName=srn, TargetRatio=args.ratio, Steps=args.steps,
                                Device=args.device)
    encoder.PointArrays = arrays
    encoder.AllTimeSteps = 1
    times = list(source.TimestepValues)
    print(f"compressing {', '.join(arrays)} over {len(times)} time steps to ratio {args.ratio:g} ...", flush=True)
    encoder.UpdatePipeline()
    psnr, ratio = field_value(encoder, "psnr"), field_value(encoder, "ratio")
    if psnr is None or not os.path.isfile(srn):
        sys.exit("compression failed; the error is printed above")
    print(f"wrote {srn}: ratio {ratio:.1f}, mean PSNR {psnr:.2f} dB, {os.path.getsize(srn)} bytes")

    reader = simple.OpenDataFile(srn)  # the SRN Reader: its times drive the animation
    reader.PointArrayStatus = arrays[:1]  # decode only the array shown
    view = simple.CreateView("RenderView")
    view.OrientationAxesVisibility = 0
    display = simple.Show(simple.Slice(Input=reader), view)
    simple.ColorBy(display, ("POINTS", arrays[0]))
    scene = simple.GetAnimationScene()
    scene.UpdateAnimationUsingDataTimeSteps()
    for step, t in enumerate(reader.TimestepValues):
        scene.AnimationTime = t
        display.RescaleTransferFunctionToDataRange(False, True)
        view.ResetCamera()
        png = os.path.join(args.out, f"{name}_{step}.png")
        simple.SaveScreenshot(png, view, ImageResolution=[640, 480])
        print(f"time {t:g}: wrote {png}")


if __name__ == "__main__":
    run_and_exit(main)
