"""`srnvtk compress` of a series (.pvd, several .vti, --arrays) into one file, `srnvtk info` of it, and
`srnvtk decompress --step/--time/--arrays/--all-steps`; bad requests are one-line errors that leave nothing."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vtkmodules")

from vtkmodules.util.numpy_support import vtk_to_numpy  # noqa: E402

from srnvtk.cli import main  # noqa: E402
from srnvtk.datasets import default_geometry  # noqa: E402
from srnvtk.decode import decode  # noqa: E402
from srnvtk.fileformat import read_srn  # noqa: E402
from srnvtk.series import TIME_ARRAY, open_series, write_series  # noqa: E402
from srnvtk.series_data import generate_series  # noqa: E402
from srnvtk.vtkio import read_vti  # noqa: E402

SHAPE = (14, 12, 10)
STEPS = 3
FAST = ("--grid-channels", "4", "--grid-resolution", "6", "--mlp-width", "12", "--mlp-layers", "2",
        "--fourier-features", "2", "--steps", "40", "--batch-size", "512", "--seed", "0", "--device", "cpu",
        "--threads", "1")


def run(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def pvd(tmp_path_factory) -> Path:
    steps = list(generate_series(SHAPE, STEPS, seed=3))
    path = tmp_path_factory.mktemp("in") / "run.pvd"
    write_series(path, default_geometry(SHAPE), [t for t, _ in steps], [a for _, a in steps])
    return path


@pytest.fixture(scope="module")
def compressed(pvd, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("out") / "run.srn"
    code, stdout, stderr = run("compress", pvd, out, "--arrays", "density,temperature", *FAST)
    assert code == 0, stderr
    return {"srn": out, "stdout": stdout, "stderr": stderr, "file": read_srn(out)}


def test_compress_a_pvd_writes_one_file(compressed, pvd) -> None:
    srn, stdout = compressed["file"], compressed["stdout"]
    assert [f.name for f in srn.fields] == ["density", "temperature"] and len(srn.times) == STEPS
    assert srn.times == open_series(pvd).times
    assert f"wrote {compressed['srn']}: 2 arrays x 3 steps" in stdout
    assert f"({compressed['srn'].stat().st_size:,} bytes)" in stdout
    assert "compressing 'density', 'temperature' over 3 steps" in compressed["stderr"]


def test_info_lists_bytes_and_psnr_per_field_and_step(compressed) -> None:
    code, out, err = run("info", compressed["srn"])
    assert code == 0, err
    srn = compressed["file"]
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["density"], ["temperature"])]
    assert len(rows) == 2 * STEPS
    for name, step, t, size, quality, *_reference in rows:  # a delta part's row ends with what it references
        field = [f.name for f in srn.fields].index(name)
        part = srn.parts_of(field, int(step))[0]
        srn.part_model(part.index)  # reads its stats
        assert float(t) == pytest.approx(srn.times[int(step)])
        assert int(size.replace(",", "")) == part.stored_bytes
        assert float(quality) == pytest.approx(part.stats["psnr"], abs=0.006)
    code, out, err = run("info", compressed["srn"], "--json")
    assert code == 0 and len(json.loads(out)["parts"]) == 2 * STEPS


def test_several_vti_files_are_a_series_and_all_arrays_are_the_default(pvd, tmp_path) -> None:
    files = sorted((pvd.parent / "run").glob("run_*.vti"))
    assert len(files) == STEPS
    out = tmp_path / "two.srn"
    code, _, err = run("compress", *files[:2], out, "--arrays", "temperature", *FAST, "--quiet")
    assert code == 0, err
    srn = read_srn(out)
    assert [f.name for f in srn.fields] == ["temperature"] and srn.times == open_series(pvd).times[:2]
    code, _, err = run("compress", pvd, tmp_path / "all.srn", *FAST, "--quiet")
    assert code == 0, err
    code, out, err = run("info", tmp_path / "all.srn")
    rows = [line for line in out.splitlines() if line.split()[:1] == ["velocity"]]
    assert len(rows) == STEPS and all(re.search(r"\(x [\d.]+, y [\d.]+, z [\d.]+, \|v\| [\d.]+\)", r) for r in rows)
    srn = read_srn(tmp_path / "all.srn")
    assert [(f.name, f.components) for f in srn.fields] == [("density", 1), ("temperature", 1), ("velocity", 3)]
    back = tmp_path / "all.vti"
    code, _, err = run("decompress", tmp_path / "all.srn", back, "--step", 2, "--arrays", "velocity", "--quiet")
    assert code == 0, err
    image = read_vti(str(back))
    velocity = image.GetPointData().GetArray("velocity")
    assert velocity.GetNumberOfComponents() == 3
    np.testing.assert_array_equal(vtk_to_numpy(velocity).reshape(10, 12, 14, 3),
                                  decode(srn, field=2, step=2, device="cpu"))
    code, _, err = run("decompress", tmp_path / "all.srn", tmp_path / "all.pvd", "--all-steps", "--quiet")
    assert code == 0, err
    back = open_series(tmp_path / "all.pvd")
    assert back.field("velocity").components == 3 and back.times == srn.times
    np.testing.assert_array_equal(back.arrays(1)["velocity"], decode(srn, field=2, step=1, device="cpu"))


def decoded_arrays(path: Path) -> tuple[dict[str, np.ndarray], float]:
    image = read_vti(str(path))
    nx, ny, nz = image.GetDimensions()
    pd = image.GetPointData()
    arrays = {pd.GetArrayName(i): vtk_to_numpy(pd.GetArray(i)).reshape(nz, ny, nx)
              for i in range(pd.GetNumberOfArrays())}
    return arrays, image.GetFieldData().GetArray(TIME_ARRAY).GetValue(0)


def test_decompress_one_step_by_index_or_time(compressed, tmp_path) -> None:
    srn = compressed["file"]
    out = tmp_path / "s1.vti"
    code, stdout, err = run("decompress", compressed["srn"], out, "--step", 1, "--quiet")
    assert code == 0, err
    arrays, at = decoded_arrays(out)
    assert sorted(arrays) == ["density", "temperature"] and at == srn.times[1]
    for field, name in enumerate(["density", "temperature"]):
        np.testing.assert_array_equal(arrays[name], decode(srn, field=field, step=1, device="cpu"))
    out2 = tmp_path / "t2.vti"
    code, _, err = run("decompress", compressed["srn"], out2, "--time", srn.times[2], "--arrays", "temperature")
    assert code == 0, err
    arrays, at = decoded_arrays(out2)
    assert list(arrays) == ["temperature"] and at == srn.times[2]
    np.testing.assert_array_equal(arrays["temperature"], decode(srn, field=1, step=2, device="cpu"))


def test_decompress_all_steps_writes_a_series(compressed, tmp_path) -> None:
    srn = compressed["file"]
    out = tmp_path / "back.pvd"
    code, stdout, err = run("decompress", compressed["srn"], out, "--all-steps", "--arrays", "density", "--quiet")
    assert code == 0, err
    back = open_series(out)
    assert back.times == srn.times and back.names == ("density",)
    for step in range(STEPS):
        np.testing.assert_array_equal(back.arrays(step)["density"], decode(srn, step=step, device="cpu"))


@pytest.mark.parametrize(("args", "fragment"), [
    (("--step", 3), "no step 3; it has steps 0 to 2"),
    (("--step", -1), "no step -1"),
    (("--time", 99.0), "no step at time 99"),
    (("--arrays", "pressure"), "no array 'pressure'; it has: density, temperature"),
    (("--all-steps",), "not a .pvd file"),
])
def test_bad_decompress_requests(compressed, tmp_path, args, fragment) -> None:
    out = tmp_path / "never.vti"
    code, _, err = run("decompress", compressed["srn"], out, *args, "--quiet")
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_pvd_output_needs_all_steps(compressed, tmp_path) -> None:
    code, _, err = run("decompress", compressed["srn"], tmp_path / "x.pvd", "--step", 0)
    assert code == 2 and "add --all-steps" in err
    assert list(tmp_path.iterdir()) == []


def test_bad_series_inputs(pvd, tmp_path) -> None:
    out = tmp_path / "never.srn"
    code, _, err = run("compress", pvd, out, "--arrays", "pressure", *FAST)
    assert code == 2 and err.count("\n") == 1 and "array 'pressure' is missing in step 0" in err
    code, _, err = run("compress", pvd, pvd, out, *FAST)
    assert code == 2 and "give it alone" in err
    files = sorted((pvd.parent / "run").glob("run_*.vti"))
    code, _, err = run("compress", files[1], files[0], out, "--arrays", "density", *FAST)
    assert code == 2 and "times must strictly increase" in err, err
    code, _, err = run("compress", pvd, out, "--array", "density", *FAST)
    assert code == 2 and "--arrays" in err
    assert list(tmp_path.iterdir()) == []
