"""The srnvtk command: compress, decompress, info and generate.

Settings are validated once, here, by building the library's frozen configs before any work starts.
Problems a user can fix (SRNError, missing files, bad options) print one `srnvtk: error:` line and
exit with code 2; Ctrl-C exits with 130. Neither leaves a partial output file: every writer in the
library writes to a temporary name and renames it once complete.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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

import numpy as np

from . import __version__
from .config import (
    ARCHITECTURES,
    DEFAULT_LEARNING_RATES,
    DEVICES,
    GRANULARITIES,
    NEURCOMP_REFERENCE_WIDTH,
    PRECISIONS,
    PRUNING_METHODS,
    PSNR_TRIALS,
    SIGMA_MODES,
    FVSRNConfig,
    ModelConfig,
    NeurcompConfig,
    PruningConfig,
    TrainConfig,
    check_device,
)
from .errors import InputError, SettingsError, SRNError

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


def _train_config(args: argparse.Namespace) -> TrainConfig:
    given = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "seed": args.seed,
        "device": args.device,
        "threads": args.threads,
        "time_limit": args.time_limit,
    }
    return TrainConfig(**{k: v for k, v in given.items() if v is not None})


# The options of each architecture: option dest -> settings field.
_MODEL_OPTIONS = {
    "fvsrn": {"grid_resolution": "grid_resolution", "grid_channels": "grid_channels", "mlp_width": "mlp_width",
              "mlp_layers": "mlp_layers", "fourier_features": "fourier_features", "wavelet": "wavelet",
              "wavelet_levels": "wavelet_levels"},
    "neurcomp": {"neurcomp_width": "width", "neurcomp_blocks": "blocks", "residual": "residual",
                 "omega0": "omega_0", "weight_clusters": "weight_clusters"},
}


def _base_model_config(args: argparse.Namespace) -> ModelConfig:
    """The chosen architecture's settings; options of the other architecture are an error."""
    for architecture, options in _MODEL_OPTIONS.items():
        if architecture == args.arch:
            continue
        for dest in options:
            if getattr(args, dest) is not None:
                flag = "--" + dest.replace("_", "-")
                if dest == "residual":
                    flag = "--residual" if args.residual else "--plain"
                raise _CLIError(f"{flag} applies to --arch {architecture}, not --arch {args.arch}")
    given = {field: getattr(args, dest) for dest, field in _MODEL_OPTIONS[args.arch].items()}
    if args.arch == "fvsrn" and args.wavelet_levels is not None:
        if args.wavelet is None or args.wavelet.strip().lower() == "none":
            raise _CLIError("--wavelet-levels needs a wavelet grid (--wavelet NAME)")
        given["wavelet_levels"] = args.wavelet_levels or None  # 0: automatic
    cls = FVSRNConfig if args.arch == "fvsrn" else NeurcompConfig
    return cls(**{k: v for k, v in given.items() if v is not None})


# Pruning options: option dest -> PruningConfig field.
_PRUNING_OPTIONS = {
    "prune_granularity": "granularity", "mask_phase": "mask_phase_fraction", "mask_lr": "mask_learning_rate",
    "finetune_lr_factor": "finetune_lr_factor", "prune_l1": "l1_weight", "prune_kl": "kl_weight",
    "prune_sigma": "sigma",
}


def _pruning_config(args: argparse.Namespace) -> PruningConfig:
    given = {dest: getattr(args, dest) for dest in _PRUNING_OPTIONS if getattr(args, dest) is not None}
    if args.arch != "fvsrn" and args.prune_granularity is not None:
        raise _CLIError("--prune-granularity applies to --arch fvsrn (neurcomp's masks sit on its neurons)")
    if given and args.prune == "none":
        methods = "|".join(PRUNING_METHODS[1:])
        raise _CLIError(f"--{next(iter(given)).replace('_', '-')} needs a pruning method (--prune {methods})")
    return PruningConfig(method=args.prune, **{_PRUNING_OPTIONS[dest]: value for dest, value in given.items()})


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


def _run_compress(args: argparse.Namespace) -> int:
    from .devices import resolve_device
    from .encoder import compress
    from .ratecontrol import compress_to_psnr, plan_for_ratio
    from .volume import validate_for_training
    from .vtkio import volume_from_image

    train_config = _train_config(args)
    model_config = _base_model_config(args)
    pruning = _pruning_config(args)
    if args.ratio is not None and not args.ratio > 1.0:
        raise SettingsError(f"--ratio must be > 1, got {args.ratio:g}")
    if args.psnr is not None and not 0 < args.psnr < 1000:
        raise SettingsError(f"--psnr must be a positive number of dB, got {args.psnr:g}")
    if args.psnr_trials < 1:
        raise SettingsError(f"--psnr-trials must be at least 1, got {args.psnr_trials}")
    _check_input(args.input)
    _check_output(args.output, args.input)

    image = _read_image(args.input)
    volume = volume_from_image(image, args.array)
    validate_for_training(volume)
    geometry = volume.geometry
    budget = None
    if args.ratio is not None:
        model_config, budget = plan_for_ratio(args.ratio, volume, model_config, pruning)

    if not args.quiet:
        pruned = f", pruning with {pruning.method}" if pruning.enabled else ""
        model = (f"searching sizes for {args.psnr:g} dB ({args.psnr_trials} trainings at most)"
                 if args.psnr is not None else _describe_model(model_config, geometry))
        fitted = f", fitted to {budget:,} bytes" if budget is not None else ""
        print(
            f"compressing '{volume.name}' ({_dims(geometry.dimensions)} {volume.dtype}) from {args.input}: "
            f"{model}{fitted}{pruned}, "
            f"{train_config.steps} steps of {train_config.batch_size} on {resolve_device(train_config.device)}",
            file=sys.stderr,
        )
    bar = ProgressBar("compressing", enabled=not args.quiet)
    try:
        if args.psnr is not None:
            search = compress_to_psnr(volume, args.psnr, train_config, model_config, args.output, bar,
                                      pruning=pruning, trials=args.psnr_trials)
            result = search.result
        else:
            result = compress(volume, model_config, train_config, args.output, progress=bar, pruning=pruning,
                              target_bytes=budget)
    finally:
        bar.close()
    if args.psnr is not None:
        tried = ", ".join(f"{r:.4g}: " + ("no model fits" if q is None else format_psnr(q)) for r, q in search.trials)
        print(f"quality search (ratio: PSNR): {tried}", file=sys.stderr)
        if not search.reached:
            print(f"warning: no trial reached {args.psnr:g} dB; kept the best one", file=sys.stderr)

    stats = result.stats
    source_bytes = volume.values.nbytes
    print(f"wrote {args.output}")
    print(f"  file size   {human_bytes(result.file_bytes)} ({result.file_bytes:,} bytes)")
    print(
        f"  ratio       {stats['ratio']:.1f}x against float32"
        + (f", {source_bytes / result.file_bytes:.1f}x against the {volume.dtype} source"
           if volume.dtype != "float32" else "")
    )
    print(f"  PSNR        {format_psnr(stats['psnr'])}")
    if pruning.enabled:
        print(f"  pruned      {100 * stats['pruned_fraction']:.1f}% of the parameters ({pruning.method})")
    print(f"  train time  {human_seconds(stats['train_seconds'])} ({int(stats['steps'])} steps)")
    return 0


# ---------------------------------------------------------------------------------------------
# decompress


def _stride(values: list[int] | None) -> tuple[int, int, int]:
    if values is None:
        return (1, 1, 1)
    if len(values) == 1:
        return (values[0],) * 3
    if len(values) == 3:
        return tuple(values)
    raise SettingsError(f"--stride takes one value or three (SX SY SZ), got {len(values)}")


def _run_decompress(args: argparse.Namespace) -> int:
    from .decode import decode, evaluation_path, model_device, resampled_geometry, strided_geometry
    from .fileformat import read_srn
    from .vtkio import image_from_arrays

    device = check_device(args.device)
    stride = _stride(args.stride)
    _check_input(args.input)
    _check_output(args.output, args.input)

    srn = read_srn(args.input)
    source = srn.source
    region = tuple(args.extent) if args.extent is not None else None
    if args.dimensions is not None:
        geometry = resampled_geometry(source.geometry, tuple(args.dimensions), region)
    else:
        geometry = strided_geometry(source.geometry, stride, region)

    bar = ProgressBar("decoding", enabled=not args.quiet)
    start = time.perf_counter()
    try:
        values = decode(
            srn.model, source.geometry, geometry, source.value_range, source.dtype, device,
            progress=bar, threads=args.threads, precision=args.precision,
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    image = image_from_arrays(geometry, {source.array_name: values}, active=source.array_name)
    _write_image(image, args.output)
    print(
        f"wrote {args.output}: '{source.array_name}' ({source.dtype}) on {_dims(geometry.dimensions)} points, "
        f"extent {' '.join(str(e) for e in geometry.extent)}, spacing {_numbers(geometry.spacing)}"
    )
    where = model_device(srn.model).type.upper()
    print(f"decoded in {seconds:.2f} s ({values.size / max(seconds, 1e-9) / 1e6:.2f} M points/s; "
          f"{evaluation_path(srn.model)} on the {where})")
    return 0


# ---------------------------------------------------------------------------------------------
# info


def info_dict(path: str) -> dict[str, Any]:
    """Everything `srnvtk info` shows, as plain JSON-ready values (non-finite numbers become None)."""
    import h5py

    from .fileformat import read_srn
    from .pruning import pruned_fractions

    _check_input(path)
    srn = read_srn(path)
    with h5py.File(path, "r") as f:  # read_srn validated it; these attributes are informational
        attrs = {key: f.attrs.get(key) for key in ("format", "format_version", "architecture", "srnvtk_version")}
    source = srn.source
    geometry = source.geometry
    stats: dict[str, Any] = {}
    for key, value in srn.stats.items():
        stats[key] = int(value) if key in ("steps", "file_bytes") else _finite_or_none(value)
    return {
        "file": str(path),
        "format": _plain(attrs["format"]),
        "format_version": int(attrs["format_version"]),
        "architecture": _plain(attrs["architecture"]),
        "srnvtk_version": _plain(attrs["srnvtk_version"]),
        "model_config": _plain(dataclasses.asdict(srn.model_config)),
        "model_structure": _plain(srn.model.structure()),
        "pruning_config": _plain(dataclasses.asdict(srn.pruning)),
        "pruned_fractions": pruned_fractions(srn.model),  # per parameter, of the unpruned model's entries
        "source": {
            "array_name": source.array_name,
            "dtype": source.dtype,
            "dimensions": list(geometry.dimensions),
            "extent": list(geometry.extent),
            "spacing": list(geometry.spacing),
            "origin": list(geometry.origin),
            "value_range": list(source.value_range),
        },
        "stats": stats,
        "tensor_bytes": dict(srn.tensor_bytes),
    } | ({"grid_shape": [int(s) for s in srn.model.grid.shape[1:]]} if hasattr(srn.model, "grid") else {})


def _plain(value: Any) -> Any:
    """numpy scalars, bytes and tuples as JSON's types."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# What an unset (None) model setting means, for `srnvtk info`.
_UNSET_MEANS = {"grid_shape": "derived from the volume", "wavelet": "none (plain grid)",
                "wavelet_levels": "automatic"}


def _run_info(args: argparse.Namespace) -> int:
    from .pruning import METHOD_SETTINGS, SCHEDULE_SETTINGS

    info = info_dict(args.input)
    if args.json:
        print(json.dumps(info, indent=2, allow_nan=False))
        return 0
    src, stats = info["source"], info["stats"]
    rows: list[tuple[str, str]] = []

    def section(title: str) -> None:
        rows.append((title, ""))

    def row(key: str, value: Any) -> None:
        rows.append(("  " + key, str(value)))

    version = f", written by srnvtk {info['srnvtk_version']}" if info["srnvtk_version"] else ""
    print(f"{info['file']}: {info['format']} format version {info['format_version']}, "
          f"architecture {info['architecture']}{version}")
    section("model settings")
    model = info["model_config"]
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
    else:
        row("layer widths", " ".join(str(w) for w in info["model_structure"]["widths"]))
    pruning = info["pruning_config"]
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
    section("stats")
    if "psnr" in stats:
        row("PSNR", "inf (lossless)" if stats["psnr"] is None else format_psnr(stats["psnr"]))
    if "ratio" in stats:
        row("ratio", f"{stats['ratio']:.1f}x against float32")
    if "file_bytes" in stats:
        row("file bytes", f"{stats['file_bytes']:,} ({human_bytes(stats['file_bytes'])})")
    if "train_seconds" in stats:
        row("train time", human_seconds(stats["train_seconds"]))
    if "steps" in stats:
        row("steps", stats["steps"])
    if stats.get("final_loss") is not None:
        row("final loss", f"{stats['final_loss']:.4g}")
    if stats.get("pruned_fraction") is not None:
        row("pruned", f"{100 * stats['pruned_fraction']:.1f}% of the parameters")
    section("stored tensors (bytes)")
    for name, size in info["tensor_bytes"].items():
        rows.append(("  " + name, f"{size:>10,}"))
    tensors_total = sum(info["tensor_bytes"].values())
    rows.append(("  total", f"{tensors_total:>10,}"))
    if "file_bytes" in stats:
        rows.append(("  HDF5 structure", f"{stats['file_bytes'] - tensors_total:>10,}"))
    section("pruned fraction per parameter")
    for name, fraction in info["pruned_fractions"].items():
        rows.append(("  " + name, f"{100 * fraction:>9.1f}%"))
    width = max(len(key) for key, _ in rows) + 2
    for key, value in rows:
        print(f"{key:<{width}}{value}".rstrip() if value else key)
    return 0


# ---------------------------------------------------------------------------------------------
# generate


def _run_generate(args: argparse.Namespace) -> int:
    from .datasets import ARRAY_NAME, default_volume

    if args.series is not None or args.steps is not None:
        return _run_generate_series(args)
    if args.output is None:
        raise _CLIError("give OUT.vti, or --series OUT.pvd for a time series")
    _check_output(args.output)
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
# Parser and entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compress VTK image data (.vti) into small .srn files with fV-SRN networks, and back.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    defaults_model, defaults_train = FVSRNConfig(), TrainConfig()
    defaults_neurcomp, defaults_pruning = NeurcompConfig(), PruningConfig()

    p = sub.add_parser("compress", help="train a network on one array of a .vti file and write a .srn file",
                       description="Train an fV-SRN or Neurcomp network on one point-data array, optionally "
                                   "pruning it while training, and store it as a .srn file.")
    p.add_argument("input", metavar="IN.vti")
    p.add_argument("output", metavar="OUT.srn")
    p.add_argument("--array", metavar="NAME", help="point-data array to compress (default: the active scalars)")
    p.add_argument("--arch", choices=ARCHITECTURES, default="fvsrn",
                   help="network: fvsrn (latent grid + MLP) or neurcomp (SIREN) (default fvsrn)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--ratio", type=float, metavar="R",
                      help="a file at most (and close to) 1/R of the float32 volume's bytes: the latent grid "
                           "(fvsrn) or the width (neurcomp) is sized for it and an fvsrn grid trimmed to it after "
                           "training; with pruning the file may land well under")
    size.add_argument("--psnr", type=float, metavar="P",
                      help="the smallest file reaching P dB: searches ratios with up to --psnr-trials trainings")
    size.add_argument("--grid-resolution", type=int, metavar="N",
                      help=f"latent grid points along the longest axis (default {defaults_model.grid_resolution})")
    size.add_argument("--neurcomp-width", type=int, metavar="N",
                      help=f"neurcomp: neurons per layer (default {defaults_neurcomp.width})")
    p.add_argument("--psnr-trials", type=int, default=PSNR_TRIALS, metavar="N",
                   help=f"with --psnr: trainings at most (default {PSNR_TRIALS}), each with the full step and time "
                        "budget")
    p.add_argument("--grid-channels", type=int, metavar="C",
                   help=f"latent features per grid point (default {defaults_model.grid_channels})")
    p.add_argument("--mlp-width", type=int, metavar="W", help=f"MLP width (default {defaults_model.mlp_width})")
    p.add_argument("--mlp-layers", type=int, metavar="L",
                   help=f"MLP hidden layers (default {defaults_model.mlp_layers})")
    p.add_argument("--fourier-features", type=int, metavar="F",
                   help=f"sin/cos octaves per axis (default {defaults_model.fourier_features})")
    p.add_argument("--wavelet", metavar="NAME",
                   help="fvsrn: train the latent grid as its 3D wavelet coefficients, which pruning then prunes: a "
                        "PyWavelets discrete wavelet such as haar, db2, sym4, coif1, bior2.2 (default none: a plain "
                        "grid)")
    p.add_argument("--wavelet-levels", type=int, metavar="N",
                   help="fvsrn with --wavelet: decomposition levels on every axis (default 0: automatic per axis)")
    p.add_argument("--neurcomp-blocks", type=int, metavar="B",
                   help=f"neurcomp: blocks of two sine layers after the first (default {defaults_neurcomp.blocks})")
    residual = p.add_mutually_exclusive_group()
    residual.add_argument("--residual", dest="residual", action="store_const", const=True, default=None,
                          help="neurcomp: skip connections around each block (the default)")
    residual.add_argument("--plain", dest="residual", action="store_const", const=False,
                          help="neurcomp: no skip connections (every layer can then be pruned)")
    p.add_argument("--omega0", type=float, metavar="W",
                   help=f"neurcomp: frequency factor of the sine layers (default {defaults_neurcomp.omega_0:g})")
    p.add_argument("--weight-clusters", type=int, metavar="K",
                   help="neurcomp: store each hidden matrix as K shared values (k-means, 2..256) and a uint8 index "
                        "per weight, fine-tuning the shared values at the end of training (default 0: fp16)")
    p.add_argument("--prune", choices=PRUNING_METHODS, default="none",
                   help="prune while training: learn masks, bake them in, fine-tune (default none)")
    p.add_argument("--prune-granularity", choices=GRANULARITIES,
                   help="fvsrn: one mask per grid position (shared by the channels) or per position and channel "
                        f"(default {defaults_pruning.granularity})")
    p.add_argument("--mask-phase", type=float, metavar="F",
                   help=f"share of the steps trained with masks (default {defaults_pruning.mask_phase_fraction:.3g})")
    p.add_argument("--mask-lr", type=float, metavar="LR",
                   help=f"initial learning rate of the masks (default {defaults_pruning.mask_learning_rate:g})")
    p.add_argument("--finetune-lr-factor", type=float, metavar="F",
                   help="the mask phase decays to this fraction of the learning rate; fine-tuning restarts there "
                        f"(default {defaults_pruning.finetune_lr_factor:g})")
    p.add_argument("--prune-l1", type=float, metavar="W",
                   help=f"smallify, binary: L1 weight on the masks (default {defaults_pruning.l1_weight:g})")
    p.add_argument("--prune-kl", type=float, metavar="W",
                   help=f"variational: weight of the mean KL per unit (default {defaults_pruning.kl_weight:g})")
    p.add_argument("--prune-sigma", choices=SIGMA_MODES,
                   help=f"variational: fixed or predicted likelihood sigma (default {defaults_pruning.sigma})")
    p.add_argument("--steps", type=int, metavar="S", help=f"training steps (default {defaults_train.steps})")
    p.add_argument("--batch-size", type=int, metavar="B",
                   help=f"voxels per step (default {defaults_train.batch_size})")
    p.add_argument("--lr", type=float, metavar="LR",
                   help="initial learning rate (default: " + ", ".join(
                       f"{rate:g} for {arch}" for arch, rate in DEFAULT_LEARNING_RATES.items())
                   + f"; neurcomp's times {NEURCOMP_REFERENCE_WIDTH} / width above that width)")
    p.add_argument("--seed", type=int, metavar="S", help=f"random seed (default {defaults_train.seed})")
    p.add_argument("--device", choices=DEVICES, help="where to train (default auto: CUDA when present)")
    p.add_argument("--threads", type=int, metavar="T", help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--time-limit", type=float, metavar="SEC",
                   help="stop training after SEC seconds; the learning-rate schedule follows the clock "
                        "(default: no limit, run all steps)")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr (the summary still prints)")
    p.set_defaults(run=_run_compress)

    p = sub.add_parser("decompress", help="reconstruct a .vti file from a .srn file",
                       description="Evaluate the stored network on the source grid, a strided or resampled "
                                   "version of it, or a sub-extent, and write a .vti file.")
    p.add_argument("input", metavar="IN.srn")
    p.add_argument("output", metavar="OUT.vti")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--stride", type=int, nargs="+", metavar="S",
                      help="keep every S-th source point (one value, or SX SY SZ)")
    grid.add_argument("--dimensions", type=int, nargs=3, metavar=("NX", "NY", "NZ"),
                      help="resample to this many points per axis over the same bounds")
    p.add_argument("--extent", type=int, nargs=6, metavar=("I0", "I1", "J0", "J1", "K0", "K1"),
                   help="only this region, in the source's index space")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where to decode (default auto)")
    p.add_argument("--threads", type=int, default=0, metavar="T",
                   help="CPU threads for decoding (default: one per core, shared between the MPI ranks "
                        "on this machine)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="the MLP's precision on CUDA: fp16, or auto (fp16 where a probe shows it within 1e-3 of "
                        "the value range); the CPU always uses fp32 (default fp32)")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.set_defaults(run=_run_decompress)

    p = sub.add_parser("info", help="describe a .srn file", description="Show what a .srn file stores.")
    p.add_argument("input", metavar="FILE.srn")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_info)

    p = sub.add_parser("generate", help="write srnvtk's procedural test volume as a .vti file",
                       description="Write the built-in synthetic volume (a uint8 'density' array).")
    p.add_argument("output", metavar="OUT.vti", nargs="?")
    p.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], metavar=("NX", "NY", "NZ"),
                   help="points per axis (default 64 64 64)")
    p.add_argument("--seed", type=int, default=0, help="moves the blobs and the interface's phases (default 0)")
    series = p.add_argument_group("time series", "a mixing layer stirred by a turbulence-like flow: float32 "
                                  "density, temperature and velocity (3 components) per step")
    series.add_argument("--series", metavar="OUT.pvd", help="write OUT.pvd and OUT/OUT_0000.vti, ... instead")
    series.add_argument("--steps", type=int, metavar="N", help="time steps (default 20)")
    series.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.set_defaults(run=_run_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one srnvtk command; returns the exit status (0, 2 for errors, 130 when interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage and its message
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        with _warnings_to_stderr():
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
