"""benchmarks/series_warmstart.py: the budget a scheme needs to reach cold's PSNR, its summary, and a smoke run
(--quick) that writes both result files and resumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("series_warmstart")


def test_needed_budget(bench) -> None:
    curve = [(250, 30.0), (1000, 34.0), (4000, 36.0)]
    assert bench.needed_budget(curve, 32.0) == (pytest.approx(500.0), "interpolated")  # halfway in log budget
    assert bench.needed_budget(curve, 34.0) == (pytest.approx(1000.0), "interpolated")
    assert bench.needed_budget(curve, 29.0) == (250.0, "at most")
    # Beyond the largest budget: along the last segment (1 dB per doubling), up to 1.5 times the largest budget.
    assert bench.needed_budget(curve, 36.5) == (pytest.approx(4000 * 2**0.5), "extrapolated")
    assert bench.needed_budget(curve, 38.0) == (None, "not reached")
    assert bench.needed_budget([(250, 30.0), (500, 29.0)], 31.0) == (None, "not reached")


def row(scheme: str, budget: int, step: int, psnr: float) -> dict:
    return {"scheme": scheme, "budget": budget, "step": step, "psnr": psnr}


def test_summary_against_cold_at_the_reference_budget(bench) -> None:
    args = bench.parse_args(["--series-steps", "3", "--budgets", "100", "400", "--warm-budgets", "25", "100"])
    rows = [row("cold", 400, s, 40.0) for s in range(3)] + [row("cold", 100, s, 35.0) for s in range(3)]
    rows += [row("warm", 25, 1, 38.0), row("warm", 100, 1, 42.0), row("warm", 25, 2, 40.5), row("warm", 100, 2, 43.0)]
    rows += [row("frozen", 25, 1, 30.0), row("frozen", 100, 1, 31.0)]
    summary = bench.summarize(rows, args)
    warm = {p["step"]: p for p in summary["warm"]["per_step"]}
    assert warm[1]["needed_budget"] == pytest.approx(math.exp(math.log(25) + 0.5 * math.log(4)))  # 50
    assert warm[2]["how"] == "at most" and warm[2]["fraction"] == pytest.approx(25 / 400)
    assert summary["warm"]["bound"] and summary["warm"]["mean_fraction"] == pytest.approx((50 / 400 + 25 / 400) / 2)
    assert summary["frozen"]["mean_fraction"] is None  # never reaches cold's 40 dB
    assert "cold" not in summary and "warm-lr" not in summary


@pytest.mark.slow
def test_quick_run_writes_and_resumes(bench, tmp_path: Path, capsys) -> None:
    out = tmp_path / "warm"
    assert bench.main(["--quick", "--schemes", "cold", "warm", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    keys = {(r["scheme"], r["budget"], r["step"]) for r in result["rows"]}
    assert keys == ({("cold", b, s) for b in (10, 20) for s in range(3)}
                    | {("warm", b, s) for b in (5, 10, 20) for s in range(3)})
    assert all(r["train_seconds"] > 0 and r["steps"] > 0 and math.isfinite(r["psnr"]) for r in result["rows"])
    assert set(result["summary"]) == {"warm"}
    assert "| warm | 5 |" in out.with_suffix(".md").read_text()
    # A second call adds the missing scheme and keeps what was run.
    assert bench.main(["--quick", "--schemes", "cold", "warm", "frozen", "--out", str(out)]) == 0
    assert "3 chains to run, 5 already done" in capsys.readouterr().err
    again = json.loads(out.with_suffix(".json").read_text())
    assert set(again["summary"]) == {"warm", "frozen"}
    assert [r for r in again["rows"] if r["scheme"] != "frozen"] == result["rows"]
