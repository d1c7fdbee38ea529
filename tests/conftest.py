"""Shared fixtures: tiny volumes and settings that train in well under a second on one CPU core."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from srnvtk.config import FVSRNConfig, TrainConfig

# Triton chooses between compiling and interpreting when it is first imported, and torch imports it too (its
# optimisers load torch._dynamo, which looks for triton): without a GPU, choose the CPU interpreter before any test
# runs, so that tests/test_gpu_kernels.py can run the GPU kernels.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# A suite started as a background job of a non-interactive shell (`bash .ci/run &`) inherits SIGINT ignored, and so
# would every command it starts: the interrupt tests need Ctrl-C to act as it does at a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TINY_SHAPE = (16, 14, 12)  # points along x, y, z: small, and no two axes alike, so axis mix-ups show

# A model and a training run just big enough to learn something: tests check plumbing, not quality.
TINY_MODEL = FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=16, mlp_layers=2, fourier_features=2)
FAST_TRAIN = TrainConfig(steps=40, batch_size=4096, learning_rate=1e-2, seed=0, device="cpu")
FAST_COMPRESS_ARGS = (
    "--grid-channels", "4", "--grid-resolution", "8", "--mlp-width", "16", "--mlp-layers", "2",
    "--fourier-features", "2", "--steps", "40", "--batch-size", "4096", "--seed", "0", "--device", "cpu",
    "--quiet",
)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Test tensors are tiny: extra threads only spin, and slow the suite badly on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache(tmp_path_factory):
    """The run-time compiled C kernels (srnvtk.native) build into a fresh cache: the suite sees a first build,
    and leaves nothing in the home directory. Child processes (CLI, pvpython) inherit it."""
    previous = os.environ.get("SRNVTK_CACHE_DIR")
    os.environ["SRNVTK_CACHE_DIR"] = str(tmp_path_factory.mktemp("kernels"))
    yield
    if previous is None:
        os.environ.pop("SRNVTK_CACHE_DIR", None)
    else:
        os.environ["SRNVTK_CACHE_DIR"] = previous


@pytest.fixture
def tiny_shape() -> tuple[int, int, int]:
    return TINY_SHAPE


@pytest.fixture
def tiny_image():
    """A fresh 16 x 14 x 12 vtkImageData of the built-in volume (uint8 point array 'density')."""
    pytest.importorskip("vtkmodules")
    from srnvtk.datasets import default_volume

    return default_volume(TINY_SHAPE)


@pytest.fixture
def tiny_vti(tmp_path: Path, tiny_image) -> Path:
    """tiny_image written to tmp_path/tiny.vti."""
    from srnvtk.vtkio import write_vti

    path = tmp_path / "tiny.vti"
    write_vti(tiny_image, path)
    return path


@pytest.fixture
def tiny_model_config() -> FVSRNConfig:
    return TINY_MODEL


@pytest.fixture
def fast_train_config() -> TrainConfig:
    return FAST_TRAIN


@pytest.fixture(scope="session")
def fast_compress_args() -> list[str]:
    """`srnvtk compress` options matching TINY_MODEL and FAST_TRAIN (plus --quiet)."""
    return list(FAST_COMPRESS_ARGS)


@pytest.fixture
def vtk_errors():
    """Everything VTK reports through its output window in this test, as one string (call it)."""
    core = pytest.importorskip("vtkmodules.vtkCommonCore")
    window = core.vtkStringOutputWindow()
    previous = core.vtkOutputWindow.GetInstance()
    core.vtkOutputWindow.SetInstance(window)
    yield window.GetOutput
    core.vtkOutputWindow.SetInstance(previous)
