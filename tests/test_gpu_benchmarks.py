"""The GPU benchmark scripts run end to end in their CPU smoke mode (the kernels in Triton's interpreter, training
on the CPU), so that the device script (benchmarks/gpu_check.sh) meets no error a CPU could have shown first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def smoke(script: str, out: Path, *options: str) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("TRITON_INTERPRET", None)  # the script chooses the interpreter itself
    subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke", "--out", str(out), *options],
                   check=True, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_decode_benchmark_smoke(tmp_path):
    pytest.importorskip("triton", reason="triton is not installed")
    summary = smoke("gpu_decode.py", tmp_path / "decode.json", "--archs", "fvsrn")
    methods = {row["method"] for row in summary["rows"]}
    assert {"triton kernel", "triton kernel + tables", "decode to host", "torch large-batch model(positions)",
            "baseline z-slice loop"} <= methods
    assert any(method.startswith("fused C kernel") or method.startswith("torch lattice") for method in methods)
    assert {row["precision"] for row in summary["rows"]} == {"fp32", "fp16"}
    for row in summary["rows"]:
        assert row["voxels"] > 0 and row["voxels_per_s"] > 0 and row["limit_fraction_tensor_cores"] > 0
    assert summary["models"]["fvsrn"]["mlp_flops_per_voxel"] == 8960


@pytest.mark.slow
def test_training_benchmark_smoke(tmp_path):
    summary = smoke("train_speed.py", tmp_path / "train.json")
    graphed, eager = summary["fixed_steps"]
    assert graphed["graphed"] and not eager["graphed"]
    assert graphed["psnr_db"] == eager["psnr_db"]  # on the CPU both runs are the trainer's loop
    assert summary["time_limited"][0]["ratio"] >= summary["target_ratio"]
    assert summary["speedup_steps_per_s"] > 0
