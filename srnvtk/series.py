"""Time series of image data: reading (.pvd, a list of .vti files), validating and writing (.pvd + .vti).

A series is a list of time steps on one grid, each step holding the same point arrays, its *fields*: scalars
(1 component) or vectors (3 components). `Series` describes one (geometry, times, fields) and loads one step's
arrays when asked, so a long series of large steps never sits in memory at once (20 steps of 128^3 points with
5 float32 components are 840 MB; one step is 42 MB).

Opening a series reads every step's header (VTK's XML readers report extent, origin, spacing, the point arrays
with their types and components, and a `TimeValue` field array, without reading the data) and checks that the
steps agree: the same extent, origin and spacing, the same point arrays with the same components and types,
times strictly increasing, only 1- or 3-component arrays. With check_values (the default) it then reads each
step once, one at a time, to refuse NaN and infinite values, as srnvtk.volume does for a single volume; loading
a step checks it again. Cell and field arrays are ignored, as is VTK's own `vtkGhostType`. Every problem is an
InputError of one line that names the step (and its file) and the array.

.pvd files are parsed with the standard library's XML parser after refusing any document type declaration (no
entities, so no entity expansion) and files over MAX_PVD_BYTES; every `DataSet` must name an existing regular
file, relative paths being relative to the .pvd's folder. One part per time step: multi-block collections are
refused.

Writing puts the steps into OUT/OUT_0000.vti, ... beside OUT.pvd (as ParaView's own collection writer does),
each with its `TimeValue`; every file is written under a temporary name first and renamed only once all are
complete, so a failed write leaves nothing behind (a folder it created is removed again).
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError, SettingsError
from .parts import FieldInfo
from .volume import SUPPORTED_DTYPES, Geometry, Volume

if TYPE_CHECKING:
    from vtkmodules.vtkCommonDataModel import vtkImageData
# VTK is imported where a step is read or written: a series built from arrays (series_from_arrays) encodes on a
# machine without VTK (the GPU benchmark machines).

SUPPORTED_COMPONENTS = (1, 3)
TIME_ARRAY = "TimeValue"  # the field array VTK's XML readers and writers keep a step's time in
IGNORED_ARRAYS = ("vtkGhostType",)  # VTK's own bookkeeping, not data
MAX_PVD_BYTES = 16 << 20  # a .pvd lists files; one this large is not a real one
MAX_STEPS = 100_000
# Origins and spacings of different steps count as equal within this fraction of the spacing (a round trip
# through ASCII XML changes the last digits).
GEOMETRY_TOLERANCE = 1e-6

StepLoader = Callable[[int, tuple[str, ...]], dict[str, np.ndarray]]
ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class StepInfo:
    """What one step holds, from a file's header or an image: what validation compares between steps."""

    label: str  # "step 3 ('run/a_3.vti')", for messages
    geometry: Geometry
    fields: tuple[FieldInfo, ...]  # every numeric point array, unsupported ones included
    time: float | None = None  # the step's own TimeValue, if it has one


@dataclass(frozen=True)
class Series:
    """A validated series: one geometry, strictly increasing times, the fields every step holds.

    `arrays(step)` loads one step's arrays (values[z, y, x] for scalars, [z, y, x, 3] for vectors) through
    `loader`; nothing else is held.
    """

    geometry: Geometry
    times: tuple[float, ...]
    fields: tuple[FieldInfo, ...]
    loader: StepLoader = field(repr=False, compare=False)
    sources: tuple[str, ...] = ()  # per step, the file it is read from; empty for a series in memory

    @property
    def num_steps(self) -> int:
        return len(self.times)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def float32_bytes(self) -> int:
        """Bytes of every field of every step as float32: what compression ratios are measured against."""
        return 4 * self.geometry.num_points * sum(f.components for f in self.fields) * self.num_steps

    def field(self, name: str) -> FieldInfo:
        for info in self.fields:
            if info.name == name:
                return info
        raise InputError(f"the series has no array '{name}'; it has: {', '.join(self.names)}")

    def check_step(self, step: int) -> int:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 0 <= step < self.num_steps:
            raise InputError(f"step {step!r} is not in the series (steps 0 to {self.num_steps - 1})")
        return int(step)

    def step_at_time(self, time: float) -> int:
        """The step whose time is `time` (to within a millionth of the series' time span, or of 1)."""
        tolerance = 1e-6 * max(self.times[-1] - self.times[0], 1.0)
        for index, t in enumerate(self.times):
            if abs(t - time) <= tolerance:
                return index
        raise InputError(f"no step at time {time:g}; the series has {self.num_steps} steps from "
                         f"{self.times[0]:g} to {self.times[-1]:g}")

    def arrays(self, step: int, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """One step's arrays (all fields, or the named ones), checked for NaN and infinite values."""
        step = self.check_step(step)
        wanted = self.names if names is None else tuple(self.field(n).name for n in names)
        loaded = self.loader(step, wanted)
        for name in wanted:
            check_finite(loaded[name], name, self._label(step))
        return loaded

    def volume(self, step: int, name: str, component: int | None = None) -> Volume:
        """One scalar field (or one component of a vector field) of one step as a Volume."""
        info = self.field(name)
        if info.is_vector and component is None:
            raise InputError(f"array '{name}' has 3 components; choose one (0, 1 or 2)")
        if component is not None and component not in range(info.components):
            raise InputError(f"array '{name}' has no component {component} (it has {info.components})")
        values = self.arrays(step, [name])[name]
        if info.is_vector:
            return Volume(values[..., component], self.geometry, f"{name}[{component}]")
        return Volume(values, self.geometry, name)

    def _label(self, step: int) -> str:
        return _step_label(step, self.sources[step] if self.sources else None)


# ---------------------------------------------------------------------------------------------
# Validation


def describe_image(image: vtkImageData, label: str, time: float | None = None) -> StepInfo:
    """The StepInfo of an image in memory (a pipeline's output for one time step, say)."""
    if image is None or not image.IsA("vtkImageData"):
        kind = "nothing" if image is None else image.GetClassName()
        raise InputError(f"{label}: srnvtk needs vtkImageData, got {kind}")
    pd = image.GetPointData()
    fields = []
    for i in range(pd.GetNumberOfArrays()):
        array = pd.GetArray(i)  # None for string and other non-numeric arrays
        if array is not None and array.GetName() and array.GetName() not in IGNORED_ARRAYS:
            fields.append(FieldInfo(array.GetName(), _dtype_name(array.GetDataType()), array.GetNumberOfComponents()))
    geometry = Geometry(tuple(image.GetExtent()), tuple(image.GetOrigin()), tuple(image.GetSpacing()))
    return StepInfo(label, geometry, tuple(fields), time)


def check_steps(
    steps: Sequence[StepInfo], times: Sequence[float], arrays: Sequence[str] | None = None
) -> tuple[Geometry, tuple[FieldInfo, ...]]:
    """Check that the steps form one series; return its geometry and fields (the named ones, in that order,
    or every point array of the first step).

    InputError, naming the step and array, when: there are no steps; a grid is not 3D; extent, origin or
    spacing differ between steps; an array is missing in some step, or (with no arrays named) some step has
    an array others lack; an array's components or type differ between steps; an array has other than 1 or 3
    components or an unsupported type; times are not finite or do not strictly increase.
    """
    if not steps:
        raise InputError("the series has no time steps")
    if len(steps) > MAX_STEPS:
        raise InputError(f"the series has {len(steps)} time steps, more than the {MAX_STEPS} srnvtk accepts")
    if len(times) != len(steps):
        raise InputError(f"{len(times)} times for {len(steps)} time steps")
    first = steps[0]
    _check_grid(first)
    for step in steps[1:]:
        _check_same_geometry(first, step)
    _check_times([step.label for step in steps], times)
    names = _field_names(steps, arrays)
    fields = []
    for name in names:
        reference = _find(first, name)
        for step in steps:
            found = _find(step, name)
            if found is None:
                have = ", ".join(f.name for f in step.fields) or "none"
                raise InputError(f"array '{name}' is missing in {step.label} (it has: {have})")
            if reference is None:
                reference = found
            if found.components != reference.components:
                raise InputError(f"array '{name}' has {reference.components} components in {first.label} but "
                                 f"{found.components} in {step.label}")
            if found.dtype != reference.dtype:
                raise InputError(f"array '{name}' is {reference.dtype} in {first.label} but {found.dtype} in "
                                 f"{step.label}")
        _check_field(reference)
        fields.append(reference)
    return first.geometry, tuple(fields)


def check_finite(values: np.ndarray, name: str, label: str) -> None:
    """InputError when the values hold NaN or infinities (integer types cannot)."""
    if values.dtype.kind != "f":
        return
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(values.size - np.count_nonzero(finite))
        raise InputError(f"array '{name}' holds {bad} NaN or infinite values in {label}; clean them first")


def _field_names(steps: Sequence[StepInfo], arrays: Sequence[str] | None) -> list[str]:
    if arrays is not None:
        names = list(dict.fromkeys(arrays))
        if not names:
            raise InputError("no arrays chosen")
        return names
    names = [f.name for f in steps[0].fields]
    if not names:
        raise InputError(f"{steps[0].label} has no point arrays")
    for step in steps[1:]:
        extra = [f.name for f in step.fields if f.name not in names]
        if extra:
            raise InputError(f"{step.label} has array '{extra[0]}' that {steps[0].label} lacks; every step must "
                             "hold the same point arrays (or choose the arrays to use)")
    return names


def _find(step: StepInfo, name: str) -> FieldInfo | None:
    return next((f for f in step.fields if f.name == name), None)


def _check_field(info: FieldInfo) -> None:
    if info.components not in SUPPORTED_COMPONENTS:
        raise InputError(f"array '{info.name}' has {info.components} components; srnvtk compresses scalar (1 "
                         "component) and vector (3 component) arrays (leave it out, or extract components)")
    if info.dtype not in SUPPORTED_DTYPES:
        raise InputError(f"array '{info.name}' has type {info.dtype}; supported types: {', '.join(SUPPORTED_DTYPES)}")


def _check_grid(step: StepInfo) -> None:
    geometry = step.geometry
    dims = geometry.dimensions
    if min(dims) < 2:
        raise InputError(f"{step.label} lives on a {dims[0]}x{dims[1]}x{dims[2]} grid; srnvtk compresses 3D "
                         "volumes with at least 2 points along every axis")
    if min(geometry.spacing) <= 0 or not all(math.isfinite(v) for v in geometry.spacing + geometry.origin):
        raise InputError(f"{step.label} has spacing {geometry.spacing} and origin {geometry.origin}; spacings "
                         "must be positive and origin and spacing finite")


def _check_same_geometry(first: StepInfo, step: StepInfo) -> None:
    a, b = first.geometry, step.geometry
    if tuple(a.extent) != tuple(b.extent):
        raise InputError(f"{step.label} has extent {tuple(b.extent)}, {first.label} has {tuple(a.extent)}; "
                         "every step must lie on the same grid")
    scale = GEOMETRY_TOLERANCE * max(a.spacing)
    if any(abs(p - q) > scale for p, q in zip(a.origin, b.origin, strict=True)):
        raise InputError(f"{step.label} has origin {tuple(b.origin)}, {first.label} has {tuple(a.origin)}; "
                         "every step must lie on the same grid")
    if any(abs(p - q) > GEOMETRY_TOLERANCE * p for p, q in zip(a.spacing, b.spacing, strict=True)):
        raise InputError(f"{step.label} has spacing {tuple(b.spacing)}, {first.label} has {tuple(a.spacing)}; "
                         "every step must lie on the same grid")


def _check_times(labels: Sequence[str], times: Sequence[float]) -> None:
    for index, t in enumerate(times):
        if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)) or not math.isfinite(t):
            raise InputError(f"{labels[index]} has time {t!r}; times must be finite numbers")
        if index and t <= times[index - 1]:
            same = "the same time as" if t == times[index - 1] else "an earlier time than"
            raise InputError(f"{labels[index]} has time {t:g}, {same} {labels[index - 1]} ({times[index - 1]:g}); "
                             "times must strictly increase")


def _dtype_name(vtk_type: int) -> str:
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import VTK_BIT

    if vtk_type == VTK_BIT:
        return "bit"
    try:
        return np.dtype(numpy_support.get_numpy_array_type(vtk_type)).name
    except KeyError:
        return f"VTK type {vtk_type}"


def _step_label(index: int, source: str | None) -> str:
    return f"step {index} ('{source}')" if source else f"step {index}"


# ---------------------------------------------------------------------------------------------
# Reading


def open_series(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    arrays: Sequence[str] | None = None,
    check_values: bool = True,
) -> Series:
    """A .pvd file, or .vti files in time order (one path or several)."""
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not paths:
        raise InputError("no input files")
    if len(paths) == 1 and str(paths[0]).lower().endswith(".pvd"):
        return read_pvd(paths[0], arrays, check_values)
    pvds = [str(p) for p in paths if str(p).lower().endswith(".pvd")]
    if pvds:
        raise InputError(f"'{pvds[0]}' is a .pvd collection; give it alone, or give .vti files")
    return read_vti_series(paths, arrays, check_values)


def read_vti_series(
    paths: Sequence[str | os.PathLike], arrays: Sequence[str] | None = None, check_values: bool = True
) -> Series:
    """.vti files, one per step in this order. Times: each file's TimeValue where every file has one, else
    0, 1, 2, ..."""
    files = [_check_file(p, f"step {i}") for i, p in enumerate(paths)]
    infos = [_describe_file(path, _step_label(i, str(path))) for i, path in enumerate(files)]
    with_time = [info.time is not None for info in infos]
    if all(with_time):
        times = [float(info.time) for info in infos]
    elif not any(with_time):
        times = [float(i) for i in range(len(infos))]
    else:
        lacking = infos[with_time.index(False)].label
        raise InputError(f"{lacking} has no {TIME_ARRAY} while other steps have one; give every step a time or "
                         "none")
    return _file_series(files, infos, times, arrays, check_values)


def read_pvd(path: str | os.PathLike, arrays: Sequence[str] | None = None, check_values: bool = True) -> Series:
    """A ParaView collection (.pvd) of .vti files: one DataSet per time step, in increasing time."""
    path = _check_file(path, "the series")
    size = path.stat().st_size
    if size > MAX_PVD_BYTES:
        raise InputError(f"'{path}' is {size} bytes, too large for a .pvd file (at most {MAX_PVD_BYTES})")
    text = path.read_bytes()
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise InputError(f"'{path}' declares a document type or entities; a .pvd file needs neither")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"'{path}' is not a valid .pvd file: {exc}") from None
    collection = root.find("Collection")
    if root.tag != "VTKFile" or root.get("type") != "Collection" or collection is None:
        raise InputError(f"'{path}' is not a .pvd file (no VTKFile of type Collection with a Collection)")
    entries = collection.findall("DataSet")
    if not entries:
        raise InputError(f"'{path}' lists no DataSet")
    if len(entries) > MAX_STEPS:
        raise InputError(f"'{path}' lists {len(entries)} data sets, more than the {MAX_STEPS} srnvtk accepts")
    files, times = [], []
    for index, entry in enumerate(entries):
        where = f"DataSet {index} of '{path}'"
        if entry.get("part", "0").strip() not in ("", "0"):
            raise InputError(f"{where} is part {entry.get('part')}; srnvtk reads one part per time step")
        name, stamp = entry.get("file"), entry.get("timestep")
        if not name:
            raise InputError(f"{where} names no file")
        if stamp is None:
            raise InputError(f"{where} has no timestep")
        try:
            times.append(float(stamp))
        except ValueError:
            raise InputError(f"{where} has timestep '{stamp}', not a number") from None
        files.append(_check_file(path.parent / name, where))
    infos = [_describe_file(f, _step_label(i, str(f))) for i, f in enumerate(files)]
    return _file_series(files, infos, times, arrays, check_values)


def _check_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what}: no such file: '{path}'")
    if not path.is_file():
        raise InputError(f"{what}: '{path}' is not a file")
    return path


def _reader(path: Path, label: str):
    from vtkmodules.vtkIOXML import vtkXMLImageDataReader

    reader = vtkXMLImageDataReader()
    if not reader.CanReadFile(str(path)):
        raise InputError(f"{label} is not a VTK XML image data file (.vti)")
    reader.SetFileName(str(path))
    return reader


def _describe_file(path: Path, label: str) -> StepInfo:
    """A step's geometry, point arrays and time from its header alone."""
    from vtkmodules.vtkCommonDataModel import vtkDataObject
    from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as Pipeline

    reader = _reader(path, label)
    reader.UpdateInformation()
    info = reader.GetOutputInformation(0)
    if not info.Has(Pipeline.WHOLE_EXTENT()):
        raise InputError(f"{label}: could not read the file's header")
    geometry = Geometry(tuple(info.Get(Pipeline.WHOLE_EXTENT())), tuple(info.Get(vtkDataObject.ORIGIN())),
                        tuple(info.Get(vtkDataObject.SPACING())))
    fields = []
    vector = info.Get(vtkDataObject.POINT_DATA_VECTOR())
    for i in range(vector.GetNumberOfInformationObjects() if vector is not None else 0):
        entry = vector.GetInformationObject(i)
        name = entry.Get(vtkDataObject.FIELD_NAME())
        vtk_type = entry.Get(vtkDataObject.FIELD_ARRAY_TYPE())
        if not name or name in IGNORED_ARRAYS or _dtype_name(vtk_type).startswith("VTK type"):
            continue  # unnamed, VTK's own, or not numeric (strings)
        fields.append(FieldInfo(name, _dtype_name(vtk_type), entry.Get(vtkDataObject.FIELD_NUMBER_OF_COMPONENTS())))
    time = None
    if info.Has(Pipeline.TIME_STEPS()):
        stamps = info.Get(Pipeline.TIME_STEPS())
        time = float(stamps[0]) if stamps else None
    return StepInfo(label, geometry, tuple(fields), time)


def _file_series(
    files: list[Path], infos: list[StepInfo], times: list[float], arrays: Sequence[str] | None, check_values: bool
) -> Series:
    geometry, fields = check_steps(infos, times, arrays)
    expected = {f.name: f for f in fields}

    def load(step: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        from vtkmodules.util import numpy_support

        label = _step_label(step, str(files[step]))
        reader = _reader(files[step], label)
        reader.UpdateInformation()
        selection = reader.GetPointDataArraySelection()
        selection.DisableAllArrays()
        for name in names:
            selection.EnableArray(name)
        reader.GetCellDataArraySelection().DisableAllArrays()
        reader.Update()
        image = reader.GetOutput()
        found = describe_image(image, label)
        # The file may have changed since the series was opened: the same checks again.
        check_steps([StepInfo(f"{infos[0].label}", geometry, fields), found], [0.0, 1.0], names)
        out = {}
        for name in names:
            array = image.GetPointData().GetArray(name)
            values = numpy_support.vtk_to_numpy(array)
            if values.size != geometry.num_points * expected[name].components:
                raise InputError(f"array '{name}' of {label} has {values.size} values for {geometry.num_points} "
                                 "points; the file is damaged")
            out[name] = values.reshape(geometry.shape_zyx + ((3,) if expected[name].is_vector else ()))
        return out

    series = Series(geometry, tuple(times), fields, load, tuple(str(f) for f in files))
    if check_values:
        for step in range(series.num_steps):
            series.arrays(step)
    return series


def series_from_arrays(
    geometry: Geometry, times: Sequence[float], steps: Sequence[Mapping[str, np.ndarray]],
    arrays: Sequence[str] | None = None,
) -> Series:
    """A series held in memory: per step, arrays by name (values[z, y, x] or [z, y, x, 3]); validated like
    files (NaN and infinities included)."""
    infos = [_describe_arrays(geometry, step_arrays, _step_label(i, None)) for i, step_arrays in enumerate(steps)]
    geometry, fields = check_steps(infos, list(times), arrays)
    held = [dict(step_arrays) for step_arrays in steps]
    shapes = {f.name: geometry.shape_zyx + ((3,) if f.is_vector else ()) for f in fields}

    def load(step: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        return {name: np.asarray(held[step][name]).reshape(shapes[name]) for name in names}  # (z, y, x, 1) too

    series = Series(geometry, tuple(float(t) for t in times), fields, load)
    for step in range(series.num_steps):
        series.arrays(step)
    return series


def _describe_arrays(geometry: Geometry, arrays: Mapping[str, np.ndarray], label: str) -> StepInfo:
    fields = []
    for name, values in arrays.items():
        values = np.asarray(values)
        if values.shape[:3] != geometry.shape_zyx or values.ndim not in (3, 4):
            raise InputError(f"array '{name}' of {label} has shape {values.shape}; expected (z, y, x) = "
                             f"{geometry.shape_zyx}, with the components last for a vector")
        fields.append(FieldInfo(name, values.dtype.name, 1 if values.ndim == 3 else values.shape[3]))
    return StepInfo(label, geometry, tuple(fields))


# ---------------------------------------------------------------------------------------------
# Writing


def write_series(
    path: str | os.PathLike,
    geometry: Geometry,
    times: Sequence[float],
    steps: Iterable[Mapping[str, np.ndarray]],
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Write OUT.pvd and OUT/OUT_0000.vti, ... (zlib-compressed, each with its TimeValue); steps yields, per time
    step, arrays by name (values[z, y, x] or [z, y, x, 3]) and is consumed one step at a time.

    All or nothing: every file is written under a temporary name and renamed once all are complete. Returns
    the paths written, the .pvd last. InputError when the steps do not form a valid series (checked as they
    come), OSError when the files cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() != ".pvd":
        raise SettingsError(f"a series is written as a .pvd file, got '{path}'")
    folder = path.parent
    if not folder.is_dir():
        raise OSError(f"cannot write '{path}': folder '{folder}' does not exist")
    if path.is_dir():
        raise OSError(f"cannot write '{path}': it is a folder")
    times = list(times)
    _check_times([_step_label(i, None) for i in range(len(times))], times)
    times = [float(t) for t in times]
    data_dir = folder / path.stem
    if data_dir.exists() and not data_dir.is_dir():
        raise OSError(f"cannot write the steps of '{path}' into '{data_dir}': it is a file")
    created = not data_dir.exists()
    digits = max(4, len(str(max(len(times) - 1, 0))))
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    written: list[tuple[Path, Path]] = []  # (temporary, final)
    try:
        if created:
            data_dir.mkdir()
        first: StepInfo | None = None
        for index, arrays in enumerate(steps):
            if index >= len(times):
                raise InputError(f"more steps than the {len(times)} times given")
            label = _step_label(index, None)
            info = _describe_arrays(geometry, arrays, label)
            first = first or info
            check_steps([first, info] if index else [info], [0.0, 1.0] if index else [0.0])
            for name, values in arrays.items():
                check_finite(np.asarray(values), name, label)
            final = data_dir / f"{path.stem}_{index:0{digits}d}.vti"
            temporary = data_dir / f".{final.name}.tmp-{token}"
            written.append((temporary, final))
            _write_step(temporary, geometry, arrays, times[index])
            if progress is not None:
                progress((index + 1) / (len(times) + 1), f"wrote step {index + 1} of {len(times)}")
        if len(written) != len(times):
            raise InputError(f"{len(written)} steps for {len(times)} times")
        collection = _collection_xml([final.relative_to(folder).as_posix() for _, final in written], times)
        temporary = folder / f".{path.name}.tmp-{token}"
        written.append((temporary, path))
        temporary.write_bytes(collection)
        for temporary, final in written:
            os.replace(temporary, final)
    except BaseException:
        for temporary, _ in written:
            with contextlib.suppress(OSError):
                temporary.unlink()
        if created:
            with contextlib.suppress(OSError):
                data_dir.rmdir()
        raise
    if progress is not None:
        progress(1.0, f"wrote {path}")
    return [final for _, final in written]


def _write_step(path: Path, geometry: Geometry, arrays: Mapping[str, np.ndarray], time: float) -> None:
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkDoubleArray
    from vtkmodules.vtkIOXML import vtkXMLImageDataWriter

    from .vtkio import image_from_arrays

    flat = {name: np.asarray(v).reshape(geometry.num_points, -1) for name, v in arrays.items()}
    flat = {name: v[:, 0] if v.shape[1] == 1 else v for name, v in flat.items()}
    image = image_from_arrays(geometry, {})
    for name, values in flat.items():
        vtk_array = numpy_support.numpy_to_vtk(np.ascontiguousarray(values), deep=True)
        vtk_array.SetName(name)
        image.GetPointData().AddArray(vtk_array)
    stamp = vtkDoubleArray()
    stamp.SetName(TIME_ARRAY)
    stamp.InsertNextValue(time)
    image.GetFieldData().AddArray(stamp)
    writer = vtkXMLImageDataWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.SetCompressorTypeToZLib()
    if writer.Write() != 1:
        raise OSError(f"could not write '{path}'")


def _collection_xml(files: list[str], times: list[float]) -> bytes:
    root = ET.Element("VTKFile", type="Collection", version="0.1", byte_order="LittleEndian")
    collection = ET.SubElement(root, "Collection")
    for name, time in zip(files, times, strict=True):
        ET.SubElement(collection, "DataSet", timestep=repr(time), group="", part="0", file=name)
    ET.indent(root)
    return b'<?xml version="1.0"?>\n' + ET.tostring(root) + b"\n"
