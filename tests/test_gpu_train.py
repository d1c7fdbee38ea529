"""The graphed training step (srnvtk.gpu.graphed_step) is the trainer's own step.

On the CPU it runs eagerly and must give the trainer's loop bit for bit: the same losses at every step and the
same parameters, through every phase that uses it (plain, the fine-tuning after a pruning phase or a weight
clustering). The capture itself needs CUDA: tests/test_gpu_cuda.py.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from srnvtk import train as train_module
from srnvtk.config import NeurcompConfig, PruningConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.gpu.graphed_step import ADAM_BETAS, GraphedStep, graphs_enabled
from srnvtk.train import train
from srnvtk.volume import Volume

SHAPE = (13, 11, 9)


@pytest.fixture(scope="module")
def volume() -> Volume:
    return Volume(default_volume_values(SHAPE), default_geometry(SHAPE), "density")


def run(volume, model_config, train_config, monkeypatch, graphed: bool, **options):
    """(every reported loss, the trained parameters) with or without the graphed step (eager on the CPU)."""
    monkeypatch.setattr(train_module, "graphs_enabled", lambda device: graphed)
    built = []
    real = train_module.GraphedStep
    monkeypatch.setattr(train_module, "GraphedStep", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    messages: list[str] = []
    result = train(volume, model_config, train_config, progress=lambda _f, m: messages.append(m), **options)
    assert bool(built) == graphed and all(not step.capture for step in built)  # eager: no CUDA here
    parameters = {name: p.detach().clone() for name, p in result.model.named_parameters()}
    return messages, parameters


@pytest.mark.parametrize("case", ["plain", "pruned", "clustered"])
def test_the_graphed_step_run_eagerly_is_the_trainers_loop(volume, tiny_model_config, fast_train_config,
                                                            monkeypatch, case):
    model_config, options = tiny_model_config, {}
    if case == "pruned":  # a mask phase (the loop), then fine-tuning (the graphed step)
        options["pruning"] = PruningConfig(method="variational")
    elif case == "clustered":  # training, k-means clustering, fine-tuning of the shared values
        model_config = NeurcompConfig(width=8, blocks=1, weight_clusters=4)
    # uniform batches, as on CUDA (TrainConfig.sampling 'auto'): on the CPU the trainer would draw by the error
    config = dataclasses.replace(fast_train_config, steps=24, batch_size=512, sampling="uniform")
    loop_messages, loop_parameters = run(volume, model_config, config, monkeypatch, False, **options)
    graphed_messages, graphed_parameters = run(volume, model_config, config, monkeypatch, True, **options)
    assert len(loop_messages) == 24  # a loss at every step
    assert graphed_messages == loop_messages
    assert graphed_parameters.keys() == loop_parameters.keys()
    for name, value in loop_parameters.items():
        assert torch.equal(graphed_parameters[name], value), name


@pytest.mark.parametrize("graphed", [False, True])
def test_every_optimizer_of_a_training_decays_the_second_moment_fast(volume, tiny_model_config, fast_train_config,
                                                                     monkeypatch, graphed):
    # torch's beta2 of 0.999 let training blow up at high rates (srnvtk.gpu.graphed_step.ADAM_BETAS): the mask
    # phase and the fine-tune each build their own Adam, in the loop and in the graphed step alike
    built = []

    class Recorded(torch.optim.Adam):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self.defaults["betas"])

    monkeypatch.setattr(torch.optim, "Adam", Recorded)
    config = dataclasses.replace(fast_train_config, steps=8, batch_size=256, sampling="uniform")
    run(volume, tiny_model_config, config, monkeypatch, graphed, pruning=PruningConfig(method="variational"))
    assert len(built) == 2 and all(betas == ADAM_BETAS for betas in built)
    assert ADAM_BETAS[1] == 0.99


def test_graphs_are_used_only_on_cuda_and_can_be_switched_off(monkeypatch):
    assert not graphs_enabled(torch.device("cpu"))
    assert graphs_enabled(torch.device("cuda"))
    monkeypatch.setenv("SRNVTK_CUDA_GRAPHS", "0")
    assert not graphs_enabled(torch.device("cuda"))


def test_a_step_samples_the_volume_like_the_trainer(volume, tiny_model_config):
    # the positions it feeds the model are srnvtk.sampling.voxel_positions of the indices it drew
    from srnvtk.models import build_model
    from srnvtk.sampling import voxel_positions

    model = build_model(tiny_model_config, volume.geometry)
    seen = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    targets = torch.rand(volume.values.size)
    groups = [{"params": list(model.parameters()), "base_lr": 1e-2}]
    step = GraphedStep(model, groups, 1e-2, targets, volume.geometry.shape_zyx, 300, torch.Generator().manual_seed(0))
    loss = step(0.5)
    assert step.optimizer.param_groups[0]["lr"] == 5e-3
    assert torch.equal(seen[0], voxel_positions(step.index, volume.geometry.shape_zyx))
    assert loss.shape == () and loss > 0
