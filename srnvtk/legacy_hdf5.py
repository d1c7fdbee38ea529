"""Reading the HDF5 .srn files of format versions 1-4 safely: in a child process, time- and memory-bounded, and
only what the format defines, from nothing but the given file.

HDF5 is a rich format: a file can point at other files (external links, external storage, virtual datasets),
declare gigabytes it never wrote (fill values) or compress gigabytes into kilobytes, and damaged metadata can
make the library loop for minutes in C code that no signal interrupts. So:

1. All HDF5 parsing runs in a forked child process (works in pvpython and the ParaView GUI too: the child only
   parses and writes to a pipe, then `os._exit`s). The parent waits on the pipe with a deadline: READ_SECONDS
   for the metadata (plus one pass over the file's bytes at READ_BYTES_PER_SECOND), plus time in proportion to
   the declared data once the child has announced it; on expiry the child is killed (SIGKILL) and the file is
   reported as damaged. The child's address space is capped (RLIMIT_AS: what it inherited plus PARSE_MEMORY,
   raised by what the announced data needs), so a claim that makes HDF5 allocate fails inside the child; its CPU
   time is capped too, and it dies with the parent.
   Before HDF5 sees the file, its global heap collections (the text attributes, which no checksum covers) are
   walked as HDF5 would walk them: damage there made HDF5 loop forever in about 1% of randomly damaged files
   (benchmarks/fuzz.py), and is now refused at once; the deadline stays for whatever else could loop.
2. Before reading any data the child walks the file with h5py's low-level API and refuses anything the layout in
   `srnvtk.fileformat`'s docstring does not define: links that are not hard links (external, soft, user-defined),
   groups, datasets or attributes of other names, external storage, virtual or compact datasets, filters other
   than deflate, wrong dtypes (exact, byte order included) and shapes that differ from what the model's settings
   and structure imply (`srnvtk.filechecks.tensor_specs`, which also bounds the model by the volume it encodes).
3. The data is then read by the child itself, not by HDF5: contiguous datasets and each compressed chunk are read
   from the file at the offsets HDF5 reports (checked against the file's size), and every chunk is inflated with
   an output ceiling of exactly its declared size, so a gzip bomb stops at the size the structure justified.
   Unwritten datasets (no storage: fill values) and missing chunks are refused.
4. The child sends the contents back as framed messages (a JSON header, then raw array bytes; never pickle). The
   parent re-derives every tensor's dtype and shape from the header's settings with the same checks, and
   allocates each array only after it matches, reading exactly that many bytes.

`read_legacy` returns plain contents (`LegacyContents`); `srnvtk.fileformat.read_srn` turns them into a model.
Refusals are `FileFormatError`s; those that mean "HDF5 could not make sense of it" (truncation, corruption, a
missing part, a parse that did not finish) are `DamagedFileError`s.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import json
import math
import os
import resource
import select
import signal
import struct
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import filechecks as fc
from .config import ARCHITECTURES, PruningConfig, from_json, model_config_class
from .errors import DamagedFileError, FileFormatError, SettingsError, SRNError

LEGACY_VERSIONS = (1, 2, 3, 4)
FORMAT_NAME = "srnvtk"
STAT_KEYS = ("psnr", "train_seconds", "steps", "final_loss", "file_bytes", "ratio", "pruned_fraction")
INT_STATS = ("steps", "file_bytes")
READ_SECONDS = 4.0  # for HDF5 to parse the metadata: a real file takes milliseconds
READ_BYTES_PER_SECOND = 5e6  # the least speed granted for a pass over the file and for the announced data
PARSE_MEMORY = 512 << 20  # bytes the child may allocate beyond what it inherited, before the data is announced
MAX_HEADER_BYTES = 16 << 20
MAX_MEMBERS = 16  # links in one group
MAX_ATTRIBUTES = 32  # on one object
MAX_CHUNKS = 1 << 16  # per dataset; the writer uses one per grid channel (older files: h5py's guess, a few hundred)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# Attribute kinds: ("text",), ("int", shape) or ("float", shape); shape None: a vector of at most 16 values.
TEXT = ("text", ())
INT64 = ("int", ())
FLOAT64 = ("float", ())
VECTOR_INT64 = ("int", None)
VECTOR_FLOAT64 = ("float", None)
ROOT_ATTRIBUTES = {"format": TEXT, "format_version": INT64, "architecture": TEXT, "model_config": TEXT,
                   "model_structure": TEXT, "pruning_config": TEXT, "srnvtk_version": TEXT}
SOURCE_ATTRIBUTES = {"array_name": TEXT, "dtype": TEXT, "extent": VECTOR_INT64, "origin": VECTOR_FLOAT64,
                     "spacing": VECTOR_FLOAT64, "value_min": FLOAT64, "value_max": FLOAT64}
STATS_ATTRIBUTES = {key: INT64 if key in INT_STATS else FLOAT64 for key in STAT_KEYS}
LAYOUT_ATTRIBUTE = {fc.WEIGHTS: "weights_layout", fc.WEIGHT_INDICES: "indices_layout"}
TENSOR_LABELS = {fc.GRID: "the latent grid", fc.GRID_QUANT: "the grid scale/offset",
                 fc.GRID_KEEP: "the grid's keep mask", fc.WEIGHTS: "packed weights",
                 fc.WEIGHT_INDICES: "weight indices"}
ARRAY_DTYPES = {fc.UINT8.str, fc.FLOAT16.str, fc.FLOAT32.str}  # the only dtypes a parent accepts from the child


@dataclass
class LegacyContents:
    """What a legacy file holds, as plain values: attributes (texts and numbers as stored), packed layouts (JSON
    texts), the tensors and their stored bytes. Every value has passed srnvtk.filechecks."""

    version: int
    root: dict[str, Any]  # format, format_version, architecture, model_config, ... (those present)
    source: dict[str, Any]  # array_name, dtype, extent, origin, spacing, value_min, value_max
    stats: dict[str, float]
    layouts: dict[str, str] = field(default_factory=dict)  # "weights_layout" / "indices_layout"
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    tensor_bytes: dict[str, int] = field(default_factory=dict)


def read_legacy(path: str | os.PathLike) -> LegacyContents:
    """The checked contents of a version 1-4 HDF5 .srn file, parsed in a time- and memory-bounded child process.

    FileFormatError for anything the format does not allow; DamagedFileError (a FileFormatError) when HDF5
    cannot parse it, when a part is missing, or when parsing does not finish in time.
    """
    path = os.fspath(path)
    if not hasattr(os, "fork"):  # no fork (not Linux/macOS): unbounded, but every check still applies
        return _contents(*_parse(path, lambda _plan: None))
    read_end, write_end = os.pipe()
    try:
        pid = _fork()
    except OSError as exc:  # no memory or processes left to fork with: the checks still apply, the bounds not
        os.close(read_end)
        os.close(write_end)
        warnings.warn(f"srnvtk: reading {path} in this process, without a time or memory bound: cannot start "
                      f"a reader process ({exc})", RuntimeWarning, stacklevel=2)
        return _contents(*_parse(path, lambda _plan: None))
    if pid == 0:  # the child: parse, send, and leave without running any of the parent's exit handlers
        status = 0
        try:
            os.close(read_end)
            _child(path, write_end)
        except BaseException:  # noqa: BLE001 (whatever happens, the child must not return into the caller)
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    child = _Child(pid)
    try:
        return _receive(read_end, child, _parse_seconds(path))
    except (KeyError, TypeError, ValueError, IndexError, struct.error) as exc:  # not what the child sends
        raise DamagedFileError(f"the reader sent malformed contents ({type(exc).__name__})") from None
    finally:
        os.close(read_end)
        child.reap()


# ---------------------------------------------------------------------------------------------------------------
# the parent


def _fork() -> int:
    """os.fork while h5py's global lock is held here, so no other thread of this process is inside HDF5 when the
    child's copy of the library is made (the child would otherwise inherit a lock nobody releases)."""
    import h5py

    lock = getattr(getattr(h5py, "_objects", None), "phil", None) or contextlib.nullcontext()
    with lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+ warns about forking with threads
        return os.fork()


class _Child:
    """The parsing child: killed and collected exactly once (its pid is never signalled once collected, when the
    system may already have given it to another process)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None

    def reap(self) -> int | None:
        """Kill the child if it still runs, and collect it; its wait status (None if it cannot be collected)."""
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            while True:
                try:
                    self.status = os.waitpid(self.pid, 0)[1]
                    break
                except ChildProcessError:  # someone else collected it (a SIGCHLD handler)
                    self.status = 0
                    return None
                except InterruptedError:
                    continue
        return self.status


class _Pipe:
    """Reads framed messages from the child until a deadline."""

    def __init__(self, fd: int, child: _Child, seconds: float) -> None:
        self.fd, self.child, self.seconds = fd, child, seconds
        self.deadline = time.monotonic() + seconds
        self.poll = select.poll()  # not select(): it fails for descriptors past 1024, which a GUI may reach
        self.poll.register(fd, select.POLLIN)

    def extend(self, seconds: float) -> None:
        self.seconds += seconds
        self.deadline = time.monotonic() + seconds

    def readinto(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            left = self.deadline - time.monotonic()
            if left <= 0 or not self.poll.poll(max(1, math.ceil(left * 1000))):
                seconds = f"{self.seconds:.1f}".rstrip("0").rstrip(".")
                raise DamagedFileError(f"reading it did not finish in {seconds} s")
            count = os.readv(self.fd, [view[done:]])
            if count == 0:
                raise self._child_failed()
            done += count

    def read(self, size: int) -> bytes:
        buffer = bytearray(size)
        self.readinto(memoryview(buffer))
        return bytes(buffer)

    def frame(self) -> tuple[bytes, Any]:
        kind, size = struct.unpack("<cQ", self.read(9))
        if size > MAX_HEADER_BYTES:
            raise DamagedFileError(f"the reader sent a message of {size} bytes")
        return kind, json.loads(self.read(size).decode("utf-8"))

    def _child_failed(self) -> DamagedFileError:
        status = self.child.reap()
        if status is not None and os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
            return DamagedFileError(f"reading it crashed ({name})")
        return DamagedFileError("reading it failed without a message")


def _parse_seconds(path: str) -> float:
    """Time for everything before the data: the metadata, and one pass over the file's bytes (the heap check)."""
    try:
        return READ_SECONDS + os.path.getsize(path) / READ_BYTES_PER_SECOND
    except OSError:
        return READ_SECONDS


def _receive(fd: int, child: _Child, seconds: float) -> LegacyContents:
    pipe = _Pipe(fd, child, seconds)
    kind, message = pipe.frame()
    if kind == b"E":
        raise (DamagedFileError if message.get("damaged") else FileFormatError)(fc.one_line(message["message"]))
    if kind != b"P":
        raise DamagedFileError("the reader sent an unexpected message")
    announced = _checked_arrays(message["arrays"])
    total = sum(np.dtype(d).itemsize * math.prod(s) for _n, d, s in announced)
    pipe.extend(READ_SECONDS + total / READ_BYTES_PER_SECOND)
    kind, message = pipe.frame()
    if kind == b"E":
        raise (DamagedFileError if message.get("damaged") else FileFormatError)(fc.one_line(message["message"]))
    if kind != b"C" or _checked_arrays(message["arrays"]) != announced:
        raise DamagedFileError("the reader sent an unexpected message")
    contents = _contents(message, {})
    plan = _plan(contents, announced)
    for name, dtype, shape in announced:  # the sizes follow from the settings the header holds
        spec = plan.specs.get(name)
        if spec is None or not spec.matches(dtype, shape):
            raise DamagedFileError(f"the reader sent {name} as {dtype} {tuple(shape)}")
        array = np.empty(shape, dtype=np.dtype(dtype))
        pipe.readinto(memoryview(array.reshape(-1).view(np.uint8)))
        contents.arrays[name] = array
    if set(contents.arrays) != set(plan.specs):
        raise DamagedFileError("the reader sent too few tensors")
    return contents


def _checked_arrays(arrays: Any) -> list[tuple[str, str, tuple[int, ...]]]:
    """The announced [name, dtype, shape] list, each within the limits a file's tensor can have at all."""
    checked = []
    for name, dtype, shape in arrays:
        if name not in TENSOR_LABELS or dtype not in ARRAY_DTYPES or len(shape) > 4:
            raise DamagedFileError("the reader announced a tensor no file holds")
        if not all(isinstance(s, int) and 0 <= s <= fc.MAX_MODEL_ENTRIES for s in shape) or \
                math.prod(shape) > fc.MAX_MODEL_ENTRIES:
            raise DamagedFileError("the reader announced a tensor larger than any file holds")
        checked.append((name, dtype, tuple(shape)))
    return checked


# ---------------------------------------------------------------------------------------------------------------
# the child


def _child(path: str, fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C reaches the whole process group: die at once
    faulthandler.disable()  # a crash here is reported by the parent in one line, not as the child's stacks
    _die_with_parent()
    _limit(PARSE_MEMORY, _parse_seconds(path))
    _block_plugins()

    def send(kind: bytes, message: dict) -> None:
        payload = json.dumps(message).encode("utf-8")
        _write(fd, struct.pack("<cQ", kind, len(payload)) + payload)

    def announce(arrays: list) -> None:
        send(b"P", {"arrays": arrays})
        total = sum(np.dtype(d).itemsize * math.prod(s) for _n, d, s in arrays)
        _limit(PARSE_MEMORY + 3 * total, READ_SECONDS + total / READ_BYTES_PER_SECOND)

    try:
        header, arrays = _parse(path, announce)
    except FileFormatError as exc:
        send(b"E", {"message": str(exc), "damaged": isinstance(exc, DamagedFileError)})
        return
    except SRNError as exc:
        send(b"E", {"message": str(exc), "damaged": False})
        return
    except MemoryError:
        send(b"E", {"message": f"damaged file (parsing it needs more than {PARSE_MEMORY >> 20} MiB)",
                    "damaged": True})
        return
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, OverflowError, zlib.error) as exc:
        send(b"E", {"message": f"{type(exc).__name__}: {exc}", "damaged": True})
        return
    except Exception as exc:  # noqa: BLE001 (a bug, not the file: say so instead of hiding it)
        send(b"E", {"message": f"internal error while reading ({type(exc).__name__}: {exc})", "damaged": False})
        return
    send(b"C", header)
    for _name, array in arrays.items():
        _write(fd, memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8)))


def _write(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view):]


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)


def _limit(memory: int, seconds: float) -> None:
    """Cap the child's address space at what it holds now plus memory, and its CPU time near seconds."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[0]) * resource.getpagesize()
        _set_limit(resource.RLIMIT_AS, current + memory)
    with contextlib.suppress(OSError, ValueError):
        used = resource.getrusage(resource.RUSAGE_SELF)
        _set_limit(resource.RLIMIT_CPU, math.ceil(used.ru_utime + used.ru_stime + seconds) + 1)


def _set_limit(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    resource.setrlimit(which, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))


def _block_plugins() -> None:
    """No filter plugin may be loaded while parsing (data is never decoded by HDF5 here, but be sure)."""
    with contextlib.suppress(Exception):
        from h5py import h5pl

        while h5pl.size():
            h5pl.remove(0)


# ---------------------------------------------------------------------------------------------------------------
# parsing (in the child)


@dataclass
class _Stored:
    """Where a dataset's bytes are: contiguous [(offset, size)], or deflated chunks [(offset, size, start, mask)]."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    storage: int
    contiguous: list[tuple[int, int]] = field(default_factory=list)
    chunk: tuple[int, ...] = ()
    chunks: list[tuple[int, int, tuple[int, ...], int]] = field(default_factory=list)


def _parse(path: str, announce) -> tuple[dict, dict[str, np.ndarray]]:
    """Check everything, announce the arrays (announce([[name, dtype, shape], ...])), read them; the contents header
    and the arrays."""
    import h5py

    file_size = os.path.getsize(path)
    with open(path, "rb") as raw:
        _check_superblock(raw.read(64))
        _check_global_heaps(raw, file_size)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise DamagedFileError(f"HDF5 cannot open it ({fc.one_line(exc, 200)})") from None
        with f:
            header, stored = _walk(f, file_size)
        announce([[s.name, s.dtype.str, list(s.shape)] for s in stored])
        arrays = {s.name: _read_dataset(raw, s) for s in stored}
    header["arrays"] = [[s.name, s.dtype.str, list(s.shape)] for s in stored]
    return header, arrays


def _check_superblock(head: bytes) -> None:
    """An HDF5 signature at offset 0, 8-byte addresses and base address 0: the offsets HDF5 reports are then
    positions in the file (h5py never writes a user block)."""
    if len(head) < 48:
        raise DamagedFileError("it is too short for an HDF5 file")
    if not head.startswith(HDF5_SIGNATURE):
        raise DamagedFileError("it does not start with an HDF5 signature (srnvtk never writes a user block)")
    version = head[8]
    if version in (0, 1):
        offsets_size, base_at = head[13], 24 if version == 0 else 28
    elif version in (2, 3):
        offsets_size, base_at = head[9], 12
    else:
        raise DamagedFileError(f"its HDF5 superblock version {version} is unknown")
    if offsets_size != 8 or struct.unpack_from("<Q", head, base_at)[0] != 0:
        raise FileFormatError("its HDF5 superblock has a layout srnvtk never writes (user block or short addresses)")


def _check_global_heaps(raw, file_size: int) -> None:
    """Walk every global heap collection (where HDF5 keeps variable-length strings: all of srnvtk's text
    attributes) as HDF5 will, before it does: HDF5 steps from object to object by each one's declared size and
    loops forever where a damaged size makes no progress (a zeroed block: size 0), which no checksum guards.

    Collections are found by their signature, reading the file in blocks (not mapping it: the child's address
    space is capped); one that only looks like a collection by chance (in raw data) is walked too, but refused
    only on a step that makes no progress, which random or real data practically never gives at exactly the
    positions the walk reaches.
    """
    fd = raw.fileno()
    block = 1 << 22
    for start in range(0, file_size, block):
        data = os.pread(fd, block + 3, start)  # 3 more: a signature across the block's end
        at = data.find(b"GCOL")
        while 0 <= at < block:
            _walk_global_heap(fd, start + at, file_size)
            at = data.find(b"GCOL", at + 1)


def _walk_global_heap(fd: int, at: int, file_size: int) -> None:
    header = os.pread(fd, 16, at)
    size = struct.unpack_from("<Q", header, 8)[0] if len(header) == 16 else 0
    if not (header[4:5] == b"\x01" and 4096 <= size <= file_size - at):  # version 1, HDF5's least size
        return
    end, position = at + size, at + 16
    while position + 16 <= end:
        index, _refs, _reserved, object_size = struct.unpack("<HHIQ", os.pread(fd, 16, position))
        step = object_size if index == 0 else (16 + ((object_size + 7) & ~7)) % (1 << 64)
        if not 0 < step < (1 << 63):  # HDF5 would stay at (or move back before) this object
            raise DamagedFileError(f"its global heap at byte {at} is corrupted (an object at byte {position} "
                                   f"declares {object_size} bytes)")
        position += step


def _walk(f, file_size: int) -> tuple[dict, list[_Stored]]:
    import h5py

    if "format" not in f.attrs or _attributes(f, "/", ROOT_ATTRIBUTES, only="format").get("format") != FORMAT_NAME:
        raise FileFormatError("it lacks the srnvtk format marker")
    root = _attributes(f, "/", ROOT_ATTRIBUTES)
    if "format_version" not in root:
        raise DamagedFileError("it lacks the format_version attribute")
    version = fc.check_format_version(root["format_version"])
    if version not in LEGACY_VERSIONS:
        readable = ", ".join(str(v) for v in LEGACY_VERSIONS)
        raise FileFormatError(f"format version {version} is not supported (this srnvtk reads versions {readable})")
    for key in ("architecture", "model_config") + (("model_structure", "pruning_config") if version >= 2 else ()):
        if key not in root:
            raise DamagedFileError(f"it lacks the {key} attribute")
    architecture = root["architecture"]
    if architecture not in ARCHITECTURES or (architecture != "fvsrn" and version < 2):
        raise FileFormatError(f"unknown architecture '{fc.one_line(architecture, 60)}'"
                              + ("" if architecture not in ARCHITECTURES else f" in a version {version} file"))
    config = _settings(model_config_class(architecture), root["model_config"])
    pruning = _settings(PruningConfig, root["pruning_config"]) if "pruning_config" in root else PruningConfig()
    if (version < 3 and getattr(config, "wavelet", None) is not None) or (version < 2 and pruning.enabled):
        raise FileFormatError(f"a version {version} file cannot hold these settings")
    members = _members(f.id, "/", ("source", "stats", "tensors"), h5py.h5o.TYPE_GROUP)
    for name in ("source", "stats", "tensors"):
        if name not in members:
            raise DamagedFileError(f"it lacks /{name}")
    source = _attributes(h5py.Group(members["source"]), "/source", SOURCE_ATTRIBUTES)
    missing = sorted(set(SOURCE_ATTRIBUTES) - set(source))
    if missing:
        raise DamagedFileError(f"/source lacks {', '.join(missing)}")
    geometry = _source(source)
    stats = _attributes(h5py.Group(members["stats"]), "/stats", STATS_ATTRIBUTES)
    datasets = _members(members["tensors"], "/tensors", tuple(TENSOR_LABELS), h5py.h5o.TYPE_DATASET)

    if "model_structure" in root:
        structure = fc.check_json_object(root["model_structure"], "model_structure")
    else:  # version 1: an unpruned fV-SRN whose grid codes carry the shape
        if fc.GRID not in datasets:
            raise FileFormatError(f"missing or unreadable tensor data (no /tensors/{fc.GRID})")
        grid_shape = datasets[fc.GRID].shape
        if len(grid_shape) != 4:
            raise FileFormatError(f"{TENSOR_LABELS[fc.GRID]} has the wrong type or shape: stored "
                                  f"{datasets[fc.GRID].dtype.name} {grid_shape}")
        structure = {"grid_shape": list(grid_shape[1:]), "keep_shape": None}
    structure = fc.check_structure(config, structure)
    if (structure.get("clustered_layers") and version < 4) or (structure.get("keep_shape") and version < 2):
        raise FileFormatError(f"a version {version} file cannot hold this model structure")
    plan = fc.tensor_specs(config, structure, geometry)

    layouts, stored = {}, []
    for name in plan.specs:
        if name not in datasets:
            raise FileFormatError(f"missing or unreadable tensor data (no /tensors/{name})")
    for name, dataset in datasets.items():
        if name not in plan.specs:
            raise FileFormatError(f"/tensors/{name} does not belong in a file of this model")
        wrapped = h5py.Dataset(dataset)
        expected = {LAYOUT_ATTRIBUTE[name]: TEXT} if name in LAYOUT_ATTRIBUTE else {}
        attributes = _attributes(wrapped, f"/tensors/{name}", expected)
        if expected and LAYOUT_ATTRIBUTE[name] not in attributes:
            raise DamagedFileError(f"it lacks the {LAYOUT_ATTRIBUTE[name]} attribute of /tensors/{name}")
        layouts.update(attributes)
        stored.append(_storage(name, dataset, plan.specs[name], file_size))
    fc.check_layout(layouts["weights_layout"], plan.weights_layout, "weights_layout")
    if plan.index_layout:
        fc.check_layout(layouts["indices_layout"], plan.index_layout, "indices_layout")
    header = {"version": version, "root": root, "source": source, "stats": stats, "layouts": layouts,
              "tensor_bytes": {s.name: s.storage for s in stored}}
    return header, stored


def _settings(cls: type, text: Any) -> Any:
    text = fc.check_text(text, f"the stored {cls.__name__}")
    try:
        return from_json(cls, text)
    except SettingsError as exc:
        raise FileFormatError(fc.one_line(exc)) from None


def _source(source: dict) -> Any:
    fc.check_array_name(source["array_name"])
    fc.check_source_dtype(source["dtype"])
    geometry = fc.check_geometry(source["extent"], source["origin"], source["spacing"])
    fc.check_value_range(source["value_min"], source["value_max"])
    return geometry


def _members(group_id, where: str, allowed: tuple[str, ...], kind: int) -> dict:
    """The group's members by name, each a hard link to an object of this kind with an allowed name (low-level
    ids, opened only after their link was checked)."""
    from h5py import h5l, h5o

    count = group_id.get_num_objs()
    if count > MAX_MEMBERS:
        raise FileFormatError(f"{where} holds {count} objects; the format defines at most {len(allowed)}")
    members = {}
    for index in range(count):
        raw = group_id.get_objname_by_idx(index)
        name = raw.decode("utf-8", "replace")
        link = group_id.links.get_info(raw).type
        if link != h5l.TYPE_HARD:
            kinds = {h5l.TYPE_SOFT: "a soft link", h5l.TYPE_EXTERNAL: "an external link (to another file)"}
            raise FileFormatError(f"{_join(where, name)} is {kinds.get(link, 'a user-defined link')}; "
                                  "srnvtk files hold only their own objects")
        if name not in allowed:
            raise FileFormatError(f"{_join(where, fc.one_line(ascii(name)[1:-1], 60))} is an object the format "
                                  "does not define")
        if h5o.get_info(group_id, raw).type != kind:
            what = "a group" if kind == h5o.TYPE_GROUP else "a dataset"
            raise FileFormatError(f"{_join(where, name)} is not {what}")
        members[name] = h5o.open(group_id, raw)
    return members


def _join(where: str, name: str) -> str:
    return f"{where.rstrip('/')}/{name}"


def _attributes(obj, where: str, specs: dict[str, tuple], only: str | None = None) -> dict[str, Any]:
    """The object's attributes (or only the one named), each of a known name, type and shape (checked before it
    is read)."""
    from h5py import h5t

    manager = obj.attrs
    count = len(manager)
    if count > MAX_ATTRIBUTES:
        raise FileFormatError(f"{where} has {count} attributes; the format defines at most {len(specs)}")
    values = {}
    for name in [only] if only is not None else list(manager):
        spec = specs.get(name)
        if spec is None:
            raise FileFormatError(f"{where} has an attribute '{fc.one_line(ascii(name)[1:-1], 60)}' the format does "
                                  "not define")
        attr = manager.get_id(name)
        kind, shape = spec
        type_class = attr.get_type().get_class()
        found_shape = attr.shape
        what = f"attribute {name} of {where}"
        if kind == "text":
            if type_class != h5t.STRING or found_shape != ():
                raise FileFormatError(f"{what} is not a text")
            values[name] = fc.check_text(manager[name], what)
            continue
        expected = np.dtype("<i8") if kind == "int" else np.dtype("<f8")
        if type_class != (h5t.INTEGER if kind == "int" else h5t.FLOAT):
            raise FileFormatError(f"{what} is not {'an integer' if kind == 'int' else 'a number'}")
        fc.check_dtype(what, attr.dtype, expected)
        if found_shape is None or (shape is not None and found_shape != shape) or \
                (shape is None and (len(found_shape) != 1 or found_shape[0] > 16)):
            raise FileFormatError(f"{what} has shape {found_shape}, not {shape if shape is not None else '(n,)'}")
        value = np.empty(found_shape, dtype=expected)
        attr.read(value)
        values[name] = value.tolist()  # Python ints and floats (JSON sends non-finite floats as NaN/Infinity)
    return values


def _storage(name: str, dataset, spec: fc.TensorSpec, file_size: int) -> _Stored:
    """Where the dataset's bytes are, after checking its type, shape, layout and storage against the spec."""
    from h5py import h5d, h5s, h5z

    where = f"/tensors/{name}"
    label = TENSOR_LABELS[name]
    dcpl = dataset.get_create_plist()
    if dcpl.get_external_count():
        raise FileFormatError(f"{where} keeps its data in other files (external storage)")
    layout = dcpl.get_layout()
    if layout == getattr(h5d, "VIRTUAL", 3):
        raise FileFormatError(f"{where} is a virtual dataset (its data lies in other datasets or files)")
    if dataset.get_space().get_simple_extent_type() != h5s.SIMPLE:
        raise FileFormatError(f"{where} has no simple shape")
    dtype, shape = dataset.dtype, tuple(int(s) for s in dataset.shape)
    if not spec.matches(dtype, shape):
        found = f"{np.dtype(dtype).name} {shape}"
        if name in (fc.WEIGHTS, fc.WEIGHT_INDICES) and np.dtype(dtype) == spec.dtype and len(shape) == 1:
            relation = "shorter" if shape[0] < spec.shape[0] else "longer"
            raise FileFormatError(f"{label} are {relation} than their layout ({shape[0]} values for {spec.shape[0]})")
        raise FileFormatError(f"{label} has the wrong type or shape: stored {found}, the model's is {spec.describe()}")
    nbytes = math.prod(shape) * dtype.itemsize
    storage = int(dataset.get_storage_size())
    stored = _Stored(name, np.dtype(dtype), shape, storage)
    if layout == h5d.CONTIGUOUS:
        if nbytes == 0:
            return stored
        offset = dataset.get_offset()
        if offset is None or storage != nbytes:
            raise FileFormatError(f"{where} declares {nbytes:,} bytes but stores {storage:,} (unwritten data)")
        _check_within(where, offset, nbytes, file_size)
        stored.contiguous.append((offset, nbytes))
        return stored
    if layout != h5d.CHUNKED:
        raise FileFormatError(f"{where} has a storage layout srnvtk never writes")
    filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    if filters != [h5z.FILTER_DEFLATE]:
        raise FileFormatError(f"{where} uses filters {filters}; srnvtk writes only deflate (gzip)")
    chunk = tuple(int(c) for c in dcpl.get_chunk())
    if len(chunk) != len(shape) or not all(1 <= c <= max(s, 1) for c, s in zip(chunk, shape, strict=True)):
        raise FileFormatError(f"{where} has chunks {chunk} that do not fit its shape {shape}")
    expected = math.prod(-(-s // c) for s, c in zip(shape, chunk, strict=True))
    count = dataset.get_num_chunks()
    if expected > MAX_CHUNKS or count != expected:
        raise FileFormatError(f"{where} stores {count} chunks of the {expected} its shape needs (unwritten data)")
    chunk_bytes = math.prod(chunk) * dtype.itemsize
    stored.chunk = chunk
    seen = set()
    for index in range(count):
        info = dataset.get_chunk_info(index)
        start = tuple(int(v) for v in info.chunk_offset)
        aligned = len(start) == len(shape) and all(
            0 <= o < s and o % c == 0 for o, s, c in zip(start, shape, chunk, strict=True))
        if not aligned or start in seen:
            raise DamagedFileError(f"{where} has a chunk at {start}")
        seen.add(start)
        size, mask = int(info.size), int(info.filter_mask)
        limit = chunk_bytes if mask else _deflate_bound(chunk_bytes)
        if info.byte_offset is None or mask not in (0, 1) or not 0 < size <= limit:
            raise DamagedFileError(f"{where} has a chunk of {size} bytes for {chunk_bytes} values' bytes")
        _check_within(where, int(info.byte_offset), size, file_size)
        stored.chunks.append((int(info.byte_offset), size, start, mask))
    return stored


def _deflate_bound(size: int) -> int:
    """zlib's compressBound: the most bytes deflate makes of size bytes."""
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 13


def _check_within(where: str, offset: int, size: int, file_size: int) -> None:
    if offset < 0 or offset + size > file_size:
        raise DamagedFileError(f"{where}'s data lies beyond the end of the file")


def _read_at(raw, offset: int, size: int, where: str) -> bytes:
    raw.seek(offset)
    data = raw.read(size)
    if len(data) != size:
        raise DamagedFileError(f"{where}'s data lies beyond the end of the file")
    return data


def _read_dataset(raw, stored: _Stored) -> np.ndarray:
    where = f"/tensors/{stored.name}"
    array = np.zeros(stored.shape, dtype=stored.dtype)
    if stored.contiguous:
        offset, size = stored.contiguous[0]
        array.reshape(-1).view(np.uint8)[:] = np.frombuffer(_read_at(raw, offset, size, where), dtype=np.uint8)
        return array
    chunk_bytes = math.prod(stored.chunk) * stored.dtype.itemsize
    for offset, size, start, mask in stored.chunks:
        data = _read_at(raw, offset, size, where)
        if not mask:
            data = _inflate(data, chunk_bytes, where)
        elif len(data) != chunk_bytes:
            raise DamagedFileError(f"{where} has an unfiltered chunk of {len(data)} bytes, not {chunk_bytes}")
        block = np.frombuffer(data, dtype=stored.dtype).reshape(stored.chunk)
        target = tuple(slice(o, min(o + c, s)) for o, c, s in zip(start, stored.chunk, stored.shape, strict=True))
        array[target] = block[tuple(slice(0, t.stop - t.start) for t in target)]
    return array


def _inflate(data: bytes, size: int, where: str) -> bytes:
    """The chunk's deflate stream inflated to exactly size bytes: refused when it would give more (a bomb never
    inflates past the size its shape declares), less, or does not end right there."""
    stream = zlib.decompressobj()
    try:
        out = stream.decompress(data, size)
        if not stream.eof:
            if stream.decompress(stream.unconsumed_tail, 1):
                raise FileFormatError(f"{where} has a chunk that inflates beyond its declared {size:,} bytes")
    except zlib.error as exc:
        raise DamagedFileError(f"{where}'s compressed data is corrupted ({exc})") from None
    if len(out) != size or not stream.eof or stream.unused_data:
        raise DamagedFileError(f"{where}'s compressed data is truncated or corrupted")
    return out


# ---------------------------------------------------------------------------------------------------------------
# contents (both sides)


def _contents(header: dict, arrays: dict[str, np.ndarray]) -> LegacyContents:
    return LegacyContents(int(header["version"]), dict(header["root"]), dict(header["source"]),
                          dict(header["stats"]), dict(header["layouts"]), dict(arrays),
                          {str(k): int(v) for k, v in header["tensor_bytes"].items()})


def _plan(contents: LegacyContents, announced: list[tuple[str, str, tuple[int, ...]]]) -> fc.TensorPlan:
    """The tensors the contents' own settings imply (the parent's second opinion on what the child announced)."""
    try:
        root = contents.root
        config = _settings(model_config_class(root["architecture"]), root["model_config"])
        geometry = _source(contents.source)
        if "model_structure" in root:
            structure = fc.check_json_object(root["model_structure"], "model_structure")
        else:  # version 1: the grid's shape is the structure
            grid = [shape for name, _dtype, shape in announced if name == fc.GRID]
            structure = {"grid_shape": list(grid[0][1:]) if grid else None, "keep_shape": None}
    except (KeyError, TypeError, SettingsError) as exc:
        raise DamagedFileError(f"the reader sent incomplete contents ({fc.one_line(exc, 80)})") from None
    return fc.tensor_specs(config, fc.check_structure(config, structure), geometry)
