"""benchmarks/wavelet_ablation.py: its plan, settings checks and equal-bytes comparisons (no training here)."""

from __future__ import annotations

import pytest
from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def ablation():
    return load_script("wavelet_ablation")


def row(grid: str, method: str, file_bytes: int, psnr: float, ratio: float = 50.0, pruned: float = 0.5) -> dict:
    return {"grid": grid, "method": method, "file_bytes": file_bytes, "psnr": psnr, "target_ratio": ratio,
            "grid_pruned_fraction": pruned, "wavelet_levels": None}


def test_plan_widens_the_plain_curves(ablation) -> None:
    args = ablation.parse_args(["--ratios", "50", "100", "--grids", "plain", "haar", "--methods", "none", "binary"])
    runs = [(r["grid"], r["method"], r["target_ratio"]) for r in ablation.plan(args)]
    assert runs == [("plain", "none", 25.0), ("plain", "none", 50.0), ("plain", "none", 100.0),
                    ("plain", "none", 200.0), ("plain", "none", 400.0),
                    ("plain", "binary", 25.0), ("plain", "binary", 50.0), ("plain", "binary", 100.0),
                    ("plain", "binary", 200.0),
                    ("haar", "none", 50.0), ("haar", "none", 100.0),
                    ("haar", "binary", 50.0), ("haar", "binary", 100.0)]


@pytest.mark.parametrize("grids", [["haar", "db2"], ["plain", "db99"]])
def test_bad_grids_are_refused(ablation, grids, capsys) -> None:
    with pytest.raises(SystemExit):
        ablation.parse_args(["--grids", *grids])
    err = capsys.readouterr().err
    assert ("--grids needs 'plain'" if "plain" not in grids else "unknown wavelet 'db99'") in err


def test_gains_against_plain_with_the_same_method(ablation) -> None:
    rows = [row("plain", "none", 2000, 30.0), row("plain", "none", 8000, 36.0),
            row("plain", "binary", 1000, 31.0), row("plain", "binary", 4000, 35.0),
            row("haar", "binary", 2000, 34.0, pruned=0.7), row("haar", "binary", 500, 32.0, ratio=100.0, pruned=0.8),
            row("haar", "none", 9000, 37.0)]
    gains = {(r["grid"], r["method"], r["file_bytes"]): r for r in ablation.with_gains(rows)}
    inside = gains["haar", "binary", 2000]
    assert inside["gain_vs_plain_db"] == pytest.approx(34.0 - 33.0) and not inside["gain_vs_plain_is_bound"]
    assert inside["gain_vs_unpruned_db"] == pytest.approx(4.0)
    smaller = gains["haar", "binary", 500]
    assert smaller["gain_vs_plain_db"] == pytest.approx(1.0) and smaller["gain_vs_plain_is_bound"]
    assert gains["haar", "none", 9000]["gain_vs_plain_db"] is None  # larger than every plain file
    assert gains["plain", "binary", 1000]["gain_vs_plain_db"] is None  # plain is the reference
    assert gains["plain", "none", 2000]["gain_vs_unpruned_db"] is None

    table = ablation.summary(ablation.with_gains(rows), ["plain", "haar"], ["none", "binary"])
    binary = next(s for s in table if s["method"] == "binary")
    assert binary["gain_vs_plain_db"] == pytest.approx(1.0) and binary["exact_comparisons"] == 1
    assert binary["lower_bounds_vs_plain"] == [pytest.approx(1.0)]
    assert binary["grid_pruned"] == pytest.approx(0.75) and binary["plain_grid_pruned"] == pytest.approx(0.5)
    (verdict,) = ablation.verdicts(table)
    assert verdict.startswith("- haar: best method binary") and verdict.endswith("beats it.")
