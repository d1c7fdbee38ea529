"""The SRN Encoder in bricks under `mpirun -np 2 pvbatch` (tests/pvscripts/encode_bricks.py): ParaView's NRRD
reader hands each rank the piece its bricks need, the ranks write one file, and that file holds the same bricks,
byte for byte, as the brick compressor run on one process with the same settings in ParaView's Python
(tests/pvscripts/serial_bricks.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from paraview_helpers import PVSCRIPTS, check_ran, paraview_env, require_programs, run_paraview

from srnvtk.bricks import layout_for
from srnvtk.container import Container
from srnvtk.datasets import default_field
from srnvtk.decode import decode
from srnvtk.distributed import assign_bricks, core_box, piece_extent
from srnvtk.fileformat import read_srn
from srnvtk.multipart import COMPACT_VERSION
from srnvtk.sources import write_nrrd
from srnvtk.volume import Geometry

pytestmark = pytest.mark.paraview

GRID = Geometry((0, 23, 0, 19, 0, 17))


def test_pvbatch_ranks_write_one_file_equal_to_the_serial_run(tmp_path: Path) -> None:
    programs = require_programs("pvbatch", "mpirun")
    nrrd = tmp_path / "values.nrrd"
    write_nrrd(nrrd, "float32", GRID, iter([default_field(GRID.dimensions, 3)]))
    out = tmp_path / "out"
    out.mkdir()
    env = paraview_env()
    env["OMP_NUM_THREADS"] = "1"
    command = [programs["mpirun"], "--allow-run-as-root", "--oversubscribe", "-x", "PV_PLUGIN_PATH", "-x",
               "PYTHONPATH", "-x", "OMP_NUM_THREADS", "-np", "2", programs["pvbatch"],
               PVSCRIPTS / "encode_bricks.py", nrrd, tmp_path / "mpi.srn", out, "12", "2"]
    proc = run_paraview(command, env, timeout=400, cwd=PVSCRIPTS)
    check_ran(proc, "encode_bricks.py done")
    assert sorted(p.name for p in tmp_path.iterdir() if ".srn" in p.name) == ["mpi.srn"]  # no temporary left

    layout = layout_for(GRID, 12, 2)
    owners = assign_bricks(layout.counts(GRID), 2)
    for rank in (0, 1):  # each rank's input: the box its bricks and their halos cover; its output: their cores
        got = json.loads((out / f"input{rank}.json").read_text())
        assert tuple(got["extent"]) == piece_extent(GRID, layout, owners[rank])
        output = json.loads((out / f"output{rank}.json").read_text())
        assert tuple(output["extent"]) == core_box(GRID, layout, owners[rank])

    # the same settings on one process, in ParaView's Python too (its numpy differs from .venv's in the last bits)
    pvpython = require_programs("pvpython")["pvpython"]
    proc = run_paraview([pvpython, PVSCRIPTS / "serial_bricks.py", nrrd, tmp_path / "serial.srn", "12", "2"], env,
                        timeout=300, cwd=PVSCRIPTS)
    check_ran(proc, "serial_bricks.py done")
    a, b = read_srn(tmp_path / "serial.srn"), read_srn(tmp_path / "mpi.srn")
    assert b.format_version == COMPACT_VERSION and [p.brick for p in a.parts] == [p.brick for p in b.parts]
    sections = [[c.read(n) for n in range(1, len(c.sections))]
                for c in (Container.open(tmp_path / "serial.srn"), Container.open(tmp_path / "mpi.srn"))]
    assert sections[0] == sections[1]
    assert (tmp_path / "serial.srn").stat().st_size == (tmp_path / "mpi.srn").stat().st_size
    whole = decode(b, device="cpu")
    for rank in (0, 1):  # the encoder's output on each rank: its cores' reconstruction, as a reader decodes it
        box = core_box(GRID, layout, owners[rank])
        values = np.load(out / f"output{rank}.npy")
        np.testing.assert_allclose(values, whole[box[4]:box[5] + 1, box[2]:box[3] + 1, box[0]:box[1] + 1],
                                   rtol=0, atol=1e-5)
