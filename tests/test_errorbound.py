"""The guaranteed pointwise error bound (srnvtk.errorbound, srnvtk.bounded, format 8): every voxel of every
grid on the source lattice within the bound, for every architecture, pruning method, a wavelet grid and the
input types; what the reader does off the lattice; bad settings; damaged and crafted files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from srnvtk.bounded import finish, network_candidates, residual_only, train_for_bound
from srnvtk.config import EncodeConfig, EncoderSettings, FVSRNConfig, NeurcompConfig, PruningConfig, TrainConfig
from srnvtk.container import Container
from srnvtk.datasets import default_volume_values
from srnvtk.decode import decode, resampled_geometry, strided_geometry
from srnvtk.encoder import source_info
from srnvtk.errorbound import (
    CODER_CHUNK_EDGES,
    absolute_bound,
    lattice_indices,
    parse_payload,
    quant_payload,
    quant_step,
    sz3_available,
)
from srnvtk.errors import FileFormatError, SettingsError
from srnvtk.fileformat import BOUNDED_VERSION, read_srn
from srnvtk.fileinfo import file_info
from srnvtk.ratecontrol import encode
from srnvtk.volume import Geometry, Volume

SHAPE = (20, 17, 13)  # x, y, z point counts: not multiples of anything
GEOMETRY = Geometry((3, 22, -2, 14, 5, 17), (0.5, -1.0, 2.0), (0.25, 0.5, 0.75))
TRAIN = TrainConfig(steps=12, batch_size=256, seed=0, device="cpu", threads=1)
SMALL_FVSRN = FVSRNConfig(grid_channels=2, mlp_width=8, mlp_layers=1, fourier_features=0)
CODERS = ("quant", "sz3") if sz3_available() else ("quant",)


def values_of(dtype: str) -> np.ndarray:
    """The generated volume as this type: uint8 as it is; int16 spread over +-20000 with odd steps; floats as a
    smooth field plus fine noise (nothing a network or a quantiser gets for free)."""
    base = default_volume_values(SHAPE).astype(np.float64)  # [z, y, x], uint8 values
    if dtype == "uint8":
        return base.astype(np.uint8)
    if dtype == "int16":
        return np.clip(base * 157.0 - 20011.0, -32768, 32767).astype(np.int16)
    noise = np.random.default_rng(3).standard_normal(base.shape)
    return (base / 255.0 * 3.7 - 1.2 + 0.01 * noise).astype(dtype)


def volume_of(dtype: str) -> Volume:
    return Volume(values_of(dtype), GEOMETRY, "v")


def value_range(volume: Volume) -> float:
    return float(volume.values.max()) - float(volume.values.min())


def grids(source: Geometry) -> list[tuple[str, Geometry, tuple[slice, ...]]]:
    """Output grids on the source lattice with the slices of the original ([z, y, x]) they sample."""
    e = source.extent
    cases = [("full", source, (slice(None),) * 3)]
    for stride in ((2, 3, 1), (3, 2, 2)):
        out = strided_geometry(source, stride)
        cases.append((f"stride {stride}", out, _slices(source, out, stride)))
    region = (e[0] + 2, e[0] + 15, e[2] + 1, e[2] + 9, e[4] + 3, e[4] + 11)
    out = strided_geometry(source, (1, 1, 1), region)
    cases.append(("sub-extent", out, _slices(source, out, (1, 1, 1))))
    out = strided_geometry(source, (2, 2, 3), region)
    cases.append(("sub-extent, stride 2 2 3", out, _slices(source, out, (2, 2, 3))))
    return cases


def _slices(source: Geometry, out: Geometry, stride: tuple[int, int, int]) -> tuple[slice, ...]:
    """Independently of srnvtk.errorbound: output index j sits on source index j * stride (strided_geometry)."""
    per_axis = []
    for a in range(3):
        lo, hi = out.extent[2 * a] * stride[a], out.extent[2 * a + 1] * stride[a]
        per_axis.append(slice(lo - source.extent[2 * a], hi - source.extent[2 * a] + 1, stride[a]))
    return tuple(reversed(per_axis))


def assert_bound_everywhere(path: Path, volume: Volume, bound: float) -> None:
    """Every lattice grid, pieces included, decodes within the bound (float64 against the original)."""
    srn = read_srn(path)
    original = volume.values.astype(np.float64)
    for name, grid, where in grids(volume.geometry):
        decoded = decode(srn, grid, device="cpu")
        assert decoded.dtype == volume.values.dtype, name
        error = np.abs(decoded.astype(np.float64) - original[where])
        assert error.max() <= bound, (name, error.max(), bound)
    # pieces: z slabs of two and three planes, assembled
    e = volume.geometry.extent
    assembled = np.empty(original.shape)
    for k0 in range(e[4], e[5] + 1, 3):
        piece = Geometry((e[0], e[1], e[2], e[3], k0, min(k0 + 2, e[5])), GEOMETRY.origin, GEOMETRY.spacing)
        assembled[k0 - e[4]:min(k0 + 2, e[5]) - e[4] + 1] = decode(srn, piece, device="cpu")
    assert np.abs(assembled - original).max() <= bound


def settings_for(model: FVSRNConfig | NeurcompConfig, pruning: PruningConfig | None = None,
                 **encode_settings) -> EncoderSettings:
    architecture = model.architecture
    kwargs = {"fvsrn": model} if architecture == "fvsrn" else {"neurcomp": model}
    return EncoderSettings(encode=EncodeConfig(architecture=architecture, **encode_settings), train=TRAIN,
                           pruning=pruning or PruningConfig(), **kwargs)


def write_with_network(path: Path, volume: Volume, bound: float, settings: EncoderSettings, coder: str,
                       network_bytes: int = 4_000):
    network = train_for_bound(volume, settings, network_bytes)
    candidate = network_candidates(volume, network, bound, coder_names=(coder,))[0]
    return finish(volume, source_info(volume), candidate, [candidate], path)


# ---------------------------------------------------------------------------------------------------------
# the bound on every voxel


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64"])
@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("relative", [0.0, 0.004, 0.05, 0.3])
def test_residual_only_keeps_the_bound(tmp_path, dtype, coder, relative) -> None:
    volume = volume_of(dtype)
    bound = relative * value_range(volume)
    candidate = next(c for c in residual_only(volume, source_info(volume), bound, None) if c.coder == coder
                     or (bound == 0 and dtype.startswith("float")))
    result = finish(volume, source_info(volume), candidate, [candidate], tmp_path / "r.srn")
    assert result.bound["max_error_measured"] <= bound
    assert_bound_everywhere(tmp_path / "r.srn", volume, bound)
    if bound == 0 or (dtype in ("uint8", "int16") and bound < 0.5):
        assert np.array_equal(decode(read_srn(tmp_path / "r.srn"), device="cpu"), volume.values)  # lossless


NETWORK_CASES = {
    "fvsrn": (SMALL_FVSRN, None),
    "fvsrn variational": (SMALL_FVSRN, PruningConfig(method="variational")),
    "fvsrn binary": (SMALL_FVSRN, PruningConfig(method="binary")),
    "fvsrn smallify": (SMALL_FVSRN, PruningConfig(method="smallify", granularity="position_channel")),
    "fvsrn haar wavelet variational": (FVSRNConfig(grid_channels=2, mlp_width=8, mlp_layers=1, fourier_features=0,
                                                   wavelet="haar"), PruningConfig(method="variational")),
    "neurcomp": (NeurcompConfig(blocks=1), None),
    "neurcomp plain binary": (NeurcompConfig(blocks=1, residual=False), PruningConfig(method="binary")),
    "neurcomp k-means": (NeurcompConfig(blocks=1, weight_clusters=4), None),
}


@pytest.mark.parametrize("case", NETWORK_CASES)
def test_network_and_residual_keep_the_bound(tmp_path, case) -> None:
    model, pruning = NETWORK_CASES[case]
    index = list(NETWORK_CASES).index(case)
    dtype = ("uint8", "int16", "float32", "float64")[index % 4]  # every case a type, every type twice
    coder = CODERS[index % len(CODERS)]
    volume = volume_of(dtype)
    bound = (0.01, 0.07)[index % 2] * value_range(volume)
    network_bytes = 6_000 if model.architecture == "neurcomp" else 4_000
    result = write_with_network(tmp_path / "n.srn", volume, bound, settings_for(model, pruning), coder,
                                network_bytes)
    assert result.model_config is not None and result.bound["design"] == "network + residual"
    assert result.bound["network_bytes"] > 0
    assert_bound_everywhere(tmp_path / "n.srn", volume, bound)
    srn = read_srn(tmp_path / "n.srn")
    assert srn.format_version == BOUNDED_VERSION and srn.bound.coder == coder and srn.pruning.method == (pruning or
                                                                                          PruningConfig()).method


def test_lossless_integer_with_a_network(tmp_path) -> None:
    volume = volume_of("int16")
    write_with_network(tmp_path / "l.srn", volume, 0.49, settings_for(SMALL_FVSRN), "quant")
    assert np.array_equal(decode(read_srn(tmp_path / "l.srn"), device="cpu"), volume.values)


def test_the_bound_survives_the_torch_path(tmp_path, monkeypatch) -> None:
    """The encoder decodes with whatever path it has (here the fused kernel where a compiler works); a reader
    without the kernel decodes with torch, a few ulps apart: the margin keeps the bound."""
    volume = volume_of("uint8")
    bound = 2.0
    write_with_network(tmp_path / "t.srn", volume, bound, settings_for(SMALL_FVSRN), "quant")
    monkeypatch.setenv("SRNVTK_NATIVE", "0")
    decoded = decode(read_srn(tmp_path / "t.srn"), device="cpu")
    assert np.abs(decoded.astype(np.float64) - volume.values).max() <= bound


def test_encode_picks_the_smallest_split_and_info_shows_it(tmp_path) -> None:
    volume = volume_of("uint8")
    settings = settings_for(SMALL_FVSRN, max_rel_error=0.02, bound_networks=1)
    result = encode(volume, settings, path=tmp_path / "e.srn").result
    sizes = [c["file_bytes"] for c in result.bound["candidates"]]
    assert result.file_bytes == (tmp_path / "e.srn").stat().st_size == min(sizes)
    assert {c["design"] for c in result.bound["candidates"]} >= {"residual only"}
    info = file_info(tmp_path / "e.srn")
    bound = info["error_bound"]
    assert math.isclose(bound["max_error"], 0.02 * 255) and bound["max_rel_error"] == 0.02
    assert bound["design"] == result.bound["design"] and bound["residual_bytes"] == result.bound["residual_bytes"]
    assert bound["network_bytes"] + bound["residual_bytes"] < info["stats"]["file_bytes"]
    assert_bound_everywhere(tmp_path / "e.srn", volume, 0.02 * 255)


def test_a_loose_bound_needs_no_residual_chunk(tmp_path) -> None:
    volume = volume_of("float32")
    bound = 2.0 * value_range(volume)  # any prediction is within it
    candidate = residual_only(volume, source_info(volume), bound, None)[0]
    finish(volume, source_info(volume), candidate, [candidate], tmp_path / "loose.srn")
    info = file_info(tmp_path / "loose.srn")["error_bound"]
    assert info["chunks_stored"] == 0 and info["residual_bytes"] == 0


# ---------------------------------------------------------------------------------------------------------
# off the lattice; the reader


def test_resampled_grids_get_no_residual(tmp_path) -> None:
    volume = volume_of("uint8")
    candidate = residual_only(volume, source_info(volume), 3.0, None)[0]
    finish(volume, source_info(volume), candidate, [candidate], tmp_path / "r.srn")
    srn = read_srn(tmp_path / "r.srn")
    resampled = resampled_geometry(volume.geometry, (7, 9, 5))
    assert lattice_indices(volume.geometry, resampled) is None
    # without a network, off the lattice there is only the constant prediction: the residual was not applied
    assert np.all(decode(srn, resampled, device="cpu") == volume.values.min())
    same = resampled_geometry(volume.geometry, SHAPE)  # the source grid's own points, found as such
    assert lattice_indices(volume.geometry, same) is not None


def test_lattice_indices_follow_strides_and_extents() -> None:
    out = strided_geometry(GEOMETRY, (2, 3, 4), (4, 20, 0, 14, 6, 17))
    ix, iy, iz = lattice_indices(GEOMETRY, out)
    assert list(ix) == [i - 3 for i in range(4, 21, 2)]
    assert list(iy) == [j + 2 for j in range(0, 15, 3)]
    assert list(iz) == [k - 5 for k in range(8, 18, 4)]


def test_reader_pieces_and_field_data(tmp_path) -> None:
    pytest.importorskip("vtkmodules")
    from vtkmodules.util.numpy_support import vtk_to_numpy

    from srnvtk.vtkalgorithms import SRNReader

    volume = volume_of("int16")
    bound = 300.0
    write_with_network(tmp_path / "p.srn", volume, bound, settings_for(SMALL_FVSRN), CODERS[-1])
    reader = SRNReader()
    reader.SetFileName(str(tmp_path / "p.srn"))
    reader.SetDevice("cpu")
    original = volume.values.astype(np.float64)
    e = GEOMETRY.extent
    for piece in range(3):
        reader.UpdatePiece(piece, 3, 0)
        image = reader.GetOutputDataObject(0)
        x0, x1, y0, y1, z0, z1 = image.GetExtent()
        nx, ny, nz = image.GetDimensions()
        values = vtk_to_numpy(image.GetPointData().GetArray("v")).reshape(nz, ny, nx).astype(np.float64)
        part = original[z0 - e[4]:z1 - e[4] + 1, y0 - e[2]:y1 - e[2] + 1, x0 - e[0]:x1 - e[0] + 1]
        assert np.abs(values - part).max() <= bound
        assert image.GetFieldData().GetArray("max_error").GetValue(0) == bound
    reader.SetTargetDimensions(9, 9, 9)
    reader.Update()
    field = reader.GetOutputDataObject(0).GetFieldData()
    assert field.GetArray("max_error") is None
    assert "does not apply" in field.GetAbstractArray("error_bound").GetValue(0)


def test_encoder_properties(tmp_path) -> None:
    pytest.importorskip("vtkmodules")
    from srnvtk.vtkalgorithms import SRNEncoder

    encoder = SRNEncoder()
    assert encoder.GetMaxError() == -1.0 and encoder.GetMaxRelError() == -1.0
    encoder.SetMaxError(2.5)
    encoder.SetMaxRelError(0.1)  # refused: the bound is already absolute (reported through VTK's error output)
    assert encoder.GetMaxError() == 2.5 and encoder.GetMaxRelError() == -1.0
    encoder.SetMaxError(-7)  # refused
    assert encoder.GetMaxError() == 2.5
    encoder.SetMaxError(-1)  # off
    assert encoder.encoder_settings().encode.max_error is None


# ---------------------------------------------------------------------------------------------------------
# bad settings


@pytest.mark.parametrize("value", [-0.5, math.nan, math.inf, -math.inf])
def test_bad_bounds_are_refused(value) -> None:
    with pytest.raises(SettingsError):
        EncodeConfig(max_error=value)
    with pytest.raises(SettingsError):
        EncodeConfig(max_rel_error=value)
    with pytest.raises(SettingsError):
        absolute_bound(value, None, (0.0, 1.0))


def test_bounds_that_exclude_each_other() -> None:
    with pytest.raises(SettingsError, match="not both"):
        EncodeConfig(max_error=1.0, max_rel_error=0.1)
    with pytest.raises(SettingsError, match="PSNR"):
        EncodeConfig(max_error=1.0, psnr=40.0)


@pytest.mark.parametrize("args", [["--max-error", "-1"], ["--max-error", "nan"], ["--max-rel-error", "inf"],
                                  ["--max-error", "1", "--max-rel-error", "0.1"],
                                  ["--max-error", "0", "--ratio", "50"]])
def test_cli_refuses_in_one_line(tmp_path, capsys, args) -> None:
    from srnvtk.cli import main
    from srnvtk.vtkio import image_from_arrays, write_vti

    volume = volume_of("uint8")
    write_vti(image_from_arrays(GEOMETRY, {"v": volume.values}, active="v"), str(tmp_path / "in.vti"))
    code = main(["compress", str(tmp_path / "in.vti"), str(tmp_path / "out.srn"), "--quiet", "--bound-networks",
                 "0", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("srnvtk: error:"), err
    assert not (tmp_path / "out.srn").exists() and not list(tmp_path.glob(".out.srn*"))
    if "--ratio" in args:  # says what the bound needs
        assert "needs" in err[-1] and "bytes" in err[-1]


def test_cli_compress_info_decompress(tmp_path, capsys) -> None:
    from srnvtk.cli import main
    from srnvtk.vtkio import image_from_arrays, read_vti, volume_from_image, write_vti

    volume = volume_of("float32")
    write_vti(image_from_arrays(GEOMETRY, {"v": volume.values}, active="v"), str(tmp_path / "in.vti"))
    assert main(["compress", str(tmp_path / "in.vti"), str(tmp_path / "b.srn"), "--quiet", "--max-rel-error",
                 "0.01", "--bound-networks", "0"]) == 0
    assert "max error" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "b.srn")]) == 0
    text = capsys.readouterr().out
    assert "error bound" in text and "residual only" in text and "format version 8" in text
    assert main(["decompress", str(tmp_path / "b.srn"), str(tmp_path / "o.vti"), "--stride", "2"]) == 0
    assert "within" in capsys.readouterr().out
    decoded = volume_from_image(read_vti(str(tmp_path / "o.vti")), "v").values.astype(np.float64)
    bound = 0.01 * value_range(volume)
    where = _slices(GEOMETRY, strided_geometry(GEOMETRY, (2, 2, 2)), (2, 2, 2))
    assert np.abs(decoded - volume.values[where]).max() <= bound
    assert main(["decompress", str(tmp_path / "b.srn"), str(tmp_path / "r.vti"), "--dimensions", "5", "5", "5"]) == 0
    assert "does not apply" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------
# damaged and crafted files


@pytest.fixture
def bounded(tmp_path) -> Path:
    volume = volume_of("uint8")
    write_with_network(tmp_path / "b.srn", volume, 3.0, settings_for(SMALL_FVSRN), "quant")
    return tmp_path / "b.srn"


def residual_sections(path: Path) -> list[int]:
    return [s for s in Container.open(path).header["bound"]["sections"] if s >= 0]


def test_damaged_residual_never_decodes(bounded) -> None:
    container = Container.open(bounded)
    section = container.sections[residual_sections(bounded)[0]]
    data = bytearray(bounded.read_bytes())
    data[section.offset + section.length // 2] ^= 0x10
    bounded.write_bytes(bytes(data))
    srn = read_srn(bounded)  # the header is intact; the residual is read when a decode needs it
    with pytest.raises(FileFormatError, match="damaged residual"):
        decode(srn, device="cpu")


def test_truncated_file_is_refused(bounded) -> None:
    data = bounded.read_bytes()
    bounded.write_bytes(data[:-7])
    with pytest.raises(FileFormatError, match="truncated"):
        read_srn(bounded)


def _edit_bound(path: Path, change) -> None:
    from srn_editing import edit

    edit(path, header=lambda h: change(h["bound"]))


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda b: b["sections"].pop(), "one section"),
    (lambda b: b["sections"].__setitem__(0, 999), "does not have"),
    (lambda b: b.update(sections=[0] * len(b["sections"])), "one section|twice|nothing names"),
    (lambda b: b.update(step=b["step"] * 2), "step"),
    (lambda b: b.update(margin=0.0), "step"),
    (lambda b: b.update(margin=-1.0), "margin"),
    (lambda b: b.update(max_error=-1.0), "bound"),
    (lambda b: b.update(max_error="nan"), "finite"),
    (lambda b: b.update(chunk_edge=0), "chunk edge"),
    (lambda b: b.update(chunk_edge=1), "one section"),
    (lambda b: b.update(coder="zip"), "unknown coder"),
    (lambda b: b.update(design="residual only"), "design"),
    (lambda b: b.update(extra=1), "keys"),
])
def test_crafted_bound_headers_are_refused(bounded, change, fragment) -> None:
    _edit_bound(bounded, change)
    with pytest.raises(FileFormatError, match=fragment):
        read_srn(bounded)


def test_a_residual_pointing_at_the_stats_section_is_refused(bounded) -> None:
    def point_at_stats(header: dict) -> None:
        first = next(i for i, s in enumerate(header["bound"]["sections"]) if s >= 0)
        header["bound"]["sections"][first] = header["stats"][0]

    from srn_editing import edit

    edit(bounded, header=point_at_stats)
    with pytest.raises(FileFormatError):
        decode(read_srn(bounded), device="cpu")


def test_a_residual_larger_than_its_chunk_allows_is_refused(bounded) -> None:
    """A section that claims to decode to more than its chunk's codes and exceptions could take is refused
    before it is read (the container's CRCs are valid: a crafted file, not a damaged one)."""
    from srnvtk.container import Encoded, encode_section, pack

    container = Container.open(bounded)
    data = bounded.read_bytes()
    parts = [Encoded(data[s.offset:s.offset + s.length], s.codec, s.raw_length) for s in container.sections]
    parts[residual_sections(bounded)[0]] = encode_section(bytes(40 * 1024 * 1024), ("zlib",))
    bounded.write_bytes(pack(container.version, container.header, parts))
    with pytest.raises(FileFormatError, match="allows at most"):
        read_srn(bounded)


@pytest.mark.parametrize("damage", ["index", "size", "mode", "width"])
def test_crafted_payloads_are_refused(damage) -> None:
    shape = (3, 4, 5)
    codes = np.arange(60, dtype=np.int64).reshape(shape) % 7 - 3
    good = quant_payload(codes, np.array([4]), np.array([9], dtype=np.uint8))
    chunk = parse_payload(good, "quant", shape, "uint8", 2.0)
    assert np.array_equal(chunk.add, codes * 2.0) and list(chunk.indices) == [4] and list(chunk.values) == [9]
    bad = bytearray(good)
    if damage == "index":
        bad[-5:-1] = (60).to_bytes(4, "little")
    elif damage == "size":
        bad = bad[:-1]
    elif damage == "mode":
        bad[0] = 9
    else:
        bad[1] = 3
    with pytest.raises(FileFormatError):
        parse_payload(bytes(bad), "quant", shape, "uint8", 2.0)


def test_steps() -> None:
    assert quant_step(0.0, "uint8", 0.0) == 1.0  # lossless integers
    assert quant_step(2.7, "int16", 0.0) == 5.0  # errors -2..2
    assert quant_step(0.5, "float32", 0.1) == pytest.approx(0.8)
    assert quant_step(0.0, "float64", 0.0) == 0.0  # no bin: exact values
    assert set(CODER_CHUNK_EDGES) == {"quant", "sz3", "exact"}
