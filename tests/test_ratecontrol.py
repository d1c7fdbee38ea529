"""Rate control: files that fill a byte budget, the fit that gets them there, and the search for a PSNR."""

from __future__ import annotations

import copy
import dataclasses
from functools import partial

import numpy as np
import pytest
import torch

from srnvtk.budget import (
    GROWTH_FILL,
    budget_fit,
    file_size_probe,
    fit_latent_to_budget,
    grow_latent_for_budget,
    latent_error,
    ranked_entries,
)
from srnvtk.config import FVSRNConfig, NeurcompConfig, PruningConfig, TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.decode import decode
from srnvtk.encoder import budget_for_ratio, source_info
from srnvtk.errors import SettingsError
from srnvtk.fileformat import read_srn
from srnvtk.models import build_model
from srnvtk.models.fvsrn import grid_shape_for
from srnvtk.ratecontrol import compress_to_psnr, compress_to_ratio, plan_for_ratio
from srnvtk.volume import Volume

SHAPE = (40, 36, 32)  # x, y, z: big enough that a file's fixed ~8 kB leave room for the model at ratio 10
TRAIN = TrainConfig(steps=60, batch_size=2048, seed=0, device="cpu")
SMALL_FVSRN = FVSRNConfig(grid_channels=4, mlp_width=16, mlp_layers=2, fourier_features=2)
BASES = {
    "fvsrn": SMALL_FVSRN,
    "haar": dataclasses.replace(SMALL_FVSRN, wavelet="haar"),
    "neurcomp": NeurcompConfig(blocks=2),
}


@pytest.fixture(scope="module")
def volume() -> Volume:
    return Volume(default_volume_values(SHAPE), default_geometry(SHAPE), "density")


def random_grid_model(volume: Volume, seed: int, normal: bool = False):
    """An untrained small fV-SRN (grid resolution 10) with random grid values; also returns its generator."""
    model = build_model(dataclasses.replace(SMALL_FVSRN, grid_resolution=10), volume.geometry)
    generator = torch.Generator().manual_seed(seed)
    draw = torch.randn if normal else torch.rand
    with torch.no_grad():
        model.grid.copy_(draw(model.grid.shape, generator=generator))
    return model, generator


def assert_file_decodes_to(path, reconstruction) -> None:
    """What was fitted is what a reader rebuilds, exactly."""
    srn = read_srn(path)
    np.testing.assert_array_equal(decode(srn, device="cpu"),
                                  reconstruction)


@pytest.mark.parametrize("base", list(BASES))
@pytest.mark.parametrize("ratio", [6.0, 10.0])
def test_ratio_lands_within_fifteen_percent_under_the_budget(tmp_path, volume, base, ratio) -> None:
    """Within 15%: growth leaves room for the fine-tune's codes (GROWTH_FILL), and where one code bit fewer stores
    the grid closer than a trim would, the file may keep room this small grid cannot grow into (one resolution
    step finer is a third more entries)."""
    path = tmp_path / "r.srn"
    result = compress_to_ratio(volume, ratio, train_config=TRAIN, model_config=BASES[base], path=path)
    budget = 4 * volume.values.size / ratio
    size = path.stat().st_size
    assert result.file_bytes == size
    assert 0.85 * budget <= size <= budget
    assert ratio <= result.stats["ratio"] <= ratio / 0.85
    assert_file_decodes_to(path, result.reconstruction)


def test_the_fit_trims_an_overfull_file(volume) -> None:
    config, _budget = plan_for_ratio(10.0, volume, SMALL_FVSRN)
    model = build_model(config, volume.geometry)
    with torch.no_grad():
        model.grid.copy_(torch.rand_like(model.grid))  # uniform codes: gzip cannot shrink them
    probe = file_size_probe(model, source_info(volume), None)
    budget = int(0.8 * probe(None))
    dropped = fit_latent_to_budget(model, budget, probe)
    assert dropped > 0
    assert 0.99 * budget <= probe(None) <= budget
    kept = model.grid_keep
    assert kept.shape == model.grid.shape and int(kept.sum()) == kept.numel() - dropped  # single values
    assert torch.all(model.grid[~kept] == 0)


def test_the_fit_lowers_the_code_bits_when_that_stores_the_grid_closer(volume) -> None:
    """Uniform codes over budget by a fraction of a bit per entry: one bit fewer fits them all, and rounds them
    far closer than dropping the smallest entries would."""
    config, _budget = plan_for_ratio(10.0, volume, SMALL_FVSRN)
    model = build_model(config, volume.geometry)
    with torch.no_grad():
        model.grid.copy_(torch.rand_like(model.grid))
    probe = file_size_probe(model, source_info(volume), None)
    budget = probe(None) - model.grid.numel() // 32  # a quarter of a bit per entry
    original, trimmed = copy.deepcopy(model), copy.deepcopy(model)
    assert fit_latent_to_budget(trimmed, budget, file_size_probe(trimmed, source_info(volume), None)) > 0
    assert fit_latent_to_budget(model, budget, probe, fewest_bits=4) == 0
    assert model.config.grid_bits == 7 and model.grid_keep is None
    assert probe(None) <= budget
    assert latent_error(model, None) < latent_error(original, trimmed.grid_keep)  # the trim's, at 8 bits


def test_the_fit_keeps_the_bits_when_dropping_entries_costs_less(volume) -> None:
    """Half the entries almost zero: dropping them costs nearly nothing, while fewer bits would round them all."""
    model, generator = random_grid_model(volume, seed=3)
    with torch.no_grad():
        tiny = torch.rand(model.grid.shape, generator=generator) < 0.5
        model.grid.masked_fill_(tiny, 0.0).add_(tiny * 1e-4 * torch.rand(model.grid.shape, generator=generator))
    probe = file_size_probe(model, source_info(volume), None)
    assert fit_latent_to_budget(model, probe(None) - 200, probe, fewest_bits=4) > 0
    assert model.config.grid_bits == 8


def test_a_ratio_target_may_store_fewer_bits_and_reads_back(tmp_path, volume, monkeypatch) -> None:
    """Rate control's choice of fewer bits reaches the file (format 7) and the reader rebuilds the model
    exactly."""
    path = tmp_path / "bits.srn"
    monkeypatch.setattr("srnvtk.budget.latent_error", lambda model, keep: model.config.grid_bits)
    result = compress_to_ratio(volume, 10.0, train_config=TRAIN, model_config=SMALL_FVSRN, path=path)
    bits = result.model_config.grid_bits
    assert bits < 8  # the patched error prefers fewer bits, down to those that hold the whole grid
    assert read_srn(path).model_config.grid_bits == bits
    assert path.stat().st_size <= 4 * volume.values.size / 10.0
    assert_file_decodes_to(path, result.reconstruction)


def test_the_fit_drops_the_smallest_entries_first(volume) -> None:
    model, _generator = random_grid_model(volume, seed=0, normal=True)
    squares = model.grid.detach().square()
    order, _keep = ranked_entries(model)
    ranked = squares.reshape(-1)[order]
    assert torch.all(ranked[:-1] >= ranked[1:])
    probe = file_size_probe(model, source_info(volume), None)
    fit_latent_to_budget(model, probe(None) - 1500, probe)
    kept = model.grid_keep
    assert squares[kept].min() >= squares[~kept].max()


def test_the_fit_keeps_whole_positions_after_position_pruning(volume) -> None:
    """A model pruned per position (one mask entry for all channels) is trimmed per position, ranked by the
    squares summed over the channels."""
    model, generator = random_grid_model(volume, seed=5, normal=True)
    model.set_grid_keep(torch.rand((1, *model.grid.shape[1:]), generator=generator) > 0.2)
    norms = model.grid.detach().square().sum(0)
    pruning = PruningConfig(method="binary", granularity="position")
    probe = file_size_probe(model, source_info(volume), pruning)
    fit_latent_to_budget(model, probe(None) - 800, probe)
    kept = model.grid_keep[0]
    assert model.grid_keep.shape[0] == 1
    survivors = norms[kept]
    dropped = norms[~kept & (norms > 0)]
    assert survivors.min() >= dropped.max()


def test_the_fit_respects_an_earlier_pruning(volume) -> None:
    """Entries pruned before stay pruned; a per-entry keep mask is ranked per entry."""
    model, generator = random_grid_model(volume, seed=1, normal=True)
    earlier = torch.rand(model.grid.shape, generator=generator) > 0.3
    model.set_grid_keep(earlier)
    pruning = PruningConfig(method="binary", granularity="position_channel")
    probe = file_size_probe(model, source_info(volume), pruning)
    fit_latent_to_budget(model, probe(None) - 800, probe)
    assert model.grid_keep.shape == earlier.shape
    assert not torch.any(model.grid_keep & ~earlier)
    assert int(model.grid_keep.sum()) < int(earlier.sum())


def test_a_model_that_fits_is_left_alone(volume) -> None:
    config = dataclasses.replace(SMALL_FVSRN, grid_resolution=6)
    model = build_model(config, volume.geometry)
    before = model.grid.detach().clone()
    probe = file_size_probe(model, source_info(volume), None)
    assert fit_latent_to_budget(model, probe(None), probe) == 0
    assert model.grid_keep is None and torch.equal(model.grid, before)


def test_a_budget_below_the_network_alone_is_refused(volume) -> None:
    model = build_model(SMALL_FVSRN, volume.geometry)
    probe = file_size_probe(model, source_info(volume), None)
    with pytest.raises(SettingsError, match="too small even for the network without its grid"):
        fit_latent_to_budget(model, 1000, probe)


def test_neurcomp_is_sized_exactly(volume) -> None:
    config, budget = plan_for_ratio(10.0, volume, BASES["neurcomp"])
    probe = file_size_probe(build_model(config, volume.geometry), source_info(volume), None)
    wider = dataclasses.replace(config, width=config.width + 1)
    probe_wider = file_size_probe(build_model(wider, volume.geometry), source_info(volume), None)
    assert probe(None) <= budget < probe_wider(None)


def test_budget_for_ratio_counts_float32_bytes(volume) -> None:
    assert budget_for_ratio(8.0, volume.geometry) == 4 * volume.values.size // 8
    with pytest.raises(SettingsError, match="must be > 1"):
        budget_for_ratio(1.0, volume.geometry)


def test_psnr_search_keeps_the_smallest_file_that_reaches_the_target(tmp_path, volume) -> None:
    path = tmp_path / "q.srn"
    easy = 18.0  # dB: reached at ratio 100 already, so the search grows the ratio until it fails
    search = compress_to_psnr(volume, easy, train_config=TRAIN, model_config=SMALL_FVSRN, path=path, trials=3)
    assert search.reached
    ratios = [r for r, _ in search.trials]
    assert ratios[0] == pytest.approx(min(100.0, ratios[0]))
    passing = [r for r, q in search.trials if q is not None and q >= easy]
    assert search.ratio == max(passing)
    srn = read_srn(path)
    assert srn.stats["psnr"] >= easy and srn.stats["ratio"] >= search.ratio
    assert srn.stats["psnr"] == pytest.approx(search.result.stats["psnr"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.srn"]  # the other trials' files are gone


def test_psnr_search_that_cannot_reach_keeps_the_best(tmp_path, volume) -> None:
    path = tmp_path / "q.srn"
    search = compress_to_psnr(volume, 99.0, train_config=TRAIN, model_config=SMALL_FVSRN, path=path, trials=2)
    assert not search.reached
    reached = [q for _, q in search.trials if q is not None]
    assert search.result.stats["psnr"] == max(reached)
    assert search.trials[1][0] < search.trials[0][0]  # a failing trial makes the next one larger
    assert read_srn(path).stats["psnr"] == pytest.approx(max(reached))


@pytest.mark.parametrize(("psnr", "trials", "fragment"), [(-3.0, 2, "positive number of dB"),
                                                          (float("nan"), 2, "positive number of dB"),
                                                          (30.0, 0, "at least one trial")])
def test_psnr_search_rejects_bad_settings(tmp_path, volume, psnr, trials, fragment) -> None:
    with pytest.raises(SettingsError, match=fragment):
        compress_to_psnr(volume, psnr, train_config=TRAIN, model_config=SMALL_FVSRN, path=tmp_path / "q.srn",
                         trials=trials)
    assert list(tmp_path.iterdir()) == []


def linear_ramp_grid(model) -> None:
    """A grid linear in each axis: trilinear resampling reproduces it exactly, so the function cannot change."""
    channels, nz, ny, nx = model.grid.shape
    z, y, x = torch.meshgrid(torch.linspace(0, 1, nz), torch.linspace(0, 1, ny), torch.linspace(0, 1, nx),
                             indexing="ij")
    ramp = torch.stack([0.3 * x - 0.2 * y + 0.1 * z + 0.05 * c for c in range(channels)])
    with torch.no_grad():
        model.latent.copy_(ramp if model.latent_name == "grid" else model.transform(ramp.double()).float())


@pytest.mark.parametrize("base", ["fvsrn", "haar"])
def test_resizing_the_grid_keeps_the_function(volume, base) -> None:
    config = dataclasses.replace(BASES[base], grid_resolution=6)
    model = build_model(config, volume.geometry).eval()
    linear_ramp_grid(model)
    points = torch.rand((500, 3), generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        before = model(points)
    finer = dataclasses.replace(config, grid_resolution=11)
    model.resize_latent(finer, grid_shape_for(finer, volume.geometry))
    assert model.config == finer and model.latent.shape[1:] == grid_shape_for(finer, volume.geometry)
    with torch.no_grad():
        torch.testing.assert_close(model(points), before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("base", ["fvsrn", "haar"])
def test_a_short_file_grows_its_grid_then_fits(volume, base) -> None:
    config = dataclasses.replace(BASES[base], grid_resolution=6)
    model = build_model(config, volume.geometry).eval()
    with torch.no_grad():
        model.latent.copy_(torch.rand(model.latent.shape, generator=torch.Generator().manual_seed(3)))
    probe = file_size_probe(model, source_info(volume), None)
    budget = probe(None) + 6000  # room for many more entries
    budget_fit(budget, source_info(volume), None)(model)
    assert model.config.grid_resolution > 6
    assert model.latent.shape[1:] == grid_shape_for(model.config, volume.geometry)
    assert probe(None) <= budget and model.grid_keep is None  # grown only as far as the whole grid fits


def test_growth_stops_at_the_finest_grid_whose_file_fits(volume) -> None:
    """Growth measures its candidates: the grown file fits GROWTH_FILL of the budget, one resolution finer would
    not."""
    model, _generator = random_grid_model(volume, seed=4)
    measure_of = partial(file_size_probe, source=source_info(volume), pruning=None)
    budget = int(measure_of(model)(None) * 1.6)
    assert grow_latent_for_budget(model, budget, measure_of, volume.geometry) > 0
    assert measure_of(model)(None) <= GROWTH_FILL * budget
    finer = copy.deepcopy(model)
    config = dataclasses.replace(model.config, grid_resolution=model.config.grid_resolution + 1, grid_shape=None)
    finer.resize_latent(config, grid_shape_for(config, volume.geometry))
    assert measure_of(finer)(None) > GROWTH_FILL * budget


def test_a_pruned_grid_is_not_grown(volume) -> None:
    config = dataclasses.replace(SMALL_FVSRN, grid_resolution=6)
    model = build_model(config, volume.geometry)
    model.set_grid_keep(torch.ones((1, *model.grid.shape[1:]), dtype=torch.bool))
    probe = file_size_probe(model, source_info(volume), None)
    measure_of = partial(file_size_probe, source=source_info(volume), pruning=None)
    assert grow_latent_for_budget(model, probe(None) * 3, measure_of, volume.geometry) == 0
    with pytest.raises(ValueError, match="cannot be resized"):
        model.resize_latent(config, (8, 8, 8))


@pytest.mark.parametrize("method", ["smallify", "variational", "binary"])
def test_pruned_ratio_target_keeps_the_best_ranked_units_that_fit(tmp_path, volume, method) -> None:
    path = tmp_path / "p.srn"
    pruning = PruningConfig(method=method)
    result = compress_to_ratio(volume, 6.0, train_config=TRAIN, model_config=SMALL_FVSRN, path=path, pruning=pruning)
    budget = 4 * volume.values.size / 6.0
    assert 0.95 * budget <= path.stat().st_size <= budget
    assert result.stats["pruned_fraction"] > 0  # a grid planned larger than the budget, trimmed by rank
    assert_file_decodes_to(path, result.reconstruction)


def test_learned_ranking_decides_which_units_survive(volume) -> None:
    model, generator = random_grid_model(volume, seed=4)
    # A ranking unrelated to the values' magnitude: the fit must follow it.
    model.unit_importance = torch.rand((1, *model.grid.shape[1:]), generator=generator)
    ranking = model.unit_importance.clone()
    probe = file_size_probe(model, source_info(volume), None)
    fit_latent_to_budget(model, probe(None) - 1500, probe)
    kept = model.grid_keep[0]
    assert ranking[0][kept].min() >= ranking[0][~kept].max()
    assert model.unit_importance is None
