"""k-means weight sharing for Neurcomp: the clustering, the trainable shared values, the stored file."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from srn_editing import edit, stored_tensors

from srnvtk.config import NeurcompConfig, TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.decode import decode
from srnvtk.encoder import compress, estimated_file_bytes
from srnvtk.errors import FileFormatError, SettingsError
from srnvtk.fileformat import FORMAT_VERSION, read_srn
from srnvtk.kmeans import ClusteredLinear, kmeans_1d
from srnvtk.models import build_model
from srnvtk.volume import Volume

SHAPE = (20, 18, 16)
CLUSTERED = NeurcompConfig(width=24, blocks=2, weight_clusters=16)
TRAIN = TrainConfig(steps=40, batch_size=1024, seed=0, device="cpu")


def test_kmeans_reproduces_few_distinct_values_exactly() -> None:
    values = torch.tensor([[0.5, -1.0, 0.5], [2.0, -1.0, 2.0]])
    codebook, indices = kmeans_1d(values, 8)
    assert indices.dtype == torch.uint8 and indices.shape == values.shape
    assert torch.equal(codebook[indices.long()], values)


def test_kmeans_beats_evenly_spaced_levels_on_peaked_values() -> None:
    values = torch.randn(20000, generator=torch.Generator().manual_seed(0)) ** 3  # heavy-tailed, like weights
    codebook, indices = kmeans_1d(values, 16)
    assert torch.all(codebook[1:] >= codebook[:-1])
    clustered = ((codebook[indices.long()] - values) ** 2).mean()
    levels = torch.linspace(float(values.min()), float(values.max()), 16)
    nearest = levels[torch.argmin((values[:, None] - levels[None]).abs(), dim=1)]
    assert clustered < 0.5 * ((nearest - values) ** 2).mean()
    again = kmeans_1d(values, 16)
    assert torch.equal(again[0], codebook) and torch.equal(again[1], indices)  # deterministic


@pytest.mark.parametrize("clusters", [1, 257])
def test_kmeans_rejects_bad_cluster_counts(clusters) -> None:
    with pytest.raises(ValueError, match="clusters must be within"):
        kmeans_1d(torch.randn(100), clusters)


def test_clustered_layer_trains_its_shared_values() -> None:
    linear = torch.nn.Linear(6, 5)
    layer = ClusteredLinear.from_linear(linear, 4)
    x = torch.randn(7, 6)
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    layer(x).sum().backward()
    # Each shared value's gradient is the sum of its weights' gradients (d/dW of sum(x W^T) = column sums of x).
    per_weight = x.sum(0).expand(5, 6)
    expected = torch.zeros(4).index_add_(0, layer.indices.long().reshape(-1), per_weight.reshape(-1))
    torch.testing.assert_close(layer.codebook.grad, expected)
    assert list(dict(layer.named_parameters())) == ["codebook", "bias"]  # the indices stay fixed


def test_weight_clusters_setting_is_checked() -> None:
    with pytest.raises(SettingsError, match="weight_clusters"):
        NeurcompConfig(weight_clusters=1)
    with pytest.raises(SettingsError, match="weight_clusters"):
        NeurcompConfig(weight_clusters=300)


@pytest.fixture(scope="module")
def volume() -> Volume:
    return Volume(default_volume_values(SHAPE), default_geometry(SHAPE), "density")


@pytest.fixture(scope="module")
def clustered_file(tmp_path_factory, volume) -> dict:
    path = tmp_path_factory.mktemp("kmeans") / "c.srn"
    result = compress(volume, model_config=CLUSTERED, train_config=TRAIN, path=path)
    return {"path": path, "result": result}


def test_training_ends_with_clustered_hidden_matrices(clustered_file) -> None:
    srn = read_srn(clustered_file["path"])
    assert srn.format_version == FORMAT_VERSION
    assert srn.model.structure()["clustered_layers"] == [1, 2, 3, 4]
    for k in (1, 2, 3, 4):
        layer = srn.model.layers[k].linear
        assert isinstance(layer, ClusteredLinear)
        assert len(torch.unique(layer.weight)) <= CLUSTERED.weight_clusters
    assert not isinstance(srn.model.layers[0].linear, ClusteredLinear)  # 3 -> width: too small to share


def test_clustered_file_decodes_exactly_to_the_reconstruction(clustered_file) -> None:
    srn = read_srn(clustered_file["path"])
    decoded = decode(srn, device="cpu")
    np.testing.assert_array_equal(decoded, clustered_file["result"].reconstruction)


def test_clustered_file_stores_one_byte_per_hidden_weight(clustered_file, volume) -> None:
    tensors = stored_tensors(clustered_file["path"])
    indices = tensors["weight_indices"]
    assert indices.dtype == np.uint8 and indices.shape == (4 * 24 * 24,)
    assert tensors["weights"].shape[0] < 2 * 24 * 24  # no hidden matrix among the fp16 weights
    size = clustered_file["path"].stat().st_size
    assert size <= estimated_file_bytes(CLUSTERED, volume.geometry)
    plain = estimated_file_bytes(dataclasses.replace(CLUSTERED, weight_clusters=0), volume.geometry)
    assert estimated_file_bytes(CLUSTERED, volume.geometry) < plain


def _index_200(tensors: dict) -> None:
    indices = tensors["weight_indices"].copy()
    indices[0] = 200
    tensors["weight_indices"] = indices


@pytest.mark.parametrize(("change", "fragment"), [
    ({"tensors": _index_200}, "beyond the 16 shared values"),
    ({"header": lambda h: h["layouts"].__setitem__("weight_indices", [])}, "do not match the model's"),
    ({"tensors": lambda t: t.pop("weight_indices")}, "the settings call for"),
], ids=["index-range", "layout", "missing"])
def test_damaged_indices_give_a_clear_error(tmp_path, clustered_file, change, fragment) -> None:
    path = tmp_path / "d.srn"
    path.write_bytes(clustered_file["path"].read_bytes())
    edit(path, **change)
    with pytest.raises(FileFormatError, match=fragment):
        read_srn(path)


def test_unclustered_neurcomp_stores_no_indices(tmp_path, volume) -> None:
    path = tmp_path / "p.srn"
    compress(volume, model_config=dataclasses.replace(CLUSTERED, weight_clusters=0),
             train_config=dataclasses.replace(TRAIN, steps=3), path=path)
    assert set(stored_tensors(path)) == {"weights"}
    model = build_model(CLUSTERED, volume.geometry)
    assert model.clustered_layers() == []  # clustering happens in training, not at construction


def test_a_layer_with_fewer_weights_than_clusters_still_has_every_shared_value(tmp_path, volume) -> None:
    """Few distinct weights: the codebook is padded to the configured size, so the file reads back."""
    codebook, indices = kmeans_1d(torch.tensor([0.5, -1.0, 0.5]), 8)
    assert codebook.shape == (8,) and torch.equal(codebook[indices.long()], torch.tensor([0.5, -1.0, 0.5]))
    narrow = NeurcompConfig(width=6, blocks=1, weight_clusters=256)  # 36 weights per hidden matrix
    path = tmp_path / "n.srn"
    result = compress(volume, model_config=narrow, train_config=TRAIN, path=path)
    srn = read_srn(path)
    np.testing.assert_array_equal(decode(srn, device="cpu"),
                                  result.reconstruction)
