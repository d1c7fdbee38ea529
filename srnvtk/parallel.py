"""Sharing a CPU decode between threads: pieces of the output lattice, a worker pool kept for the process."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import torch

Piece = tuple[int, int, int, int]  # z0, z1, y0, y1: planes z0..z1-1, rows y0..y1-1 of each

# How MPI launchers tell a process how many ranks share its machine (Open MPI, MPICH/Intel MPI, MVAPICH, Slurm)
LOCAL_RANKS_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE",
                         "SLURM_NTASKS_PER_NODE")


def default_threads() -> int:
    """CPU threads for a decode when none are asked for: torch's count (one per core), shared between the MPI
    ranks on this machine (pvbatch runs one reader piece per rank), unless OMP_NUM_THREADS already chose."""
    threads = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS"):
        return threads
    for name in LOCAL_RANKS_VARIABLES:
        try:
            ranks = int(os.environ.get(name, ""))
        except ValueError:
            continue
        if ranks > 1:
            return max(1, threads // ranks)
    return threads


def run_pieces(fill: Callable, pieces: Iterable, parallel: bool) -> None:
    """fill(piece) for every piece, on torch's number of CPU threads when parallel.

    Cache-sized blocks are too small for torch's intra-op threads to pay off: each worker thread takes whole
    pieces instead, with one intra-op thread (torch's kernels and srnvtk's C kernels release the GIL)."""
    pieces = list(pieces)
    threads = torch.get_num_threads()
    if not parallel or threads == 1 or len(pieces) == 1:
        for piece in pieces:
            fill(piece)
        return
    torch.set_num_threads(1)
    try:
        list(_worker_pool(threads).map(fill, pieces))
    finally:
        torch.set_num_threads(threads)


def lattice_pieces(nz: int, ny: int, threads: int) -> list[Piece]:
    """About four pieces per thread: runs of whole z planes, or, with fewer planes than two per thread, runs of
    rows of one plane. Either way a piece's output is one contiguous stretch of a (nz, ny, nx) array."""
    if nz >= 2 * threads:
        step = max(1, nz // (4 * threads))
        return [(z0, min(nz, z0 + step), 0, ny) for z0 in range(0, nz, step)]
    step = max(1, ny // (4 * threads))
    return [(k, k + 1, y0, min(ny, y0 + step)) for k in range(nz) for y0 in range(0, ny, step)]


def fill_lattice(shape: tuple[int, int, int], fill: Callable[[Piece, torch.Tensor], None]) -> torch.Tensor:
    """A (nz, ny, nx) float32 array, fill(piece, its contiguous (z1 - z0, y1 - y0, nx) part) for every piece,
    the pieces shared between torch's number of threads."""
    nz, ny, nx = shape
    out = torch.empty(shape, dtype=torch.float32)

    def fill_piece(piece: Piece) -> None:
        z0, z1, y0, y1 = piece
        fill(piece, out[z0:z1, y0:y1].view(z1 - z0, y1 - y0, nx))

    run_pieces(fill_piece, lattice_pieces(nz, ny, torch.get_num_threads()), parallel=True)
    return out


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _worker_pool(threads: int) -> ThreadPoolExecutor:
    """A pool kept for the process: starting threads for every block of a decode costs milliseconds each."""
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="srnvtk-decode")
        return _pools[threads]
