"""Decoding and training on a GPU: fused Triton kernels for lattice decoding, a graph-captured training step.

Why: on a GPU the lattice paths written for CPU caches (srnvtk.lattice, srnvtk.neurcomp_eval) are bound by kernel
launches and by passes over activation blocks in device memory. Here one Triton kernel per model does a whole
block of output voxels in registers: the latent lookup (or Neurcomp's positions), every layer and the cast to the
output's dtype (srnvtk/gpu/kernels.py, the maths; srnvtk/gpu/decoders.py, packing and launching). Training
(srnvtk/gpu/graphed_step.py) captures one whole step in a CUDA graph and replays it.

triton is optional and imported only when a GPU path is asked for: `lattice_evaluator` returns None (and
srnvtk.decode keeps its torch paths) where it is not installed, where SRNVTK_TRITON=0, for models on the CPU, and for
shapes the kernels do not cover. With Triton's interpreter (TRITON_INTERPRET=1 set before triton is first
imported) the same kernels run on CPU tensors, slowly: that is how the tests check them without a GPU.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import warnings
from types import ModuleType

import torch

log = logging.getLogger(__name__)

# How the kernels compute sines (kernels.py, SIN): Triton's sin, the CPU kernels' polynomial, or the GPU's
# approximate instructions (not in the interpreter).
SIN_MODES = {"exact": 0, "poly": 1, "approx": 2}

_kernels: ModuleType | None = None
_failure: str | None = None
_lock = threading.Lock()
_warned: list[str] = []  # the fallback on CUDA is reported once per process


def triton_enabled() -> bool:
    """False when SRNVTK_TRITON is 0/no/off/false: decoding then keeps the torch paths on a GPU too."""
    return os.environ.get("SRNVTK_TRITON", "1").strip().lower() not in ("0", "no", "off", "false")


def interpreting() -> bool:
    """Whether the kernels run in Triton's CPU interpreter: TRITON_INTERPRET=1 when they were first imported (set
    before triton is imported, and kept: see use_interpreter)."""
    if _kernels is not None:
        return _kernels.INTERPRETED
    return os.environ.get("TRITON_INTERPRET", "0").strip() == "1"


def load_kernels() -> ModuleType | None:
    """srnvtk.gpu.kernels, imported on first use; None (the reason logged once) when triton cannot be imported."""
    with _lock:
        return _import_kernels()


def use_interpreter() -> bool:
    """Run the kernels in Triton's CPU interpreter (tests and smoke runs without a GPU): sets TRITON_INTERPRET=1
    for the rest of the process (triton reads it again while launching) and imports triton and the kernels. False
    when triton is missing, or was already imported for a GPU in this process (the interpreter must be chosen
    before triton is first imported: its own library is made of jit functions)."""
    with _lock:
        if _kernels is None and _failure is None:
            if "triton" in sys.modules and not _triton_interprets():
                return False
            os.environ["TRITON_INTERPRET"] = "1"
            _import_kernels()
        return _kernels is not None and _kernels.INTERPRETED


def _triton_interprets() -> bool:
    """Whether the imported triton made its library's jit functions for the interpreter."""
    import triton

    standard = vars(triton.language.standard).values()
    return not any(isinstance(value, triton.runtime.JITFunction) for value in standard)


def _import_kernels() -> ModuleType | None:
    global _kernels, _failure
    if _kernels is None and _failure is None:
        try:
            _kernels = importlib.import_module(".kernels", __name__)
        except Exception as error:  # ImportError, or a triton that fails while setting itself up
            _failure = f"{type(error).__name__}: {error}"
            log.info("srnvtk: triton unavailable (%s); GPU decoding uses the torch paths", _failure)
    return _kernels


def unavailable_reason() -> str | None:
    """Why the kernels cannot be used in this process, or None when they can."""
    if not triton_enabled():
        return "SRNVTK_TRITON=0"
    load_kernels()
    return _failure


def runs_on(device: torch.device) -> bool:
    """Whether the kernels run for tensors on this device: CUDA, or the CPU under the interpreter."""
    return device.type == "cuda" or (device.type == "cpu" and interpreting())


def lattice_evaluator(model: torch.nn.Module, dtype: torch.dtype = torch.float32, sin: str | None = None):
    """A TritonFVSRN or TritonNeurcomp (srnvtk.gpu.decoders) for this model on its device, or None where the kernels
    do not apply (see the module docstring). dtype: float32, or float16 for fp16 products; sin: a SIN_MODES name
    (default: 'poly' in fp32, 'approx' in fp16 on a GPU)."""
    from .decoders import build_evaluator

    reason = unavailable_reason()
    if reason is None:
        return build_evaluator(model, dtype, sin)
    parameter = next(model.parameters(), None)
    if triton_enabled() and parameter is not None and parameter.device.type == "cuda" and not _warned:
        _warned.append(reason)
        warnings.warn(f"triton is not usable ({reason}): decoding on CUDA takes the slower torch path "
                      "(pip install triton)", RuntimeWarning, stacklevel=3)
    return None


__all__ = ["SIN_MODES", "interpreting", "lattice_evaluator", "load_kernels", "runs_on", "triton_enabled",
           "unavailable_reason", "use_interpreter"]
