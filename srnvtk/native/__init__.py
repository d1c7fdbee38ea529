"""C kernels compiled on first use for this machine's CPU, cached on disk, loaded with ctypes.

A kernel is built with the system C compiler (`$CC`, else cc, gcc or clang) and -march=native, because its
speed comes from the CPU's full vector width; so it is built where it runs rather than shipped. Where no
compiler works, or with SRNVTK_NATIVE=0, `load_kernel` returns None and callers use their torch path.
Built libraries live in $SRNVTK_CACHE_DIR (default ~/.cache/srnvtk/kernels), named by a hash of the source,
the settings, the compiler and the CPU, and are written under a temporary name and then renamed, so a
concurrent or interrupted build never leaves a half-written library to load. The folder is made private
(0700), and a library is loaded only when this user owns it and nobody else can write to it or its folder.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent
# -ffp-contract=fast: multiply-adds become FMAs (GCC's ISO C modes would not contract them). No -ffast-math:
# the kernels' rounding tricks and NaN propagation rely on IEEE arithmetic.
FLAGS = ("-O3", "-march=native", "-std=c11", "-ffp-contract=fast", "-fno-math-errno", "-fPIC", "-shared")
COMPILE_SECONDS = 120

_loaded: dict[tuple, ctypes.CDLL | None] = {}
_lock = threading.Lock()


def native_enabled() -> bool:
    return os.environ.get("SRNVTK_NATIVE", "1").strip().lower() not in ("0", "no", "off", "false")


def cache_dir() -> Path:
    configured = os.environ.get("SRNVTK_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "srnvtk" / "kernels"


def find_compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def load_kernel(source: str, defines: dict[str, int] | None = None) -> ctypes.CDLL | None:
    """The library built from SOURCE_DIR/source (and the headers beside it) with -D<name>=<value> for each
    define; None when it cannot be built here (the reason is logged once). Built once per process and settings."""
    if not native_enabled():
        return None
    defines = defines or {}
    key = (source, tuple(sorted(defines.items())))
    with _lock:
        if key not in _loaded:
            try:
                _loaded[key] = _open(SOURCE_DIR / source, defines)
            except (OSError, subprocess.SubprocessError, RuntimeError) as error:
                log.info("srnvtk: native kernel %s unavailable (%s); using the torch path", source, error)
                _loaded[key] = None
        return _loaded[key]


def _open(source: Path, defines: dict[str, int]) -> ctypes.CDLL:
    library = _build(source, defines)
    try:
        return ctypes.CDLL(str(library))
    except OSError:  # a damaged file in the cache: build it again once
        library.unlink(missing_ok=True)
        return ctypes.CDLL(str(_build(source, defines)))


def _build(source: Path, defines: dict[str, int]) -> Path:
    """The cached library for these settings, compiled first when it is not there."""
    compiler = find_compiler()
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc)")
    args = [*FLAGS, *(f"-D{name}={int(value)}" for name, value in sorted(defines.items()))]
    fingerprint = hashlib.sha256()
    headers = [header.read_bytes() for header in sorted(source.parent.glob("*.h"))]
    for part in (source.read_bytes(), *headers, " ".join(args).encode(), _compiler_version(compiler),
                 _cpu_description()):
        fingerprint.update(part)
        fingerprint.update(b"\0")
    target = cache_dir() / f"{source.stem}-{fingerprint.hexdigest()[:20]}.so"
    if target.exists():
        _check_trusted(target)
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(mode=0o700, exist_ok=True)  # private whatever the umask
    _check_trusted(target.parent)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".so")
    os.close(handle)
    try:
        result = subprocess.run([compiler, *args, "-o", partial, str(source)], capture_output=True, text=True,
                                timeout=COMPILE_SECONDS)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(compiler).name} failed: {result.stderr.strip()[-500:]}")
        os.chmod(partial, 0o700)  # the linker made it by the umask, which may let the group write
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _check_trusted(path: Path) -> None:
    """Loading a library runs its code: only load what this user owns and nobody else can write (a cache put
    in a shared folder such as /tmp must not let another user plant a library there)."""
    status = path.stat()
    if hasattr(os, "getuid") and (status.st_uid != os.getuid() or status.st_mode & 0o022):
        raise RuntimeError(f"{path} is not owned by this user or others can write to it")


def _compiler_version(compiler: str) -> bytes:
    result = subprocess.run([compiler, "--version"], capture_output=True, timeout=30)
    return compiler.encode() + result.stdout


def _cpu_description() -> bytes:
    """What -march=native depends on: the CPU's model and feature flags (a shared cache may span machines)."""
    description = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            lines = [line for line in cpuinfo if line.startswith(("model name", "flags", "Features", "CPU part"))]
        description += "".join(sorted(set(lines)))
    except OSError:
        pass
    return description.encode()
