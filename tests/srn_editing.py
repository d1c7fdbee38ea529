"""Reading and editing format-5 .srn files in tests, as a careless tool or an attacker would: the container is
rebuilt with valid checksums, so only srnvtk's own checks of the contents stand between the edit and a model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from srnvtk.container import Container, Encoded, encode_section, pack


def stored_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every stored tensor as the file holds it (decoded sections as their declared dtype and shape)."""
    container = Container.open(path)
    tensors = {}
    for name, (index, dtype, shape) in container.header["tensors"].items():
        tensors[name] = np.frombuffer(container.read(index), dtype=np.dtype(dtype)).reshape(shape)
    return tensors


def edit(path: Path, header: Callable[[dict], None] | None = None,
         tensors: Callable[[dict[str, np.ndarray]], None] | None = None) -> None:
    """Rewrite the file after header(header_dict) and tensors(name -> array) edited them in place (a tensor may
    be replaced, given another dtype or shape, or deleted); the tensors' descriptions follow the arrays."""
    container = Container.open(path)
    data = path.read_bytes()
    sections = [Encoded(data[s.offset:s.offset + s.length], s.codec, s.raw_length) for s in container.sections]
    head = container.header
    if tensors is not None:
        arrays = stored_tensors(path)
        tensors(arrays)
        described = {}
        for name, array in arrays.items():
            index = head["tensors"][name][0] if name in head["tensors"] else len(sections)
            if index == len(sections):
                sections.append(Encoded(b"", 0, 0))
            sections[index] = encode_section(np.ascontiguousarray(array).tobytes(), ("raw",))
            described[name] = [index, array.dtype.str, list(array.shape)]
        head["tensors"] = described
    if header is not None:
        header(head)
    path.write_bytes(pack(container.version, head, sections))
