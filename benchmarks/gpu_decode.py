"""GPU decode throughput: the fused Triton kernels against the torch ways and the fused CPU kernel, in one file.

Models: decode_speed.py's (random weights; throughput does not depend on them): the fV-SRN of a 16-channel 32^3
grid and a 4 x 32 MLP, and the residual Neurcomp of width 64 and 7 blocks, describing a 256^3 uint8 volume.
Rows (voxels/s, median of the repeats):
- `triton kernel`: srnvtk.gpu's kernel writing the uint8 volume on the GPU (the lattice's tables made once per
  case; each timed run is enough back-to-back launches for a millisecond, timed with CUDA events), for the cases
  of decode_speed.py (full 256^3, stride 2 and 4, a 128^3 sub-extent, 2x upsampled 512^3), in fp32 (polynomial
  sine) and fp16 (the GPU's approximate sines, and on the full grid the polynomial);
- `triton kernel + tables`: the same with the per-decode tables made in every run;
- `decode to host`: srnvtk.decode.decode end to end, the uint8 array on the host (full and 512^3);
- `torch large-batch`: model(positions) over 2^22-point batches on the GPU, fp32 and fp16 (autocast), values kept
  on the GPU: the plain way a GPU decodes;
- `torch lattice (SRNVTK_TRITON=0)` and `baseline z-slice loop`: what decode did on a GPU before the kernels;
- `fused C kernel (CPU)`: decode on this machine's CPU cores (srnvtk/native), for the same file;
- for the fV-SRN, a sweep of the kernel's tile size, warps and programs per multiprocessor (full grid, fp16).
Limits: MLP FLOPs per voxel (decode_speed.mlp_flops_per_voxel) over the measured rate of a large fp16 matrix
product (tensor cores) and of an fp32 one (no tf32); each row states its fraction of both.

    python3 benchmarks/gpu_decode.py [--out benchmarks/results/gpu_decode_h200.json]   # on a GPU machine
    .venv/bin/python benchmarks/gpu_decode.py --smoke    # anywhere: tiny lattices in Triton's CPU interpreter
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from srnvtk import gpu
from srnvtk.decode import decode, evaluation_path, resampled_geometry, world_axis
from srnvtk.fileformat import SRNFile
from srnvtk.sampling import normalized_axis
from srnvtk.volume import Geometry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_speed import CASES, SOURCE, baseline_decode, benchmark_model, mlp_flops_per_voxel  # noqa: E402
from results_io import device_slug, write_results  # noqa: E402

SMOKE_SOURCE = Geometry((0, 9, 0, 8, 0, 6))
SMOKE_CASES = {
    "full 10x9x7": lambda: SMOKE_SOURCE,
    "upsampled 13x11x3": lambda: resampled_geometry(SMOKE_SOURCE, (13, 11, 3)),
}
# kernel variants: (precision, sine) per case; the full grid also gets the others
VARIANTS = [("fp32", "poly"), ("fp16", "approx")]
# Not Triton's own sine in fp32: its slow path's local arrays spill (ptxas: thousands of local loads) and its
# compilation takes half a minute (benchmarks/gpu_compile.py); the tests check it
FULL_ONLY_VARIANTS = [("fp16", "poly")]
# (voxels per tile, warps, programs per multiprocessor) beside the fp16 defaults (128, 8, 8)
SWEEP = [(64, 4, 8), (128, 4, 8), (256, 8, 8), (64, 8, 8), (128, 8, 2), (128, 8, 16)]
TORCH_BATCH = 1 << 22


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny lattices on the CPU in Triton's interpreter")
    parser.add_argument("--archs", nargs="*", default=["fvsrn", "neurcomp"], choices=("fvsrn", "neurcomp"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--out", default=None, help="JSON results (default: results/gpu_decode_<gpu>.json; "
                        "none in smoke mode)")
    args = parser.parse_args()
    if args.smoke:
        if not gpu.use_interpreter():
            sys.exit(f"no Triton interpreter: {gpu.unavailable_reason() or 'triton was imported for a GPU'}")
        device, source, cases, repeats = torch.device("cpu"), SMOKE_SOURCE, SMOKE_CASES, 1
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device (use --smoke to check the script on the CPU)")
        device, source, cases, repeats = torch.device("cuda"), SOURCE, CASES, args.repeats
    if gpu.load_kernels() is None:
        sys.exit(f"triton unavailable: {gpu.unavailable_reason()}")
    rates = {"fp16": matmul_rate(device, torch.float16, args.smoke), "fp32": matmul_rate(device, torch.float32,
                                                                                         args.smoke)}
    summary = {"machine": machine(device), "matmul_flops_per_s": rates, "smoke": args.smoke, "models": {}}
    rows = []
    for arch in args.archs:
        flops = mlp_flops_per_voxel(benchmark_model(arch))
        summary["models"][arch] = {"mlp_flops_per_voxel": flops,
                                   "limit_voxels_per_s": {k: rate / flops for k, rate in rates.items()}}
        for row in arch_rows(arch, device, source, cases, repeats, sweep=not (args.no_sweep or args.smoke)):
            row.update(model=arch, limit_fraction_tensor_cores=row["voxels_per_s"] * flops / rates["fp16"],
                       limit_fraction_fp32=row["voxels_per_s"] * flops / rates["fp32"])
            print(json.dumps(row), flush=True)
            rows.append(row)
    summary["rows"] = rows
    summary["best"] = best_rows(rows)
    print_table(rows)
    out = args.out or (None if args.smoke else Path(__file__).resolve().parent / "results" /
                       f"gpu_decode_{device_slug(summary['machine']['device'])}.json")
    if out is not None:
        write_results(out, summary)


def arch_rows(arch: str, device: torch.device, source: Geometry, cases: dict, repeats: int, sweep: bool):
    model = benchmark_model(arch).to(device)
    full_name = next(iter(cases))
    for name, make in cases.items():
        output = make()
        axes = lattice_axes(source, output, device)
        variants = VARIANTS + (FULL_ONLY_VARIANTS if name == full_name else [])
        for precision, sin in variants:
            if sin == "approx" and gpu.interpreting():  # inline assembly: GPU only
                continue
            evaluator = gpu.lattice_evaluator(model, torch.float16 if precision == "fp16" else torch.float32, sin)
            yield kernel_row(evaluator, axes, name, precision, sin, repeats)
    output = cases[full_name]()
    axes = lattice_axes(source, output, device)
    evaluator = gpu.lattice_evaluator(model, torch.float16, None)
    yield kernel_row(evaluator, axes, full_name, "fp16", evaluator.sin, repeats, with_tables=True)
    if sweep and arch == "fvsrn":  # each variant compiles for seconds: the model of the target only
        for block, warps, programs in SWEEP:
            evaluator = gpu.lattice_evaluator(model, torch.float16, None)
            evaluator.block, evaluator.num_warps, evaluator.programs_per_sm = block, warps, programs
            yield kernel_row(evaluator, axes, full_name, "fp16", evaluator.sin, repeats, sweep=True)
    host_cases = [full_name] + [n for n in cases if "upsampled" in n]
    for name in host_cases:
        for precision in ("fp32", "fp16"):
            yield host_row(model, source, cases[name](), name, precision, device, repeats)
    for precision in ("fp32", "fp16"):
        yield torch_batch_row(model, axes, full_name, precision, device, repeats)
    os.environ["SRNVTK_TRITON"] = "0"
    try:
        yield host_row(model, source, output, full_name, "fp32", device, max(1, repeats // 3),
                       method="torch lattice (SRNVTK_TRITON=0)")
    finally:
        del os.environ["SRNVTK_TRITON"]
    yield timed_row("baseline z-slice loop", full_name, "fp32", output.num_points,
                    timings(lambda: baseline_decode(model, output, device), device, max(1, repeats // 3)))
    cpu_model = benchmark_model(arch)
    yield host_row(cpu_model, source, output, full_name, "fp32", torch.device("cpu"), max(1, repeats // 3),
                   method=f"{evaluation_path(cpu_model)} (CPU, {torch.get_num_threads()} threads)")


def lattice_axes(source: Geometry, output: Geometry, device: torch.device) -> list[torch.Tensor]:
    return [torch.from_numpy(normalized_axis(source, a, world_axis(output, a))).to(device) for a in range(3)]


def kernel_row(evaluator, axes, name, precision, sin, repeats, with_tables=False, sweep=False) -> dict:
    xs, ys, zs = axes
    out = torch.empty((len(zs), len(ys), len(xs)), dtype=torch.uint8, device=evaluator.device)
    prepared = evaluator.prepare(xs, ys, zs)
    if with_tables:
        def run() -> None:
            evaluator.fill(xs, ys, zs, out, 255.0, 0.0)
    else:
        def run() -> None:
            evaluator.launch(prepared, out, 255.0, 0.0)
    seconds = timings(run, evaluator.device, repeats, back_to_back=True)
    method = "triton kernel" + (" + tables" if with_tables else "") + (" (sweep)" if sweep else "")
    row = timed_row(method, name, precision, out.numel(), seconds)
    row.update(sine=evaluator.sin, block=evaluator.block, num_warps=evaluator.num_warps,
               programs_per_sm=evaluator.programs_per_sm)
    return row


def host_row(model, source, output, name, precision, device, repeats, method="decode to host") -> dict:
    model = model.to(device)

    def run():
        return decode(SRNFile.of_model(model, source, (0.0, 255.0), "uint8"), output, device=device.type,
                      precision=precision)

    values = run()  # warm-up: compilation, the fp16 probe
    row = timed_row(method, name, precision, values.size, timings(run, device, repeats))
    row["path"] = evaluation_path(model)
    return row


@torch.inference_mode()
def torch_batch_row(model, axes, name, precision, device, repeats) -> dict:
    xs, ys, zs = axes
    out = torch.empty((len(zs), len(ys), len(xs)), device=device)
    flat = out.view(-1)
    plane = len(xs) * len(ys)

    def run() -> None:
        for start in range(0, flat.numel(), TORCH_BATCH):
            index = torch.arange(start, min(flat.numel(), start + TORCH_BATCH), device=device)
            positions = torch.stack([xs[index % len(xs)], ys[(index // len(xs)) % len(ys)], zs[index // plane]], 1)
            with torch.autocast(device.type, dtype=torch.float16, enabled=precision == "fp16" and
                                device.type == "cuda"):
                flat[index[0]:index[-1] + 1] = model(positions).float()

    return timed_row("torch large-batch model(positions)", name, precision, out.numel(),
                     timings(run, device, repeats))


def timed_row(method: str, name: str, precision: str, voxels: int, seconds: list[float]) -> dict:
    median = statistics.median(seconds)
    return {"case": name, "method": method, "precision": precision, "voxels": voxels, "seconds": median,
            "seconds_each": seconds, "voxels_per_s": voxels / median}


def timings(run: Callable[[], object], device: torch.device, repeats: int, back_to_back: bool = False) -> list[float]:
    """Seconds per run (after a warm-up run): CUDA events on a GPU, the clock on the CPU (no warm-up: smoke runs).
    back_to_back: each timed sample is as many runs in a row as fill a millisecond (short launches are not timed
    alone)."""
    if device.type != "cuda":
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            samples.append(time.perf_counter() - start)
        return samples
    run()
    torch.cuda.synchronize()
    count = 1
    if back_to_back:
        first = _event_seconds(run, 1)
        count = max(1, min(1000, int(1e-3 / max(first, 1e-7))))
    return [_event_seconds(run, count) / count for _ in range(repeats)]


def _event_seconds(run: Callable[[], object], count: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(count):
        run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def matmul_rate(device: torch.device, dtype: torch.dtype, smoke: bool) -> float:
    """FLOP/s of a large square product in this dtype: best of three (fp32 without tf32: torch's default)."""
    n = 256 if smoke else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        seconds = min(timings(lambda: a @ b, device, 3, back_to_back=True))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * n**3 / seconds


def machine(device: torch.device) -> dict:
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (interpreter)",
            "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(multiprocessors=properties.multi_processor_count, cuda=torch.version.cuda,
                    memory_bytes=properties.total_memory)
    return info


def best_rows(rows: list[dict]) -> dict:
    """Per model: the fastest kernel row on the full grid in each precision, and the torch and CPU rows."""
    best: dict = {}
    for row in rows:
        if row["case"] not in (next(iter(CASES)), next(iter(SMOKE_CASES))):
            continue
        key = f"{row['model']} {row['method'].split(' (')[0]} {row['precision']}"
        if key not in best or row["voxels_per_s"] > best[key]["voxels_per_s"]:
            best[key] = {k: row.get(k) for k in ("voxels_per_s", "limit_fraction_tensor_cores", "sine", "block",
                                                 "num_warps", "programs_per_sm")}
    return best


def print_table(rows: list[dict]) -> None:
    print(f"{'model':9} {'case':20} {'method':44} {'prec':5} {'voxels/s':>10} {'of TC':>7}")
    for row in rows:
        method = row["method"] + (f" [{row['sine']}, {row['block']}x{row['num_warps']}w]" if "sine" in row else "")
        print(f"{row['model']:9} {row['case'][:20]:20} {method[:44]:44} {row['precision']:5} "
              f"{row['voxels_per_s']:10.3e} {row['limit_fraction_tensor_cores']:7.2%}")



if __name__ == "__main__":
    main()
