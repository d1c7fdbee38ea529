"""benchmarks/pruning_ablation.py: its plan and its equal-bytes comparison (no training here)."""

from __future__ import annotations

import pytest
from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def ablation():
    return load_script("pruning_ablation")


def row(method: str, file_bytes: int, psnr: float, arch: str = "fvsrn") -> dict:
    return {"arch": arch, "method": method, "file_bytes": file_bytes, "psnr": psnr, "target_ratio": 1.0,
            "pruned_fraction": 0.5, "ratio": 1.0}


def test_plan_adds_smaller_unpruned_baselines(ablation) -> None:
    args = ablation.parse_args(["--ratios", "10", "20", "--archs", "fvsrn", "--methods", "none", "binary"])
    runs = ablation.plan(args)
    assert [(r["method"], r["target_ratio"]) for r in runs] == [
        ("none", 10.0), ("none", 20.0), ("none", 40.0), ("none", 80.0), ("binary", 10.0), ("binary", 20.0)]


def test_gains_at_equal_bytes(ablation) -> None:
    rows = [row("none", 1000, 30.0), row("none", 4000, 36.0),
            row("binary", 2000, 35.0), row("binary", 500, 31.0), row("binary", 8000, 40.0),
            row("smallify", 2000, 30.0, arch="neurcomp")]
    gains = {(r["arch"], r["method"], r["file_bytes"]): r for r in ablation.with_gains(rows)}
    assert gains["fvsrn", "binary", 2000]["gain_db"] == pytest.approx(35.0 - 33.0)  # halfway in log bytes
    assert not gains["fvsrn", "binary", 2000]["gain_is_bound"]
    assert gains["fvsrn", "binary", 500]["gain_db"] == pytest.approx(1.0)  # a lower bound, against 1000 bytes
    assert gains["fvsrn", "binary", 500]["gain_is_bound"]
    assert gains["fvsrn", "binary", 8000]["gain_db"] is None  # larger than every unpruned file
    assert gains["fvsrn", "none", 1000]["gain_db"] is None
    assert gains["neurcomp", "smallify", 2000]["gain_db"] is None  # no unpruned neurcomp curve


def test_schedule_only_control_cannot_prune(ablation) -> None:
    control = ablation.PRUNING["schedule-only"]
    assert control.enabled and control.l1_weight == 0.0 and control.mask_learning_rate < 1e-9
