"""Header mutations for container files (format 5 on) that keep every checksum valid.

Byte damage (srnvtk.fuzz.mutate) stops at the container's CRC, so it never reaches the code that parses and
checks a header: a crafted file, or damage made before the CRC was computed, does. These mutations change the
decoded JSON header (a value replaced by a hostile one, a key removed or added, a list grown or cut, the version
changed), then deflate it again and recompute the CRC, so the reader's own checks are what must refuse the file.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from typing import Any

from .container import MAGIC, PREFIX

HEADER_MUTATIONS = ("replace_value", "remove_key", "add_key", "grow_list", "cut_list", "version")
# What a hostile writer would put where a reader expects settings, shapes and sizes.
HOSTILE_VALUES: tuple[Any, ...] = (
    0, -1, 1, 2, 3, 255, 256, 65535, 2**31 - 1, 2**31, 2**32, 2**53, 2**63, -(2**63), 10**30, 1e308, -1e308, 0.5,
    -0.5, 1e-300, "", "x" * 4096, "fvsrn", "neurcomp", "none", "<a/>", "../../etc/passwd", None, True, False, [], {},
    [0], [1, 2, 3], [2**31] * 3, [-1, -1, -1], [0, 0, 0, 0, 0, 0], {"a": 1}, [[]] * 64,
)


def is_container_bytes(data: bytes) -> bool:
    return data[:len(MAGIC)] == MAGIC and len(data) >= PREFIX.size


def mutate_header(data: bytes, seed: int) -> tuple[bytes, list[str]]:
    """The file with one to three header mutations drawn from the seed, its CRC made valid again, and their
    descriptions; files that are not containers come back unchanged (with no description)."""
    if not is_container_bytes(data):
        return data, []
    magic, version, flags, header_length, count, _crc = PREFIX.unpack_from(data)
    start = PREFIX.size
    header = json.loads(zlib.decompress(data[start:start + header_length], -15))
    table_end = start + header_length + 13 * count
    table, sections = data[start + header_length:table_end], data[table_end:]
    rng = random.Random(seed)
    done: list[str] = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        kind = rng.choice(HEADER_MUTATIONS)
        if kind == "version":
            version = rng.choice((0, 1, 4, 5, 6, 7, 8, 9, 10, 65535))
            done.append(f"version {version}")
            continue
        header, what = _mutate_tree(header, kind, rng)
        done.append(f"{kind} {what}")
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = deflater.compress(text) + deflater.flush()
    prefix = struct.pack("<8sHHII", magic, version, flags, len(compressed), count)
    crc = zlib.crc32(table, zlib.crc32(compressed, zlib.crc32(prefix)))
    return prefix + struct.pack("<I", crc) + compressed + table + sections, done


def _mutate_tree(tree: Any, kind: str, rng: random.Random) -> tuple[Any, str]:
    """The tree with one node changed by `kind`, and the changed node's path."""
    containers = [(path, node) for path, node in _nodes(tree) if isinstance(node, (dict, list))]
    if kind == "replace_value":
        path, _node = rng.choice([(p, n) for p, n in _nodes(tree) if p])
        return _replaced(tree, path, rng.choice(HOSTILE_VALUES)), "/".join(map(str, path))
    if kind in ("remove_key", "add_key"):
        dicts = [(p, n) for p, n in containers if isinstance(n, dict)]
        path, node = rng.choice(dicts)
        node = dict(node)
        if kind == "remove_key" and node:
            key = rng.choice(sorted(node))
            del node[key]
        else:
            key = rng.choice(("extra", "external", "link", *map(str, range(3))))
            node[key] = rng.choice(HOSTILE_VALUES)
        return _replaced(tree, path, node), "/".join(map(str, (*path, key)))
    lists = [(p, n) for p, n in containers if isinstance(n, list)] or [((), [])]
    path, node = rng.choice(lists)
    node = list(node)
    if kind == "grow_list":
        node += [node[-1] if node else 0] * rng.choice((1, 2, 1000))
    else:
        node = node[:rng.randrange(len(node) + 1)] if node else node
    return (_replaced(tree, path, node) if path else tree), "/".join(map(str, path))


def _nodes(tree: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    found = [(path, tree)]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _nodes(value, (*path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += _nodes(value, (*path, index))
    return found


def _replaced(tree: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[head] = _replaced(tree[head], rest, value)
    return copy
