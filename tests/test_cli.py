"""The srnvtk command: compress -> info -> decompress, progress output, and every kind of bad input."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from srnvtk.cli import ProgressBar, main
from srnvtk.decode import decode, strided_geometry
from srnvtk.encoder import config_for_ratio
from srnvtk.fileformat import read_srn
from srnvtk.volume import Geometry

vtk_to_numpy = pytest.importorskip("vtkmodules.util.numpy_support").vtk_to_numpy
from srnvtk.vtkio import image_from_arrays, read_vti, write_vti  # noqa: E402  (needs VTK)

REPO = Path(__file__).resolve().parents[1]


def run(*args: object) -> tuple[int, str, str]:
    """main() in this process, with its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def point_values(path: Path) -> tuple[np.ndarray, object]:
    image = read_vti(str(path))
    nx, ny, nz = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetArray("density")).reshape(nz, ny, nx), image


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, fast_compress_args) -> dict:
    """One real compress run shared by the module: its input, output, printed summary and file."""
    from srnvtk.datasets import default_volume

    folder = tmp_path_factory.mktemp("compressed")
    vti = folder / "tiny.vti"
    write_vti(default_volume((16, 14, 12)), vti)
    srn = folder / "tiny.srn"
    code, out, err = run("compress", vti, srn, *fast_compress_args)
    assert code == 0, err
    return {"vti": vti, "srn": srn, "stdout": out, "stderr": err, "file": read_srn(srn)}


@pytest.fixture(scope="module")
def full_decode(compressed) -> np.ndarray:
    """The encoder's reconstruction, as a reader of the file computes it."""
    srn = compressed["file"]
    return decode(srn, device="cpu")


# ---------------------------------------------------------------------------------------------
# The happy path


def test_compress_prints_a_summary(compressed) -> None:
    out, size = compressed["stdout"], os.path.getsize(compressed["srn"])
    stats = compressed["file"].stats
    assert f"wrote {compressed['srn']}" in out
    assert f"{size:,} bytes" in out
    assert f"{stats['ratio']:.1f}x against float32" in out
    assert f"PSNR        {stats['psnr']:.2f} dB" in out
    assert "train time" in out and "(40 steps)" in out
    assert compressed["stderr"] == ""  # --quiet: no header, no progress


def test_info_text(compressed) -> None:
    code, out, err = run("info", compressed["srn"])
    assert code == 0, err
    srn, size = compressed["file"], os.path.getsize(compressed["srn"])
    assert "srnvtk format version 5, architecture fvsrn" in out
    assert "'density' (uint8)" in out
    assert "16 x 14 x 12" in out
    assert f"{size:,}" in out
    assert f"{srn.stats['psnr']:.2f} dB" in out
    for name, stored in srn.tensor_bytes.items():
        assert any(line.split()[:2] == [name, f"{stored:,}"] for line in out.splitlines()), name


def test_info_json_matches_the_file(compressed) -> None:
    code, out, err = run("info", compressed["srn"], "--json")
    assert code == 0, err
    info = json.loads(out)
    srn = compressed["file"]
    assert info["format"] == "srnvtk" and info["format_version"] == 5 and info["architecture"] == "fvsrn"
    assert info["model_config"]["grid_channels"] == srn.model_config.grid_channels == 4
    assert info["model_config"]["mlp_width"] == 16 and info["model_config"]["fourier_features"] == 2
    assert info["grid_shape"] == list(srn.model.grid.shape[1:])
    source = info["source"]
    assert source["array_name"] == "density" and source["dtype"] == "uint8"
    assert source["dimensions"] == [16, 14, 12]
    assert source["extent"] == list(srn.source.geometry.extent)
    assert source["spacing"] == pytest.approx(srn.source.geometry.spacing)
    assert source["origin"] == [0.0, 0.0, 0.0]
    assert source["value_range"] == [0.0, 255.0]
    assert info["stats"]["file_bytes"] == os.path.getsize(compressed["srn"])
    assert info["stats"]["steps"] == 40
    for key in ("psnr", "ratio", "train_seconds", "final_loss"):
        assert info["stats"][key] == pytest.approx(srn.stats[key])
    assert info["tensor_bytes"] == srn.tensor_bytes


def test_decompress_full_equals_the_encoders_reconstruction(compressed, full_decode, tmp_path) -> None:
    out = tmp_path / "full.vti"
    code, stdout, err = run("decompress", compressed["srn"], out, "--quiet")
    assert code == 0, err
    values, image = point_values(out)
    assert values.dtype == np.uint8
    assert np.array_equal(values, full_decode)
    source = compressed["file"].source.geometry
    assert image.GetExtent() == source.extent
    assert image.GetSpacing() == pytest.approx(source.spacing)
    assert image.GetPointData().GetScalars().GetName() == "density"  # active scalars
    assert f"wrote {out}" in stdout
    assert re.search(r"decoded in [0-9.]+ s \([0-9.]+ M points/s; (fused C kernel|torch lattice) on the CPU\)", stdout)
    assert [p.name for p in tmp_path.iterdir()] == ["full.vti"]  # no temporary left behind


def test_decompress_on_one_thread_with_auto_precision_gives_the_same_values(compressed, full_decode, tmp_path) -> None:
    out = tmp_path / "one.vti"
    code, _, err = run("decompress", compressed["srn"], out, "--threads", "1", "--precision", "auto", "--quiet")
    assert code == 0, err
    assert np.array_equal(point_values(out)[0], full_decode)


@pytest.mark.parametrize("stride", [["2"], ["3", "2", "1"]])
def test_decompress_strided(compressed, full_decode, tmp_path, stride) -> None:
    out = tmp_path / "strided.vti"
    code, _, err = run("decompress", compressed["srn"], out, "--stride", *stride, "--quiet")
    assert code == 0, err
    sx, sy, sz = (int(s) for s in stride) if len(stride) == 3 else (int(stride[0]),) * 3
    values, image = point_values(out)
    assert np.array_equal(values, full_decode[::sz, ::sy, ::sx])
    source = compressed["file"].source.geometry
    assert image.GetSpacing() == pytest.approx((source.spacing[0] * sx, source.spacing[1] * sy, source.spacing[2] * sz))


def test_decompress_extent(compressed, full_decode, tmp_path) -> None:
    out = tmp_path / "piece.vti"
    code, _, err = run("decompress", compressed["srn"], out, "--extent", 2, 9, 1, 10, 3, 8, "--quiet")
    assert code == 0, err
    values, image = point_values(out)
    assert image.GetExtent() == (2, 9, 1, 10, 3, 8)
    assert np.array_equal(values, full_decode[3:9, 1:11, 2:10])


def test_decompress_stride_and_extent(compressed, full_decode, tmp_path) -> None:
    out = tmp_path / "piece.vti"
    code, _, err = run("decompress", compressed["srn"], out, "--extent", 3, 12, 0, 13, 2, 11, "--stride", 2, "--quiet")
    assert code == 0, err
    values, image = point_values(out)
    source = compressed["file"].source.geometry
    assert image.GetExtent() == strided_geometry(source, (2, 2, 2), (3, 12, 0, 13, 2, 11)).extent
    assert np.array_equal(values, full_decode[2:12:2, 0:14:2, 4:13:2])


def test_decompress_dimensions(compressed, tmp_path) -> None:
    out = tmp_path / "resampled.vti"
    code, _, err = run("decompress", compressed["srn"], out, "--dimensions", 5, 6, 7, "--quiet")
    assert code == 0, err
    values, image = point_values(out)
    assert image.GetDimensions() == (5, 6, 7)
    assert values.shape == (7, 6, 5)
    assert image.GetBounds() == pytest.approx((0.0, 1.0, 0.0, 13 / 15, 0.0, 11 / 15))  # the source's bounds


def test_generate(tmp_path) -> None:
    out = tmp_path / "gen.vti"
    code, stdout, err = run("generate", out, "--shape", 10, 9, 8)
    assert code == 0, err
    values, image = point_values(out)
    assert image.GetDimensions() == (10, 9, 8)
    assert values.dtype == np.uint8 and values.max() > values.min()
    assert f"wrote {out}" in stdout


def test_compress_with_ratio_and_progress_header(tmp_path) -> None:
    from srnvtk.datasets import default_volume

    vti = tmp_path / "v.vti"  # the file's fixed overhead needs a volume bigger than the tiny one
    write_vti(default_volume((40, 40, 40)), vti)
    out = tmp_path / "r.srn"
    code, _, err = run("compress", vti, out, "--ratio", 8, "--steps", 5, "--batch-size", 1024,
                       "--mlp-width", 8, "--mlp-layers", 1, "--grid-channels", 2, "--device", "cpu")
    assert code == 0, err
    # Not a terminal: the header, but no progress lines for a run this short.
    assert err.startswith("compressing 'density' (40 x 40 x 40 uint8)")
    assert len(err.splitlines()) == 1
    srn = read_srn(out)
    assert srn.model_config.grid_resolution > 8  # the budget buys more than a minimal grid
    budget = 4 * 40**3 / 8
    assert 0.95 * budget <= out.stat().st_size <= budget  # rate control fills the budget
    assert srn.stats["ratio"] == pytest.approx(4 * 40**3 / out.stat().st_size)


def test_python_dash_m(compressed) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "srnvtk", "info", str(compressed["srn"]), "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"]["array_name"] == "density"


# ---------------------------------------------------------------------------------------------
# Progress bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal() -> None:
    stream = FakeTerminal()
    bar = ProgressBar("training", stream=stream, tty_interval=0.0)
    bar(0.0, "step 0/100")
    time.sleep(0.01)
    bar(0.5, "step 50/100 loss 0.01")
    bar(1.0, "done")
    bar.close()
    text = stream.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 3
    assert "[##########----------]  50%" in frames[1] and "ETA 0:00" in frames[1] and "step 50/100" in frames[1]
    assert "100%" in frames[2] and "ETA" not in frames[2]
    assert text.endswith("\n") and text.count("\n") == 1


def test_progress_bar_in_a_log_is_throttled_and_quiet_is_silent() -> None:
    log = io.StringIO()
    bar = ProgressBar("training", stream=log, log_interval=3600)
    for i in range(101):
        bar(i / 100, f"step {i}")
    bar.close()
    assert log.getvalue() == ""
    log = io.StringIO()
    bar = ProgressBar("training", stream=log, log_interval=0.0)
    bar(0.25, "step 25")
    assert log.getvalue().startswith("training  25%") and "\r" not in log.getvalue()
    quiet = FakeTerminal()
    bar = ProgressBar("training", enabled=False, stream=quiet)
    bar(0.5, "x")
    bar.close()
    assert quiet.getvalue() == ""


# ---------------------------------------------------------------------------------------------
# Bad input: exit code 2, one clear line, no traceback, nothing written


def assert_fails_cleanly(args: list, folder: Path, *expected: str) -> str:
    before = sorted(p.name for p in folder.iterdir())
    code, out, err = run(*args)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert "error:" in err
    for text in expected:
        assert text in err, err
    assert sorted(p.name for p in folder.iterdir()) == before  # no output, no temporary
    return err


def test_missing_input(tmp_path, fast_compress_args) -> None:
    err = assert_fails_cleanly(["compress", tmp_path / "nope.vti", tmp_path / "o.srn", *fast_compress_args],
                               tmp_path, "no such file", "nope.vti")
    assert err.startswith("srnvtk: error:") and len(err.splitlines()) == 1
    assert_fails_cleanly(["info", tmp_path / "nope.srn"], tmp_path, "no such file")
    assert_fails_cleanly(["decompress", tmp_path / "nope.srn", tmp_path / "o.vti"], tmp_path, "no such file")


def test_array_not_found_lists_the_arrays(tmp_path, tiny_vti, fast_compress_args) -> None:
    assert_fails_cleanly(["compress", tiny_vti, tmp_path / "o.srn", "--array", "pressure", *fast_compress_args],
                         tmp_path, "'pressure'", "the input has: density")


def test_not_a_vti_file(tmp_path, fast_compress_args) -> None:
    bad = tmp_path / "bad.vti"
    bad.write_text("not xml at all")
    err = assert_fails_cleanly(["compress", bad, tmp_path / "o.srn", *fast_compress_args], tmp_path,
                               "could not read image data")
    assert len(err.splitlines()) == 1  # VTK's own multi-line error report is kept off the terminal


def test_2d_image(tmp_path, fast_compress_args) -> None:
    from srnvtk.datasets import default_volume

    flat = tmp_path / "flat.vti"
    write_vti(default_volume((16, 14, 1)), flat)
    assert_fails_cleanly(["compress", flat, tmp_path / "o.srn", *fast_compress_args], tmp_path,
                         "16x14x1", "2D image")


def test_constant_array(tmp_path, fast_compress_args) -> None:
    const = tmp_path / "const.vti"
    geometry = Geometry((0, 7, 0, 6, 0, 5))
    write_vti(image_from_arrays(geometry, {"density": np.full((6, 7, 8), 7, np.float32)}, "density"), const)
    assert_fails_cleanly(["compress", const, tmp_path / "o.srn", *fast_compress_args], tmp_path, "constant")


@pytest.mark.parametrize("command", ["info", "decompress"])
def test_truncated_srn(compressed, tmp_path, command) -> None:
    data = compressed["srn"].read_bytes()
    cut = tmp_path / "cut.srn"
    cut.write_bytes(data[: len(data) // 2])
    args = [command, cut] + ([tmp_path / "o.vti"] if command == "decompress" else [])
    assert_fails_cleanly(args, tmp_path, "cut.srn", "truncated")


@pytest.mark.parametrize("command", ["info", "decompress"])
def test_hdf5_but_not_srn(tmp_path, command) -> None:
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(4)
    args = [command, other] + ([tmp_path / "o.vti"] if command == "decompress" else [])
    assert_fails_cleanly(args, tmp_path, "other.h5", "not a valid srnvtk file")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--steps", "0"], "steps must be"),
        (["--batch-size", "0"], "batch_size must be"),
        (["--lr", "-1"], "learning_rate must"),
        (["--grid-resolution", "1"], "grid_resolution must be"),
        (["--mlp-layers", "0"], "mlp_layers must be"),
        (["--threads", "-1"], "threads must be"),
        (["--ratio", "0.5"], "ratio must be a number in (1, inf)"),
        (["--ratio", "1e9"], "too few"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--steps", "many"], "invalid int value"),
        (["--ratio", "4", "--grid-resolution", "8"], "not allowed with"),
        (["--arch", "siren"], "invalid choice: 'siren'"),
        (["--prune", "magic"], "invalid choice: 'magic'"),
        (["--prune-granularity", "channel"], "invalid choice: 'channel'"),
        (["--arch", "neurcomp", "--grid-resolution", "8"], "--grid-resolution applies to --arch fvsrn"),
        (["--plain"], "--plain applies to --arch neurcomp, not --arch auto"),
        (["--prune", "variational", "--prune-l1", "0.1"], "--prune-l1 applies to --prune smallify|binary"),
        (["--neurcomp-blocks", "3"], "--neurcomp-blocks applies to --arch neurcomp"),
        (["--prune-l1", "0.1"], "--prune-l1 applies to --prune smallify|binary, not --prune none"),
        (["--arch", "neurcomp", "--prune", "binary", "--prune-granularity", "position"],
         "--prune-granularity applies to --arch fvsrn"),
        (["--arch", "neurcomp", "--neurcomp-width", "0"], "width must be"),
        (["--prune", "binary", "--mask-phase", "1.5"], "mask_phase_fraction must be a number in (0, 1)"),
        (["--residual", "--plain"], "not allowed with"),
    ],
)
def test_invalid_compress_options(tmp_path, tiny_vti, options, expected) -> None:
    assert_fails_cleanly(["compress", tiny_vti, tmp_path / "o.srn", "--quiet", *options], tmp_path, expected)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--stride", "0"], "stride must be"),
        (["--stride", "1", "2"], "one value or three"),
        (["--dimensions", "0", "4", "4"], "dimensions must be"),
        (["--extent", "100", "200", "0", "1", "0", "1"], "lies outside the grid"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--stride", "2", "--dimensions", "4", "4", "4"], "not allowed with"),
        (["--threads", "-1"], "threads must be an integer in [0, 1024]"),
        (["--precision", "fp8"], "invalid choice: 'fp8'"),
    ],
)
def test_invalid_decompress_options(compressed, tmp_path, options, expected) -> None:
    assert_fails_cleanly(["decompress", compressed["srn"], tmp_path / "o.vti", *options], tmp_path, expected)


def test_output_folder_missing_or_same_as_input(compressed, tmp_path, tiny_vti, fast_compress_args) -> None:
    assert_fails_cleanly(["compress", tiny_vti, tmp_path / "no" / "o.srn", *fast_compress_args], tmp_path,
                         "does not exist")
    assert_fails_cleanly(["decompress", compressed["srn"], tmp_path / "no" / "o.vti"], tmp_path, "does not exist")
    assert_fails_cleanly(["compress", tiny_vti, tiny_vti, *fast_compress_args], tmp_path, "is the input file")


# ---------------------------------------------------------------------------------------------
# Ctrl-C


def test_interrupt_during_training_leaves_no_file(monkeypatch, tmp_path, tiny_vti, fast_compress_args) -> None:
    import srnvtk.encoder

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(srnvtk.encoder, "train", interrupted)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run("compress", tiny_vti, tmp_path / "o.srn", *fast_compress_args)
    assert code == 130
    assert err.strip() == "srnvtk: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is a POSIX affair")
def test_sigint_stops_a_real_run(tmp_path, tiny_vti) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "o.srn"
    args = [sys.executable, "-m", "srnvtk", "compress", str(tiny_vti), str(out), "--steps", "1000000",
            "--batch-size", "1024", "--grid-resolution", "4", "--grid-channels", "2", "--mlp-width", "8",
            "--mlp-layers", "1", "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        header = proc.stderr.readline()  # printed just before training starts
        assert header.startswith("compressing"), header + proc.stderr.read()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # 130, or (rarely, under load) death by SIGINT after the same clean-up: CPython re-raises SIGINT at exit
    # when it saw a KeyboardInterrupt escape somewhere. A shell reports both as $? = 130.
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "srnvtk: interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.vti"]



def test_interrupt_while_writing_the_vti_leaves_no_file(monkeypatch, compressed, tmp_path) -> None:
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)  # the last step of write_vti: the temporary is complete
    code, _, err = run("decompress", compressed["srn"], tmp_path / "o.vti", "--quiet")
    assert code == 130 and "srnvtk: interrupted" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Architectures and pruning


@pytest.mark.parametrize(
    ("options", "architecture"),
    [
        (["--arch", "neurcomp", "--neurcomp-width", "10", "--neurcomp-blocks", "2", "--plain", "--prune", "binary",
          "--prune-l1", "20", "--mask-lr", "0.3"], "neurcomp"),
        (["--grid-channels", "4", "--grid-resolution", "8", "--mlp-width", "16", "--mlp-layers", "2",
          "--prune", "smallify", "--prune-l1", "20", "--prune-granularity", "position_channel"], "fvsrn"),
    ],
    ids=["neurcomp-binary", "fvsrn-smallify"],
)
def test_compress_pruned_then_info_and_decompress(tmp_path, tiny_vti, options, architecture) -> None:
    srn_path = tmp_path / "p.srn"
    code, out, err = run("compress", tiny_vti, srn_path, "--steps", 45, "--batch-size", 2048, "--device", "cpu",
                         "--quiet", *options)
    assert code == 0, err
    srn = read_srn(srn_path)
    assert srn.model_config.architecture == architecture and srn.pruning.method == options[options.index("--prune") + 1]
    assert f"pruned      {100 * srn.stats['pruned_fraction']:.1f}% of the parameters" in out

    code, out, err = run("info", srn_path)
    assert code == 0, err
    assert f"architecture {architecture}" in out
    assert "pruned fraction per parameter" in out and "pruning" in out
    code, out, err = run("info", srn_path, "--json")
    info = json.loads(out)
    assert info["pruning_config"]["method"] == srn.pruning.method
    assert info["stats"]["pruned_fraction"] == pytest.approx(srn.stats["pruned_fraction"])
    assert max(info["pruned_fractions"].values()) > 0
    if architecture == "neurcomp":
        assert info["model_structure"]["widths"] == srn.model.widths and "grid_shape" not in info

    vti = tmp_path / "p.vti"
    code, _, err = run("decompress", vti_path := srn_path, vti, "--quiet")
    assert code == 0, err
    values, _ = point_values(vti)
    expected = decode(srn, device="cpu")
    assert np.array_equal(values, expected), vti_path


def test_compress_neurcomp_with_ratio(tmp_path) -> None:
    from srnvtk.config import NeurcompConfig
    from srnvtk.datasets import default_volume

    vti = tmp_path / "v.vti"
    write_vti(default_volume((40, 40, 40)), vti)
    out = tmp_path / "r.srn"
    code, _, err = run("compress", vti, out, "--arch", "neurcomp", "--neurcomp-blocks", "2", "--ratio", 10,
                       "--steps", 3, "--batch-size", 512, "--device", "cpu")
    assert code == 0, err
    assert "Neurcomp (residual) width" in err.splitlines()[0]
    srn = read_srn(out)
    assert srn.model_config.width > config_for_ratio(10, srn.source.geometry, NeurcompConfig(blocks=2)).width - 1
    assert 10 <= srn.stats["ratio"] <= 10 / 0.95


# ---------------------------------------------------------------------------------------------
# The wavelet grid's options


def test_compress_wavelet_grid_and_info(tiny_vti, tmp_path, fast_compress_args) -> None:
    srn_path = tmp_path / "w.srn"
    code, _out, err = run("compress", tiny_vti, srn_path, *fast_compress_args, "--wavelet", "Haar",
                          "--wavelet-levels", "2", "--prune", "binary")
    assert code == 0, err
    srn = read_srn(srn_path)
    assert srn.model_config.wavelet == "haar" and srn.model_config.wavelet_levels == 2
    assert srn.model.transform.levels == (2, 2, 2)
    code, out, err = run("info", srn_path)
    assert code == 0, err
    assert "haar wavelet coefficients, levels 2 2 2 (z, y, x)" in out
    assert any(line.split()[:1] == ["coefficients"] for line in out.splitlines())
    code, out, err = run("info", srn_path, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["model_config"]["wavelet"] == "haar" and info["model_structure"]["wavelet_levels"] == [2, 2, 2]
    assert set(info["pruned_fractions"]) >= {"coefficients"}


def test_compress_wavelet_levels_zero_means_automatic(tiny_vti, tmp_path, fast_compress_args) -> None:
    code, _out, err = run("compress", tiny_vti, tmp_path / "a.srn", *fast_compress_args, "--wavelet", "db2",
                          "--wavelet-levels", "0")
    assert code == 0, err
    assert read_srn(tmp_path / "a.srn").model_config.wavelet_levels is None


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--wavelet", "db99"], "unknown wavelet 'db99' (did you mean"),
        (["--wavelet-levels", "2"], "--wavelet-levels applies to --wavelet other than none, not --wavelet none"),
        (["--wavelet", "none", "--wavelet-levels", "2"], "--wavelet-levels applies to --wavelet other than none"),
        (["--wavelet", "haar", "--arch", "neurcomp"], "--wavelet applies to --arch fvsrn"),
        (["--wavelet", "haar", "--wavelet-levels", "-1"], "wavelet_levels must be an integer in [1, 16]"),
    ],
)
def test_compress_bad_wavelet_options(tiny_vti, tmp_path, options, fragment) -> None:
    code, _out, err = run("compress", tiny_vti, tmp_path / "x.srn", "--quiet", *options)
    assert code == 2 and fragment in err, err
    assert not (tmp_path / "x.srn").exists()
