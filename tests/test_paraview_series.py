"""A series .srn in the real ParaView: the SRN Reader's times drive the animation, every step and array comes
back as srnvtk decodes it (and close to the original), and unchecked arrays are not decoded."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from paraview_helpers import PVSCRIPTS, check_ran, paraview_env, require_programs, run_paraview

from srnvtk.config import EncodeConfig, EncoderSettings, FVSRNConfig, TrainConfig
from srnvtk.datasets import default_geometry
from srnvtk.decode import decode
from srnvtk.fileformat import read_srn
from srnvtk.metrics import psnr
from srnvtk.series import open_series, write_series
from srnvtk.series_data import generate_series
from srnvtk.series_encode import encode_series

pytestmark = pytest.mark.paraview

SHAPE = (12, 10, 8)
STEPS = 3
ARRAYS = ["density", "temperature"]


def encoded_series(folder: Path, time_scheme: str) -> dict:
    """The generated series as a .pvd and its .srn (time scheme warm: format 9; delta: format 11)."""
    steps = list(generate_series(SHAPE, STEPS, seed=5))
    pvd = folder / "run.pvd"
    write_series(pvd, default_geometry(SHAPE), [t for t, _ in steps], [a for _, a in steps])
    srn = folder / "run.srn"
    settings = EncoderSettings(encode=EncodeConfig(time_scheme=time_scheme),
                               fvsrn=FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=12, mlp_layers=2,
                                                 fourier_features=2),
                               train=TrainConfig(steps=80, batch_size=512, learning_rate=1e-2, device="cpu",
                                                 threads=1))
    encode_series(open_series(pvd), settings, arrays=ARRAYS, path=srn)
    return {"srn": srn, "pvd": pvd, "original": [a for _, a in steps]}


@pytest.fixture(scope="module")
def series_file(tmp_path_factory) -> dict:
    return encoded_series(tmp_path_factory.mktemp("pvseries"), "warm")


def test_pvpython_steps_the_animation_through_every_time(series_file, tmp_path) -> None:
    check_series_in_paraview(series_file["srn"], series_file["original"], tmp_path)


def test_pvpython_steps_through_a_series_of_delta_parts(tmp_path) -> None:
    """Format 11: later steps stored as differences to the previous step's grid read back in ParaView too."""
    delta = encoded_series(tmp_path, "delta")
    assert read_srn(delta["srn"]).format_version == 11
    check_series_in_paraview(delta["srn"], delta["original"], tmp_path)


def test_pvpython_encodes_all_time_steps_and_two_arrays(series_file, tmp_path) -> None:
    """The SRN Encoder on ParaView's own .pvd reader with All Time Steps: one file of every step and both arrays,
    which the reader then steps through."""
    pvpython = require_programs("pvpython")["pvpython"]
    out = tmp_path / "encoded.srn"
    proc = run_paraview([pvpython, PVSCRIPTS / "series_encode.py", series_file["pvd"], out], paraview_env(),
                        timeout=240)
    check_ran(proc, "series_encode.py done")
    report = json.loads(Path(f"{out}.json").read_text())
    srn = read_srn(out)
    assert srn.times == tuple(report["times"]) == read_srn(series_file["srn"]).times
    assert [f.name for f in srn.fields] == ARRAYS and report["arrays"] == ARRAYS
    assert report["field"]["psnr"] > 0 and report["field"]["file_bytes"] == out.stat().st_size
    check_series_in_paraview(out, series_file["original"], tmp_path)


def test_gui_animation_steps_through_the_series(series_file, tmp_path) -> None:
    """The GUI (under Xvfb) opens the series file; its animation has the file's times, and each frame the toolbar's
    Next Frame shows gives the arrays of that time step."""
    programs = require_programs("paraview", "xvfb-run")
    env = paraview_env()
    env.update(SRNVTK_TEST_SRN=str(series_file["srn"]), SRNVTK_TEST_OUT=str(tmp_path))
    proc = run_paraview([programs["xvfb-run"], "-a", "-n", random.randint(100, 999), programs["paraview"], "--dr",
                         f"--script={PVSCRIPTS / 'gui_series.py'}"], env, timeout=240, cwd=tmp_path)
    report = tmp_path / "gui_series.json"
    assert report.is_file(), f"gui_series.py did not report:\n{proc.stdout[-3000:]}"
    info = json.loads(report.read_text())
    assert info["ok"], info.get("error")
    srn = read_srn(series_file["srn"])
    assert info["reader"] == "SRNReader" and info["animation_times"] == list(srn.times)
    assert [frame["time"] for frame in info["frames"]] == list(srn.times)
    for step, frame in enumerate(info["frames"]):
        assert sorted(frame["ranges"]) == sorted(ARRAYS)
        for field, name in enumerate(ARRAYS):
            decoded = decode(srn, field=field, step=step, device="cpu")
            np.testing.assert_allclose(frame["ranges"][name], [decoded.min(), decoded.max()], rtol=1e-6)
    assert (tmp_path / "gui_series.png").stat().st_size > 1000


def check_series_in_paraview(path: Path, original: list[dict], tmp_path: Path) -> None:
    """pvpython opens the file, steps the animation through every time and saves each step's arrays: each must be
    what srnvtk decodes, and close to the original."""
    pvpython = require_programs("pvpython")["pvpython"]
    proc = run_paraview([pvpython, PVSCRIPTS / "series_read.py", path, tmp_path], paraview_env(), timeout=180)
    check_ran(proc, "series_read.py done")
    info = json.loads((tmp_path / "series.json").read_text())
    srn = read_srn(path)
    assert info["xml_name"] == "SRNReader"
    assert info["times"] == list(srn.times) and info["animation_times"] == list(srn.times)
    assert info["arrays"] == ARRAYS
    for step, seen in enumerate(info["steps"]):
        assert seen["time"] == srn.times[step] and seen["arrays"] == ARRAYS
        for field, name in enumerate(ARRAYS):
            got = np.load(tmp_path / f"{name}_{step}.npy")
            np.testing.assert_array_equal(got, decode(srn, field=field, step=step, device="cpu"))
            reference = original[step][name]
            low, high = srn.fields[field].value_ranges[0]
            baseline = psnr(reference, np.full_like(reference, reference.mean()), high - low)
            assert psnr(reference, got, high - low) > baseline + 3.0, (name, step)
    assert info["only"] == ["temperature"]  # unchecked in PointArrayStatus: not decoded
    np.testing.assert_array_equal(np.load(tmp_path / "only_temperature.npy"),
                                  decode(srn, field=1, step=STEPS - 1, device="cpu"))


def test_series_example_runs(tmp_path) -> None:
    """examples/pvpython_series.py at a tiny size: compresses the generated series, steps through the file."""
    pvpython = require_programs("pvpython")["pvpython"]
    example = Path(__file__).resolve().parents[1] / "examples" / "pvpython_series.py"
    args = [pvpython, example, "--size", "24", "--time-steps", "3", "--ratio", "2", "--steps", "30", "--device", "cpu",
            "--out", tmp_path]
    proc = run_paraview(args, paraview_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "mean PSNR" in proc.stdout, proc.stdout[-3000:]
    srn = read_srn(tmp_path / "series.srn")
    assert len(srn.times) == 3 and [f.name for f in srn.fields] == ARRAYS
    for step in range(3):
        png = tmp_path / f"series_{step}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pvbatch_mpi_gives_every_step_in_pieces(series_file, tmp_path) -> None:
    """mpirun -np 2 pvbatch: at every time each rank decodes its piece of that step; together the pieces are
    exactly what srnvtk decodes serially."""
    programs = require_programs("pvbatch", "mpirun")
    command = [
        programs["mpirun"], "--allow-run-as-root", "--oversubscribe",
        "-x", "PV_PLUGIN_PATH", "-x", "PYTHONPATH", "-x", "OMP_NUM_THREADS", "-x", "MKL_NUM_THREADS",
        "-np", "2", programs["pvbatch"], PVSCRIPTS / "series_pieces.py", series_file["srn"], tmp_path,
    ]
    proc = run_paraview(command, paraview_env(), timeout=240)
    check_ran(proc, "series_pieces.py done")
    srn = read_srn(series_file["srn"])
    for step in range(STEPS):
        pieces = [json.loads((tmp_path / f"piece_{step}_rank{rank}.json").read_text()) for rank in (0, 1)]
        assert all(p["ranks"] == 2 and p["time"] == srn.times[step] and p["arrays"] == ARRAYS for p in pieces)
        assert pieces[0]["extent"] != pieces[1]["extent"]  # two pieces, not the whole twice
        for field, name in enumerate(ARRAYS):
            whole = decode(srn, field=field, step=step, device="cpu")
            covered = np.zeros(whole.shape, dtype=bool)
            for rank, piece in enumerate(pieces):
                i0, i1, j0, j1, k0, k1 = piece["extent"]
                got = np.load(tmp_path / f"{name}_{step}_rank{rank}.npy")[..., 0]
                np.testing.assert_array_equal(got, whole[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1])
                covered[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = True
            assert covered.all()
