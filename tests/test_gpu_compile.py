"""The Triton decoders compile for a Hopper GPU (sm_90) with Triton's real compiler, on a machine without a GPU.

The interpreter (tests/test_gpu_kernels.py) checks what the kernels compute but accepts code the compiler may
refuse (inline assembly is not even run there); here benchmarks/gpu_compile.py compiles the variants a GPU decode
uses by default (fp16 products with the approximate sines) and reads ptxas's report and the disassembly: the
products are tensor-core instructions (HGMMA), each activation one special-function sine, and no value spills to
local memory (the reason for the decoders' tile and warp counts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_default_gpu_variants_compile_for_hopper_without_spills(tmp_path):
    pytest.importorskip("triton", reason="triton is not installed")
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               TRITON_CACHE_DIR=str(tmp_path / "triton"))
    env.pop("TRITON_INTERPRET", None)
    out = tmp_path / "compile.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_compile.py"), "--only", "fvsrn-fp16-approx",
                    "neurcomp-fp16-approx", "--out", str(out)], check=True, capture_output=True, text=True, cwd=REPO,
                   env=env, timeout=600)
    rows = {row["variant"]: row for row in json.loads(out.read_text())["rows"]}
    fvsrn, neurcomp = rows["fvsrn-fp16-approx"], rows["neurcomp-fp16-approx"]
    for row in (fvsrn, neurcomp):
        assert row["HGMMA"] > 0 and row["HMMA"] == 0  # Hopper's warpgroup products
        assert row["spill_load_bytes"] == 0 and row["spill_store_bytes"] == 0 and row["LDL"] == 0
        assert 0 < row["registers"] <= 255
    assert fvsrn["MUFU.COS"] > 0 and fvsrn["MUFU.SIN"] == 0  # Snake: sin^2 x from one cosine
    assert neurcomp["MUFU.SIN"] > 0
