"""The rate-distortion harness's helpers (benchmarks/rd, benchmarks/synthetic.py): the parameter search, the
merging of result rows, the tables, the bricking, the synthetic field; one tiny codec run when pysz is there."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(REPO))

from benchmarks.rd.codecs import brick_slices  # noqa: E402
from benchmarks.rd.report import (  # noqa: E402
    markdown,
    merge_rows,
    notes_for,
    psnr_cell,
    seconds_cell,
    timing_context,
)
from benchmarks.rd.search import Trial, find_parameter  # noqa: E402
from benchmarks.synthetic import turbulence_values  # noqa: E402


def error_bound_size(parameter: float) -> int:
    """Sizes like an error-bounded codec's: falling as a power of the bound."""
    return int(1e3 * parameter**-1.3) + 100


@pytest.mark.parametrize("budget", [150_000, 20_000, 3_000])
def test_search_lands_just_inside_the_budget(budget):
    result = find_parameter(error_bound_size, budget, 0.5, 1e-7, [], rel_tol=0.005)
    assert result.best is not None
    assert budget / (1.005) <= result.best.nbytes <= budget


def test_search_reuses_trials_and_reports_unreachable_budgets():
    trials: list[Trial] = []
    first = find_parameter(error_bound_size, 20_000, 0.5, 1e-7, trials)
    again = find_parameter(error_bound_size, 20_000, 0.5, 1e-7, trials)
    assert again.trials == 0 and again.best == first.best
    unreachable = find_parameter(error_bound_size, 50, 0.5, 1e-7, trials)
    assert unreachable.best is None and unreachable.smallest.nbytes > 50


def test_search_handles_rates_and_steps():
    def stepped(rate: float) -> int:  # a fixed-rate codec: whole bits per block of 64 values
        return int(round(rate * 64)) * 1000

    result = find_parameter(stepped, 40_500, 0.01, 16.0, [], max_trials=60)
    assert result.best.nbytes == 40_000


def test_search_stops_on_a_size_that_jumps():
    def jumping(parameter: float) -> int:  # nothing lands between 1000 and 5000 bytes
        return 1000 if parameter > 0.01 else 5000

    result = find_parameter(jumping, 3000, 0.5, 1e-7, [], max_trials=100)
    assert result.best.nbytes == 1000 and result.trials < 100


def row(codec: str, target: float, psnr: float, label: str | None = None) -> dict:
    return {"codec": codec, "label": label or codec, "target_ratio": target, "ratio": target * 1.001,
            "psnr_db": psnr, "encode_seconds": 1.0, "decode_seconds": 0.5, "reached": True}


def test_merge_replaces_only_the_same_codec_and_ratio():
    old = [row("sz3", 50, 57.0), row("srnvtk-fvsrn", 50, 40.0), row("srnvtk-fvsrn", 100, 35.0)]
    new = [row("srnvtk-fvsrn", 50, 45.0)]
    merged = merge_rows(old, new)
    assert [(r["codec"], r["target_ratio"], r["psnr_db"]) for r in merged] == [
        ("sz3", 50, 57.0), ("srnvtk-fvsrn", 50, 45.0), ("srnvtk-fvsrn", 100, 35.0)]


def test_markdown_has_a_row_per_ratio_and_a_column_per_codec():
    rows = [row("sz3", 50, 57.123, "SZ3"), row("sz3", 100, 48.8, "SZ3"), row("srnvtk-fvsrn", 100, 36.0, "srn"),
            {"codec": "zfp-rate", "label": "ZFP", "target_ratio": 500, "reached": False, "max_ratio_reached": 227.6}]
    volume = {"key": "v", "source": "test", "shape_zyx": [4, 4, 4], "min": 0.0, "max": 1.0}
    text = markdown({"volume": volume, "psnr_definition": "p", "ratio_definition": "r", "notes": notes_for(rows),
                     "rows": rows})
    assert "| target ratio | SZ3 | ZFP | srn |" in text
    assert "| 50 | 57.12 (50.0) |  |  |" in text
    assert "| 500 |  | - (max 228) |  |" in text
    failed = {"codec": "t", "target_ratio": 9, "ratio": 9.5, "encode_seconds": 2.0, "decode_failed": "x"}
    assert psnr_cell(failed).startswith("decode failed") and seconds_cell(failed) == "2 / failed"


def test_timings_say_each_machine_once():
    machine = {"machine": "x86_64", "cpu_count": 2, "omp_num_threads": "1", "torch_threads": 1, "device": "cpu"}
    rows = [{"family": "srnvtk", "environment": dict(machine, code=code, date=date)}
            for code, date in (("a1", "mon"), ("b2", "tue"))]
    rows.append({"family": "srnvtk", "environment": dict(machine, device="NVIDIA H200")})
    rows.append({"family": "classic", "environment": machine})
    lines = timing_context(rows)
    assert len(lines) == 3 and lines[0].startswith("Timings of the classic rows")
    assert sum("device cpu" in line for line in lines) == 1 and any("H200" in line for line in lines)


def test_bricks_cover_the_volume_once():
    shape = (10, 7, 13)
    count = np.zeros(shape, dtype=int)
    for s in brick_slices(shape, 4):
        count[s] += 1
        assert all(part.stop - part.start <= 4 for part in s)
    assert (count == 1).all()


def test_synthetic_field_is_deterministic_normalised_and_kolmogorov_like():
    a = turbulence_values((48, 48, 48), seed=3)
    assert a.dtype == np.float32 and np.array_equal(a, turbulence_values((48, 48, 48), seed=3))
    assert not np.array_equal(a, turbulence_values((48, 48, 48), seed=4))
    assert abs(float(a.mean())) < 1e-5 and abs(float(a.std()) - 1.0) < 1e-4
    power = np.abs(np.fft.fftn(a.astype(np.float64))) ** 2
    k = np.sqrt(sum(np.meshgrid(*[np.fft.fftfreq(48, 1 / 48) ** 2] * 3, indexing="ij")))
    shells = np.bincount(np.rint(k).astype(int).ravel(), power.ravel())
    ks = np.arange(2, 8)
    slope = np.polyfit(np.log(ks), np.log(shells[2:8]), 1)[0]
    assert -2.1 < slope < -1.4  # -5/3 in the inertial range, steepened a little by the dissipation cut-off


def test_sz3_at_a_target_ratio():
    pytest.importorskip("pysz")
    from benchmarks.rd.classic import run_codec
    from benchmarks.rd.codecs import classic_codecs
    from benchmarks.rd.volumes import BenchVolume
    from srnvtk.datasets import default_geometry
    from srnvtk.volume import Volume

    values = turbulence_values((32, 32, 32), seed=0)
    bench = BenchVolume("t", Volume(values, default_geometry((32, 32, 32))), "test")
    (result,) = run_codec(classic_codecs()["sz3"], bench, [20.0], log=lambda _: None)
    assert result["reached"] and 20.0 <= result["ratio"] and 15 < result["psnr_db"] < 80


def test_an_srnvtk_row_records_the_planned_and_the_final_model(tmp_path):
    """A row keeps the settings rate control planned and those the file ended with (growth, a trim or fewer
    code bits may change them), and its ratio counts the file it decoded."""
    from benchmarks.rd.srn import SRNSettings, srn_row
    from benchmarks.rd.volumes import BenchVolume
    from srnvtk.datasets import default_geometry
    from srnvtk.volume import Volume

    values = turbulence_values((32, 32, 32), seed=3).astype(np.float32)
    bench = BenchVolume("tiny", Volume(values, default_geometry(values.shape[::-1]), "v"), "test")
    row = srn_row(bench, "fvsrn", 8.0, SRNSettings(time_limit=5.0, steps=30, device="cpu", threads=1), tmp_path)
    assert row["model"]["architecture"] == row["final_model"]["architecture"] == "fvsrn"
    assert set(row["final_model"]) == set(row["model"])
    assert row["compressed_bytes"] == (tmp_path / "fvsrn_8.srn").stat().st_size
    assert row["ratio"] == pytest.approx(values.size * 4 / row["compressed_bytes"])
