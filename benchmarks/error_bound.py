"""Ratio at equal maximum error (issue 16): srnvtk's error-bounded designs beside SZ3, ZFP and SPERR, one run.

For each volume and each bound (a fraction of the value range) every design is one row:
- classic: SZ3 (pysz, absolute bound), SZ3 with the integer-aware bound floor(E) + 0.499 and rounding (integer
  volumes: what SZ3 gives when told the data are integers), ZFP (accuracy mode), SPERR (its point-wise error
  mode through hdf5plugin, `absolute`); each decoded and its maximum error measured;
- srnvtk residual only (no network): the library's coders (quant: quantised codes, Lorenzo, LZMA; sz3);
- srnvtk network + residual, design (a): networks trained once per size (limited by time, one thread) and
  their residual coded at every bound by each coder, through the library's own code (srnvtk.bounded), for
  an L1-trained network (what the library trains) and an MSE-trained one (the naive combination);
- design (b), SZ3 first: SZ3 at the bound, then a small network trained (MSE) on SZ3's error; its correction is
  reverted wherever it would break the bound (a bitmap of those voxels, LZMA-coded, is counted).
Bytes are whole .srn files for srnvtk (header and container included), the streams for the classic codecs.
Every srnvtk row is decoded by the reader's code path and its maximum error checked against the bound.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/error_bound.py --volumes rm turbulence --time-limit 240
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.rd.codecs import sz3_decode, sz3_encode, zfp_decode, zfp_encode  # noqa: E402
from benchmarks.rd.rows import environment  # noqa: E402
from benchmarks.rd.volumes import load_volume  # noqa: E402
from srnvtk.bounded import network_candidates, residual_only, train_for_bound  # noqa: E402
from srnvtk.config import EncodeConfig, EncoderSettings, TrainConfig  # noqa: E402
from srnvtk.decode import decode  # noqa: E402
from srnvtk.encoder import source_info  # noqa: E402
from srnvtk.fileformat import SRNFile  # noqa: E402
from srnvtk.metrics import psnr  # noqa: E402
from srnvtk.volume import Volume  # noqa: E402

BOUNDS = (1e-1, 3e-2, 1e-2, 1e-3)


def sperr_absolute(values: np.ndarray, bound: float) -> tuple[int, np.ndarray, float, float]:
    import h5py
    import hdf5plugin

    buffer = io.BytesIO()
    start = time.perf_counter()
    with h5py.File(buffer, "w") as f:
        dataset = f.create_dataset("v", data=values, chunks=values.shape, **hdf5plugin.Sperr(absolute=bound))
        stored = dataset.id.get_storage_size()
    encode = time.perf_counter() - start
    start = time.perf_counter()
    with h5py.File(io.BytesIO(buffer.getvalue()), "r") as f:
        decoded = f["v"][...]
    return int(stored), decoded, encode, time.perf_counter() - start


def classic_rows(values: np.ndarray, rel: float, value_range: float, integer: bool) -> list[dict]:
    bound = rel * value_range
    original = values.astype(np.float64)
    rows = []

    def add(design: str, nbytes: int, decoded: np.ndarray, enc: float, dec: float, **extra) -> None:
        decoded = np.asarray(decoded, dtype=np.float64).reshape(values.shape)
        rows.append({"design": design, "family": "classic", "rel_bound": rel, "bound": bound, "file_bytes": nbytes,
                     "ratio": 4 * values.size / nbytes, "psnr_db": psnr(original, decoded, value_range),
                     "max_error_over_bound": float(np.abs(decoded - original).max() / bound),
                     "encode_seconds": enc, "decode_seconds": dec, **extra})

    for design, codec_bound, rounding in (("SZ3", bound, False), ("SZ3, integer-aware bound", None, True)):
        if rounding and not integer:
            continue
        codec_bound = math.floor(bound) + 0.499 if rounding else codec_bound
        start = time.perf_counter()
        encoded = sz3_encode(values, codec_bound)
        enc = time.perf_counter() - start
        start = time.perf_counter()
        decoded = sz3_decode(encoded, values.shape)
        dec = time.perf_counter() - start
        add(design, encoded.nbytes, np.round(decoded) if rounding else decoded, enc, dec)
    start = time.perf_counter()
    encoded = zfp_encode(values, bound, mode="accuracy")
    enc = time.perf_counter() - start
    start = time.perf_counter()
    decoded = zfp_decode(encoded, values.shape)
    add("ZFP (accuracy)", encoded.nbytes, decoded, enc, time.perf_counter() - start)
    nbytes, decoded, enc, dec = sperr_absolute(values, bound)
    add("SPERR (point-wise error)", nbytes, decoded, enc, dec)
    return rows


def srn_row(volume: Volume, candidate, rel: float, value_range: float, design: str, extra: dict) -> dict:
    """Decode the candidate's file as a reader does; the row with its bytes, quality and timings."""
    source = source_info(volume)
    srn = SRNFile(candidate.model, candidate.config, source, bound=candidate.code)
    start = time.perf_counter()
    decoded = decode(srn, device="cpu")
    total = time.perf_counter() - start
    network_seconds = 0.0
    if candidate.model is not None:
        start = time.perf_counter()
        decode(SRNFile(candidate.model, candidate.config, source), device="cpu")
        network_seconds = time.perf_counter() - start
    original = volume.values.astype(np.float64)
    worst = float(np.abs(decoded.astype(np.float64) - original).max())
    if worst > candidate.code.max_error:
        raise AssertionError(f"{design}: max error {worst} beyond the bound {candidate.code.max_error}")
    residual = sum(candidate.code.chunk_bytes)
    return {"design": design, "family": "srnvtk", "rel_bound": rel, "bound": candidate.code.max_error,
            "coder": candidate.code.coder, "file_bytes": candidate.file_bytes,
            "ratio": 4 * volume.values.size / candidate.file_bytes, "network_bytes": candidate.network_bytes,
            "residual_bytes": residual, "psnr_db": psnr(original, decoded, value_range),
            "max_error_over_bound": worst / candidate.code.max_error if candidate.code.max_error else 0.0,
            "residual_encode_seconds": candidate.residual_seconds, "network_decode_seconds": network_seconds,
            "residual_decode_seconds": max(total - network_seconds, 0.0), "decode_seconds": total,
            "exceptions": None, **extra}


def design_b(volume: Volume, rel: float, value_range: float, integer: bool, settings: EncoderSettings,
             share: float) -> dict:
    """SZ3 first, then a network trained on SZ3's error, reverted where it would break the bound."""
    values = volume.values.astype(np.float32)
    bound = rel * value_range
    sz_bound = math.floor(bound) + 0.499 if integer else bound
    encoded = sz3_encode(values, sz_bound)
    base = np.asarray(sz3_decode(encoded, values.shape), dtype=np.float64)
    if integer:
        base = np.round(base)
    original = volume.values.astype(np.float64)
    error = Volume((original - base).astype(np.float32), volume.geometry, volume.name)
    net_settings = EncoderSettings(encode=EncodeConfig(), train=settings.train)
    network = train_for_bound(error, net_settings, int(share * encoded.nbytes), loss="mse")
    corrected = base + network.prediction
    if integer:
        corrected = np.round(corrected)
    bad = np.abs(corrected - original) > bound
    final = np.where(bad, base, corrected)
    mask_bytes = len(lzma.compress(np.packbits(bad).tobytes(), preset=9))
    total = encoded.nbytes + network.network_bytes + mask_bytes
    return {"design": "b: SZ3, then a correcting network (reverted where it breaks the bound)", "family": "srnvtk",
            "rel_bound": rel, "bound": bound, "file_bytes": total, "ratio": 4 * values.size / total,
            "network_bytes": network.network_bytes, "sz3_bytes": encoded.nbytes, "revert_mask_bytes": mask_bytes,
            "reverted_fraction": float(bad.mean()), "psnr_db": psnr(original, final, value_range),
            "psnr_sz3_db": psnr(original, base, value_range),
            "max_error_over_bound": float(np.abs(final - original).max() / bound), **network.info}


def run_volume(name: str, args: argparse.Namespace) -> None:
    bench = load_volume(name, crop=args.crop)
    volume = bench.volume
    integer = name == "rm"  # the shared volume is uint8: srnvtk compresses it as uint8 (its reader decodes uint8)
    if integer:
        volume = Volume(volume.values.astype(np.uint8), volume.geometry, volume.name)
    values = bench.volume.values
    value_range = float(values.max() - values.min())
    out = Path(args.out_dir) / f"error_bound_{bench.key}.json"
    data = {"volume": bench.describe(), "srnvtk_input_dtype": volume.dtype, "environment": environment(),
            "time_limit": args.time_limit, "network_ratios": args.network_ratios, "rows": []}
    done = set()
    if args.resume and out.exists():  # keep the rows that need no network (classic codecs, residual only)
        data["rows"] = [r for r in json.loads(out.read_text())["rows"]
                        if r["family"] == "classic" or r["design"].startswith("c:")]
        done = {r["rel_bound"] for r in data["rows"]}

    def add(row: dict) -> None:
        data["rows"].append(row)
        out.write_text(json.dumps(data, indent=1, default=float) + "\n")
        print(f"{bench.key} {row['rel_bound']:g} {row['design']}{' ' + row.get('coder', '')}: "
              f"ratio {row['ratio']:.1f} PSNR {row['psnr_db']:.2f} max/E {row['max_error_over_bound']:.3f}",
              flush=True)

    for rel in args.bounds:
        if rel in done:
            continue
        for row in classic_rows(values, rel, value_range, integer):
            add(row)
        bound = rel * value_range
        for candidate in residual_only(volume, source_info(volume), bound, rel):
            add(srn_row(volume, candidate, rel, value_range, "c: residual only (no network)", {}))
    train_config = TrainConfig(steps=10**7, time_limit=args.time_limit, threads=1, device="cpu")
    settings = EncoderSettings(encode=EncodeConfig(), train=train_config)
    plans = [(ratio, "l1") for ratio in args.network_ratios] + [(ratio, "mse") for ratio in args.mse_ratios]
    for ratio, loss in plans:
        network = train_for_bound(volume, settings, int(4 * volume.values.size / ratio), loss=loss)
        described = {"network_ratio": ratio, "loss": loss, "network": network.model.config.grid_resolution,
                     "train_seconds": network.info["train_seconds"], "steps": network.info["steps"]}
        print(f"  network ratio {ratio} ({loss}): {network.info['steps']} steps, {network.network_bytes} bytes",
              flush=True)
        for rel in args.bounds:
            for candidate in network_candidates(volume, network, rel * value_range, rel, args.network_coders):
                design = f"a: network ({loss}, ratio {ratio:g} alone) + residual"
                add(srn_row(volume, candidate, rel, value_range, design, described))
    for rel in args.design_b_bounds:
        add(design_b(volume, rel, value_range, integer, settings, args.design_b_share))
    data["finished"] = environment()["date"]
    out.write_text(json.dumps(data, indent=1, default=float) + "\n")


def label(row: dict) -> str:
    """A row's design and split, short enough for a plot label and a table cell."""
    if row["family"] == "classic":
        return row["design"]
    if row["design"].startswith("c:"):
        return f"srnvtk residual only ({row['coder']})"
    if row["design"].startswith("b:"):
        return "srnvtk b: SZ3 + correcting network"
    return f"srnvtk a: {row['loss']} network r{row['network_ratio']:g} + {row['coder']}"


def markdown(data: dict) -> str:
    rows = data["rows"]
    bounds = sorted({r["rel_bound"] for r in rows}, reverse=True)
    labels = list(dict.fromkeys(label(r) for r in rows))
    cell = {(label(r), r["rel_bound"]): r for r in rows}
    volume = data["volume"]
    lines = [f"# Ratio at equal maximum error: {volume['key']}", "",
             f"Volume: {volume['source']}, shape (z, y, x) {tuple(volume['shape_zyx'])}; srnvtk compresses it as "
             f"{data['srnvtk_input_dtype']}. Ratio = float32 bytes / bytes stored (whole .srn files for srnvtk). "
             f"Networks: {data['time_limit']:g} s of training each, one thread. Bounds are fractions of the value "
             "range; every row's maximum error was measured on the decoded volume.", "",
             "## Ratio (PSNR dB) at each bound", "",
             "| design | " + " | ".join(f"{b:g}" for b in bounds) + " |", "|---|" + "---|" * len(bounds)]
    for name in labels:
        cells = []
        for b in bounds:
            r = cell.get((name, b))
            cells.append("" if r is None else f"{r['ratio']:.1f} ({r['psnr_db']:.1f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## srnvtk splits and timings (seconds)", "",
              "| bound | design | network bytes | residual bytes | file bytes | steps | train | residual encode | "
              "network decode | residual decode |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["family"] != "srnvtk" or r["design"].startswith("b:"):
            continue
        lines.append(f"| {r['rel_bound']:g} | {label(r)} | {r['network_bytes']:,} | {r['residual_bytes']:,} | "
                     f"{r['file_bytes']:,} | {r.get('steps', '')} | {r.get('train_seconds', 0):.0f} | "
                     f"{r['residual_encode_seconds']:.2f} | {r['network_decode_seconds']:.2f} | "
                     f"{r['residual_decode_seconds']:.2f} |")
    for r in rows:
        if r["design"].startswith("b:"):
            lines += ["", f"Design b at {r['rel_bound']:g}: SZ3 {r['sz3_bytes']:,} bytes + network "
                      f"{r['network_bytes']:,} + revert mask {r['revert_mask_bytes']:,}; "
                      f"{100 * r['reverted_fraction']:.1f}% of the corrections reverted; PSNR "
                      f"{r['psnr_sz3_db']:.2f} -> {r['psnr_db']:.2f} dB."]
    classic = [r for r in rows if r["family"] == "classic"]
    if classic:
        lines += ["", "Classic codecs' encode / decode seconds: " + "; ".join(
            f"{r['design']} at {r['rel_bound']:g}: {r['encode_seconds']:.2f} / {r['decode_seconds']:.2f}"
            for r in classic)]
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path, rd_path: Path | None) -> None:
    """The bounded files on the PSNR / ratio plane (50-1000), each point labelled with its design and split,
    over the rate-distortion curves of results/rd_<key>.json where that file exists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    if rd_path is not None and rd_path.exists():
        rd = json.loads(rd_path.read_text())
        for codec in dict.fromkeys(r["codec"] for r in rd["rows"]):
            points = sorted((r["ratio"], r["psnr_db"]) for r in rd["rows"] if r["codec"] == codec
                            and "psnr_db" in r and math.isfinite(r["psnr_db"]))
            if points:
                ax.plot(*zip(*points, strict=True), "-", alpha=0.35, label=f"RD: {codec}")
    markers = {"classic": "o", "srnvtk": "s"}
    for r in data["rows"]:
        if not (50 <= r["ratio"] <= 1000 and math.isfinite(r["psnr_db"])):
            continue
        ax.plot(r["ratio"], r["psnr_db"], markers[r["family"]], color="black" if r["family"] == "srnvtk" else "gray",
                markersize=4)
        ax.annotate(f"{label(r)} @{r['rel_bound']:g}", (r["ratio"], r["psnr_db"]), fontsize=5,
                    xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlim(45, 1100)
    ax.set_xlabel("compression ratio (float32 bytes / compressed bytes)")
    ax.set_ylabel("PSNR (dB), range of the original")
    ax.set_title(f"Error-bounded files (squares: srnvtk, circles: classic) at 50-1000: {data['volume']['key']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_reports(json_path: Path) -> None:
    data = json.loads(json_path.read_text())
    json_path.with_suffix(".md").write_text(markdown(data))
    key = data["volume"]["key"]
    plot(data, json_path.with_suffix(".png"), json_path.parent / f"rd_{key}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", nargs="+", default=["rm", "turbulence"])
    parser.add_argument("--crop", type=int, default=None)
    parser.add_argument("--bounds", type=float, nargs="+", default=list(BOUNDS))
    parser.add_argument("--network-ratios", type=float, nargs="*", default=[1000.0, 500.0])
    parser.add_argument("--network-coders", nargs="+", default=None,
                        help="residual coders tried for the network rows (default: every coder at hand)")
    parser.add_argument("--mse-ratios", type=float, nargs="*", default=[1000.0],
                        help="MSE-trained networks (the naive combination) of these ratios")
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds of training per network")
    parser.add_argument("--design-b-bounds", type=float, nargs="*", default=[3e-2])
    parser.add_argument("--design-b-share", type=float, default=0.1, help="network bytes / SZ3 bytes in design b")
    parser.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--resume", action="store_true",
                        help="keep the classic and residual-only rows of an earlier run of the same volume")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md and .png from the .json files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.volumes:
        if not args.report_only:
            run_volume(name, args)
        key = load_volume(name, crop=args.crop).key
        write_reports(Path(args.out_dir) / f"error_bound_{key}.json")


if __name__ == "__main__":
    main()
