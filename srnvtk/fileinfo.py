"""What a .srn file holds, as plain JSON-ready values: for `srnvtk info` and the SRN Reader's field data.

Non-finite numbers become None, so the result always serialises as valid JSON.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from .fileformat import FORMAT_NAME, SRNFile, read_srn
from .pruning import pruned_fractions

INTEGER_STATS = ("steps", "file_bytes")


def file_info(path: str | os.PathLike) -> dict[str, Any]:
    """Everything `srnvtk info` shows about the file at path (see srn_info and bricked_info)."""
    from .brickfile import BrickedFile

    srn = read_srn(path)
    info = bricked_info(srn) if isinstance(srn, BrickedFile) else srn_info(srn)
    return {"file": str(path), **info}


def bricked_info(srn: Any) -> dict[str, Any]:
    """A bricked file (srnvtk.brickfile): the layout, the settings its bricks share, every brick's record and what
    the file's bytes go to (bricks' tensors, their bookkeeping, the fixed rest); read from the index alone, no
    brick is loaded."""
    from .brickfile import BRICK_BOOKKEEPING_BYTES, KEEP_NONE

    grid = srn.source.geometry
    layout = srn.layout
    per_brick = []
    for brick, b in srn.bricks.items():
        per_brick.append({"brick": list(brick), "core": list(layout.core(grid, brick)), "extent": list(b.extent),
                          "grid_shape": list(b.grid_shape), "pruned": b.keep != KEEP_NONE,
                          "settings": srn.settings.index(b.settings), "bytes": b.stored_bytes,
                          **{k: plain(v) for k, v in b.stats.items()}})
    tensors = sum(b.stored_bytes for b in srn.bricks.values())
    bookkeeping = BRICK_BOOKKEEPING_BYTES * len(srn.bricks)
    size = int(srn.stats["file_bytes"])
    return {
        "format": FORMAT_NAME,
        "format_version": int(srn.format_version),
        "architecture": "fvsrn",
        "srnvtk_version": srn.srnvtk_version,
        "source": _source_info(srn.source),
        "stats": stats_info(srn.stats),
        "bricks": {
            "size": list(layout.size), "halo": layout.halo, "counts": list(layout.counts(grid)),
            "count": len(srn.bricks),
            "settings": [{"model_config": plain(dataclasses.asdict(s.model_config)),
                          "pruning_config": plain(dataclasses.asdict(s.pruning))} for s in srn.settings],
            "bytes": {"tensors": tensors, "bookkeeping": bookkeeping, "fixed": size - tensors - bookkeeping,
                      "bookkeeping_per_brick": BRICK_BOOKKEEPING_BYTES},
            "per_brick": per_brick,
        },
    }


def _source_info(source: Any) -> dict[str, Any]:
    geometry = source.geometry
    return {
        "array_name": source.array_name,
        "dtype": source.dtype,
        "dimensions": list(geometry.dimensions),
        "extent": list(geometry.extent),
        "spacing": plain(list(geometry.spacing)),
        "origin": plain(list(geometry.origin)),
        "value_range": plain(list(source.value_range)),
    }


def srn_info(srn: SRNFile) -> dict[str, Any]:
    """Settings, structure, source geometry, stats and stored bytes of a loaded file."""
    source = srn.source
    geometry = source.geometry
    info = {
        "format": FORMAT_NAME,
        "format_version": int(srn.format_version),
        "architecture": srn.model.architecture,
        "srnvtk_version": srn.srnvtk_version,
        "model_config": plain(dataclasses.asdict(srn.model_config)),
        "model_structure": plain(srn.model.structure()),
        "pruning_config": plain(dataclasses.asdict(srn.pruning)),
        "pruned_fractions": plain(pruned_fractions(srn.model)),  # per parameter, of the unpruned model's entries
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
    if srn.model.latent_name is not None:
        info["grid_shape"] = [int(s) for s in srn.model.structure()["grid_shape"]]
    return info


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
