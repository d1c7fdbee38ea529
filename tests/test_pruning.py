"""Pruning while training: the masks, the schedule, smaller files and exact round trips, for every method on
both architectures (fV-SRN per grid position and per grid value, Neurcomp residual and plain)."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
import torch
from srn_editing import edit

from srnvtk.config import FVSRNConfig, NeurcompConfig, PruningConfig, TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.decode import decode
from srnvtk.encoder import compress, estimated_file_bytes
from srnvtk.errors import FileFormatError, SettingsError, TrainingAborted
from srnvtk.fileformat import read_srn
from srnvtk.masks import BinaryMask, SmallifyMask, VariationalMask
from srnvtk.models import build_model
from srnvtk.pruning import attach_masks, pruned_fraction, pruned_fractions
from srnvtk.quantize import GRID, GRID_KEEP, apply_storage_precision, storage_tensors
from srnvtk.train import train
from srnvtk.volume import Volume

SHAPE = (14, 12, 10)  # x, y, z point counts
FVSRN = FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=16, mlp_layers=2, fourier_features=2)
NEURCOMP = NeurcompConfig(width=12, blocks=2)
TRAIN = TrainConfig(steps=45, batch_size=2048, seed=0, device="cpu")
METHODS = ("smallify", "variational", "binary")
# (model settings, pruning settings) of each place masks can sit
CASES = {
    "fvsrn-position": (FVSRN, {}),
    "fvsrn-channel": (FVSRN, {"granularity": "position_channel"}),
    "neurcomp-residual": (NEURCOMP, {}),
    "neurcomp-plain": (dataclasses.replace(NEURCOMP, residual=False), {}),
}
# Strong regularisers and fast masks, so that a few dozen steps prune something.
PUSHED = {
    "smallify": {"l1_weight": 20.0, "sign_momentum": 0.15, "mask_learning_rate": 0.3},
    "variational": {"kl_weight": 3e4, "static_sigma": 0.5, "kl_ramp_fraction": 0.0, "mask_learning_rate": 0.3},
    "binary": {"l1_weight": 20.0, "mask_learning_rate": 0.3},
}


def pushed(method: str, case: str) -> PruningConfig:
    return PruningConfig(method=method, **CASES[case][1], **PUSHED[method])



@pytest.fixture(scope="module")
def volume() -> Volume:
    return Volume(default_volume_values(SHAPE), default_geometry(SHAPE), "density")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, volume):
    """compress() with a file, once per (case, method), method 'none' included; computed on first use."""
    folder = tmp_path_factory.mktemp("pruning")
    cache: dict = {}

    def get(case: str, method: str) -> dict:
        if (case, method) not in cache:
            config = CASES[case][0]
            pruning = PruningConfig() if method == "none" else pushed(method, case)
            path = folder / f"{case}-{method}.srn"
            messages: list[tuple[float, str]] = []
            result = compress(volume, model_config=config, train_config=TRAIN, path=path,
                              progress=lambda f, m: messages.append((f, m)), pruning=pruning)
            cache[case, method] = {"result": result, "path": path, "messages": messages, "pruning": pruning}
        return cache[case, method]

    return get


ALL = [(case, method) for case in CASES for method in METHODS]
IDS = [f"{case}-{method}" for case, method in ALL]


# ---------------------------------------------------------------------------------------------
# Every method on every architecture: prunes, runs through, smaller file, exact round trip


@pytest.mark.parametrize(("case", "method"), ALL, ids=IDS)
def test_masks_prune_when_pushed(runs, case, method) -> None:
    run = runs(case, method)
    fraction = run["result"].stats["pruned_fraction"]
    assert 0.0 < fraction < 1.0
    assert read_srn(run["path"]).stats["pruned_fraction"] == pytest.approx(fraction)
    assert max(run["result"].pruned_fractions.values()) > 0


@pytest.mark.parametrize(("case", "method"), ALL, ids=IDS)
def test_schedule_runs_through_both_phases(runs, case, method) -> None:
    messages = runs(case, method)["messages"]
    fractions = [f for f, _ in messages]
    train_fractions = fractions[:next(i for i, (_f, m) in enumerate(messages) if m == "reconstructing")]
    assert all(b > a for a, b in zip(train_fractions, train_fractions[1:], strict=False))
    assert fractions[-1] == pytest.approx(1.0)
    phases = [m.split(":")[0] for _f, m in messages if ":" in m]
    assert phases[0] == "masks" and phases[-1] == "fine-tune"
    assert phases == sorted(phases, key=["masks", "fine-tune"].index)  # masks first, then fine-tuning only
    assert f"step {TRAIN.steps}/{TRAIN.steps}" in [m for _f, m in messages if m.startswith("fine-tune")][-1]


@pytest.mark.parametrize(("case", "method"), ALL, ids=IDS)
def test_pruned_file_is_smaller_than_unpruned(runs, case, method) -> None:
    pruned, unpruned = runs(case, method)["result"], runs(case, "none")["result"]
    assert pruned.model_config == unpruned.model_config
    assert pruned.file_bytes < unpruned.file_bytes


@pytest.mark.parametrize(("case", "method"), ALL, ids=IDS)
def test_file_round_trip_is_exact(runs, case, method) -> None:
    run = runs(case, method)
    srn = read_srn(run["path"])
    assert srn.pruning == run["pruning"]
    assert srn.model_config == CASES[case][0]
    again = decode(srn, device="cpu")
    assert np.array_equal(again, run["result"].reconstruction)
    assert pruned_fractions(srn.model) == pytest.approx(run["result"].pruned_fractions)


@pytest.mark.parametrize("case", list(CASES))
def test_estimate_bounds_pruned_files(runs, case) -> None:
    for method in METHODS:
        run = runs(case, method)
        bound = estimated_file_bytes(CASES[case][0], default_geometry(SHAPE), run["pruning"])
        assert run["result"].file_bytes <= bound


# ---------------------------------------------------------------------------------------------
# The schedule: abort in either phase, the time limit, determinism


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("phase", "abort_at"), [("masks", 5), ("fine-tune", 40)])
def test_abort_in_each_phase(volume, method, phase, abort_at) -> None:
    asked = []

    def should_abort() -> bool:
        asked.append(1)
        return len(asked) > abort_at

    with pytest.raises(TrainingAborted, match=rf"aborted at step {abort_at} of {TRAIN.steps} \({phase} phase\)"):
        train(volume, NEURCOMP, TRAIN, should_abort=should_abort, pruning=pushed(method, "neurcomp-residual"))
    assert len(asked) == abort_at + 1


def test_time_limit_covers_the_whole_schedule(volume) -> None:
    messages: list[str] = []
    config = dataclasses.replace(TRAIN, steps=1_000_000, batch_size=64, time_limit=0.6)
    start = time.perf_counter()
    result = train(volume, FVSRN, config, progress=lambda _f, m: messages.append(m),
                   pruning=pushed("binary", "fvsrn-position"))
    assert time.perf_counter() - start < 10
    assert 2 <= result.steps < 1_000_000
    assert any(m.startswith("masks:") for m in messages) and messages[-1].startswith("fine-tune:")


def test_same_seed_same_pruned_model(volume) -> None:
    pruning = pushed("variational", "fvsrn-position")
    a = train(volume, FVSRN, TRAIN, pruning=pruning).model
    b = train(volume, FVSRN, TRAIN, pruning=pruning).model
    assert torch.equal(a.grid_keep, b.grid_keep)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_without_pruning_nothing_is_pruned(runs) -> None:
    for case in CASES:
        result = runs(case, "none")["result"]
        assert result.stats["pruned_fraction"] == 0.0
        assert set(result.pruned_fractions.values()) == {0.0}


# ---------------------------------------------------------------------------------------------
# fV-SRN's pruned grid: zeros that stay zero, and only the survivors stored


def test_baked_grid_is_zero_where_pruned_and_stays_zero(volume) -> None:
    result = train(volume, FVSRN, TRAIN, pruning=pushed("binary", "fvsrn-position"))
    model = result.model
    keep = model.grid_keep
    assert keep.shape == (1, *model.grid.shape[1:]) and not keep.all()
    assert torch.all(model.grid[:, ~keep[0]] == 0)
    # One more optimiser step on the baked model: pruned entries get no gradient.
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = (model(torch.rand(256, 3) * 2 - 1) - 0.5).square().mean() + model.grid.sum()
    loss.backward()
    assert torch.all(model.grid.grad[:, ~keep[0]] == 0)
    optimizer.step()
    assert torch.all(model.grid[:, ~keep[0]] == 0)
    assert pruned_fractions(model)["grid"] == pytest.approx(1 - float(keep.float().mean()))


@pytest.mark.parametrize("granularity", ["position", "position_channel"])
def test_only_surviving_grid_values_are_stored(volume, granularity) -> None:
    pruning = dataclasses.replace(pushed("smallify", "fvsrn-position"), granularity=granularity)
    model = train(volume, FVSRN, TRAIN, pruning=pruning).model
    stored = storage_tensors(model)
    keep = model.grid_keep.numpy()
    kept_entries = int(np.broadcast_to(keep, model.grid.shape).sum())
    assert stored.arrays[GRID].shape == (kept_entries,)
    assert stored.arrays[GRID_KEEP].dtype == np.uint8
    assert stored.arrays[GRID_KEEP].size == math.ceil(keep.size / 8)
    assert np.array_equal(np.unpackbits(stored.arrays[GRID_KEEP], count=keep.size).reshape(keep.shape), keep)
    assert stored.structure["keep_shape"] == list(keep.shape)
    assert keep.shape[0] == (FVSRN.grid_channels if granularity == "position_channel" else 1)


def test_pruned_fraction_counts_every_parameter(volume) -> None:
    model = train(volume, FVSRN, TRAIN, pruning=pushed("binary", "fvsrn-position")).model
    counts = model.entry_counts()
    removed = counts["grid"][1] - counts["grid"][0]
    assert removed > 0
    assert pruned_fraction(model) == pytest.approx(removed / sum(full for _kept, full in counts.values()))


def test_storing_a_model_with_masks_is_refused() -> None:
    model = build_model(FVSRN, default_geometry(SHAPE))
    attach_masks(model, PruningConfig(method="binary"))
    with pytest.raises(ValueError, match="bake them in"):
        apply_storage_precision(model)


def test_damaged_keep_mask_is_reported(runs, tmp_path) -> None:
    path = tmp_path / "bad.srn"
    path.write_bytes(runs("fvsrn-position", "binary")["path"].read_bytes())
    original = path.read_bytes()
    edit(path, tensors=lambda t: t.__setitem__("grid_keep", t["grid_keep"][:-1]))
    with pytest.raises(FileFormatError, match="the tensor grid_keep is stored as"):
        read_srn(path)
    path.write_bytes(original)
    # more kept entries than stored values
    edit(path, tensors=lambda t: t.__setitem__("grid_keep", np.full_like(t["grid_keep"], 255)))
    with pytest.raises(FileFormatError, match="stored grid values for"):
        read_srn(path)


# ---------------------------------------------------------------------------------------------
# The masks themselves


def test_smallify_prunes_units_whose_sign_keeps_flipping() -> None:
    mask = SmallifyMask((3,), momentum=0.1, threshold=0.75)
    with torch.no_grad():
        mask.beta.copy_(torch.tensor([1.0, -0.5, 0.01]))
        mask.sign_mean.copy_(torch.sign(mask.beta))  # the statistics start from the initial signs
    mask.after_step()
    for step in range(60):
        with torch.no_grad():
            mask.beta[2] = 0.01 if step % 2 else -0.01  # flips every step
            mask.beta[1] = -0.5 - 0.01 * step  # steady sign
        mask.after_step()
    assert mask.keep().tolist() == [True, True, False]
    assert mask.scale()[2] == 0 and mask.scale()[1] == mask.beta[1].detach()
    assert float(mask.penalty().detach()) == pytest.approx(1.0 + abs(float(mask.beta[1].detach())))


def test_variational_kl_and_dropout_threshold() -> None:
    mask = VariationalMask((4,), threshold=0.9)
    with torch.no_grad():
        mask.theta.fill_(1.0)
        mask.log_sigma2.copy_(torch.tensor([-8.0, 0.0, math.log(9.0) - 0.01, math.log(9.0) + 0.01]))
    log_alpha = mask.log_sigma2.detach()
    k1, k2, k3 = 0.63576, 1.87320, 1.48695
    expected = -(k1 * torch.sigmoid(k2 + k3 * log_alpha) - 0.5 * torch.log1p(torch.exp(-log_alpha)) - k1)
    assert float(mask.penalty().detach()) == pytest.approx(float(expected.sum()), rel=1e-5)
    assert mask.keep().tolist() == [True, True, True, False]  # alpha / (1 + alpha) >= 0.9 <=> alpha >= 9
    assert mask.scale().tolist() == [1.0, 1.0, 1.0, 0.0]


def test_variational_noise_per_sample_or_per_step() -> None:
    torch.manual_seed(0)
    neurons = VariationalMask((5,), threshold=0.9)
    with torch.no_grad():
        neurons.log_sigma2.fill_(0.0)
    out = neurons(torch.ones(3, 5))
    assert not torch.allclose(out[0], out[1])  # each sample draws its own noise
    grid_mask = VariationalMask((1, 2, 2, 2), threshold=0.9)
    with torch.no_grad():
        grid_mask.log_sigma2.fill_(0.0)
    grid = grid_mask(torch.ones(3, 2, 2, 2))
    assert torch.equal(grid[0], grid[1])  # one draw for the whole grid, shared by the channels
    assert torch.equal(grid_mask.eval()(torch.ones(3, 2, 2, 2)), torch.ones(3, 2, 2, 2))


def test_binary_mask_is_hard_forward_soft_backward_without_rescaling() -> None:
    mask = BinaryMask((3,), threshold=0.5)
    with torch.no_grad():
        mask.logits.copy_(torch.tensor([2.0, 0.3, -1.0]))
    x = torch.full((2, 3), 3.0)
    out = mask(x)
    assert out.tolist() == [[3.0, 3.0, 0.0]] * 2  # kept units pass unscaled
    out.sum().backward()
    soft = torch.sigmoid(torch.tensor([2.0, 0.3, -1.0]))
    torch.testing.assert_close(mask.logits.grad, 2 * 3.0 * soft * (1 - soft))
    assert mask.keep().tolist() == [True, True, False]
    assert float(mask.penalty().detach()) == pytest.approx(float(soft.sum()))


def test_gaussian_likelihood_static_and_dynamic() -> None:
    from srnvtk.pruning import GaussianNLL

    prediction, target, positions = torch.zeros(4), torch.tensor([0.1, -0.2, 0.0, 0.3]), torch.rand(4, 3)
    static = GaussianNLL("static", 0.1)
    expected = (0.5 * (target / 0.1).square() + math.log(0.1)).mean()
    torch.testing.assert_close(static(prediction, target, positions), expected)
    dynamic = GaussianNLL("dynamic", 0.1)
    torch.testing.assert_close(dynamic(prediction, target, positions), expected)  # starts at the static sigma
    with torch.no_grad():
        dynamic.net[-1].bias.fill_(-50.0)  # a collapsing sigma is held at MIN_SIGMA
    floor = (0.5 * (target / GaussianNLL.MIN_SIGMA).square() + math.log(GaussianNLL.MIN_SIGMA)).mean()
    torch.testing.assert_close(dynamic(prediction, target, positions), floor)


@pytest.mark.parametrize("case", ["fvsrn-position", "neurcomp-residual"])
def test_variational_with_dynamic_sigma(volume, tmp_path, case) -> None:
    pruning = dataclasses.replace(pushed("variational", case), sigma="dynamic")
    result = compress(volume, model_config=CASES[case][0], train_config=TRAIN, path=tmp_path / "d.srn", pruning=pruning)
    assert 0 < result.stats["pruned_fraction"] < 1 and math.isfinite(result.stats["psnr"])
    srn = read_srn(tmp_path / "d.srn")  # the sigma network is a training aid: not in the file
    assert srn.pruning.sigma == "dynamic"
    assert not any("net" in name for name in srn.model.state_dict())


# ---------------------------------------------------------------------------------------------
# Bad settings


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"method": "magic"}, "method must be one of none, smallify, variational, binary, got 'magic'"),
        ({"granularity": "channel"}, "granularity must be one of position, position_channel"),
        ({"sigma": "learned"}, "sigma must be one of static, dynamic"),
        ({"mask_phase_fraction": 0.0}, r"mask_phase_fraction must be a number in \(0, 1\)"),
        ({"mask_phase_fraction": 1.0}, "mask_phase_fraction"),
        ({"finetune_lr_factor": 0.0}, "finetune_lr_factor"),
        ({"mask_learning_rate": 1.0}, "mask_learning_rate"),
        ({"l1_weight": -1.0}, "l1_weight"),
        ({"kl_weight": float("inf")}, "kl_weight"),
        ({"static_sigma": 0.0}, "static_sigma"),
        ({"sign_variance_threshold": 1.5}, "sign_variance_threshold"),
        ({"dropout_threshold": 1.0}, "dropout_threshold"),
        ({"binary_threshold": 0.0}, "binary_threshold"),
        ({"sign_momentum": 0.3}, "never reached with sign_momentum 0.3"),
        ({"l1_weight": "big"}, "l1_weight"),
    ],
)
def test_bad_pruning_settings_raise(change, fragment) -> None:
    with pytest.raises(SettingsError, match=fragment):
        PruningConfig(**change)
