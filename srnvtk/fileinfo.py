"""What a .srn file holds, as plain JSON-ready values: for `srnvtk info` and the SRN Reader's field data.

Non-finite numbers become None, so the result always serialises as valid JSON.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from .config import stored_model_config
from .fileformat import FORMAT_NAME, NO_NETWORK, SRNFile, read_srn
from .pruning import pruned_fraction, pruned_fractions

INTEGER_STATS = ("steps", "file_bytes")


def file_info(path: str | os.PathLike) -> dict[str, Any]:
    """Everything `srnvtk info` shows about the file at path (see srn_info)."""
    info = srn_info(read_srn(path))
    return {"file": str(path), **info}


def srn_info(srn: SRNFile) -> dict[str, Any]:
    """Settings, structure, source geometry, stats and stored bytes of a loaded file."""
    if srn.model is None and srn.bound is None:
        return parts_info(srn)
    source = srn.source
    geometry = source.geometry
    model = srn.model
    info = {
        "format": FORMAT_NAME,
        "format_version": int(srn.format_version),
        "architecture": model.architecture if model is not None else NO_NETWORK,
        "srnvtk_version": srn.srnvtk_version,
        "model_config": plain(stored_model_config(srn.model_config)) if model is not None else None,
        "model_structure": plain(model.structure()) if model is not None else None,
        "pruning_config": plain(dataclasses.asdict(srn.pruning)) if model is not None else None,
        # per parameter, of the unpruned model's entries
        "pruned_fractions": plain(pruned_fractions(model)) if model is not None else {},
        "source": {
            "array_name": source.array_name,
            "dtype": source.dtype,
            "dimensions": list(geometry.dimensions),
            "extent": list(geometry.extent),
            "spacing": plain(list(geometry.spacing)),
            "origin": plain(list(geometry.origin)),
            "value_range": plain(list(source.value_range)),
        },
        "stats": stats_info(srn.stats),
        "tensor_bytes": dict(srn.tensor_bytes),
    }
    if model is not None and model.latent_name is not None:
        info["grid_shape"] = [int(s) for s in model.structure()["grid_shape"]]
    if srn.bound is not None:
        info["error_bound"] = bound_info(srn)
    return info


def bound_info(srn: SRNFile) -> dict[str, Any]:
    """A bounded file's bound, design and split: bytes of the network (its stored tensors) and of the residual
    (its sections and their table entries); the rest of the file is header and container."""
    code = srn.bound
    return {
        "max_error": plain(code.max_error),
        "max_rel_error": plain(code.max_rel_error),
        "design": code.design,
        "coder": code.coder,
        "step": plain(code.step),
        "margin": plain(code.margin),
        "chunk_edge": code.chunk_edge,
        "chunks": code.chunks,
        "chunks_stored": sum(1 for n in code.chunk_bytes if n),
        "network_bytes": int(sum(srn.tensor_bytes.values())),
        "residual_bytes": int(sum(code.chunk_bytes)),
        "applies_to": "every point on the source lattice: the full grid, strided grids, sub-extents and pieces; "
                      "not resampled grids (other dimensions), whose points are not on it",
    }


def stats_info(stats: dict[str, float]) -> dict[str, Any]:
    """The training and file statistics, integers where they count something; an infinite value (a lossless
    PSNR) as None; NaN (a damaged or hand-made file: no value to show) left out."""
    return {key: int(value) if key in INTEGER_STATS and math.isfinite(value) else plain(value)
            for key, value in stats.items() if not math.isnan(value)}


def plain(value: Any) -> Any:
    """numpy scalars, bytes and tuples as JSON's types; non-finite floats as None."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def parts_info(srn: SRNFile) -> dict[str, Any]:
    """A file of many networks: its grid, times, fields and brick layout, and per part what it covers, its
    settings, stored bytes and stats. Format 6 keeps a part's statistics with its tensors, so every part is read;
    formats 9, 11 and 12 have them in their index, so no part is (its pruned fraction is then the recorded one:
    for a delta part, of its grid's differences), and the file's bytes are split into the parts' sections, their
    bookkeeping and the fixed rest. A delta part (formats 11, 12) names the part it references ("delta_of": its index,
    step and key frame's step)."""
    from .multipart import DELTA_VERSIONS, INDEX_VERSIONS, bookkeeping_bytes, delta_chain

    geometry = srn.geometry
    compact = srn.format_version in INDEX_VERSIONS
    per_part = bookkeeping_bytes(srn.format_version) if compact else None
    parts = []
    for part in srn.parts:
        if compact:
            fraction = part.stats.get("pruned_fraction")
        else:
            fraction = pruned_fraction(srn.part_model(part.index))  # reads the part: its stats come with it
        row = {"field": srn.fields[part.field].name, "step": part.step, "time": srn.times[part.step],
               "brick": None if part.brick is None else list(part.brick), "extent": list(part.extent),
               "architecture": part.model_config.architecture, "bytes": part.stored_bytes,
               "pruned_fraction": plain(fraction), "stats": stats_info(part.stats)}
        if "grid_shape" in part.structure:
            row["grid_shape"] = [int(s) for s in part.structure["grid_shape"]]
        if srn.format_version in DELTA_VERSIONS:
            row["delta_of"] = None if part.reference is None else {
                "part": part.reference, "step": srn.parts[part.reference].step,
                "key_step": srn.parts[delta_chain(srn.parts, part.index)[0]].step}
        parts.append(row)
    first = srn.parts[0]
    extra = {}
    if compact:
        sections = sum(part.stored_bytes for part in srn.parts)
        bookkeeping = per_part * len(srn.parts)
        extra["bytes"] = {"parts": sections, "bookkeeping": bookkeeping, "bookkeeping_per_part": per_part,
                          "fixed": int(srn.stats["file_bytes"]) - sections - bookkeeping}
    return {
        "format": FORMAT_NAME,
        "format_version": int(srn.format_version),
        "srnvtk_version": srn.srnvtk_version,
        "grid": {"dimensions": list(geometry.dimensions), "extent": list(geometry.extent),
                 "spacing": plain(list(geometry.spacing)), "origin": plain(list(geometry.origin))},
        "times": plain(list(srn.times)),
        "fields": [{"name": f.name, "dtype": f.dtype, "components": f.components,
                    "value_ranges": plain([list(r) for r in f.value_ranges])} for f in srn.fields],
        "bricks": None if srn.bricks is None else {"size": list(srn.bricks.size), "halo": srn.bricks.halo,
                                                    "counts": list(srn.bricks.counts(geometry))},
        "model_config": plain(stored_model_config(first.model_config)),
        "pruning_config": plain(dataclasses.asdict(first.pruning)),
        "parts": parts,
        "stats": stats_info(srn.stats),
        **extra,
    }
