"""Each setting declared once (srnvtk.options): the command line, the VTK setters and the ParaView XML all
follow the declarations in srnvtk.config; the model protocol; the narrow public entry points."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from srnvtk import cli, paraview_xml
from srnvtk.config import ENCODER_SETTINGS, TRAINING, DecodeConfig, FVSRNConfig, NeurcompConfig, TrainConfig
from srnvtk.errors import SettingsError
from srnvtk.faces import install_setters
from srnvtk.fileformat import SRNFile
from srnvtk.models import SRNModel, build_model
from srnvtk.options import declared_settings, iter_settings, setting
from srnvtk.volume import Geometry

ROOT = Path(__file__).resolve().parents[1]
GEOMETRY = Geometry((0, 7, 0, 6, 0, 5))


@dataclass(frozen=True)
class MadeUpTrainConfig(TrainConfig):
    """TrainConfig plus one new setting, declared once."""

    warmup_steps: int = setting(25, "Steps at a rising learning rate before the decay starts.", TRAINING,
                                property="WarmupSteps", flag="--warmup-steps", metavar="S", low=0, high=5000)


def test_a_new_setting_needs_one_declaration_to_reach_every_face(vtk_errors) -> None:
    classes = tuple(MadeUpTrainConfig if cls is TrainConfig else cls for cls in ENCODER_SETTINGS)
    # --help
    parser = cli.build_parser(encoder_classes=classes)
    compress = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("compress"))
    help_text = " ".join(compress.format_help().split())
    assert "--warmup-steps S Steps at a rising learning rate before the decay starts. (default 25)" in help_text
    args = parser.parse_args(["compress", "in.vti", "out.srn", "--warmup-steps", "40"])
    from srnvtk.faces import settings_from_args

    assert settings_from_args(args, MadeUpTrainConfig).warmup_steps == 40
    # a Set*/Get* pair on a VTK algorithm, validated by the declared range
    from srnvtk.vtkalgorithms import SRNEncoder, report_error

    class MadeUpEncoder(SRNEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.settings[MadeUpTrainConfig] = MadeUpTrainConfig()

    install_setters(MadeUpEncoder, (MadeUpTrainConfig,), report_error)
    encoder = MadeUpEncoder()
    encoder.SetWarmupSteps(100)
    assert encoder.GetWarmupSteps() == 100 and encoder.settings[MadeUpTrainConfig].warmup_steps == 100
    encoder.SetWarmupSteps(6000)
    assert "warmup_steps must be an integer in [0, 5000], got 6000" in vtk_errors()
    assert encoder.GetWarmupSteps() == 100
    # the ParaView XML, with its range, in the Training group
    proxy = dataclasses.replace(paraview_xml.ENCODER, settings=classes)
    root = ET.fromstring(paraview_xml.paraview_xml((proxy,)))
    prop = root.find(".//IntVectorProperty[@name='WarmupSteps']")
    assert prop is not None and prop.get("command") == "SetWarmupSteps" and prop.get("default_values") == "25"
    assert prop.find("IntRangeDomain").attrib == {"name": "range", "min": "0", "max": "5000"}
    training = root.find(".//PropertyGroup[@label='Training']")
    assert "WarmupSteps" in [p.get("name") for p in training]


def test_the_committed_xml_is_what_the_generator_writes() -> None:
    committed = (ROOT / "xml" / "srnvtk.xml").read_text()
    assert committed == paraview_xml.paraview_xml(), "run: python -m srnvtk.paraview_xml > xml/srnvtk.xml"


def _settings_by_property(classes) -> dict:
    return {s.option.property: s for s in iter_settings(classes) if s.option.property}


@pytest.mark.parametrize(("proxy_name", "classes"), [("SRNEncoder", ENCODER_SETTINGS), ("SRNReader", (DecodeConfig,))])
def test_every_xml_range_default_and_choice_is_the_configs(proxy_name, classes) -> None:
    root = ET.parse(ROOT / "xml" / "srnvtk.xml").getroot()
    proxy = root.find(f".//SourceProxy[@name='{proxy_name}']")
    specs = _settings_by_property(classes)
    seen = set()
    for prop in proxy:
        spec = specs.get(prop.get("name"))
        if spec is None:
            continue
        seen.add(spec.option.property)
        option = spec.option
        default = spec.to_face(spec.default)
        default = default if isinstance(default, tuple) else (default,)
        assert prop.get("default_values").split() == [str(int(v)) if isinstance(v, bool) else str(v) for v in default]
        domain = next((d for d in prop if d.tag.endswith("RangeDomain")), None)
        if option.choice_list() is not None:
            assert [s.get("value") for s in prop.find("StringListDomain")] == list(option.choice_list())
        elif domain is not None:
            unset = spec.to_face(None) if spec.optional else None
            unset = unset if isinstance(unset, tuple) else (unset,) * option.elements
            lows = [float(v) for v in domain.get("min").split()]
            expected_lows = [min(option.low, u) if isinstance(u, (int, float)) else option.low for u in unset]
            assert lows == expected_lows, spec.name  # the config's low, or the "unset" value below it
            if option.high is not None:
                assert [float(v) for v in domain.get("max").split()] == [option.high] * option.elements
        else:
            assert spec.kind is bool or (option.low is None and option.high is None), spec.name
    assert seen == set(specs), set(specs) - seen


def test_ranges_are_enforced_where_declared() -> None:
    for spec in iter_settings((*ENCODER_SETTINGS, DecodeConfig)):
        option = spec.option
        if spec.kind not in (int, float) or option.high is None:
            continue
        too_high = option.high + (1 if spec.kind is int else option.high * 1e-6 + 1e-9)
        with pytest.raises(SettingsError, match=spec.name):
            spec.owner(**{spec.name: spec.kind(too_high)})


def test_setting_names_flags_and_properties_are_unique_within_each_face() -> None:
    for classes in (ENCODER_SETTINGS, (DecodeConfig,)):
        specs = list(iter_settings(classes))
        for attribute in ("name",):
            names = [getattr(s, attribute) for s in specs]
            assert len(names) == len(set(names))
        for key in ("flag", "property"):
            values = [getattr(s.option, key) for s in specs if getattr(s.option, key)]
            assert len(values) == len(set(values)), key


@pytest.mark.parametrize("config", [FVSRNConfig(grid_resolution=4), FVSRNConfig(grid_resolution=4, wavelet="haar"),
                                    NeurcompConfig(width=8, blocks=2)], ids=["fvsrn", "wavelet", "neurcomp"])
def test_every_architecture_implements_the_model_protocol(config) -> None:
    model = build_model(config, GEOMETRY)
    assert isinstance(model, SRNModel)
    for name, member in inspect.getmembers(SRNModel):
        if name.startswith("_") or not callable(member):
            continue
        implemented = getattr(type(model), name)
        assert inspect.signature(implemented).parameters.keys() == inspect.signature(member).parameters.keys(), name


def _probing_calls(path: Path) -> list[str]:
    """hasattr(model, ...) / getattr(model, ...) calls on anything named like a model."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr"):
            target = node.args[0] if node.args else None
            if isinstance(target, ast.Name) and "model" in target.id:
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_probing_of_models_outside_the_models_package() -> None:
    package = ROOT / "srnvtk"
    files = [p for p in package.rglob("*.py") if "models" not in p.relative_to(package).parts]
    assert [hit for p in files for hit in _probing_calls(p)] == []


def test_public_entry_points_take_their_options_by_keyword() -> None:
    from srnvtk.decode import decode
    from srnvtk.encoder import compress
    from srnvtk.ratecontrol import compress_to_psnr, compress_to_ratio

    for function, positional in ((compress, 1), (compress_to_ratio, 2), (compress_to_psnr, 2), (decode, 2)):
        parameters = list(inspect.signature(function).parameters.values())
        kinds = [p.kind for p in parameters[positional:]]
        assert set(kinds) == {inspect.Parameter.KEYWORD_ONLY}, function.__name__


def test_decode_leaves_the_callers_model_and_thread_count_alone(monkeypatch) -> None:
    from srnvtk import decode as decode_module

    model = build_model(FVSRNConfig(grid_resolution=4), GEOMETRY)
    srn = SRNFile.of_model(model, GEOMETRY, (0.0, 1.0))
    moved_to = []
    real = decode_module._on_device
    monkeypatch.setattr(decode_module, "_on_device", lambda m, d: moved_to.append(d) or real(m, torch.device("cpu")))
    threads = torch.get_num_threads()
    decode_module.decode(srn, device="cpu", threads=threads + 1)
    assert torch.get_num_threads() == threads
    assert next(model.parameters()).device.type == "cpu" and moved_to == [torch.device("cpu")]
    other = torch.device("meta")  # any device the model is not on gets a copy, not the model
    copy = real(model, other)
    assert copy is not model and next(model.parameters()).device.type == "cpu"


def test_training_restores_torchs_thread_count() -> None:
    from srnvtk.datasets import default_volume_values
    from srnvtk.train import train
    from srnvtk.volume import Volume

    volume = Volume(default_volume_values((8, 7, 6)), GEOMETRY)
    threads = torch.get_num_threads()
    train(volume, FVSRNConfig(grid_resolution=4, mlp_width=8, mlp_layers=1),
          TrainConfig(steps=2, batch_size=64, threads=threads + 1, device="cpu"))
    assert torch.get_num_threads() == threads


def test_every_declared_default_passes_its_own_checks() -> None:
    for cls in (*ENCODER_SETTINGS, DecodeConfig):
        cls()  # __post_init__ checks every declared setting
        assert declared_settings(cls)
    assert np.isfinite(TrainConfig().time_limit)
