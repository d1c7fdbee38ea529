"""benchmarks/series_file.py (issue #13's acceptance runs): interpolation at equal PSNR, the summary, and a smoke run
(--quick) that writes both result files, resumes, and leaves no scratch file."""

from __future__ import annotations

import json

import pytest
from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("series_file")


def test_value_at_equal_psnr(bench) -> None:
    curve = [(30.0, 1000.0), (34.0, 4000.0), (32.0, 2000.0)]  # (PSNR, bytes), any order
    assert bench.at_psnr(curve, 31.0) == pytest.approx(1000 * 2**0.5)  # halfway, in log bytes
    assert bench.at_psnr(curve, 34.0) == pytest.approx(4000.0)
    assert bench.at_psnr(curve, 29.0) is None and bench.at_psnr(curve, 35.0) is None


def test_summary_compares_at_the_series_psnr(bench) -> None:
    rows = [{"part": "A", "scheme": "series", "ratio": 100.0, "bytes": 1000, "train_seconds": 10.0, "mean_psnr": 32.0},
            {"part": "A", "scheme": "independent", "ratio": 50.0, "bytes": 4000, "train_seconds": 80.0,
             "mean_psnr": 34.0},
            {"part": "A", "scheme": "independent", "ratio": 100.0, "bytes": 2000, "train_seconds": 40.0,
             "mean_psnr": 30.0}]
    (entry,) = bench.summarize(rows)["equal_psnr"]
    assert entry["independent_bytes"] == pytest.approx(2000 * 2**0.5)
    assert entry["bytes_factor"] == pytest.approx(2 * 2**0.5) and entry["time_factor"] == pytest.approx(4 * 2**0.5)


def test_quick_run_writes_and_resumes(bench, tmp_path, capsys) -> None:
    out = tmp_path / "sf"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    kinds = {(r["part"], r["scheme"], r["ratio"]) for r in result["rows"]}
    assert kinds == {(p, s, r) for p, schemes in (("A", ("series", "delta", "independent")),
                                                  ("B", ("vector", "components")))
                     for s in schemes for r in (2.0, 4.0)}
    assert all(r["key_interval"] == 0 for r in result["rows"] if r["scheme"] == "delta")
    assert all("code" in r and r["device"] == "cpu" for r in result["rows"])  # the commit and device of each row
    series = [r for r in result["rows"] if r["scheme"] == "series"]
    assert all(len(r["parts"]) == 3 * 2 for r in series)  # three arrays, two steps, one file
    # step 0 cold with the quick run's 30 steps, step 1 warm with half of them
    assert all(sorted((p["step"], p["steps"]) for p in r["parts"]) == [(0, 30)] * 3 + [(1, 15)] * 3 for r in series)
    vector = [r for r in result["rows"] if r["part"] == "B"]
    assert all({"psnr_x", "psnr_y", "psnr_z", "psnr_magnitude"} <= set(r) for r in vector)
    assert "One series file" in out.with_suffix(".md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sf.json", "sf.md"]  # no scratch left
    capsys.readouterr()
    assert bench.main(["--quick", "--out", str(out)]) == 0  # everything already done
    assert "0 runs to do, 10 already done" in capsys.readouterr().err
    # Part C: cold networks of a series part's bytes, set against the warm series' later steps.
    assert bench.main(["--quick", "--out", str(out), "--parts", "C"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    cold = {r["ratio"]: r for r in result["rows"] if r["part"] == "C"}
    assert sorted(cold) == [2.0, 4.0]
    for row in cold.values():
        assert len(row["parts"]) == 3 * 2 and all(p["steps"] == 30 for p in row["parts"])
        # each one-step, one-array file fits a part's share (plus what a single-network file's header takes more)
        assert all(p["file_bytes"] <= row["share_bytes"] + bench.PART_FIT_ALLOWANCE for p in row["parts"])
    compared = result["summary"]["warm_vs_cold"]
    assert sorted((w["ratio"], w["field"]) for w in compared) == [(r, f) for r in (2.0, 4.0) for f in bench.ARRAYS]
    assert all(w["later_steps"] == 1 and (w["warm_steps"], w["cold_steps"]) == (15, 30) for w in compared)
    assert "Warm start against a cold start of the same bytes" in out.with_suffix(".md").read_text()
