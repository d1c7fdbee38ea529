"""Time series I/O and validation (srnvtk.series): .pvd round trip, numbered .vti files, atomic writes, and a
one-line error for every kind of bad series; plus `srnvtk generate --series`."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vtkmodules")

from vtkmodules.util import numpy_support  # noqa: E402
from vtkmodules.vtkCommonCore import vtkDoubleArray  # noqa: E402
from vtkmodules.vtkCommonDataModel import vtkImageData  # noqa: E402
from vtkmodules.vtkIOXML import vtkXMLImageDataWriter  # noqa: E402

from srnvtk import series as series_module  # noqa: E402
from srnvtk.cli import main  # noqa: E402
from srnvtk.datasets import default_geometry  # noqa: E402
from srnvtk.errors import InputError, SettingsError  # noqa: E402
from srnvtk.series import (  # noqa: E402
    TIME_ARRAY,
    open_series,
    read_pvd,
    read_vti_series,
    series_from_arrays,
    write_series,
)
from srnvtk.series_data import DEFAULT_SERIES_STEPS, SERIES_ARRAYS, generate_series, series_times  # noqa: E402
from srnvtk.volume import Geometry  # noqa: E402

SHAPE = (12, 10, 8)  # x, y, z
STEPS = 4
ZYX = (8, 10, 12)


@pytest.fixture(scope="module")
def generated() -> list[dict[str, np.ndarray]]:
    """The tiny generated series: density, temperature, velocity over 4 steps."""
    return [arrays for _, arrays in generate_series(SHAPE, STEPS, seed=0)]


@pytest.fixture
def pvd(tmp_path: Path, generated) -> Path:
    path = tmp_path / "run.pvd"
    write_series(path, default_geometry(SHAPE), series_times(STEPS), generated)
    return path


def write_step(path: Path, arrays: dict[str, np.ndarray], dims=SHAPE, origin=(0.0, 0.0, 0.0),
               spacing=(0.1, 0.1, 0.1), time: float | None = None, cell: bool = False) -> Path:
    """One .vti with the given point arrays (values as VTK orders them: flat, or (points, components))."""
    image = vtkImageData()
    image.SetDimensions(*dims)
    image.SetOrigin(*origin)
    image.SetSpacing(*spacing)
    for name, values in arrays.items():
        array = numpy_support.numpy_to_vtk(np.ascontiguousarray(values), deep=True)
        array.SetName(name)
        image.GetPointData().AddArray(array)
    if cell:  # a cell array only this step has: ignored
        cells = int(np.prod([d - 1 for d in dims]))
        array = numpy_support.numpy_to_vtk(np.zeros(cells, dtype=np.float32), deep=True)
        array.SetName("only_cells")
        image.GetCellData().AddArray(array)
    if time is not None:
        stamp = vtkDoubleArray()
        stamp.SetName(TIME_ARRAY)
        stamp.InsertNextValue(time)
        image.GetFieldData().AddArray(stamp)
    writer = vtkXMLImageDataWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    assert writer.Write() == 1
    return path


def scalar(seed: int, dims=SHAPE, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).random(int(np.prod(dims))).astype(dtype)


def steps_of(tmp_path: Path, count: int = 3, **changes) -> list[Path]:
    """count .vti files holding 'a' (scalar) and 'v' (vector); changes maps a step index to write_step
    arguments (arrays replaced by an 'arrays' entry)."""
    paths = []
    for i in range(count):
        kwargs = dict(changes.get(str(i), {}))
        n = int(np.prod(kwargs.get("dims", SHAPE)))
        arrays = kwargs.pop("arrays", {"a": scalar(i, kwargs.get("dims", SHAPE)),
                                       "v": np.random.default_rng(10 + i).random((n, 3)).astype(np.float32)})
        paths.append(write_step(tmp_path / f"s_{i}.vti", arrays, **kwargs))
    return paths


def write_pvd(path: Path, entries: list[tuple[str, str]], extra: str = "") -> Path:
    datasets = "\n".join(f'    <DataSet timestep="{t}" part="0" file="{f}"/>' for t, f in entries)
    path.write_text(f'<?xml version="1.0"?>\n{extra}<VTKFile type="Collection" version="0.1">\n  <Collection>\n'
                    f"{datasets}\n  </Collection>\n</VTKFile>\n")
    return path


def one_line_error(kind: type[Exception], match: str, call, *args, **kwargs) -> str:
    with pytest.raises(kind, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


# ---------------------------------------------------------------------------------------------
# Round trips


def test_pvd_round_trip(pvd: Path, generated) -> None:
    series = read_pvd(pvd)
    geometry = default_geometry(SHAPE)
    assert series.geometry.extent == geometry.extent
    assert series.geometry.spacing == pytest.approx(geometry.spacing)
    assert series.times == series_times(STEPS)
    assert series.names == SERIES_ARRAYS
    assert [(f.components, f.dtype) for f in series.fields] == [(1, "float32"), (1, "float32"), (3, "float32")]
    assert series.float32_bytes == 4 * int(np.prod(SHAPE)) * 5 * STEPS
    for step in range(STEPS):
        arrays = series.arrays(step)
        assert arrays["velocity"].shape == (*ZYX, 3) and arrays["density"].shape == ZYX
        for name in SERIES_ARRAYS:
            assert np.array_equal(arrays[name], generated[step][name])
    # One array of one step, and one component of a vector as a Volume.
    assert list(series.arrays(2, ["temperature"])) == ["temperature"]
    component = series.volume(1, "velocity", 2)
    assert component.name == "velocity[2]" and np.array_equal(component.values, generated[1]["velocity"][..., 2])


def test_pvd_layout_and_relative_paths(pvd: Path) -> None:
    assert sorted(p.name for p in pvd.parent.iterdir()) == ["run", "run.pvd"]
    assert sorted(p.name for p in (pvd.parent / "run").iterdir()) == [f"run_{i:04d}.vti" for i in range(STEPS)]
    text = pvd.read_text()
    assert 'file="run/run_0000.vti"' in text and f'timestep="{series_times(STEPS)[1]!r}"' in text
    # Each .vti carries its time: read as a list of files, the times come back from TimeValue.
    files = sorted(str(p) for p in (pvd.parent / "run").iterdir())
    assert read_vti_series(files).times == series_times(STEPS)
    assert open_series(pvd).sources == tuple(files)


def test_vti_files_without_times_count_steps(tmp_path: Path) -> None:
    series = open_series(steps_of(tmp_path, 3))
    assert series.times == (0.0, 1.0, 2.0)
    assert series.names == ("a", "v") and series.field("v").is_vector


def test_cell_arrays_and_ghost_arrays_are_ignored(tmp_path: Path) -> None:
    ghosts = {"a": scalar(1), "v": np.zeros((960, 3), np.float32), "vtkGhostType": np.zeros(960, np.uint8)}
    paths = steps_of(tmp_path, 2, **{"1": {"cell": True, "arrays": ghosts}})
    assert open_series(paths).names == ("a", "v")


def test_chosen_arrays_only(tmp_path: Path) -> None:
    paths = steps_of(tmp_path, 2, **{"1": {"arrays": {"a": scalar(1), "extra": scalar(2)}}})
    series = open_series(paths, arrays=["a"])
    assert series.names == ("a",)


def test_series_in_memory_and_step_lookup(generated) -> None:
    series = series_from_arrays(default_geometry(SHAPE), [0.0, 0.5, 1.0], generated[:3])
    assert series.step_at_time(0.5) == 1
    one_line_error(InputError, "no step at time 0.7", series.step_at_time, 0.7)
    one_line_error(InputError, "step 3 is not in the series", series.arrays, 3)
    one_line_error(InputError, "step -1 is not in the series", series.arrays, -1)
    one_line_error(InputError, "no array 'pressure'.*density, temperature, velocity", series.arrays, 0, ["pressure"])
    one_line_error(InputError, "3 components; choose one", series.volume, 0, "velocity")
    one_line_error(InputError, "no component 3", series.volume, 0, "velocity", 3)


def test_series_in_memory_returns_scalars_as_zyx(generated) -> None:
    steps = [{"density": generated[i]["density"][..., None]} for i in range(2)]
    series = series_from_arrays(default_geometry(SHAPE), [0.0, 1.0], steps)
    assert series.fields[0].components == 1 and series.arrays(1)["density"].shape == ZYX


def test_values_are_checked_lazily_when_asked(tmp_path: Path) -> None:
    values = scalar(1)
    values[5] = np.nan
    paths = steps_of(tmp_path, 3, **{"2": {"arrays": {"a": values, "v": np.zeros((960, 3), np.float32)}}})
    one_line_error(InputError, r"array 'a' holds 1 NaN or infinite values in step 2 \('.*s_2.vti'\)", open_series,
                   paths)
    series = open_series(paths, check_values=False)
    series.arrays(1)
    one_line_error(InputError, "holds 1 NaN", series.arrays, 2)


def test_a_changed_file_is_noticed(tmp_path: Path) -> None:
    paths = steps_of(tmp_path, 2)
    series = open_series(paths)
    write_step(paths[1], {"a": scalar(1).astype(np.float64), "v": np.zeros((960, 3), np.float32)})
    one_line_error(InputError, "array 'a' is float32 in step 0.*but float64 in step 1", series.arrays, 1)


# ---------------------------------------------------------------------------------------------
# Bad series


def test_no_steps() -> None:
    one_line_error(InputError, "no input files", open_series, [])


@pytest.mark.parametrize(("change", "match"), [
    ({"dims": (12, 10, 9)}, r"step 1 \('.*s_1.vti'\) has extent \(0, 11, 0, 9, 0, 8\), step 0 .* same grid"),
    ({"origin": (0.0, 0.5, 0.0)}, r"step 1 .* has origin \(0.0, 0.5, 0.0\), step 0 .* has \(0.0, 0.0, 0.0\)"),
    ({"spacing": (0.1, 0.1, 0.2)}, r"step 1 .* has spacing \(0.1, 0.1, 0.2\)"),
    ({"arrays": {"a": scalar(1)}}, r"array 'v' is missing in step 1 \('.*'\) \(it has: a\)"),
    ({"arrays": {"a": scalar(1), "v": np.zeros((960, 3), np.float32), "b": scalar(3)}},
     r"step 1 .* has array 'b' that step 0 .* lacks; every step must hold the same point arrays"),
    ({"arrays": {"a": scalar(1), "v": np.zeros(960, np.float32)}},
     r"array 'v' has 3 components in step 0 .* but 1 in step 1"),
    ({"arrays": {"a": scalar(1, dtype=np.float64), "v": np.zeros((960, 3), np.float32)}},
     r"array 'a' is float32 in step 0 .* but float64 in step 1"),
])
def test_steps_that_disagree(tmp_path: Path, change: dict, match: str) -> None:
    paths = steps_of(tmp_path, 3, **{"1": change})
    one_line_error(InputError, match, open_series, paths)


def test_an_array_missing_in_some_steps_when_chosen(tmp_path: Path) -> None:
    paths = steps_of(tmp_path, 3, **{"2": {"arrays": {"v": np.zeros((960, 3), np.float32)}}})
    one_line_error(InputError, r"array 'a' is missing in step 2", open_series, paths, arrays=["a", "v"])
    assert open_series(paths, arrays=["v"]).names == ("v",)
    one_line_error(InputError, "array 'nope' is missing in step 0", open_series, paths, arrays=["nope"])


@pytest.mark.parametrize("components", [2, 9])
def test_unsupported_components(tmp_path: Path, components: int) -> None:
    arrays = {"a": scalar(0), "t": np.zeros((960, components), np.float32)}
    paths = [write_step(tmp_path / f"c_{i}.vti", arrays) for i in range(2)]
    one_line_error(InputError, rf"array 't' has {components} components; srnvtk compresses scalar \(1 component\) "
                   r"and vector \(3 component\) arrays", open_series, paths)
    assert open_series(paths, arrays=["a"]).names == ("a",)  # leaving it out works


def test_unsupported_type(tmp_path: Path) -> None:
    paths = [write_step(tmp_path / f"c_{i}.vti", {"n": np.arange(960, dtype=np.int64)}) for i in range(2)]
    one_line_error(InputError, "array 'n' has type int64; supported types", open_series, paths)


def test_flat_grid(tmp_path: Path) -> None:
    paths = [write_step(tmp_path / f"f_{i}.vti", {"a": scalar(i, (12, 10, 1))}, dims=(12, 10, 1)) for i in range(2)]
    one_line_error(InputError, "12x10x1 grid; srnvtk compresses 3D volumes", open_series, paths)


@pytest.mark.parametrize(("times", "match"), [
    ([0.0, 0.2, 0.1], r"step 2 .* has time 0.1, an earlier time than step 1 .* \(0.2\); times must strictly increase"),
    ([0.0, 0.5, 0.5], r"step 2 .* has time 0.5, the same time as step 1"),
])
def test_times_must_increase(tmp_path: Path, times: list[float], match: str) -> None:
    paths = steps_of(tmp_path, 3, **{str(i): {"time": t} for i, t in enumerate(times)})
    one_line_error(InputError, match, open_series, paths)
    pvd = write_pvd(tmp_path / "t.pvd", [(t, p.name) for t, p in zip(times, paths, strict=True)])
    one_line_error(InputError, match, read_pvd, pvd)


def test_some_files_with_times_and_some_without(tmp_path: Path) -> None:
    paths = steps_of(tmp_path, 3, **{"0": {"time": 0.0}, "1": {"time": 1.0}})
    one_line_error(InputError, r"step 2 \('.*'\) has no TimeValue while other steps have one", open_series, paths)


def test_pvd_problems(tmp_path: Path, monkeypatch) -> None:
    paths = steps_of(tmp_path, 2)
    (tmp_path / "folder.vti").mkdir()
    (tmp_path / "text.vti").write_text("not VTK\n")
    cases = [
        (write_pvd(tmp_path / "a.pvd", [("0", "s_0.vti"), ("1", "missing.vti")]),
         r"DataSet 1 of '.*a.pvd': no such file: '.*missing.vti'"),
        (write_pvd(tmp_path / "b.pvd", [("0", "s_0.vti"), ("1", "folder.vti")]), r"'.*folder.vti' is not a file"),
        (write_pvd(tmp_path / "c.pvd", [("0", "s_0.vti"), ("1", "text.vti")]),
         r"step 1 \('.*text.vti'\) is not a VTK XML image data file"),
        (write_pvd(tmp_path / "d.pvd", [("0", "s_0.vti"), ("soon", "s_1.vti")]), "timestep 'soon', not a number"),
        (write_pvd(tmp_path / "e.pvd", [("0", "s_0.vti")], extra='<!DOCTYPE x [<!ENTITY e "x">]>\n'),
         "declares a document type or entities"),
        (write_pvd(tmp_path / "f.pvd", []), "lists no DataSet"),
    ]
    for path, match in cases:
        one_line_error(InputError, match, read_pvd, path)
    g = tmp_path / "g.pvd"
    g.write_text('<VTKFile type="Collection"><Collection><DataSet timestep="0" part="1" file="s_0.vti"/>'
                 "</Collection></VTKFile>")
    one_line_error(InputError, "part 1; srnvtk reads one part per time step", read_pvd, g)
    h = tmp_path / "h.pvd"
    h.write_text('<VTKFile type="Collection"><Collection><DataSet file="s_0.vti"/></Collection></VTKFile>')
    one_line_error(InputError, "has no timestep", read_pvd, h)
    i = tmp_path / "i.pvd"
    i.write_text('<VTKFile type="ImageData"><ImageData/></VTKFile>')
    one_line_error(InputError, "is not a .pvd file", read_pvd, i)
    j = tmp_path / "j.pvd"
    j.write_text("<VTKFile><Collection>")
    one_line_error(InputError, "is not a valid .pvd file", read_pvd, j)
    one_line_error(InputError, "is not a file", read_pvd, tmp_path / "folder.vti")
    one_line_error(InputError, r"'.*j.pvd' is a .pvd collection; give it alone", open_series, [j, paths[0]])
    monkeypatch.setattr(series_module, "MAX_PVD_BYTES", 64)
    ok = write_pvd(tmp_path / "k.pvd", [("0", "s_0.vti"), ("1", "s_1.vti")])
    one_line_error(InputError, "too large for a .pvd file", read_pvd, ok)


def test_pvd_with_relative_and_absolute_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    paths = steps_of(data, 2)
    pvd = write_pvd(tmp_path / "mixed.pvd", [("0.5", "data/s_0.vti"), ("1.5", str(paths[1]))])
    series = read_pvd(pvd)
    assert series.times == (0.5, 1.5) and series.sources == tuple(str(p) for p in paths)


# ---------------------------------------------------------------------------------------------
# Writing: all or nothing


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_failed_write_leaves_nothing(tmp_path: Path, generated) -> None:
    geometry = default_geometry(SHAPE)

    def failing():
        yield generated[0]
        yield generated[1]
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_series(tmp_path / "out.pvd", geometry, series_times(3), failing())
    assert leftovers(tmp_path) == []
    # A folder that was there stays, with only what was in it.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    bad = dict(generated[1], density=np.full(ZYX, np.nan, np.float32))
    one_line_error(InputError, "array 'density' holds 960 NaN or infinite values in step 1", write_series,
                   tmp_path / "out.pvd", geometry, series_times(2), [generated[0], bad])
    assert leftovers(tmp_path) == ["out", "out/keep.txt"]


@pytest.mark.parametrize(("steps", "times", "match"), [
    (2, [0.0, 1.0, 2.0], "2 steps for 3 times"),
    (3, [0.0, 1.0], "more steps than the 2 times given"),
    (2, [1.0, 0.0], "step 1 has time 0, an earlier time than step 0"),
    (2, [0.0, math.nan], "step 1 has time nan; times must be finite"),
])
def test_bad_writes(tmp_path: Path, generated, steps: int, times: list[float], match: str) -> None:
    one_line_error(InputError, match, write_series, tmp_path / "out.pvd", default_geometry(SHAPE), times,
                   generated[:steps])
    assert leftovers(tmp_path) == []


def test_write_checks_steps_against_each_other(tmp_path: Path, generated) -> None:
    geometry = default_geometry(SHAPE)
    second = {k: v for k, v in generated[1].items() if k != "velocity"}
    one_line_error(InputError, "array 'velocity' is missing in step 1", write_series, tmp_path / "o.pvd", geometry,
                   [0.0, 1.0], [generated[0], second])
    wrong = dict(generated[1], density=np.zeros((3, 3, 3), np.float32))
    one_line_error(InputError, r"array 'density' of step 1 has shape \(3, 3, 3\)", write_series,
                   tmp_path / "o.pvd", geometry, [0.0, 1.0], [generated[0], wrong])
    one_line_error(SettingsError, "written as a .pvd file", write_series, tmp_path / "o.vti", geometry, [0.0],
                   generated[:1])
    assert leftovers(tmp_path) == []


def test_rewriting_replaces(pvd: Path, generated) -> None:
    write_series(pvd, default_geometry(SHAPE), [5.0, 6.0], generated[2:])
    series = read_pvd(pvd)
    assert series.times == (5.0, 6.0)
    assert np.array_equal(series.arrays(1)["density"], generated[3]["density"])


# ---------------------------------------------------------------------------------------------
# srnvtk generate --series


def run_cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def test_generate_series(tmp_path: Path) -> None:
    path = tmp_path / "gen.pvd"
    code, out, _ = run_cli("generate", "--series", path, "--steps", 3, "--shape", 10, 9, 8, "--seed", 4, "--quiet")
    assert code == 0 and "3 steps" in out and "10 x 9 x 8" in out
    series = read_pvd(path)
    assert series.names == SERIES_ARRAYS and series.times == series_times(3)
    assert series.geometry == Geometry((0, 9, 0, 8, 0, 7), series.geometry.origin, series.geometry.spacing)
    expected = list(generate_series((10, 9, 8), 3, seed=4))
    assert np.array_equal(series.arrays(2)["velocity"], expected[2][1]["velocity"])


def test_generate_help_gives_the_default_step_count() -> None:
    code, out, _ = run_cli("generate", "--help")
    assert code == 0 and f"time steps (default {DEFAULT_SERIES_STEPS})" in " ".join(out.split())


@pytest.mark.parametrize(("args", "match"), [
    (["out.vti", "--series", "x.pvd"], "without OUT.vti"),
    (["--steps", "3"], "written with --series"),
    ([], "give OUT.vti, or --series OUT.pvd"),
    (["--series", "x.pvd", "--steps", "0"], "steps must be an integer"),
    (["--series", "x.vti"], "written as a .pvd file"),
])
def test_generate_series_errors(tmp_path: Path, monkeypatch, args: list[str], match: str) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("generate", *args, "--quiet")
    assert code == 2 and match in err and err.count("\n") == 1
    assert leftovers(tmp_path) == []
