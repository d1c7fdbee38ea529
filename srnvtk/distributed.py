"""Compressing a volume brick by brick, on one process or on many MPI ranks, into one bricked .srn file.

Every rank runs the same steps on its own bricks (`compress_bricks`); a serial run is the same code with one
rank, so its file equals a many-rank run's brick for brick (each brick's seed depends on its index alone,
srnvtk.bricks). The steps, and what the ranks exchange between them:

1. settings: every rank's settings, grid and output path are compared with rank 0's; any difference stops all
   ranks with a message naming the ranks and the first setting that differs.
2. ownership: the grid of bricks is split into one box per rank (`assign_bricks`: halving the longest side, as
   VTK's extent translator does), so a rank's bricks, with their halos, form one box of the grid: its piece.
   A rank left without a brick is an error (fewer ranks, or smaller bricks).
3. a first pass over the rank's bricks reads each core once, checks it (finite values), and measures its range
   and complexity (srnvtk.bricks.brick_complexity); all ranks gather these, so every rank knows the value range
   every brick is trained on and, for a ratio target, every brick's share of the bytes (srnvtk.bricks).
4. training: one brick at a time, read with its halo from the source (a streamed source holds nothing else),
   trained, encoded as a file part (srnvtk.multipart.encode_part), its network dropped.
5. quality: ranks send each other the stored bricks their neighbours need, and every rank decodes its bricks'
   cores blended as a reader will (srnvtk.decode), against the source read once more; the squared
   errors are summed over all ranks into the file's PSNR.
6. writing: the parts' entries are gathered to rank 0, which writes one format-9 file (srnvtk.multipart): the
   head, then every brick's section in brick order, from its own memory or received from the brick's rank, into
   a temporary file that is renamed only when complete (srnvtk.container.atomic_writer).

Failures: a rank that fails (an error, Ctrl-C, SIGTERM) tells every other rank at once; they stop at their next
training step, all ranks meet at the next exchange, nobody writes, and every rank raises one error naming the
rank that failed and why. Temporary files are removed by whoever made them. A rank killed outright (SIGKILL)
cannot tell anyone: the MPI launcher then ends the others, and no file appears either (nothing is renamed).

MPI comes from mpi4py, imported only under an MPI launcher (mpirun, mpiexec, srun: `launched_by_mpi`) or when
asked for; without a launcher a request for MPI is an error rather than a silent serial run. Inside pvbatch
the same mpi4py (Debian's python3-mpi4py there) talks over ParaView's own MPI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bricks import (
    BRICK_BOOKKEEPING_BYTES,
    Brick,
    BrickLayout,
    brick_budgets,
    brick_complexity,
    brick_fit,
    brick_geometry,
    layout_for,
    plan_brick,
    stored_config,
    train_brick,
)
from .config import EncoderSettings, FVSRNConfig, TrainConfig
from .decode import decode
from .errors import InputError, SettingsError, SRNError, TrainingAborted
from .fileformat import SourceInfo, SRNFile, encoded_part_model
from .interrupts import Interrupts
from .metrics import compression_ratio, psnr_from_mse
from .multipart import EncodedPart, PartEntry, encode_part, fixed_bytes, write_compact_stream
from .parts import FieldInfo, PartData, PartInfo
from .sources import BrickSource
from .volume import Geometry, Volume

# Environment variables MPI launchers set in every process they start (Open MPI, MPICH/Hydra and Intel MPI, PMIx,
# Slurm's srun with PMI): the sign that this process is one rank of several.
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "PMI_RANK")
ABORT_TAG = 7701  # failure notes, on a communicator of their own
CHECK_INTERVAL = 0.2  # seconds between looks for failure notes while training
MODELS_HELD = 64  # brick networks a rank keeps built while it measures its cores (27 reach into one)


class RankError(SRNError):
    """Another rank failed: this one stopped (the message names the rank and its reason)."""


def launched_by_mpi() -> bool:
    """Whether an MPI launcher started this process (see LAUNCHER_VARIABLES)."""
    return any(os.environ.get(name) for name in LAUNCHER_VARIABLES)


# ---------------------------------------------------------------------------------------------------------------
# communication


class Comm:
    """One process on its own: what the driver needs of MPI, for a single rank."""

    rank = 0
    size = 1

    def allgather(self, value: Any) -> list[Any]:
        return [value]

    def bcast(self, value: Any, root: int = 0) -> Any:
        return value

    def alltoall(self, values: list[Any]) -> list[Any]:
        return list(values)

    def send_bytes(self, data: bytes, dest: int, tag: int) -> None:
        raise SettingsError("a single process sends to no one")

    def recv_bytes(self, length: int, source: int, tag: int) -> bytes:
        raise SettingsError("a single process receives from no one")

    def barrier(self) -> None:
        """Wait until every rank is here."""

    def notify_failure(self, message: str) -> None:
        """Tell every other rank that this one failed (it will still meet them at the next exchange)."""

    def failure(self) -> str | None:
        """A failure note another rank sent, if one has arrived."""
        return None

    def close(self) -> None:
        """Settle what is still in flight (failure notes), before the process goes on or ends."""


class MPIComm(Comm):
    """The ranks of MPI_COMM_WORLD through mpi4py; failure notes travel on a duplicate communicator, so that they
    never mix with the exchanges."""

    def __init__(self) -> None:
        try:
            from mpi4py import MPI
        except ImportError:
            raise SettingsError("this process runs under an MPI launcher, but mpi4py is not installed (pip install "
                                "mpi4py==4.1.2, or Debian's python3-mpi4py inside ParaView)") from None
        self.mpi = MPI
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.notes = self.comm.Dup()
        self._sent: list[Any] = []
        self._failure: str | None = None
        self._last_check = 0.0

    def allgather(self, value: Any) -> list[Any]:
        return self.comm.allgather(value)

    def bcast(self, value: Any, root: int = 0) -> Any:
        return self.comm.bcast(value, root=root)

    def alltoall(self, values: list[Any]) -> list[Any]:
        return self.comm.alltoall(values)

    def send_bytes(self, data: bytes, dest: int, tag: int) -> None:
        self.comm.Send([memoryview(data), self.mpi.BYTE], dest=dest, tag=tag)

    def recv_bytes(self, length: int, source: int, tag: int) -> bytes:
        buffer = bytearray(length)
        self.comm.Recv([buffer, self.mpi.BYTE], source=source, tag=tag)
        return bytes(buffer)

    def barrier(self) -> None:
        self.comm.Barrier()

    def notify_failure(self, message: str) -> None:
        note = message.encode("utf-8", "replace")[:4000]
        for other in range(self.size):
            if other != self.rank:
                self._sent.append(self.notes.Isend([note, self.mpi.BYTE], dest=other, tag=ABORT_TAG))

    def failure(self) -> str | None:
        now = time.monotonic()
        if self._failure is None and now - self._last_check >= CHECK_INTERVAL:
            self._last_check = now
            status = self.mpi.Status()
            if self.notes.Iprobe(source=self.mpi.ANY_SOURCE, tag=ABORT_TAG, status=status):
                self._failure = self._receive_note(status)
        return self._failure

    def _receive_note(self, status: Any) -> str:
        buffer = bytearray(status.Get_count(self.mpi.BYTE))
        self.notes.Recv([buffer, self.mpi.BYTE], source=status.Get_source(), tag=ABORT_TAG)
        return f"rank {status.Get_source()}: {buffer.decode('utf-8', 'replace')}"

    def close(self) -> None:
        # Every rank has met the others after any note was sent (the exchanges are collective): receive the notes
        # still waiting, then complete our own sends.
        self.comm.Barrier()
        status = self.mpi.Status()
        while self.notes.Iprobe(source=self.mpi.ANY_SOURCE, tag=ABORT_TAG, status=status):
            self._receive_note(status)
        if self._sent:
            self.mpi.Request.Waitall(self._sent)
            self._sent.clear()


def world(mode: str = "auto") -> Comm:
    """The ranks this process works with: 'auto' MPI when a launcher started it, else one process; 'on' MPI or a
    clear error; 'off' one process (refused under a launcher of several ranks, where every rank would write the
    same file)."""
    if mode not in ("auto", "on", "off"):
        raise SettingsError(f"MPI mode must be auto, on or off, got {mode!r}")
    launched = launched_by_mpi()
    if mode == "on" and not launched:
        raise SettingsError("MPI was asked for, but no MPI launcher started this process: run it as "
                            "mpirun -np N srnvtk compress ... (or mpiexec, srun)")
    if mode == "off" or not launched:
        if mode == "off" and launched and _launcher_size() > 1:
            raise SettingsError(f"--mpi off under an MPI launcher of {_launcher_size()} ranks: each would write "
                                "the same file; run one process, or leave MPI on")
        return Comm()
    return MPIComm()


def _launcher_size() -> int:
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        try:
            return int(os.environ[name])
        except (KeyError, ValueError):
            continue
    return 1


# ---------------------------------------------------------------------------------------------------------------
# ownership


def assign_bricks(counts: tuple[int, int, int], ranks: int) -> list[list[Brick]]:
    """The bricks of each rank: the box of brick indices split in two, in proportion to the ranks each half gets,
    along the side that shares the bricks out most evenly (the longest of those), until every rank has a box; a
    rank's bricks in brick order (x fastest). Ranks beyond the bricks get empty boxes."""
    if ranks < 1:
        raise SettingsError("at least one rank is needed")
    boxes: list[tuple[tuple[int, int], ...]] = []

    def split(box: tuple[tuple[int, int], ...], n: int) -> None:
        if n == 1:
            boxes.append(box)
            return
        lengths = [hi - lo for lo, hi in box]
        first = n // 2
        # the side whose cut shares the bricks out most evenly; of those, the longest
        axis = min(range(3), key=lambda a: (abs(round(lengths[a] * first / n) / max(lengths[a], 1) - first / n),
                                            -lengths[a], -a))
        lo, hi = box[axis]
        cut = lo + round(lengths[axis] * first / n)
        a = list(box)
        b = list(box)
        a[axis], b[axis] = (lo, cut), (cut, hi)
        split(tuple(a), first)
        split(tuple(b), n - first)

    split(tuple((0, c) for c in counts), ranks)
    return [[(i, j, k) for k in range(*z) for j in range(*y) for i in range(*x)] for x, y, z in boxes]


def piece_extent(grid: Geometry, layout: BrickLayout, bricks: list[Brick]) -> tuple[int, ...]:
    """The box of the grid a rank's bricks cover with their halos: what it reads (its piece)."""
    return _bounding_box([layout.extent(grid, b) for b in bricks])


def core_box(grid: Geometry, layout: BrickLayout, bricks: list[Brick]) -> tuple[int, ...]:
    """The box of the grid a rank's bricks are responsible for (their cores): what its reconstruction covers."""
    return _bounding_box([layout.core(grid, b) for b in bricks])


def _bounding_box(extents: list[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(min(e[2 * a] for e in extents) if s == 0 else max(e[2 * a + 1] for e in extents)
                 for a in range(3) for s in (0, 1))


# ---------------------------------------------------------------------------------------------------------------
# the run


@dataclass
class BrickedResult:
    """What a rank of a bricked compression made: the file's stats (the same on every rank) and this rank's part."""

    layout: BrickLayout
    stats: dict[str, float]
    file_bytes: int | None
    bricks: list[Brick]  # this rank's
    configs: dict[Brick, FVSRNConfig] = field(default_factory=dict)  # what each of this rank's bricks trained
    reconstruction: np.ndarray | None = None  # this rank's core box, when asked for
    reconstruction_extent: tuple[int, ...] | None = None
    ranks: int = 1
    peak_rss: list[int] = field(default_factory=list)  # every rank's peak resident memory before writing, bytes


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, SRNError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"{type(exc).__name__}: {exc}"


INTERRUPTED = "interrupted"
STOPPED = "stopped because "


def _settings_key(settings: EncoderSettings, size: int, halo: int, grid: Geometry, path: str | None,
                  gamma: float) -> dict[str, Any]:
    return {"settings": json.loads(json.dumps(dataclasses.asdict(settings))), "brick_size": size, "halo": halo,
            "grid": [list(grid.extent), list(grid.origin), list(grid.spacing)],
            "output": os.path.abspath(path) if path else None, "gamma": gamma}


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
    return f"{where}: {a!r} vs {b!r}"


def compress_bricks(
    source: BrickSource,
    settings: EncoderSettings,
    *,
    brick_size: int,
    halo: int,
    path: str | os.PathLike | None = None,
    comm: Comm | None = None,
    gamma: float = 0.0,
    progress: Callable[[float, str], None] | None = None,
    should_abort: Callable[[], bool] | None = None,
    keep_reconstruction: bool = False,
    interrupts: Interrupts | None = None,
) -> BrickedResult:
    """Compress the source brick by brick on this rank and its peers into one bricked file at path (see the
    module). settings.encode.ratio sets the whole file's byte budget (None: every brick trains the model
    settings as given); settings.train.steps are per brick, a time limit is for the whole run. Every rank calls
    this with the same arguments; every rank returns the same stats, or raises the same error.

    interrupts: the caller's (srnvtk.interrupts.Interrupts, already catching signals); None: caught for the run."""
    comm = comm or Comm()
    with Interrupts(interrupts) as caught:
        run = _Run(source, settings, brick_size, halo, path, comm, gamma, progress, should_abort, caught)
        try:
            return run.all(keep_reconstruction)
        finally:
            comm.close()


class _Run:
    """One rank's run, as phases of local work each ended by an exchange that every rank reaches, whatever
    happened in its work; failures are raised only from what an exchange gathered, so all ranks raise alike."""

    def __init__(self, source: BrickSource, settings: EncoderSettings, brick_size: int, halo: int,
                 path: str | os.PathLike | None, comm: Comm, gamma: float,
                 progress: Callable[[float, str], None] | None, should_abort: Callable[[], bool] | None,
                 interrupts: Interrupts) -> None:
        self.source, self.settings, self.path, self.comm = source, settings, path, comm
        self.brick_size, self.halo, self.gamma = brick_size, halo, gamma
        self.progress, self.user_abort, self.interrupts = progress, should_abort, interrupts
        self.grid = source.geometry
        self.stored: dict[Brick, EncodedPart] = {}
        self.trained: dict[Brick, FVSRNConfig] = {}  # what each of this rank's bricks trained (grown or not)
        self.received: dict[Brick, EncodedPart] = {}  # other ranks' bricks that this rank's cores blend with

    # -- exchanges ----------------------------------------------------------------------------------------------
    def _phase(self, work: Callable[[], Any]) -> list[Any]:
        """Run this rank's work, then exchange (error, result) with every rank; raise the first failure."""
        if self.comm.size == 1:  # nobody to tell: errors are raised as they are
            self.interrupts.check()
            result = work()
            self.interrupts.check()
            return [result]
        error, result = None, None
        try:
            self.interrupts.check()
            result = work()
            self.interrupts.check()
        except BaseException as exc:  # noqa: BLE001 (every rank must reach the exchange)
            error = _describe(exc)
            if not error.startswith(STOPPED):
                self.comm.notify_failure(error)
        gathered = self.comm.allgather((error, result))
        _raise_failures([(r, e) for r, (e, _) in enumerate(gathered) if e], self.comm.rank)
        return [r for _, r in gathered]

    def _abort(self) -> bool:
        """The trainer's abort callback: another rank's failure note, an interrupt, or the caller's abort."""
        note = self.comm.failure()
        if note is not None:
            raise RankError(f"{STOPPED}{note}")
        self.interrupts.check()
        return bool(self.user_abort and self.user_abort())

    def _report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(fraction, message)

    # -- the run -----------------------------------------------------------------------------------------------
    def all(self, keep_reconstruction: bool) -> BrickedResult:
        settings, grid, comm = self.settings, self.grid, self.comm
        key = _settings_key(settings, self.brick_size, self.halo, grid, None if self.path is None else str(self.path),
                            self.gamma)
        keys = self._phase(lambda: key)
        differ = [r for r, k in enumerate(keys) if k != keys[0]]
        if differ:
            who = f"rank {differ[0]} disagrees" if len(differ) == 1 else \
                f"ranks {', '.join(map(str, differ))} disagree"
            raise SettingsError(f"{who} with rank 0 on the settings "
                                f"({_first_difference(keys[0], keys[differ[0]])}); every rank must run the same "
                                "command")
        if settings.encode.architecture not in ("fvsrn", "auto"):  # auto: the fV-SRN settings as given
            raise SettingsError("bricks are compressed with fvsrn networks only")
        if settings.fvsrn.grid_bits != 8 or settings.encode.max_error is not None \
                or settings.encode.max_rel_error is not None:
            raise SettingsError("bricks store 8-bit latent codes and no error bound yet; leave --grid-bits, "
                                "--max-error and --max-rel-error out")
        if settings.encode.psnr is not None:
            raise SettingsError("a PSNR target is not supported with bricks yet; use a target ratio")
        layout = self.layout = layout_for(grid, self.brick_size, self.halo)
        all_bricks = layout.indices(grid)
        owners = assign_bricks(layout.counts(grid), comm.size)
        empty = [r for r, bricks in enumerate(owners) if not bricks]
        if empty:
            raise SettingsError(f"{comm.size} ranks for {len(all_bricks)} bricks: rank {empty[0]} would have no "
                                "brick; use fewer ranks or smaller bricks")
        mine = self.mine = owners[comm.rank]
        self.owner_of = {b: r for r, bricks in enumerate(owners) for b in bricks}

        surveys = [row for rows in self._phase(self._survey) for row in rows]
        value_range = (min(r[1] for r in surveys), max(r[2] for r in surveys))
        if not value_range[1] > value_range[0]:
            raise InputError(f"array '{self.source.name}' is constant ({value_range[0]:g}); there is nothing to "
                             "learn, store the value instead")
        self.value_range = value_range
        points = {r[0]: r[3] for r in surveys}
        complexity = {r[0]: r[4] / (value_range[1] - value_range[0]) for r in surveys}
        if settings.encode.ratio is not None:
            field = FieldInfo(self.source.name, self.source.dtype, 1, (value_range,))
            self.budgets, self.configs = _plan(settings, grid, layout, field, all_bricks, points, complexity,
                                               self.gamma)
        else:
            self.budgets, self.configs = {}, {b: settings.fvsrn for b in all_bricks}

        started = time.perf_counter()
        self._phase(lambda: self._train(started))
        train_seconds = time.perf_counter() - started

        wanted: list[list[Brick]] = [[] for _ in range(comm.size)]
        for brick in _neighbours(mine, layout, grid):
            if brick not in self.stored:
                wanted[self.owner_of[brick]].append(brick)
        requests = comm.alltoall(wanted)
        replies = comm.alltoall([[self.stored[b] for b in asked] for asked in requests])
        received = [item for reply in replies for item in reply]

        gathered = self._phase(lambda: self._measure(received, keep_reconstruction, train_seconds))
        range_ = value_range[1] - value_range[0]
        stats = {"psnr": psnr_from_mse(sum(g[0] for g in gathered) / grid.num_points, range_),
                 "train_seconds": max(g[1] for g in gathered), "steps": float(sum(g[2] for g in gathered)),
                 "pruned_fraction": math.nan, "final_loss": math.nan}
        gathered = self._phase(lambda: ([self.stored[b].entry for b in mine], peak_rss_bytes()))
        entries = [e for rows, _ in gathered for e in rows]
        peak_rss = [rss for _, rss in gathered]
        file_bytes = None
        if self.path is not None:
            file_bytes = self._write(entries, stats)
            stats["file_bytes"] = float(file_bytes)
            stats["ratio"] = compression_ratio(grid.num_points, file_bytes)
        self._report(1.0, "done")
        return BrickedResult(layout, stats, file_bytes, mine, dict(self.trained),
                             getattr(self, "reconstruction", None), getattr(self, "box", None), comm.size, peak_rss)

    def _survey(self) -> list[tuple[Brick, float, float, int, float]]:
        """Every core of this rank read once: finite, its range, its points, its complexity in data units."""
        rows = []
        for brick in self.mine:
            core = self.source.read(self.layout.core(self.grid, brick))
            if core.dtype.kind == "f":
                finite = np.isfinite(core)
                if not finite.all():
                    raise InputError(f"array '{self.source.name}' holds {int(core.size - finite.sum())} NaN or "
                                     f"infinite values in brick {brick}; clean them first")
            rows.append((brick, float(core.min()), float(core.max()), int(core.size),
                         brick_complexity(core, (0.0, 1.0))))
            self.interrupts.check()
        return rows

    def _train(self, started: float) -> None:
        grid, layout, mine = self.grid, self.layout, self.mine
        for n, brick in enumerate(mine):
            data_extent = layout.extent(grid, brick)
            volume = Volume(self.source.read(data_extent), brick_geometry(grid, data_extent), self.source.name)
            train = _brick_train_config(self.settings.train, started, n, len(mine))
            fit = final_fit = None
            if brick in self.budgets:
                fit = brick_fit(self.budgets[brick], volume.geometry)
                final_fit = brick_fit(self.budgets[brick], volume.geometry, grow=False)

            def brick_progress(fraction: float, message: str, n: int = n, brick: Brick = brick) -> None:
                self._report(0.9 * (n + fraction) / len(mine), f"brick {n + 1}/{len(mine)} {brick}: {message}")

            trained = train_brick(volume, brick, model_config=self.configs[brick], train_config=train,
                                  value_range=self.value_range, pruning=self.settings.pruning, fit=fit,
                                  final_fit=final_fit, progress=brick_progress, should_abort=self._abort)
            del volume
            self.trained[brick] = trained.model.config
            self.stored[brick] = _encode(brick, trained.model, trained.stats, self.settings.pruning, grid, layout)

    def _measure(self, received: list[EncodedPart], keep_reconstruction: bool,
                 train_seconds: float) -> tuple[float, float, float]:
        """This rank's cores decoded blended (neighbours from other ranks built from what they sent) against the
        source: (squared error, train seconds, steps)."""
        grid, layout = self.grid, self.layout
        self.received = {item.entry.brick: item for item in received}
        # Networks are built from their stored bytes, as a reader builds them, and only the last few kept: a rank
        # holds its bricks' bytes, never all their networks.
        models: OrderedDict[Brick, Any] = OrderedDict()

        def load(brick: Brick) -> Any:
            if brick in models:
                models.move_to_end(brick)
                return models[brick]
            stored = self.stored.get(brick) or self.received[brick]
            models[brick] = encoded_part_model(stored, grid, layout)
            if len(models) > MODELS_HELD:
                models.popitem(last=False)
            return models[brick]
        if keep_reconstruction:
            self.box = box = core_box(grid, layout, self.mine)
            dims = [box[2 * a + 1] - box[2 * a] + 1 for a in range(3)]
            self.reconstruction = np.empty(dims[::-1], dtype=np.dtype(self.source.dtype))
        sse = 0.0
        range_ = self.value_range[1] - self.value_range[0]
        order = layout.indices(grid)
        source = SourceInfo(self.source.name, self.source.dtype, grid, self.value_range)
        # this rank's bricks and their neighbours as a file of bricks in memory, decoded as a reader decodes a file
        near = [b for b in order if b in self.stored or b in self.received]
        parts = tuple(PartInfo(i, 0, 0, b, layout.extent(grid, b), self.settings.fvsrn, self.settings.pruning, {})
                      for i, b in enumerate(near))
        for n, brick in enumerate(self.mine):
            core = layout.core(grid, brick)
            # a fresh file object per brick: SRNFile keeps every network it builds, `load` keeps the last few
            srn = SRNFile(None, self.settings.fvsrn, source, {}, {}, self.settings.pruning, parts=parts,
                          bricks=layout, part_loader=lambda i, near=near: load(near[i]))
            values = decode(srn, brick_geometry(grid, core), device=self.settings.train.device,
                            threads=self.settings.train.threads)
            diff = values.astype(np.float64) - self.source.read(core)
            brick_sse = float(np.vdot(diff, diff))
            sse += brick_sse
            self.stored[brick].entry.stats["psnr"] = psnr_from_mse(brick_sse / diff.size, range_)
            if keep_reconstruction:
                box = self.box
                sl = tuple(slice(core[2 * a] - box[2 * a], core[2 * a + 1] - box[2 * a] + 1) for a in (2, 1, 0))
                self.reconstruction[sl] = values
            self.interrupts.check()
            self._report(0.9 + 0.08 * (n + 1) / len(self.mine), f"measuring brick {n + 1}/{len(self.mine)}")
        steps = sum(self.stored[b].entry.stats.get("steps", 0.0) for b in self.mine)
        return sse, train_seconds, steps

    def _write(self, entries: list[PartEntry], stats: dict[str, float]) -> int:
        """Rank 0 writes the file from its bricks and those the others send, in brick order (see the module)."""
        comm, order = self.comm, self.layout.indices(self.grid)
        by_brick = {e.brick: e for e in entries}
        ordered = [by_brick[b] for b in order]
        field = FieldInfo(self.source.name, self.source.dtype, 1, (self.value_range,))

        def sections() -> Iterator[bytes]:
            for n, brick in enumerate(order):
                owner = self.owner_of[brick]
                yield self.stored[brick].data if owner == 0 else comm.recv_bytes(by_brick[brick].section.length,
                                                                                  owner, n)

        def work() -> int:
            if comm.rank == 0:
                return write_compact_stream(self.path, self.grid, [0.0], [field], self.layout, ordered, stats,
                                            sections())
            for n, brick in enumerate(order):
                if self.owner_of[brick] == comm.rank:
                    comm.send_bytes(self.stored[brick].data, 0, n)
            return 0

        return self._phase(work)[0]


def agree(comm: Comm, work: Callable[[], Any], interrupts: Interrupts | None = None) -> Any:
    """work() on every rank, then an exchange: the first rank's failure (or interrupt) raised on all ranks alike (so
    that no rank goes on to wait for one that stopped), else work's result."""
    if comm.size == 1:
        return work()
    error, result = None, None
    try:
        result = work()
        if interrupts is not None:
            interrupts.check()
    except BaseException as exc:  # noqa: BLE001 (every rank must reach the exchange)
        error = _describe(exc)
    _raise_failures([(r, e) for r, e in enumerate(comm.allgather(error)) if e], comm.rank)
    return result


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _raise_failures(failures: list[tuple[int, str]], rank: int) -> None:
    """One error for every rank: the first failure, naming its rank (ranks that only stopped because another
    failed are not the cause). A single process raises its own error as it is."""
    if not failures:
        return
    causes = [(r, e) for r, e in failures if not e.startswith(STOPPED)] or failures
    r, message = causes[0]
    if len({e for _, e in causes}) == 1 and len(causes) > 1 and message != INTERRUPTED:
        raise RankError(message)  # every rank failing alike (the same bad input): no rank to name
    if message == INTERRUPTED:
        if r == rank:
            raise KeyboardInterrupt(f"rank {r} was interrupted")
        raise RankError(f"rank {r} was interrupted")
    raise RankError(message if message.startswith(STOPPED) else f"rank {r}: {message}")


def _brick_train_config(train: TrainConfig, started: float, done: int, count: int) -> TrainConfig:
    """A brick's training settings: its steps as given; a time limit (for the whole run) shared out over the
    bricks still to train."""
    if not train.time_limit:
        return train
    left = max(train.time_limit - (time.perf_counter() - started), 0.0)
    return dataclasses.replace(train, time_limit=max(left / (count - done), 1e-3))


def _neighbours(bricks: list[Brick], layout: BrickLayout, grid: Geometry) -> list[Brick]:
    """Every brick whose weights reach into these bricks' cores (halo > 0: the 26 around each), in order."""
    if layout.halo == 0:
        return []
    counts = layout.counts(grid)
    found = set()
    for i, j, k in bricks:
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                for dk in (-1, 0, 1):
                    b = (i + di, j + dj, k + dk)
                    if all(0 <= b[a] < counts[a] for a in range(3)):
                        found.add(b)
    return sorted(found, key=lambda b: (b[2], b[1], b[0]))


def _plan(settings: EncoderSettings, grid: Geometry, layout: BrickLayout, field: FieldInfo, bricks: list[Brick],
          points: dict[Brick, int], complexity: dict[Brick, float],
          gamma: float) -> tuple[dict[Brick, int], dict[Brick, FVSRNConfig]]:
    """Every brick's byte budget and planned network for the ratio target (every rank computes the same): the
    budget less the file's fixed bytes (srnvtk.multipart.fixed_bytes with the planned settings and grids), shared
    out over the bricks (srnvtk.bricks.brick_budgets)."""
    from .encoder import budget_for_ratio

    total = budget_for_ratio(settings.encode.ratio, grid)
    base = settings.fvsrn
    # Start from the header without parts: the plan must not depend on the grid resolution given (it picks its own)
    fixed = _fixed_bytes(grid, layout, field, {}, settings)
    for _round in range(3):  # the fixed cost depends on the settings the bricks end up with, and back
        budgets = dict(zip(bricks, brick_budgets(total - fixed, [points[b] for b in bricks],
                                                 [complexity[b] for b in bricks], gamma), strict=True))
        try:
            planned = {b: plan_brick(budgets[b], brick_geometry(grid, layout.extent(grid, b)), base) for b in bricks}
        except SettingsError as exc:
            raise SettingsError(f"ratio {settings.encode.ratio:g} with bricks of {layout.size[0]}: {exc}") from None
        now = _fixed_bytes(grid, layout, field, planned, settings)
        if now <= fixed:  # (a few bytes more at the end: BRICK_BOOKKEEPING_BYTES keeps a share for them)
            break
        fixed = now
    if total - fixed < len(bricks) * BRICK_BOOKKEEPING_BYTES:
        raise SettingsError(f"ratio {settings.encode.ratio:g} leaves {total} bytes for {len(bricks)} bricks")
    return budgets, planned


def _fixed_bytes(grid: Geometry, layout: BrickLayout, field: FieldInfo, planned: dict[Brick, FVSRNConfig],
                 settings: EncoderSettings) -> int:
    """The file's bytes beyond its bricks' for these planned networks (their grids' structures as planned)."""
    from .container import SectionEntry
    from .models.fvsrn import grid_shape_for

    empty = SectionEntry(0, 0, 0, 0)
    entries = []
    for brick, config in planned.items():
        shape = grid_shape_for(config, brick_geometry(grid, layout.extent(grid, brick)))
        entries.append(PartEntry(0, 0, brick, stored_config(config), settings.pruning,
                                 {"grid_shape": list(shape), "keep_shape": None}, empty, {}))
    return fixed_bytes(grid, [0.0], [field], layout, entries)


def _encode(brick: Brick, model: Any, stats: dict[str, float], pruning: Any, grid: Geometry,
            layout: BrickLayout) -> EncodedPart:
    """A trained brick network (at its stored precision) as a file part."""
    from .quantize import storage_tensors

    return encode_part(PartData(0, 0, brick, stored_config(model.config), pruning, storage_tensors(model),
                                dict(stats)), grid, layout)


__all__ = ["BrickedResult", "Comm", "MPIComm", "RankError", "TrainingAborted", "assign_bricks", "compress_bricks",
           "launched_by_mpi", "piece_extent", "world"]
