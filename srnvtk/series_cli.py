"""`srnvtk compress` of a time series and `srnvtk decompress` of one step, some arrays or every step.

The series side of srnvtk.cli, kept apart so that the single-volume commands stay as they are:
  compress IN.pvd OUT.srn, or compress a.vti b.vti ... OUT.srn (a series, in time order), or any input with
      --arrays a,b (default: every point array) writes one format-6 file (srnvtk.series_encode);
  decompress FILE OUT.vti --step N | --time T [--arrays a,b] writes one step's arrays (with its TimeValue);
  decompress FILE OUT.pvd --all-steps [--arrays a,b] writes the whole series (srnvtk.series.write_series, all
      or nothing).
Every problem is one `srnvtk: error:` line; nothing is left behind (the writers write temporary names first).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .errors import SettingsError

if TYPE_CHECKING:
    import numpy as np

    from .fileformat import SRNFile
    from .volume import Geometry


def add_compress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arrays", metavar="A,B", type=_names,
                        help="point arrays to compress into one file (default with a .pvd or several .vti "
                             "files: every point array)")


def add_decompress_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("time series and several arrays")
    which = group.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, metavar="N", help="the time step to write (0 is the first; default 0)")
    which.add_argument("--time", type=float, metavar="T", help="the time step whose time is T")
    which.add_argument("--all-steps", action="store_true", help="write every step: OUT must be a .pvd file")
    group.add_argument("--arrays", metavar="A,B", type=_names, help="arrays to write (default: every array)")


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of array names")
    return names


def vector_psnrs(stats: dict) -> str:
    """'  (x 31.20, y 30.95, z 32.01, |v| 28.40)' for a vector part's stats; '' for a scalar's."""
    keys = ("psnr_x", "psnr_y", "psnr_z", "psnr_magnitude")
    if not all(isinstance(stats.get(k), (int, float)) for k in keys):
        return ""
    return "  (" + ", ".join(f"{label} {stats[k]:.2f}" for label, k in zip(("x", "y", "z", "|v|"), keys,
                                                                          strict=True)) + ")"


def delta_note(part: dict) -> str:
    """'  delta of part 3 (step 1; key frame step 0)' for a delta part's info row; '  key frame' for a full part of
    a format-11 file; '' otherwise."""
    if "delta_of" not in part:
        return ""
    of = part["delta_of"]
    if of is None:
        return "  key frame"
    return f"  delta of part {of['part']} (step {of['step']}; key frame step {of['key_step']})"


def is_series_compress(args: argparse.Namespace) -> bool:
    """A .pvd, several inputs, or chosen arrays: the series path."""
    inputs = args.input
    return len(inputs) > 1 or str(inputs[0]).lower().endswith(".pvd") or args.arrays is not None


def is_series_decompress(args: argparse.Namespace, srn: SRNFile) -> bool:
    """A file of several fields or steps, or a step, time or arrays asked for."""
    asked = args.step is not None or args.time is not None or args.all_steps or args.arrays is not None
    return asked or len(srn.fields) > 1 or len(srn.times) > 1


# ---------------------------------------------------------------------------------------------
# compress


def run_compress(args: argparse.Namespace) -> int:
    from . import cli
    from .series import open_series
    from .series_encode import encode_series

    settings = cli.encoder_settings(args)
    if args.array is not None:
        raise cli._CLIError("--array names one array of one .vti file; for a series use --arrays A,B")
    for path in args.input:
        cli._check_input(path)
        cli._check_output(args.output, path)
    if not str(args.output).lower().endswith(".srn"):
        raise cli._CLIError(f"the output '{args.output}' should be a .srn file")
    with cli._vtk_messages():
        series = open_series(args.input, args.arrays)
    names = args.arrays or list(series.names)
    train = settings.train
    if not args.quiet:
        target = (f"{settings.encode.psnr:g} dB (ratio searched on step 0)" if settings.encode.psnr is not None
                  else f"ratio {settings.encode.ratio:g} shared equally" if settings.encode.ratio is not None
                  else "the model settings as given")
        print(f"compressing {', '.join(repr(n) for n in names)} over {series.num_steps} steps "
              f"({cli._dims(series.geometry.dimensions)} points): {settings.encode.architecture}, {target}; step 0 "
              f"{train.steps} steps, later steps warm with {train.warm_start_fraction:g} of them{_scheme(settings)}",
              file=sys.stderr)
    bar = cli.ProgressBar("compressing", enabled=not args.quiet)
    try:
        with cli._vtk_messages():
            result = encode_series(series, settings, arrays=names, path=args.output, progress=bar,
                                   should_abort=None)
    finally:
        bar.close()
    if result.trials:
        tried = ", ".join(f"{r:.4g}: " + ("no model fits" if q is None else cli.format_psnr(q))
                          for r, q in result.trials)
        print(f"quality search on step 0 (ratio: mean PSNR): {tried}", file=sys.stderr)
    print(f"wrote {args.output}: {len(result.fields)} arrays x {len(result.times)} steps")
    print(f"  file size   {cli.human_bytes(result.file_bytes)} ({result.file_bytes:,} bytes)")
    print(f"  ratio       {result.ratio:.1f}x against float32")
    print(f"  PSNR        mean {result.mean_psnr:.2f} dB")
    for info in result.fields:
        quality = [p.stats["psnr"] for p in result.parts if p.field == info.name]
        print(f"    {info.name:<14} min {min(quality):.2f} dB, max {max(quality):.2f} dB")
    seconds = sum(p.stats["train_seconds"] for p in result.parts)
    print(f"  train time  {cli.human_seconds(seconds)}")
    return 0


def _scheme(settings) -> str:
    """How later steps are stored, for the opening line: nothing for whole networks."""
    encode = settings.encode
    if encode.time_scheme != "delta":
        return ""
    keys = f"every {encode.key_interval} steps" if encode.key_interval else "step 0 only"
    return f", stored as grid deltas (key frames: {keys})"


# ---------------------------------------------------------------------------------------------
# decompress


def step_of(srn: SRNFile, step: int | None, at_time: float | None) -> int:
    """The step asked for by index or by time (to within a millionth of the time span, or of 1); SettingsError
    naming what the file has otherwise."""
    times = srn.times
    if at_time is not None:
        tolerance = 1e-6 * max(times[-1] - times[0], 1.0)
        for index, t in enumerate(times):
            if math.isfinite(at_time) and abs(t - at_time) <= tolerance:
                return index
        raise SettingsError(f"the file has no step at time {at_time:g}; its {len(times)} steps run from "
                            f"{times[0]:g} to {times[-1]:g}")
    step = 0 if step is None else step
    if not 0 <= step < len(times):
        raise SettingsError(f"the file has no step {step}; it has steps 0 to {len(times) - 1}")
    return step


def field_indices(srn: SRNFile, names: Sequence[str] | None) -> list[int]:
    """The file's fields by name (all when None); SettingsError naming the ones the file has."""
    have = [f.name for f in srn.fields]
    if names is None:
        return list(range(len(have)))
    missing = [n for n in names if n not in have]
    if missing:
        raise SettingsError(f"the file has no array '{missing[0]}'; it has: {', '.join(have)}")
    return [have.index(n) for n in dict.fromkeys(names)]


def decode_step(srn: SRNFile, step: int, fields: Sequence[int], geometry: Geometry, config) -> dict[str, np.ndarray]:
    from .decode import decode

    return {srn.fields[f].name: decode(srn, geometry, field=f, step=step, device=config.device,
                                       precision=config.precision, threads=config.threads) for f in fields}


def run_decompress(args: argparse.Namespace, srn: SRNFile, config) -> int:
    from . import cli
    from .decode import output_grid
    from .series import write_series

    fields = field_indices(srn, args.arrays)
    geometry = output_grid(srn.geometry, config)
    names = ", ".join(f"'{srn.fields[f].name}'" for f in fields)
    start = time.perf_counter()
    if args.all_steps:
        if not str(args.output).lower().endswith(".pvd"):
            raise cli._CLIError(f"--all-steps writes a .pvd series; '{args.output}' is not a .pvd file")
        bar = cli.ProgressBar("decoding", enabled=not args.quiet)

        def steps() -> Iterator[dict[str, np.ndarray]]:
            for step in range(len(srn.times)):
                bar(step / len(srn.times), f"step {step + 1} of {len(srn.times)}")
                yield decode_step(srn, step, fields, geometry, config)

        try:
            with cli._vtk_messages():
                write_series(args.output, geometry, srn.times, steps())
        finally:
            bar.close()
        print(f"wrote {args.output}: {names} at {len(srn.times)} steps on {cli._dims(geometry.dimensions)} points "
              f"({time.perf_counter() - start:.2f} s)")
        return 0
    if str(args.output).lower().endswith(".pvd"):
        raise cli._CLIError("a .pvd output holds every step: add --all-steps (or write one step to a .vti file)")
    step = step_of(srn, args.step, args.time)
    arrays = decode_step(srn, step, fields, geometry, config)
    image = _image(geometry, arrays, srn.times[step])
    cli._write_image(image, args.output)
    print(f"wrote {args.output}: {names} at step {step} (time {srn.times[step]:g}) on "
          f"{cli._dims(geometry.dimensions)} points, extent {' '.join(str(e) for e in geometry.extent)} "
          f"({time.perf_counter() - start:.2f} s)")
    return 0


def _image(geometry: Geometry, arrays: dict[str, np.ndarray], at_time: float):
    from vtkmodules.vtkCommonCore import vtkDoubleArray

    from .series import TIME_ARRAY
    from .vtkio import image_from_arrays

    image = image_from_arrays(geometry, arrays, active=next(iter(arrays)))
    stamp = vtkDoubleArray()
    stamp.SetName(TIME_ARRAY)
    stamp.InsertNextValue(at_time)
    image.GetFieldData().AddArray(stamp)
    return image

