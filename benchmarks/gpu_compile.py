"""Compile the Triton decoders for a GPU without one: compile time, registers, spills and instruction mix.

Triton's compiler runs on any machine; ptxas, nvdisasm and cuobjdump ship in its wheel. So what METHOD.md asks to
read before spending device time (the resource report, whether the products use the tensor cores, whether
values spill to local memory) is read here, for sm_90 (Hopper: the H100 and H200) by default. Per variant: compile
seconds; registers and spill bytes (ptxas -v); counts in the disassembly of tensor-core products (HGMMA on Hopper,
HMMA before), special-function sines (MUFU.SIN/COS), fused multiply-adds, and local-memory loads and stores
(LDL/STL: spills). Variants are the benchmark models' (decode_speed.py): fV-SRN with 16 channels and width 32,
3 hidden layers; Neurcomp of width 64 with 7 residual blocks.

    .venv/bin/python benchmarks/gpu_compile.py [--only fvsrn-fp16-approx ...] [--arch 90] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {  # name: (kernel, HALF, SIN)
    "fvsrn-fp16-approx": ("fvsrn", True, 2),
    "fvsrn-fp16-poly": ("fvsrn", True, 1),
    "fvsrn-fp32-poly": ("fvsrn", False, 1),
    "neurcomp-fp16-approx": ("neurcomp", True, 2),
    "neurcomp-fp32-poly": ("neurcomp", False, 1),
}
POINTERS = {
    "fvsrn": {"grid_ptr": "op", "grid_weight_ptr": "op", "weights_ptr": "op", "biases_ptr": "fp32",
              "head_ptr": "fp32", "x_t_ptr": "fp32", "y_t_ptr": "fp32", "z_t_ptr": "fp32", "x_lo_ptr": "i32",
              "x_hi_ptr": "i32", "y_lo_ptr": "i32", "y_hi_ptr": "i32", "z_lo_ptr": "i32", "z_hi_ptr": "i32",
              "table_x_ptr": "fp32", "table_y_ptr": "fp32", "table_z_ptr": "fp32"},
    "neurcomp": {"xs_ptr": "fp32", "ys_ptr": "fp32", "zs_ptr": "fp32", "first_ptr": "fp32", "weights_ptr": "op",
                 "biases_ptr": "fp32", "head_ptr": "fp32"},
}
CONSTANTS = {"fvsrn": {"CP": 16, "WP": 32, "HIDDEN": 3}, "neurcomp": {"WP": 64, "BLOCKS": 7, "RESIDUAL": True}}
FLOATS = ("head_bias", "scale", "offset", "low", "high")
COUNTED = ("HGMMA", "HMMA", "MUFU.SIN", "MUFU.COS", "FFMA", "LDL", "STL")


def compile_variant(name: str, arch: int, num_warps: int | None = None, block: int | None = None) -> dict:
    """One variant compiled for sm_<arch>, with the decoders' tile and warps unless given."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from srnvtk.gpu import decoders, kernels

    kernel_name, half, sin = VARIANTS[name]
    warps, block = num_warps or decoders.NUM_WARPS, block or decoders.BLOCK[half]
    kernel = getattr(kernels, f"{kernel_name}_lattice_kernel")
    constants = {**CONSTANTS[kernel_name], "BLOCK": block, "HALF": half, "SIN": sin, "ROUND": True}
    operand = "fp16" if half else "fp32"
    signature = {}
    for argument in kernel.arg_names:
        if argument in constants:
            signature[argument] = "constexpr"
        elif argument == "out_ptr":
            signature[argument] = "*u8"
        elif argument in POINTERS[kernel_name]:
            kind = POINTERS[kernel_name][argument]
            signature[argument] = "*" + (operand if kind == "op" else kind)
        else:
            signature[argument] = "fp32" if argument in FLOATS else "i32"
    start = time.perf_counter()
    compiled = triton.compile(ASTSource(kernel, signature, constants), target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": warps})
    row = {"variant": name, "num_warps": warps, "block": block, "compile_s": round(time.perf_counter() - start, 2)}
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.TemporaryDirectory() as folder:
        ptx, cubin = Path(folder) / "kernel.ptx", Path(folder) / "kernel.cubin"
        ptx.write_text(compiled.asm["ptx"])
        target = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
        text = ""
        for ptxas in ("ptxas-blackwell", "ptxas"):  # the wheel's two; the one that reads this PTX version reports
            report = subprocess.run([str(tools / ptxas), "-v", f"--gpu-name={target}", str(ptx), "-o",
                                     str(Path(folder) / "again.cubin")], capture_output=True, text=True)
            if report.returncode == 0:
                text = report.stdout + report.stderr
                break
        for key, pattern in (("registers", r"Used (\d+) registers"), ("spill_store_bytes", r"(\d+) bytes spill stores"),
                             ("spill_load_bytes", r"(\d+) bytes spill loads")):
            found = re.search(pattern, text)
            row[key] = int(found.group(1)) if found else None
        cubin.write_bytes(compiled.asm["cubin"])
        sass = subprocess.run([str(tools / "nvdisasm"), str(cubin)], capture_output=True, text=True).stdout
    row.update({op: len(re.findall(rf"\b{re.escape(op)}\b", sass)) for op in COUNTED})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: Hopper)")
    parser.add_argument("--num-warps", type=int, default=None, help="instead of the decoders' default")
    parser.add_argument("--block", type=int, default=None, help="voxels per tile, instead of the decoders' default")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        sys.exit("unset TRITON_INTERPRET: the interpreter compiles nothing")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # multiply-adds fused (triton's default until 3.10)
    rows = []
    for name in args.only:
        row = compile_variant(name, args.arch, args.num_warps, args.block)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        Path(args.out).write_text(json.dumps({"arch": args.arch, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
