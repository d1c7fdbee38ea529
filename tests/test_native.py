"""The run-time compiled C kernels: built and cached where a compiler works, the torch path where none does;
the fused fV-SRN and Neurcomp kernels compute their models' functions."""

from __future__ import annotations

import fnmatch
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from srnvtk import native
from srnvtk.config import FVSRNConfig, NeurcompConfig
from srnvtk.decode import decode, evaluation_path, strided_geometry
from srnvtk.fileformat import SRNFile
from srnvtk.lattice import LatticeFVSRN, axis_weights
from srnvtk.models import build_model
from srnvtk.models.layers import aspect_of
from srnvtk.models.neurcomp import Neurcomp
from srnvtk.native.neurcomp import FusedNeurcomp
from srnvtk.neurcomp_eval import FoldedNeurcomp
from srnvtk.volume import Geometry

SOURCE = Geometry((0, 30, 0, 20, 0, 10))
needs_compiler = pytest.mark.skipif(native.find_compiler() is None, reason="no C compiler")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty kernel cache and no libraries loaded yet in this process."""
    monkeypatch.setenv("SRNVTK_CACHE_DIR", str(tmp_path / "kernels"))
    monkeypatch.setattr(native, "_loaded", {})
    return tmp_path / "kernels"


def random_model(weight_scale: float = 0.3, **settings) -> torch.nn.Module:
    torch.manual_seed(5)
    model = build_model(FVSRNConfig(grid_resolution=7, **settings), SOURCE)
    with torch.no_grad():
        model.grid.normal_()
        for p in model.mlp.parameters():
            p.normal_(0.0, weight_scale)
    return model.eval()


def lattice_values(model: torch.nn.Module, zs: torch.Tensor | None = None) -> tuple[LatticeFVSRN, torch.Tensor]:
    xs, ys = torch.linspace(-1, 1, 37), torch.linspace(-1, 1, 19)
    zs = torch.linspace(-1, 1, 6) if zs is None else zs
    with torch.inference_mode():
        lattice = LatticeFVSRN(model)
        return lattice, lattice.evaluate(xs, ys, zs, batch_points=1 << 12)


@needs_compiler
def test_kernel_is_built_once_and_then_loaded_from_the_cache(fresh_cache, monkeypatch):
    lattice, first = lattice_values(random_model())
    assert lattice.fused is not None
    assert len(list(fresh_cache.glob("lattice_kernel-*.so"))) == 1
    assert not list(fresh_cache.glob(".*"))  # no partial build left beside it
    monkeypatch.setattr(native, "_loaded", {})  # a new process, as far as loading goes
    commands = []
    run = native.subprocess.run
    monkeypatch.setattr(native.subprocess, "run", lambda args, **kw: commands.append(args) or run(args, **kw))
    lattice, again = lattice_values(random_model())
    assert lattice.fused is not None
    assert commands and not any("-o" in args for args in commands)  # the compiler was asked its version only
    assert torch.equal(first, again)


@needs_compiler
def test_a_damaged_cached_library_is_rebuilt(fresh_cache):
    lattice_values(random_model())
    (library,) = fresh_cache.glob("lattice_kernel-*.so")
    damaged = library.with_name("damaged")
    damaged.write_bytes(b"\x7fELF truncated")
    damaged.replace(library)  # a new file: this process's loaded copy stays mapped
    # a new process (this one would be handed its loaded copy by the dynamic loader, whatever the file holds)
    load = "from srnvtk.native import load_kernel; print(load_kernel('lattice_kernel.c', {'WIDTH': 32}) is not None)"
    result = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
    assert library.stat().st_size > 1000


def test_a_failing_compiler_falls_back_to_torch_with_the_same_values(fresh_cache, monkeypatch, caplog):
    monkeypatch.setenv("CC", "false")  # a 'compiler' that always fails
    model = random_model()
    with caplog.at_level(logging.INFO, logger="srnvtk.native"):
        lattice, values = lattice_values(model)
    assert lattice.fused is None
    assert "using the torch path" in caplog.text
    assert not list(fresh_cache.glob("*.so")) and not list(fresh_cache.glob(".*"))
    monkeypatch.setenv("SRNVTK_NATIVE", "0")
    _, reference = lattice_values(model)
    assert torch.equal(values, reference)


def test_an_unusable_or_shared_cache_falls_back(fresh_cache, monkeypatch, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("SRNVTK_CACHE_DIR", str(not_a_folder))
    assert native.load_kernel("lattice_kernel.c", {"WIDTH": 8}) is None
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # writable by anyone: a planted library could be loaded from here
    monkeypatch.setenv("SRNVTK_CACHE_DIR", str(shared))
    native._loaded.clear()
    assert native.load_kernel("lattice_kernel.c", {"WIDTH": 8}) is None
    assert not list(shared.iterdir())


def test_no_compiler_at_all_falls_back(fresh_cache, monkeypatch):
    monkeypatch.setattr(native, "find_compiler", lambda: None)
    assert native.load_kernel("lattice_kernel.c", {"WIDTH": 8}) is None
    assert lattice_values(random_model())[0].fused is None


def test_native_kernels_can_be_switched_off(fresh_cache, monkeypatch):
    monkeypatch.setenv("SRNVTK_NATIVE", "off")
    assert native.load_kernel("lattice_kernel.c", {"WIDTH": 8}) is None
    assert not fresh_cache.exists()


@needs_compiler
@pytest.mark.parametrize("scale", [0.3, 30.0])
def test_fused_snake_matches_torch_for_small_and_large_activations(monkeypatch, scale):
    # scale 30 drives first-layer activations to hundreds of radians: the sine's range reduction is exercised
    model = random_model(weight_scale=scale, mlp_width=24, mlp_layers=3)
    lattice, fused = lattice_values(model)
    assert lattice.fused is not None
    monkeypatch.setenv("SRNVTK_NATIVE", "0")
    _, reference = lattice_values(model)
    assert (fused - reference).abs().max() <= 2e-6 * reference.abs().max()


@needs_compiler
def test_the_fused_path_makes_no_projected_copy_of_the_grid():
    # the kernel projects the rows it needs: memory does not grow with the latent grid (the torch path's copy
    # is width / channels times the grid)
    lattice, _ = lattice_values(random_model())
    assert lattice.fused is not None and lattice._projected is None


@needs_compiler
def test_one_plane_is_split_between_threads_without_changing_values():
    model = random_model()
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        lattice, one = lattice_values(model, torch.tensor([0.1]))
        torch.set_num_threads(2)
        _, two = lattice_values(model, torch.tensor([0.1]))
    finally:
        torch.set_num_threads(previous)
    assert lattice.fused is not None
    assert torch.equal(one, two)


@needs_compiler
def test_the_kernel_refuses_indices_outside_the_grid():
    lattice, _ = lattice_values(random_model())
    fused = lattice.fused
    depth, height, width = lattice.grid.shape[1:]
    z, y = axis_weights(depth, torch.zeros(1)), axis_weights(height, torch.zeros(1))
    x = axis_weights(width, torch.zeros(2))
    bad_x = (x[0] + width, x[1], x[2])
    tables = [fused.pad_table(torch.zeros(n, lattice.w_grid.shape[0])) for n in (2, 1, 1)]
    out = torch.empty(1, 1, 2)
    fused.run(z, y, x, tables, out)  # well-formed: fine
    with pytest.raises(ValueError, match="outside the grid"):
        fused.run(z, y, bad_x, tables, out)
    with pytest.raises(ValueError, match="output"):
        fused.run(z, y, x, tables, torch.empty(1, 2, 2))


# ---------------------------------------------------------------------------------------------
# Neurcomp


def neurcomp_lattice_check(model: Neurcomp) -> None:
    """The fused kernel on a lattice against the model's own forward pass at the same points."""
    xs, ys, zs = torch.linspace(-1, 1, 21), torch.linspace(-1, 0.5, 7), torch.linspace(-0.9, 1, 5)
    fused = FusedNeurcomp.build(FoldedNeurcomp(model.eval()))
    assert fused is not None
    zz, yy, xx = torch.meshgrid(zs, ys, xs, indexing="ij")
    with torch.no_grad():
        expected = model(torch.stack([xx.reshape(-1), yy.reshape(-1), zz.reshape(-1)], 1)).reshape(5, 7, 21)
    torch.testing.assert_close(fused.evaluate(xs, ys, zs), expected, atol=1e-5, rtol=1e-5)


@needs_compiler
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("clusters", [0, 16])
def test_fused_neurcomp_computes_the_models_function(residual, clusters) -> None:
    geometry = Geometry((0, 19, 0, 11, 0, 7), spacing=(1.0, 2.0, 0.5))  # unequal aspect: folded into layer 0
    torch.manual_seed(2)
    model = build_model(NeurcompConfig(width=12, blocks=3, residual=residual, weight_clusters=clusters), geometry)
    if clusters:
        model.share_weights()
    neurcomp_lattice_check(model)


@needs_compiler
@pytest.mark.parametrize("widths", [[10, 4, 7, 3, 10], [10, 0, 10, 9, 10]])
def test_fused_neurcomp_of_pruned_networks(widths) -> None:
    # pruned layers of any width, down to none at all (the outer layer then gives sin(bias))
    torch.manual_seed(3)
    residual = widths[2] == widths[0] == widths[4]
    model = Neurcomp(NeurcompConfig(width=10, blocks=2, residual=residual), aspect_of(SOURCE), widths)
    neurcomp_lattice_check(model)


@needs_compiler
def test_decode_uses_the_fused_neurcomp_and_strides_are_exact_slices(monkeypatch) -> None:
    torch.manual_seed(4)
    model = build_model(NeurcompConfig(width=16, blocks=2), SOURCE).eval()
    full = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), device="cpu")
    strided = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), strided_geometry(SOURCE, (3, 2, 4)),
                     device="cpu")
    np.testing.assert_array_equal(strided, full[::4, ::2, ::3])
    monkeypatch.setenv("SRNVTK_NATIVE", "0")
    reference = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), device="cpu")
    assert np.abs(full - reference).max() <= 1e-5 * np.abs(reference).max()


@pytest.mark.parametrize("native_on", [True, False])
def test_evaluation_path_names_what_decode_uses(monkeypatch, native_on):
    if not native_on:
        monkeypatch.setenv("SRNVTK_NATIVE", "0")
    fused = native_on and native.find_compiler() is not None
    assert evaluation_path(random_model()) == ("fused C kernel" if fused else "torch lattice")
    neurcomp = build_model(NeurcompConfig(width=8, blocks=1), SOURCE)
    assert evaluation_path(neurcomp) == ("fused C kernel" if fused else "torch inference form")


def test_every_kernel_source_is_packaged():
    # a wheel without simd.h would fail every build and silently fall back to the torch path
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(native.__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    sources = [p.name for p in Path(native.SOURCE_DIR).iterdir() if p.suffix in (".c", ".h")]
    assert {"lattice_kernel.c", "neurcomp_kernel.c", "simd.h"} <= set(sources)
    assert all(any(fnmatch.fnmatch(name, pattern) for pattern in patterns["srnvtk.native"]) for name in sources)
