"""Decode throughput and peak memory, against a straightforward baseline and the hardware's matmul rate.

Models (random weights: throughput does not depend on them) describing a 256^3 uint8 volume: --arch fvsrn,
a 16-channel fV-SRN grid of 32^3 with a 4x32 MLP; --arch neurcomp, a residual Neurcomp of width 64 and 7 blocks
(the paper's default shape). Cases: the full grid, stride 2 and 4, a 128^3 sub-extent and a 2x upsampled grid
(512^3). Each case runs in its own process so its peak memory (ru_maxrss) is its own; its time is the median
of --repeats decodes (default 3: the machine may be shared). The memory bound is the output array plus 256 MB
above the process's footprint before decoding.
Baseline: a plain loop over z-slices, each slice's positions through model(positions).
On the CPU both architectures decode with their fused C kernel (srnvtk.native) when a compiler works; the full
grid is also decoded with it switched off (SRNVTK_NATIVE=0), the torch path a machine without a compiler gets.
The limit: MLP multiply-adds per voxel x 2 / the device's measured fp32 matmul rate (best of three rounds of a
2048^2 product). (The lattice path does
the first layer per axis, not per voxel, so it can exceed this nominal limit.)

    .venv/bin/python benchmarks/decode_speed.py [--arch fvsrn|neurcomp] [--device cpu|cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from srnvtk.config import FVSRNConfig, NeurcompConfig
from srnvtk.decode import decode, evaluation_path, resampled_geometry, strided_geometry
from srnvtk.fileformat import SRNFile
from srnvtk.models import build_model
from srnvtk.volume import Geometry

HERE = Path(__file__).resolve().parent
SOURCE = Geometry((0, 255, 0, 255, 0, 255))
CASES = {
    "full 256^3": lambda: SOURCE,
    "stride 2": lambda: strided_geometry(SOURCE, (2, 2, 2)),
    "stride 4": lambda: strided_geometry(SOURCE, (4, 4, 4)),
    "sub-extent 128^3": lambda: strided_geometry(SOURCE, (1, 1, 1), (64, 191, 64, 191, 64, 191)),
    "2x upsampled 512^3": lambda: resampled_geometry(SOURCE, (512, 512, 512)),
}


def benchmark_model(arch: str = "fvsrn") -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "neurcomp":
        return build_model(NeurcompConfig(width=64, blocks=7), SOURCE).eval()
    model = build_model(FVSRNConfig(grid_channels=16, grid_resolution=32, mlp_width=32, mlp_layers=4), SOURCE)
    with torch.no_grad():
        model.grid.normal_()
    return model.eval()


def mlp_flops_per_voxel(model: torch.nn.Module) -> int:
    """Multiply-adds x 2 of every linear layer a voxel passes through (fV-SRN: its MLP; Neurcomp: all)."""
    layers = model.mlp if hasattr(model, "mlp") else model.modules()
    return 2 * sum(m.in_features * m.out_features for m in layers if isinstance(m, torch.nn.Linear))


def matmul_rate(device: torch.device, n: int = 2048, repeats: int = 5, rounds: int = 3) -> float:
    """Measured fp32 FLOP/s of a square matrix product on this device: the best of a few rounds, since another
    tenant's load can only slow a round down."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = 0.0
    for _ in range(rounds):
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_case(name: str, device: str, baseline: bool, precision: str, arch: str, repeats: int) -> dict:
    """One case in this process: voxels/s (median of the repeats) and peak memory above the pre-decode
    footprint."""
    model = benchmark_model(arch)
    output = CASES[name]()
    torch_device = torch.device("cuda" if device == "cuda" else "cpu")
    model.to(torch_device)
    path = evaluation_path(model)
    decode(SRNFile.of_model(model, SOURCE, (0.0, 255.0), "uint8"), strided_geometry(SOURCE, (16, 16, 16)),
           device=device)  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, values = [], None
    for _ in range(repeats):
        values = None  # the previous repeat's output is not part of this one's memory
        start = time.perf_counter()
        if baseline:
            values = baseline_decode(model, output, torch_device)
        else:
            values = decode(SRNFile.of_model(model, SOURCE, (0.0, 255.0), "uint8"), output, device=device,
                            precision=precision)
        _sync(torch_device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    row = {
        "case": name, "method": "baseline z-slice loop" if baseline else f"srnvtk decode ({precision}, {path})",
        "device": torch_device.type, "voxels": int(values.size), "seconds": seconds, "seconds_each": times,
        "voxels_per_s": values.size / seconds, "output_bytes": int(values.nbytes),
        "peak_rss_above_start_bytes": int(max(0, peak - before)),
        "bound_bytes": int(values.nbytes + 256 * 2**20),
    }
    if torch_device.type == "cuda":
        row["cuda_max_memory_allocated"] = int(torch.cuda.max_memory_allocated())
    return row


@torch.inference_mode()
def baseline_decode(model: torch.nn.Module, output: Geometry, device: torch.device) -> np.ndarray:
    """The straightforward way: every z-slice's positions through the model, then to uint8."""
    nx, ny, nz = output.dimensions
    axes = [torch.linspace(-1, 1, n, device=device) for n in (nx, ny, nz)]
    result = np.empty((nz, ny, nx), dtype=np.uint8)
    yy, xx = torch.meshgrid(axes[1], axes[0], indexing="ij")
    for k in range(nz):
        positions = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.full_like(xx.reshape(-1), axes[2][k])], 1)
        values = model(positions) * 255.0
        result[k] = values.clamp(0, 255).round().to(torch.uint8).reshape(ny, nx).cpu().numpy()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--arch", default="fvsrn", choices=("fvsrn", "neurcomp"))
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"), help="fp16 applies on CUDA only")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed decodes per case, median reported (the machine may be shared)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.device, args.baseline, args.precision, args.arch, args.repeats)))
        return
    device = torch.device(args.device)
    model = benchmark_model(args.arch)
    flops = mlp_flops_per_voxel(model)
    rate = matmul_rate(device)
    rows = []
    runs = [("full 256^3", True, False)] + [(name, False, False) for name in CASES]
    if args.device == "cpu":
        runs.append(("full 256^3", False, True))
    for name, baseline, torch_only in runs:
        cmd = [sys.executable, __file__, "--device", args.device, "--precision", args.precision, "--arch", args.arch,
               "--case", name, "--repeats", str(args.repeats)]
        cmd += ["--baseline"] if baseline else []
        env = dict(os.environ, SRNVTK_NATIVE="0") if torch_only else None
        result = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        row = json.loads(result.stdout.splitlines()[-1])
        row["limit_voxels_per_s"] = rate / flops
        row["fraction_of_limit"] = row["voxels_per_s"] / row["limit_voxels_per_s"]
        print(json.dumps(row), flush=True)
        rows.append(row)
    summary = {
        "arch": args.arch, "device": args.device, "precision": args.precision, "torch_threads": torch.get_num_threads(),
        "mlp_flops_per_voxel": flops,
        "matmul_flops_per_s": rate, "rows": rows,
        "speedup_full_vs_baseline": rows[1]["voxels_per_s"] / rows[0]["voxels_per_s"],
        "speedup_full_torch_path_vs_baseline": (rows[-1]["voxels_per_s"] / rows[0]["voxels_per_s"]
                                                if len(rows) > len(CASES) + 1 else None),
    }
    suffix = "" if args.arch == "fvsrn" else f"_{args.arch}"
    out = Path(args.out or HERE / "results" / f"decode_speed_{args.device}_{args.precision}{suffix}.json")
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"speedup (full grid) vs baseline: {summary['speedup_full_vs_baseline']:.2f}x -> {out}")


if __name__ == "__main__":
    main()
