"""benchmarks/bricks_ablation.py (issue #14's quality comparison): a run at equal CPU time gives the whole volume and
the bricks the same seconds of training, records the border and interior quality, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import load_script

from srnvtk.datasets import default_geometry
from srnvtk.vtkio import image_from_arrays, write_vti


@pytest.fixture(scope="module")
def ablation():
    return load_script("bricks_ablation")


def test_equal_time_runs_and_resume(ablation, tmp_path: Path) -> None:
    n = 32
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n),) * 3, indexing="ij")
    values = (np.sin(6 * x) * np.cos(5 * y) + z).astype(np.float32)
    volume = tmp_path / "v.vti"
    write_vti(image_from_arrays(default_geometry((n, n, n)), {"v": values}), volume)
    out = tmp_path / "ablation.json"
    argv = ["--volume", str(volume), "--array", "v", "--region", "0", "0", "0", str(n), "--runs", "whole", "b16h2",
            "--ratio", "4", "--time-limit", "3", "--mask-sizes", "16", "--scratch", str(tmp_path),
            "--out", str(out)]
    assert ablation.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["label"] for r in rows] == ["whole", "b16h2"]
    whole, bricks = rows
    assert bricks["bricks"] == 8 and whole["bricks"] == 1
    for row in rows:
        assert row["time_limit"] == 3.0
        # training stops at its CPU budget (the file fit and decode come on top, so a loose upper bound)
        assert 2.0 < row["cpu_seconds"] < 30.0
        assert row["steps"] > 0
        quality = row["mask16"]
        assert np.isfinite(quality["psnr_border"]) and np.isfinite(quality["psnr_interior"])
    assert bricks["steps_per_brick"] > 0 and bricks["steps"] >= 8 * bricks["steps_per_brick"]
    assert ablation.main(argv) == 0  # a rerun skips what the file holds
    assert len(json.loads(out.read_text())["rows"]) == 2
