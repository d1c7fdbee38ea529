"""The srnvtk command: compress, decompress, info and generate.

Settings are validated once, here, by building the library's frozen configs before any work starts.
Problems a user can fix (SRNError, missing files, bad options) print one `srnvtk: error:` line and
exit with code 2; Ctrl-C exits with 130. Neither leaves a partial output file: every writer in the
library writes to a temporary name and renames it once complete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__, series_cli
from .config import ENCODER_SETTINGS, DecodeConfig, EncoderSettings, ModelConfig, NeurcompConfig
from .errors import InputError, SRNError
from .faces import add_arguments, check_given, face_value, settings_from_args
from .interrupts import preload_command

if TYPE_CHECKING:  # VTK is imported only by the commands that need it
    from vtkmodules.vtkCommonDataModel import vtkImageData

PROG = "srnvtk"
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


# ---------------------------------------------------------------------------------------------
# Progress


class ProgressBar:
    """Progress on stderr: one carriage-return-updated line on a terminal, else a plain line now and then.

    On a terminal the line is redrawn at most every `tty_interval` seconds; when the stream is a pipe or
    a log file, a line is written at most every `log_interval` seconds, so short runs leave nothing and
    long ones a few readable lines. Call it as a library progress callback: (fraction, message).
    """

    BAR_WIDTH = 20

    def __init__(
        self,
        label: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        tty_interval: float = 0.1,
        log_interval: float = 10.0,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and _isatty(self.stream)
        self.interval = tty_interval if self.tty else log_interval
        self.start = time.monotonic()
        self._last = -math.inf if self.tty else self.start
        self._first: tuple[float, float] | None = None  # (time, fraction) of the first report, for the ETA
        self._drawn = 0  # characters of the line now on screen (terminal only)

    def __call__(self, fraction: float, message: str = "") -> None:
        if not self.enabled:
            return
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        if self._first is None:
            self._first = (now, fraction)
        done = fraction >= 1.0
        if not self.tty and done:
            return  # a log gets the summary instead
        if now - self._last < self.interval and not done:
            return
        self._last = now
        elapsed = now - self.start
        eta = None
        if fraction > self._first[1]:  # the rate since the first report; setup time does not count
            eta = (now - self._first[0]) * (1.0 - fraction) / (fraction - self._first[1])
        if self.tty:
            line = self.render(fraction, message, elapsed, eta)
            width = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)
            line = line[:width]
            self.stream.write("\r" + line + " " * max(self._drawn - len(line), 0))
            self._drawn = len(line)
        else:
            self.stream.write(self.render(fraction, message, elapsed, eta, bar=False) + "\n")
        self.stream.flush()

    def render(self, fraction: float, message: str, elapsed: float, eta: float | None, bar: bool = True) -> str:
        """'label [####------]  40% 0:12 ETA 0:18 | message'; the message goes last, so a narrow
        terminal cuts it rather than the numbers."""
        parts = [self.label]
        if bar:
            filled = int(round(fraction * self.BAR_WIDTH))
            parts.append("[" + "#" * filled + "-" * (self.BAR_WIDTH - filled) + "]")
        parts.append(f"{100 * fraction:3.0f}%")
        parts.append(clock(elapsed))
        if fraction < 1.0:
            parts.append("ETA " + ("--:--" if eta is None else clock(eta)))
        if message:
            parts.append("| " + message)
        return " ".join(parts)

    def close(self) -> None:
        """End the terminal line, so whatever comes next starts on a fresh one."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Formatting


def clock(seconds: float) -> str:
    """m:ss or h:mm:ss."""
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def human_seconds(seconds: float) -> str:
    """'12.3 s', '1 min 17 s', '2 h 03 min'."""
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    h, m = divmod(int(round(whole / 60)), 60)
    return f"{h} h {m:02d} min"


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_psnr(value: float) -> str:
    return "inf (lossless)" if math.isinf(value) else f"{value:.2f} dB"


def _numbers(values: Any) -> str:
    return " ".join(f"{v:g}" for v in values)


def _dims(dims: Any) -> str:
    return " x ".join(str(int(d)) for d in dims)


# ---------------------------------------------------------------------------------------------
# Errors, warnings and VTK's own messages


class _CLIError(SRNError):
    """A problem with the command line itself (paths, option combinations)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory; try a smaller volume, model or --batch-size"
    if isinstance(exc, OSError) and not isinstance(exc, SRNError) and exc.strerror:
        where = f": '{exc.filename}'" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Library warnings (say, CUDA requested but absent) as one `srnvtk: warning:` line each."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"{PROG}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _vtk_messages() -> Iterator[Callable[[], str]]:
    """Keep VTK's error output (multi-line, with addresses) off the terminal; yields a getter for the
    first real error message, to append to ours."""
    from vtkmodules.vtkCommonCore import vtkLogger, vtkOutputWindow, vtkStringOutputWindow

    previous_window = vtkOutputWindow.GetInstance()
    previous_verbosity = vtkLogger.GetCurrentVerbosityCutoff()  # stderr is the only sink a CLI run has
    window = vtkStringOutputWindow()
    vtkOutputWindow.SetInstance(window)
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF)

    def first_error() -> str:
        for line in window.GetOutput().splitlines():
            # Messages read "vtkClass (0x1234): text"; the executive's follow-ups add nothing.
            if "): " in line and not line.startswith(("vtkCompositeDataPipeline", "vtkStreamingDemandDrivenPipeline")):
                return line.split("): ", 1)[1].strip()
        return ""

    try:
        yield first_error
    finally:
        vtkOutputWindow.SetInstance(previous_window)
        vtkLogger.SetStderrVerbosity(previous_verbosity)


# ---------------------------------------------------------------------------------------------
# Paths


def _check_input(path: str) -> None:
    if not os.path.exists(path):
        raise _CLIError(f"no such file: '{path}'")
    if os.path.isdir(path):
        raise _CLIError(f"'{path}' is a folder, not a file")


def _check_output(path: str, input_path: str | None = None) -> None:
    """Fail before any work when the output cannot be written where asked."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise _CLIError(f"cannot write '{path}': folder '{folder}' does not exist")
    if os.path.isdir(path):
        raise _CLIError(f"cannot write '{path}': it is a folder")
    if not os.access(folder, os.W_OK):
        raise _CLIError(f"cannot write '{path}': folder '{folder}' is not writable")
    if input_path is not None and os.path.exists(path) and os.path.samefile(path, input_path):
        raise _CLIError(f"the output '{path}' is the input file; choose another name")


def _read_image(path: str) -> vtkImageData:
    from .vtkio import read_vti

    _check_input(path)
    with _vtk_messages() as vtk_error:
        try:
            return read_vti(path)
        except InputError as exc:
            detail = vtk_error()
            raise InputError(f"{exc} (is it a VTK XML image data file?){': ' + detail if detail else ''}") from None


def _write_image(image: vtkImageData, path: str) -> None:
    from .vtkio import write_vti

    with _vtk_messages() as vtk_error:
        try:
            write_vti(image, path)
        except OSError as exc:
            detail = vtk_error()
            raise _CLIError(f"{_describe(exc)}{': ' + detail if detail else ''}") from None


# ---------------------------------------------------------------------------------------------
# compress


def encoder_settings(args: argparse.Namespace) -> EncoderSettings:
    """The settings the command line gives (defaults for the rest); SettingsError for options that are out of
    range, excluded by another option or meant for another architecture or pruning method."""
    choice = {name: face_value(args, ENCODER_SETTINGS, name) for name in ("architecture", "method", "wavelet")}
    check_given(args, ENCODER_SETTINGS, choice)
    return EncoderSettings(*(settings_from_args(args, cls) for cls in ENCODER_SETTINGS))


def _describe_model(config: ModelConfig, geometry) -> str:
    from .models.fvsrn import grid_shape_for

    if isinstance(config, NeurcompConfig):
        kind = "residual" if config.residual else "plain"
        clusters = f", hidden matrices in {config.weight_clusters} shared values" if config.weight_clusters else ""
        return (f"Neurcomp ({kind}) width {config.width}, {config.blocks} blocks, omega_0 {config.omega_0:g}"
                f"{clusters}")
    grid = "x".join(str(n) for n in reversed(grid_shape_for(config, geometry)))
    wavelet = ""
    if config.wavelet is not None:
        levels = "automatic" if config.wavelet_levels is None else config.wavelet_levels
        wavelet = f" as {config.wavelet} wavelet coefficients (levels {levels})"
    return (f"grid {grid} x {config.grid_channels} channels{wavelet}, "
            f"MLP {config.mlp_layers} x {config.mlp_width}")


def _open_source(path: str, array: str | None):
    """The input as a srnvtk.sources.BrickSource: NRRD streams, anything else is read whole by VTK."""
    from .sources import VolumeSource, open_source
    from .vtkio import volume_from_image

    if Path(path).suffix.lower() in (".nrrd", ".nhdr"):
        return open_source(path, array)
    return VolumeSource(volume_from_image(_read_image(path), array))


def _run_compress(args: argparse.Namespace) -> int:
    from .interrupts import Interrupts

    if series_cli.is_series_compress(args):  # a .pvd, several .vti files or --arrays: one file of many parts
        if getattr(args, "interrupts", None) is not None:
            args.interrupts.check()
            args.interrupts.__exit__()  # Ctrl-C as usual from here
        return series_cli.run_compress(args)
    args.input = args.input[0]
    # Signals only raise a flag (main catches them so from before the imports): under MPI a rank interrupted while
    # it starts must still meet the others (srnvtk.distributed).
    if getattr(args, "interrupts", None) is not None:
        return _compress(args, args.interrupts)
    with Interrupts() as interrupts:
        return _compress(args, interrupts)


def _compress(args: argparse.Namespace, interrupts) -> int:
    from .distributed import agree, world
    from .sources import VolumeSource
    from .volume import Volume

    comm = world(args.mpi)

    def setup():
        settings = encoder_settings(args)
        _check_input(args.input)
        _check_output(args.output, args.input)
        return settings, _open_source(args.input, args.array)

    try:
        settings, source = agree(comm, setup, interrupts)
        size = settings.bricks.size_for(source.geometry.dimensions, comm.size)
        if size:
            return _compress_bricks(args, settings, source, size, comm, interrupts)
    except (SRNError, KeyboardInterrupt) as exc:
        if comm.size == 1:
            raise
        # Every rank raises the same error (srnvtk.distributed): rank 0 reports it, then all exit together (the
        # launcher ends the job as soon as one rank exits with an error, perhaps before rank 0 has said why).
        if comm.rank == 0:
            text = (str(exc) or "interrupted") if isinstance(exc, KeyboardInterrupt) else f"error: {_describe(exc)}"
            print(f"{PROG}: {text}", file=sys.stderr, flush=True)
        comm.barrier()
        return EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_ERROR
    interrupts.check()
    interrupts.__exit__()  # one network: Ctrl-C as usual from here
    if isinstance(source, VolumeSource):
        volume = source.volume
    else:
        volume = Volume(source.read(source.geometry.extent), source.geometry, source.name)
    return _compress_whole(args, settings, volume)


def _compress_whole(args: argparse.Namespace, settings: EncoderSettings, volume) -> int:
    """One network for the whole volume."""
    from .devices import resolve_device
    from .presets import choose
    from .ratecontrol import encode, plan_for_ratio
    from .volume import validate_for_training

    validate_for_training(volume)
    target, train, pruning = settings.encode, settings.train, settings.pruning
    if not args.quiet:
        if target.max_error is not None or target.max_rel_error is not None:
            from .errorbound import absolute_bound

            bound = absolute_bound(target.max_error, target.max_rel_error, validate_for_training(volume))
            model = (f"max error {bound:g}: the smallest of the residual alone and {target.bound_networks} "
                     f"network size(s) with their residual")
        elif target.psnr is not None:
            model = f"searching sizes for {target.psnr:g} dB ({target.psnr_trials} trainings at most)"
        elif target.ratio is not None:
            chosen, pruning = choose(settings, target.ratio)
            planned, budget = plan_for_ratio(target.ratio, volume, chosen, pruning)
            model = f"{_describe_model(planned, volume.geometry)}, fitted to {budget:,} bytes"
        else:
            model = _describe_model(settings.model_config, volume.geometry)
        pruned = f", pruning with {pruning.method}" if pruning.enabled else ""
        print(f"compressing '{volume.name}' ({_dims(volume.geometry.dimensions)} {volume.dtype}) from "
              f"{args.input}: {model}{pruned}, {train.steps} steps of {train.batch_size} on "
              f"{resolve_device(train.device)}", file=sys.stderr)
    bar = ProgressBar("compressing", enabled=not args.quiet)
    try:
        encoded = encode(volume, settings, path=args.output, progress=bar)
    finally:
        bar.close()
    if encoded.search is not None:
        search = encoded.search
        tried = ", ".join(f"{r:.4g}: " + ("no model fits" if q is None else format_psnr(q)) for r, q in search.trials)
        print(f"quality search (ratio: PSNR): {tried}", file=sys.stderr)
        if not search.reached:
            print(f"warning: no trial reached {target.psnr:g} dB; kept the best one", file=sys.stderr)
    result, pruning = encoded.result, encoded.pruning
    stats = result.stats
    print(f"wrote {args.output}")
    print(f"  file size   {human_bytes(result.file_bytes)} ({result.file_bytes:,} bytes)")
    against_source = (f", {volume.values.nbytes / result.file_bytes:.1f}x against the {volume.dtype} source"
                      if volume.dtype != "float32" else "")
    print(f"  ratio       {stats['ratio']:.1f}x against float32{against_source}")
    print(f"  PSNR        {format_psnr(stats['psnr'])}")
    if result.bound is not None:
        bound = result.bound
        print(f"  max error   {bound['max_error_measured']:g} measured on every voxel (bound {bound['max_error']:g})")
        print(f"  split       {bound['design']} ({bound['coder']} residual): network {bound['network_bytes']:,} "
              f"bytes, residual {bound['residual_bytes']:,} bytes")
        tried = ", ".join(f"{c['design']}"
                          + (f" [{c['network']}, {c['steps']} steps]" if "network" in c else "")
                          + f" + {c['coder']}: {c['file_bytes']:,}" for c in bound["candidates"])
        print(f"  tried       {tried}")
        if result.model_config is None:
            return 0
    if pruning.enabled:
        print(f"  pruned      {100 * stats['pruned_fraction']:.1f}% of the parameters ({pruning.method})")
    print(f"  train time  {human_seconds(stats['train_seconds'])} ({int(stats['steps'])} steps)")
    return 0


def _compress_bricks(args: argparse.Namespace, settings: EncoderSettings, source, size: int, comm,
                     interrupts) -> int:
    """Bricks, on this process or on every MPI rank (srnvtk.distributed); rank 0 reports."""
    import dataclasses

    import numpy as np

    from .bricks import layout_for
    from .devices import resolve_device, use_local_gpu
    from .distributed import compress_bricks
    from .parallel import default_threads

    layout = layout_for(source.geometry, size, settings.bricks.halo)
    count = int(np.prod(layout.counts(source.geometry)))
    if comm.size > 1 and not settings.train.threads:  # one thread per core, shared by this machine's ranks
        settings = dataclasses.replace(settings, train=dataclasses.replace(settings.train, threads=default_threads()))
    use_local_gpu(settings.train.device)
    lead = comm.rank == 0
    train, target = settings.train, settings.encode
    if lead and not args.quiet:
        aim = f"fitted to {4 * source.geometry.num_points / target.ratio:,.0f} bytes" if target.ratio else \
            _describe_model(settings.model_config, source.geometry)
        print(f"compressing '{source.name}' ({_dims(source.geometry.dimensions)} {source.dtype}) from {args.input}: "
              f"{count} bricks of {size}^3 (halo {layout.halo}) on {comm.size} rank{'s' if comm.size > 1 else ''}, "
              f"{aim}, {train.steps} steps of {train.batch_size} per brick on {resolve_device(train.device)}",
              file=sys.stderr)
    bar = ProgressBar("compressing", enabled=lead and not args.quiet)
    start = time.perf_counter()
    try:
        result = compress_bricks(source, settings, brick_size=size, halo=settings.bricks.halo, path=args.output,
                                 comm=comm, progress=bar, interrupts=interrupts)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    if not lead:
        return 0
    stats = result.stats
    print(f"wrote {args.output}")
    print(f"  file size   {human_bytes(result.file_bytes)} ({result.file_bytes:,} bytes), {count} bricks")
    print(f"  ratio       {stats['ratio']:.1f}x against float32")
    print(f"  PSNR        {format_psnr(stats['psnr'])}")
    print(f"  train time  {human_seconds(stats['train_seconds'])} ({int(stats['steps'])} steps in all bricks), "
          f"{human_seconds(seconds)} in all")
    memory = ", ".join(f"{human_bytes(rss)}" for rss in result.peak_rss)
    print(f"  peak memory {memory} ({'per rank' if comm.size > 1 else 'this process'})")
    return 0


# ---------------------------------------------------------------------------------------------
# decompress


def _run_decompress(args: argparse.Namespace) -> int:
    from .decode import decode, evaluation_path, model_device, output_grid
    from .fileformat import read_srn
    from .vtkio import image_from_arrays

    check_given(args, (DecodeConfig,), {})
    config = settings_from_args(args, DecodeConfig)
    _check_input(args.input)
    _check_output(args.output, args.input)
    srn = read_srn(args.input)
    if series_cli.is_series_decompress(args, srn):
        return series_cli.run_decompress(args, srn, config)
    source = srn.source
    geometry = output_grid(source.geometry, config)
    bar = ProgressBar("decoding", enabled=not args.quiet)
    start = time.perf_counter()
    try:
        values = decode(srn, geometry, device=config.device, precision=config.precision, threads=config.threads,
                        progress=bar)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    image = image_from_arrays(geometry, {source.array_name: values}, active=source.array_name)
    _write_image(image, args.output)
    print(
        f"wrote {args.output}: '{source.array_name}' ({source.dtype}) on {_dims(geometry.dimensions)} points, "
        f"extent {' '.join(str(e) for e in geometry.extent)}, spacing {_numbers(geometry.spacing)}"
    )
    # a bounded file may hold no network (its residual alone); a file of many networks: the first one decoded
    model = srn.model if srn.bound is not None or not srn.parts else srn.part_model(srn.parts_of(0, 0)[0].index)
    where = model_device(model).type.upper() if model is not None else "CPU"
    bricks = f"{srn.sections_read} sections read for {len(srn.parts)} bricks, " if srn.bricks is not None else ""
    print(f"decoded in {seconds:.2f} s ({values.size / max(seconds, 1e-9) / 1e6:.2f} M points/s; {bricks}"
          f"{evaluation_path(model)} on the {where})")
    if srn.bound is not None:
        from .decode import bound_applies

        if bound_applies(srn, geometry):
            print(f"every point is within {srn.bound.max_error:g} of the original (the file's error bound)")
        else:
            print("the file's error bound does not apply to this resampled grid (its points are not on the source "
                  "lattice)")
    return 0


# ---------------------------------------------------------------------------------------------
# info


# What an unset (None) model setting means, for `srnvtk info`.
_UNSET_MEANS = {"grid_shape": "derived from the volume", "wavelet": "none (plain grid)",
                "wavelet_levels": "automatic"}


def _run_info(args: argparse.Namespace) -> int:
    from .fileinfo import file_info
    from .pruning import METHOD_SETTINGS, SCHEDULE_SETTINGS

    _check_input(args.input)
    info = file_info(args.input)
    if args.json:
        print(json.dumps(info, indent=2, allow_nan=False))
        return 0
    if "parts" in info:
        return _print_parts_info(info)
    src, stats = info["source"], info["stats"]
    rows: list[tuple[str, str]] = []

    def section(title: str) -> None:
        rows.append((title, ""))

    def row(key: str, value: Any) -> None:
        rows.append(("  " + key, str(value)))

    version = f", written by srnvtk {info['srnvtk_version']}" if info["srnvtk_version"] else ""
    print(f"{info['file']}: {info['format']} format version {info['format_version']}, "
          f"architecture {info['architecture']}{version}")
    if info["model_config"] is None:
        section("model")
        row("network", "none: the residual alone keeps the error bound")
    model = info["model_config"] or {}
    if model:
        section("model settings")
    for key, value in model.items():
        if key == "wavelet_levels" and model.get("wavelet") is None:
            continue  # a plain grid
        unset = _UNSET_MEANS.get(key, "")
        row(key, unset if value is None else _dims(value) if isinstance(value, list) else value)
    if "grid_shape" in info:
        row("stored grid", f"{model['grid_channels']} x {_dims(info['grid_shape'])} (channels, z, y, x)")
        if model.get("wavelet") is not None:
            levels = " ".join(str(n) for n in info["model_structure"]["wavelet_levels"])
            row("stored as", f"{model['wavelet']} wavelet coefficients, levels {levels} (z, y, x)")
    elif model:
        row("layer widths", " ".join(str(w) for w in info["model_structure"]["widths"]))
    pruning = info["pruning_config"] or {"method": "none"}
    if model:
        section("pruning")
        row("method", pruning["method"])
    if pruning["method"] != "none":
        shown = (("granularity",) if "grid_shape" in info else ()) + SCHEDULE_SETTINGS
        for key in shown + METHOD_SETTINGS[pruning["method"]]:
            value = pruning[key]
            row(key, f"{value:g}" if isinstance(value, float) else value)
    section("source")
    row("array", f"'{src['array_name']}' ({src['dtype']})")
    row("dimensions", _dims(src["dimensions"]))
    row("extent", " ".join(str(e) for e in src["extent"]))
    row("spacing", _numbers(src["spacing"]))
    row("origin", _numbers(src["origin"]))
    row("value range", f"{src['value_range'][0]:g} .. {src['value_range'][1]:g}")
    bound = info.get("error_bound")
    if bound is not None:
        section("error bound")
        relative = f" ({bound['max_rel_error']:g} of the value range)" if bound["max_rel_error"] is not None else ""
        row("max error", f"{bound['max_error']:g}{relative}")
        row("design", f"{bound['design']}, {bound['coder']} residual")
        row("split", f"network {bound['network_bytes']:,} bytes, residual {bound['residual_bytes']:,} bytes "
                     f"({bound['chunks_stored']} of {bound['chunks']} chunks of {bound['chunk_edge']}^3 stored)")
        row("holds on", "the full grid, strides, sub-extents and pieces; not on resampled grids")
    section("stats")
    if "psnr" in stats:
        row("PSNR", "inf (lossless)" if stats["psnr"] is None else format_psnr(stats["psnr"]))
    if stats.get("ratio") is not None:
        row("ratio", f"{stats['ratio']:.1f}x against float32")
    if stats.get("file_bytes") is not None:
        row("file bytes", f"{stats['file_bytes']:,} ({human_bytes(stats['file_bytes'])})")
    trained = stats if model else {}  # a bounded file without a network trained nothing
    if trained.get("train_seconds") is not None:
        row("train time", human_seconds(stats["train_seconds"]))
    if trained.get("steps") is not None:
        row("steps", stats["steps"])
    if trained.get("final_loss") is not None:
        row("final loss", f"{stats['final_loss']:.4g}")
    if trained.get("pruned_fraction") is not None:
        row("pruned", f"{100 * stats['pruned_fraction']:.1f}% of the parameters")
    section("stored tensors (bytes)")
    for name, size in info["tensor_bytes"].items():
        rows.append(("  " + name, f"{size:>10,}"))
    tensors_total = sum(info["tensor_bytes"].values())
    rows.append(("  total", f"{tensors_total:>10,}"))
    if stats.get("file_bytes") is not None:
        structure = "HDF5 structure" if info["format_version"] < 5 else "header and container"
        residual = bound["residual_bytes"] if bound is not None else 0
        if bound is not None:
            rows.append(("  residual", f"{residual:>10,}"))
        rows.append(("  " + structure, f"{stats['file_bytes'] - tensors_total - residual:>10,}"))
    if info["pruned_fractions"]:
        section("pruned fraction per parameter")
    for name, fraction in info["pruned_fractions"].items():
        rows.append(("  " + name, f"{100 * fraction:>9.1f}%"))
    width = max(len(key) for key, _ in rows) + 2
    for key, value in rows:
        print(f"{key:<{width}}{value}".rstrip() if value else key)
    return 0


def _print_parts_info(info: dict[str, Any]) -> int:
    """`srnvtk info` of a file of many networks: one line per field and time step (bricks summed)."""
    grid, stats = info["grid"], info["stats"]
    print(f"{info['file']}: {info['format']} format version {info['format_version']}, {len(info['parts'])} networks,"
          f" written by srnvtk {info['srnvtk_version']}")
    print(f"  grid        {_dims(grid['dimensions'])} points, spacing {_numbers(grid['spacing'])}, origin "
          f"{_numbers(grid['origin'])}")
    more = " ..." if len(info["times"]) > 8 else ""
    print(f"  times       {len(info['times'])}: {_numbers(info['times'][:8])}{more}")
    if info["bricks"] is not None:
        bricks = info["bricks"]
        print(f"  bricks      {_dims(bricks['counts'])} of {_dims(bricks['size'])} points, halo {bricks['halo']}")
    print(f"  file bytes  {int(stats['file_bytes']):,} ({human_bytes(stats['file_bytes'])}), ratio "
          f"{stats['ratio']:.1f}x against float32")
    if "bytes" in info:  # formats 9 and 11
        b = info["bytes"]
        print(f"  bytes       {b['parts']:,} in the networks, {b['bookkeeping']:,} bookkeeping "
              f"({b['bookkeeping_per_part']} per network), {b['fixed']:,} fixed (header, index, statistics)")
    if "psnr" in stats:
        print(f"  PSNR        {'inf (lossless)' if stats['psnr'] is None else format_psnr(stats['psnr'])} (whole file)")
    if len(info["parts"]) > 1 and all(p["brick"] is not None for p in info["parts"]):
        quality = sorted(p["stats"]["psnr"] for p in info["parts"] if p["stats"].get("psnr") is not None)
        sizes = sorted(p["bytes"] for p in info["parts"])
        print(f"  per brick   bytes {sizes[0]:,} .. {sizes[len(sizes) // 2]:,} (median) .. {sizes[-1]:,}"
              + (f"; PSNR {quality[0]:.2f} .. {quality[len(quality) // 2]:.2f} .. {quality[-1]:.2f} dB"
                 if quality else "") + " (--json lists every brick)")
    print(f"  {'field':<16} {'step':>5} {'time':>10} {'bytes':>12} {'PSNR':>9}")
    groups: dict[tuple[str, int], list[dict]] = {}
    for part in info["parts"]:
        groups.setdefault((part["field"], part["step"]), []).append(part)
    for (name, step), parts in groups.items():
        quality = [p["stats"].get("psnr") for p in parts]
        shown = f"{quality[0]:.2f}" if len(quality) == 1 and quality[0] is not None else "-"
        vector = series_cli.vector_psnrs(parts[0]["stats"]) if len(parts) == 1 else ""
        print(f"  {name:<16} {step:>5} {parts[0]['time']:>10g} {sum(p['bytes'] for p in parts):>12,} {shown:>9}"
              f"{vector}{series_cli.delta_note(parts[0])}")
    return 0


# ---------------------------------------------------------------------------------------------
# generate


def _run_generate(args: argparse.Namespace) -> int:
    from .datasets import ARRAY_NAME, default_geometry, default_slabs, default_volume

    if args.series is not None or args.steps is not None:
        return _run_generate_series(args)
    if args.output is None:
        raise _CLIError("give OUT.vti, or --series OUT.pvd for a time series")
    _check_output(args.output)
    if Path(args.output).suffix.lower() == ".nrrd":  # generated and written a slab at a time, any size
        from .sources import write_nrrd

        shape = tuple(args.shape)
        size = write_nrrd(args.output, args.dtype, default_geometry(shape), default_slabs(shape, args.seed, args.dtype))
        print(f"wrote {args.output}: {args.dtype} on {_dims(shape)} points ({human_bytes(size)}, raw NRRD)")
        return 0
    if args.dtype != "uint8":
        raise _CLIError("a .vti volume is generated as uint8; --dtype float32 writes .nrrd files")
    image = default_volume(tuple(args.shape), args.seed)
    _write_image(image, args.output)
    print(f"wrote {args.output}: '{ARRAY_NAME}' (uint8) on {_dims(image.GetDimensions())} points")
    return 0


def _run_generate_series(args: argparse.Namespace) -> int:
    from .series_data import DEFAULT_SERIES_STEPS, SERIES_ARRAYS, series_times, write_generated_series

    if args.series is None or args.output is not None:
        raise _CLIError("a time series is written with --series OUT.pvd (and --steps), without OUT.vti")
    _check_output(args.series)
    steps = DEFAULT_SERIES_STEPS if args.steps is None else args.steps
    bar = ProgressBar("generating", enabled=not args.quiet)
    try:
        with _vtk_messages():
            geometry = write_generated_series(args.series, tuple(args.shape), steps, args.seed, bar)
    finally:
        bar.close()
    times = series_times(steps)
    print(f"wrote {args.series}: {steps} steps (t = {times[0]:g} to {times[-1]:g} s) of "
          f"{', '.join(SERIES_ARRAYS)} (float32; velocity 3 components) on {_dims(geometry.dimensions)} points")
    return 0


# ---------------------------------------------------------------------------------------------
# paraview


def _run_paraview(args: argparse.Namespace) -> int:
    from .paraview_plugin import launch, paraview_environment, plugin_folder

    if args.print_path:
        env = paraview_environment()
        print(f"PV_PLUGIN_PATH={plugin_folder()}")
        print(f"PYTHONPATH={env['PYTHONPATH']}")
        return 0
    launch(args.program, args.args)
    return 0  # not reached: launch replaces this process


# ---------------------------------------------------------------------------------------------
# Parser and entry point


def build_parser(encoder_classes: tuple[type, ...] = ENCODER_SETTINGS,
                 decoder_classes: tuple[type, ...] = (DecodeConfig,)) -> argparse.ArgumentParser:
    """The srnvtk command's parser; the settings classes of compress and decompress can be swapped for tests."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compress VTK image data (.vti) into small .srn files with scene representation networks, "
                    "and back.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compress", help="train a network on one array of a .vti file and write a .srn file",
                       description="Train an fV-SRN or Neurcomp network on one point-data array, optionally "
                                   "pruning it while training, and store it as a .srn file.")
    p.add_argument("input", metavar="IN", nargs="+",
                   help="a .vti file (read whole) or a NRRD file with raw encoding (read a brick at a time); or a time "
                        "series: a .pvd file, or several .vti files in time order")
    p.add_argument("output", metavar="OUT.srn")
    p.add_argument("--array", metavar="NAME", help="point-data array to compress (default: the active scalars)")
    series_cli.add_compress_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr (the summary still prints)")
    p.add_argument("--mpi", choices=("auto", "on", "off"), default="auto",
                   help="run as one of the MPI ranks started by mpirun/mpiexec/srun (auto: when started so; on: an "
                        "error without a launcher; off: one process), each rank compressing its own bricks into one "
                        "file (default auto)")
    add_arguments(p, encoder_classes)
    p.set_defaults(run=_run_compress)

    p = sub.add_parser("decompress", help="reconstruct a .vti file from a .srn file",
                       description="Evaluate the stored network on the source grid, a strided or resampled "
                                   "version of it, or a sub-extent, and write a .vti file.")
    p.add_argument("input", metavar="IN.srn")
    p.add_argument("output", metavar="OUT.vti|OUT.pvd")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    add_arguments(p, decoder_classes)
    series_cli.add_decompress_arguments(p)
    p.set_defaults(run=_run_decompress)

    p = sub.add_parser("info", help="describe a .srn file", description="Show what a .srn file stores.")
    p.add_argument("input", metavar="FILE.srn")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_info)

    p = sub.add_parser("generate", help="write srnvtk's procedural test volume as a .vti or .nrrd file",
                       description="Write the built-in synthetic volume: a uint8 'density' array in a .vti file, or "
                                   "uint8 or float32 values in a raw NRRD file, generated a slab at a time (any size).")
    p.add_argument("output", metavar="OUT.vti|OUT.nrrd", nargs="?")
    p.add_argument("--dtype", choices=("uint8", "float32"), default="uint8",
                   help="uint8: the field scaled to 0..255; float32: the field itself (.nrrd only; default uint8)")
    p.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], metavar=("NX", "NY", "NZ"),
                   help="points per axis (default 64 64 64)")
    p.add_argument("--seed", type=int, default=0, help="moves the blobs and the interface's phases (default 0)")
    series = p.add_argument_group("time series", "a mixing layer stirred by a turbulence-like flow: float32 "
                                  "density, temperature and velocity (3 components) per step")
    series.add_argument("--series", metavar="OUT.pvd", help="write OUT.pvd and OUT/OUT_0000.vti, ... instead")
    series.add_argument("--steps", type=int, metavar="N", help="time steps (default 20)")
    series.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.set_defaults(run=_run_generate)

    p = sub.add_parser("paraview", help="start ParaView (or pvpython, pvbatch) with the srnvtk plugin loaded",
                       description="Start a ParaView program with the SRN Encoder and SRN Reader: writes the plugin "
                                   "XML to srnvtk's cache folder and sets PV_PLUGIN_PATH and PYTHONPATH.")
    p.add_argument("program", nargs="?", default="paraview", choices=("paraview", "pvpython", "pvbatch", "pvserver"),
                   help="which program (default paraview)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the program")
    p.add_argument("--print-path", action="store_true",
                   help="print the PV_PLUGIN_PATH and PYTHONPATH to use, and start nothing")
    p.set_defaults(run=_run_paraview)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one srnvtk command; returns the exit status (0, 2 for errors, 130 when interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage and its message
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    from .interrupts import Interrupts

    # compress: SIGINT and SIGTERM raise a flag from before its imports (srnvtk.interrupts, srnvtk.distributed)
    signals = Interrupts() if args.command == "compress" else contextlib.nullcontext()
    try:
        with _warnings_to_stderr(), signals as caught:
            args.interrupts = caught
            preload_command(args.command)  # no Ctrl-C inside extension-module imports (srnvtk.interrupts)
            return args.run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (SRNError, OSError, MemoryError) as exc:
        print(f"{PROG}: error: {_describe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower():
            raise
        print(f"{PROG}: error: out of memory ({str(exc).splitlines()[0]}); try a smaller --batch-size",
              file=sys.stderr)
        return EXIT_ERROR
