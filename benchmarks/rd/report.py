"""Results files of one volume: rd_<key>.json (every row), rd_<key>.md (tables) and rd_<key>.png (the plot).

Rows are merged by (codec, target ratio): a later run replaces its own rows and keeps the others, so the
classic codecs and srnvtk can be measured in separate runs (and on separate machines).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .rows import PSNR_DEFINITION, RATIO_DEFINITION

CLASSIC_ORDER = ("sz3", "zfp-rate", "zfp-accuracy", "sperr", "tthresh")
NOTES = {
    "classic": "Classic codecs run on a float32 copy; each codec's parameter is searched (bracketing bisection on "
    "the compressed size) for the largest output not above float32 bytes / target, so the achieved ratio is at "
    "or just above the target; where a codec's size jumps past the target, the ratio in brackets is well above.",
    "zfp": "ZFP fixed-rate cannot go below 9/64 bit/value in 3D (ratio 227; zfpy segfaults below), hence no rows "
    "above that ratio. ZFP fixed-accuracy (variable rate) needs a tolerance near the value range itself before "
    "its output shrinks 50x, since every 4^3 block keeps its exponent and top bit planes; its tolerance acts "
    "as a power of two, so its sizes come in steps and a ratio can land well above the target.",
    "sperr": "SPERR bytes are the HDF5 chunk's stored size, not the HDF5 file around it; rates below 0.01 "
    "bit/value are not tried (the filter crashed there).",
    "tthresh": "TTHRESH is the WebAssembly build (numcodecs-wasm-tthresh), not the native tool: on the reference "
    "volume the native tool's RMSE was 1.4-1.7x lower at equal size. Its decoder fails on whole 256^3 volumes "
    "(an Eigen bounds assertion once a mode's size times its Tucker rank reaches ~8192), so it runs on bricks "
    "(tthresh-b64: 64^3), which costs it compression and caps its ratio (each brick's stream has a floor of a "
    "few hundred bytes, and above an RMSE bound of ~0.1 x range its output grows again). 128^3 bricks "
    "(tthresh-b128, where run) decode only where the Tucker ranks stay below 64, i.e. at the highest ratios.",
    "srnvtk": "srnvtk bytes are the whole .srn file (container, settings and stats included); its PSNR is "
    "that of the file as read back and decoded. Rate control (srnvtk.ratecontrol): the model is planned for the "
    "budget, trained, and the least important latent entries are dropped until the measured file fits, so the "
    "ratio lands at or just above the target (a pruned Neurcomp lands above it: its neurons are pruned after its "
    "width was sized). Training stops at its time limit (on the clock the settings name: 'cpu' counts the "
    "process's CPU seconds, so rows measured while other work shared the machine get the same budget); the steps "
    "that bought are in the third table, beside the CPU share (CPU seconds / wall seconds of the encode).",
}


def row_key(row: dict) -> tuple[str, float]:
    return row["codec"], float(row["target_ratio"])


def codec_order(codec: str) -> tuple[int, int, int, str]:
    family, _, brick = codec.partition("-b")  # tthresh-b64 -> tthresh, 64
    if family in CLASSIC_ORDER:
        return 0, CLASSIC_ORDER.index(family), int(brick) if brick.isdigit() else 0, codec
    return 1, 0, 0, codec


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """old's rows less those new replaces (same codec and target ratio), plus new; sorted by codec, ratio."""
    replaced = {row_key(r) for r in new}
    rows = [r for r in old if row_key(r) not in replaced] + list(new)
    return sorted(rows, key=lambda r: (codec_order(r["codec"]), float(r["target_ratio"])))


def load_results(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    return {"rows": []}


def notes_for(rows: list[dict]) -> list[str]:
    """The notes that concern the codecs present."""
    families = {r["codec"].split("-")[0] for r in rows}
    keys = (["classic"] if families - {"srnvtk"} else []) + [k for k in NOTES if k != "classic" and k in families]
    return [NOTES[k] for k in keys]


def save_results(path: Path, volume: dict, rows: list[dict]) -> dict:
    data = {"volume": volume, "psnr_definition": PSNR_DEFINITION, "ratio_definition": RATIO_DEFINITION,
            "notes": notes_for(rows), "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=float) + "\n")
    return data


def codecs_in(rows: list[dict]) -> list[tuple[str, str]]:
    """(codec, label) in table order."""
    seen: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: codec_order(r["codec"])):
        seen.setdefault(row["codec"], row.get("label", row["codec"]))
    return list(seen.items())


def psnr_cell(row: dict | None) -> str:
    if row is None:
        return ""
    if "decode_failed" in row:
        return f"decode failed ({row['ratio']:.1f})"
    if "psnr_db" not in row:
        limit = row.get("max_ratio_reached")
        return f"- (max {limit:.0f})" if limit else "-"
    db = "inf" if math.isinf(row["psnr_db"]) else f"{row['psnr_db']:.2f}"
    flag = "" if row.get("reached", True) else " below target"
    return f"{db} ({row['ratio']:.1f}{flag})"


def seconds_cell(row: dict | None) -> str:
    if row is None or "encode_seconds" not in row:
        return ""
    decode = f"{row['decode_seconds']:.3g}" if "decode_seconds" in row else "failed"
    return f"{row['encode_seconds']:.3g} / {decode}"


def steps_cell(row: dict | None) -> str:
    if row is None or "steps" not in row:
        return ""
    settings = row.get("settings", {})
    limit = f"{settings.get('time_limit', 0):g} s {settings.get('clock', 'wall')}"
    share = ""
    if row.get("encode_cpu_seconds") and row.get("encode_seconds"):
        share = f"; {row['encode_cpu_seconds'] / row['encode_seconds']:.0%}"
    return f"{row['steps']:,} ({limit}{share})"


def markdown_table(rows: list[dict], cell, corner: str = "target ratio") -> list[str]:
    codecs = codecs_in(rows)
    by_key = {row_key(r): r for r in rows}
    targets = sorted({float(r["target_ratio"]) for r in rows})
    lines = ["| " + " | ".join([corner] + [label for _, label in codecs]) + " |",
             "|" + "---|" * (len(codecs) + 1)]
    for target in targets:
        cells = [cell(by_key.get((codec, target))) for codec, _ in codecs]
        lines.append("| " + " | ".join([f"{target:g}"] + cells) + " |")
    return lines


def timing_context(rows: list[dict]) -> list[str]:
    """Where the timings were taken, once per family (classic codecs, srnvtk) and machine: rows that differ only
    in what the line does not show (date, commit) share it."""
    lines: dict[str, None] = {}
    for family in ("classic", "srnvtk"):
        for e in (r["environment"] for r in rows if r.get("family") == family and "environment" in r):
            where = f"{e.get('machine')}, {e.get('cpu_count')} CPUs, OMP_NUM_THREADS={e.get('omp_num_threads')}"
            if family == "srnvtk":
                where += f", torch threads {e.get('torch_threads')}, device {e.get('device')}"
            lines[f"Timings of the {family} rows: {where}."] = None
    return sorted(lines, key=lambda line: (not line.startswith("Timings of the classic"), line))


def markdown(data: dict) -> str:
    rows, volume = data["rows"], data["volume"]
    lines = [f"# Rate-distortion: {volume['key']}", "",
             f"Volume: {volume['source']}, shape (z, y, x) {tuple(volume['shape_zyx'])}, "
             f"range {volume['min']:g} .. {volume['max']:g}.",
             f"PSNR = {data['psnr_definition']}; ratio = {data['ratio_definition']}.", "",
             "## PSNR (dB) at each target ratio (achieved ratio in brackets; '-': not reachable)", ""]
    lines += markdown_table(rows, psnr_cell)
    lines += ["", "## Encode / decode seconds", ""]
    lines += markdown_table(rows, seconds_cell)
    lines += ["", *timing_context(rows)]
    srn_rows = [r for r in rows if r.get("family") == "srnvtk"]
    if any("steps" in r for r in srn_rows):
        lines += ["", "## srnvtk: training steps reached (time limit, clock; CPU share of the encode)", ""]
        lines += markdown_table(srn_rows, steps_cell)
    lines += ["", "## What each codec's bytes count", ""]
    for codec, label in codecs_in(rows):
        first = next(r for r in rows if r["codec"] == codec)
        parameter = first.get("parameter_name", "the model planned and fitted to the budget (srnvtk.ratecontrol)")
        counted = first.get("bytes_counted", "")
        lines.append(f"- {label} ({first.get('package', '')}): {counted}; parameter: {parameter}")
    if data.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in data["notes"]]
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for codec, label in codecs_in(data["rows"]):
        points = sorted((r["ratio"], r["psnr_db"]) for r in data["rows"]
                        if r["codec"] == codec and "psnr_db" in r and math.isfinite(r["psnr_db"]))
        if points:
            style = "o-" if codec_order(codec)[0] == 0 else "s--"
            ax.plot(*zip(*points, strict=True), style, label=label)
        if codec_order(codec)[0] == 1:  # srnvtk: its encode time is an axis of its own, written beside each point
            for r in data["rows"]:
                seconds = r.get("encode_cpu_seconds", r.get("encode_seconds"))
                if r["codec"] == codec and "psnr_db" in r and seconds is not None:
                    ax.annotate(f"{seconds:.0f}s", (r["ratio"], r["psnr_db"]), fontsize=6, xytext=(3, 3),
                                textcoords="offset points")
    ax.set_xscale("log")
    targets = sorted({float(r["target_ratio"]) for r in data["rows"]})
    ax.set_xticks(targets, [f"{t:g}" for t in targets])
    ax.set_xlabel("compression ratio (float32 bytes / compressed bytes)")
    ax.set_ylabel("PSNR (dB), range of the original")
    ax.set_title(f"Rate-distortion: {data['volume']['key']} (srnvtk points: encode CPU seconds)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(data: dict, json_path: Path) -> tuple[Path, Path]:
    md_path, png_path = json_path.with_suffix(".md"), json_path.with_suffix(".png")
    md_path.write_text(markdown(data))
    plot(data, png_path)
    return md_path, png_path
