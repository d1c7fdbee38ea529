"""`mpirun -np N srnvtk compress`: ranks compress their own bricks into one file equal to a serial run's, brick for
brick; a failing or interrupted rank stops all of them and leaves no file; bad MPI set-ups are clear errors.

Skipped without mpirun or mpi4py. A 24 x 20 x 18 volume in 8 bricks and a few steps keep each run to seconds of
work; most of a run's time is starting two Python processes with torch.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from srnvtk.config import EncodeConfig, EncoderSettings, FVSRNConfig, TrainConfig
from srnvtk.container import Container
from srnvtk.datasets import default_field
from srnvtk.distributed import compress_bricks
from srnvtk.fileformat import read_srn
from srnvtk.sources import open_nrrd, write_nrrd
from srnvtk.volume import Geometry

REPO = Path(__file__).resolve().parents[1]
MPIRUN = shutil.which("mpirun")
GRID = Geometry((0, 23, 0, 19, 0, 17), (0.5, 0.0, 1.0), (0.1, 0.2, 0.1))
ARGS = ["--brick-size", "12", "--halo", "2", "--grid-channels", "4", "--grid-resolution", "6", "--mlp-width", "16",
        "--mlp-layers", "2", "--fourier-features", "2", "--batch-size", "2048", "--device", "cpu", "--quiet"]
SETTINGS = EncoderSettings(fvsrn=FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=16, mlp_layers=2,
                                             fourier_features=2),
                           train=TrainConfig(steps=10, batch_size=2048, device="cpu", threads=1))


@pytest.fixture(scope="module", autouse=True)
def _mpi() -> None:
    """These tests must run wherever the suite runs (scripts/setup.sh installs Open MPI and mpi4py): no skip."""
    if MPIRUN is None:
        pytest.fail("mpirun is missing: run scripts/setup.sh (it installs Debian's openmpi-bin)")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.fail("mpi4py is missing from this Python: run scripts/setup.sh (it installs mpi4py==4.1.2)")


@pytest.fixture(scope="module")
def nrrd(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mpi") / "values.nrrd"
    write_nrrd(path, "float32", GRID, iter([default_field(GRID.dimensions, 3)]))
    return path


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def mpirun(*commands: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """mpirun with one or more (ranks, srnvtk arguments...) groups (MPMD when more than one)."""
    args = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-x", "PYTHONPATH", "-x", "OMP_NUM_THREADS"]
    for n, command in enumerate(commands):
        args += ([":"] if n else []) + ["-np", str(command[0]), sys.executable, "-m", "srnvtk", *command[1:]]
    return subprocess.run(args, env=env(), capture_output=True, text=True, timeout=timeout)


def brick_sections(path: Path) -> list[bytes]:
    """Every brick's stored bytes, in brick order (the index before them holds timings, which differ)."""
    container = Container.open(path)
    return [container.read(n) for n in range(1, len(container.sections))]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".srn", ".tmp") or ".srn." in p.name)


@pytest.mark.parametrize("ratio", [None, 7.0])  # ratio 8 leaves its smallest brick too few bytes
def test_two_ranks_equal_the_serial_run_brick_for_brick(nrrd, tmp_path, ratio):
    settings = SETTINGS if ratio is None else EncoderSettings(**{**SETTINGS.__dict__, "encode": EncodeConfig(ratio)})
    serial = compress_bricks(open_nrrd(nrrd), settings, brick_size=12, halo=2, path=tmp_path / "serial.srn")
    args = ARGS if ratio is None else [a for a in ARGS if a not in ("--grid-resolution", "6")] + ["--ratio", str(ratio)]
    proc = mpirun([2, "compress", nrrd, tmp_path / "mpi.srn", *args, "--steps", "10"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "peak memory" in proc.stdout and proc.stdout.count("wrote") == 1  # rank 0 reports, once
    a, b = read_srn(tmp_path / "serial.srn"), read_srn(tmp_path / "mpi.srn")
    assert [p.brick for p in a.parts] == [p.brick for p in b.parts] and len(a.parts) == 8
    assert brick_sections(tmp_path / "serial.srn") == brick_sections(tmp_path / "mpi.srn")
    for x, y in zip(a.parts, b.parts, strict=True):
        assert x.stats["psnr"] == y.stats["psnr"] and x.stats["steps"] == y.stats["steps"]
    assert a.stats["psnr"] == pytest.approx(b.stats["psnr"], abs=1e-9)
    assert serial.file_bytes == (tmp_path / "serial.srn").stat().st_size == (tmp_path / "mpi.srn").stat().st_size
    np.testing.assert_array_equal(np.asarray(a.source.value_range), np.asarray(b.source.value_range))


def _rank_pids(parent: int) -> dict[int, int]:
    """rank -> pid of the srnvtk processes below an mpirun (Open MPI puts the rank in their environment)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"srnvtk" not in cmdline or b"compress" not in cmdline:
            continue
        for item in environ:
            if item.startswith(b"OMPI_COMM_WORLD_RANK=") and str(parent).encode() in _ancestry(entry.name):
                found[int(item.split(b"=")[1])] = int(entry.name)
    return found


def _loaded_torch(pid: int) -> bool:
    try:
        return b"libtorch" in Path(f"/proc/{pid}/maps").read_bytes()
    except OSError:
        return False


def _ancestry(pid: str) -> bytes:
    """The pids above a process, as bytes, for the membership test above."""
    chain = []
    while pid not in ("0", "1"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = stat.rsplit(")", 1)[1].split()[1]
        chain.append(pid)
    return " ".join(chain).encode()


@pytest.mark.parametrize(("rank", "signum", "message"), [
    (1, signal.SIGINT, "rank 1 was interrupted"),
    (0, signal.SIGTERM, "rank 0 was interrupted"),
])
def test_an_interrupted_rank_stops_all_and_leaves_no_file(nrrd, tmp_path, rank, signum, message):
    output = tmp_path / "out.srn"
    args = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-x", "PYTHONPATH", "-x", "OMP_NUM_THREADS", "-np", "2",
            sys.executable, "-m", "srnvtk", "compress", str(nrrd), str(output), *ARGS, "--steps", "100000"]
    proc = subprocess.Popen(args, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        pids: dict[int, int] = {}
        while len(pids) < 2 and time.monotonic() < deadline:
            time.sleep(1)
            pids = _rank_pids(proc.pid)
        assert len(pids) == 2, "the ranks did not start"
        while not all(_loaded_torch(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(1)  # signals are caught from before torch is imported
        time.sleep(3)
        os.kill(pids[rank], signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert message in err, err[-3000:]
    assert "Traceback" not in err
    assert not leftovers(tmp_path), leftovers(tmp_path)


def test_ranks_that_disagree_stop_with_the_setting(nrrd, tmp_path):
    proc = mpirun([1, "compress", nrrd, tmp_path / "o.srn", *ARGS, "--steps", "10"],
                  [1, "compress", nrrd, tmp_path / "o.srn", *ARGS, "--steps", "20"])
    assert proc.returncode != 0
    assert "rank 1 disagrees with rank 0 on the settings (settings.train.steps: 10 vs 20)" in proc.stderr
    assert proc.stderr.count("srnvtk: error:") == 1  # rank 0 reports for all
    assert not leftovers(tmp_path)


def test_more_ranks_than_bricks_is_an_error(nrrd, tmp_path):
    proc = mpirun([3, "compress", nrrd, tmp_path / "o.srn", *ARGS, "--steps", "10", "--brick-size", "20"])
    assert proc.returncode != 0
    assert "3 ranks for 2 bricks: rank 1 would have no brick" in proc.stderr, proc.stderr[-2000:]
    assert not leftovers(tmp_path)


def test_mpi_without_a_launcher_is_an_error(nrrd, tmp_path):
    clean = {k: v for k, v in env().items() if not k.startswith(("OMPI_", "PMI", "PMIX"))}
    proc = subprocess.run([sys.executable, "-m", "srnvtk", "compress", str(nrrd), str(tmp_path / "o.srn"), *ARGS,
                           "--mpi", "on"], env=clean, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no MPI launcher started this process" in proc.stderr
    assert not leftovers(tmp_path)
