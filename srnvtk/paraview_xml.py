"""The ParaView plugin's ServerManager XML, written from the settings declarations (srnvtk.config).

    python -m srnvtk.paraview_xml > xml/srnvtk.xml

ParaView 5.11 loads the committed `xml/srnvtk.xml` as an XML-only plugin whose proxies name the Python
classes in srnvtk.vtkalgorithms (si_class vtkSIPythonSourceProxy; decorator plugins do not load on 5.11 with
Python 3.11). Every declared setting becomes a property calling its generated `Set<Property>` method, with
the setting's default, range or choices, help, panel group, advanced flag and visibility rule (when it
applies only to one architecture or pruning method). What is not a setting is written here by hand: the
input port and array selection, the file names, the proxies' documentation and the reader factory.
A test checks that the committed file equals what this module writes.

A numeric range is the setting's own; where "unset" is written as a value below it (0 for "no target
ratio"), the domain's minimum is that value, so ParaView accepts the default.
"""

from __future__ import annotations

import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .config import BRICKS, ENCODER_SETTINGS, MODEL, OUTPUT, PRUNING, READING, TRAINING, DecodeConfig
from .options import Condition, Setting, iter_settings

HEADER = """
  srnvtk for ParaView: an XML-only plugin whose proxies name the Python classes in srnvtk.vtkalgorithms.
  Works on ParaView 5.11 and later (where decorator-based Python plugins do not load with Python 3.11).
  srnvtk and torch must be importable by ParaView's Python: use plugin/srnvtk-paraview or source
  plugin/srnvtk-env.sh (see plugin/README.md). Each property calls the setter named by its command.
  Written by `python -m srnvtk.paraview_xml` from the settings declared in srnvtk/config.py: edit those,
  not this file.
"""
PANEL_GROUPS = (OUTPUT, MODEL, BRICKS, TRAINING, PRUNING, READING)
SRN_FILE = {"extensions": "srn", "file_description": "srnvtk compressed volume"}


def _text(value: object) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, tuple):
        return " ".join(_text(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _documentation(parent: ET.Element, text: str, indent: str, **attributes: str) -> None:
    doc = ET.SubElement(parent, "Documentation", attributes)
    doc.text = "\n" + textwrap.fill(" ".join(text.split()), width=100, initial_indent=indent,
                                    subsequent_indent=indent) + "\n" + indent[:-2]


def _range(spec: Setting) -> tuple[str | None, str | None]:
    """The domain's min and max, per element (see the module docstring)."""
    option = spec.option
    if option.low is None and option.high is None:
        return None, None
    unset = spec.to_face(None) if spec.optional else None
    lows, highs = [], []
    for element in range(option.elements):
        low = option.low
        if isinstance(unset, (int, float, tuple)) and low is not None:
            low = min(low, unset[element] if isinstance(unset, tuple) else unset)
        lows.append(low)
        highs.append(option.high)
    as_number = spec.kind if spec.kind in (int, float) else int
    low = None if lows[0] is None else " ".join(_text(as_number(v)) for v in lows)
    high = None if highs[0] is None else " ".join(_text(as_number(v)) for v in highs)
    return low, high


def _visibility(parent: ET.Element, conditions: Iterable[Condition], properties: dict[str, str]) -> None:
    """Show the property only while its conditions hold (one decorator, or an 'and' of several)."""
    decorators = []
    for condition in conditions:
        attributes = {"type": "GenericDecorator", "mode": "visibility", "property": properties[condition.setting]}
        values = " ".join(condition.values)
        attributes["values" if len(condition.values) > 1 else "value"] = values
        if condition.inverse:
            attributes["inverse"] = "1"
        decorators.append(attributes)
    if not decorators:
        return
    hints = ET.SubElement(parent, "Hints")
    if len(decorators) == 1:
        ET.SubElement(hints, "PropertyWidgetDecorator", decorators[0])
        return
    composite = ET.SubElement(hints, "PropertyWidgetDecorator", {"type": "CompositeDecorator"})
    expression = ET.SubElement(composite, "Expression", {"type": "and"})
    for attributes in decorators:
        ET.SubElement(expression, "PropertyWidgetDecorator", attributes)


def setting_property(proxy: ET.Element, spec: Setting, properties: dict[str, str]) -> ET.Element:
    """The property element of one declared setting."""
    option = spec.option
    choices = option.choice_list()
    tag = ("StringVectorProperty" if choices is not None else
           "DoubleVectorProperty" if spec.kind is float else "IntVectorProperty")
    attributes = {"name": option.property}
    if option.label:
        attributes["label"] = option.label
    attributes |= {"command": f"Set{option.property}", "number_of_elements": str(option.elements),
                   "default_values": _text(spec.to_face(spec.default))}
    if option.advanced:
        attributes["panel_visibility"] = "advanced"
    element = ET.SubElement(proxy, tag, attributes)
    if choices is not None:
        domain = ET.SubElement(element, "StringListDomain", {"name": "list"})
        for choice in choices:
            ET.SubElement(domain, "String", {"value": choice})
    elif spec.kind is bool:
        ET.SubElement(element, "BooleanDomain", {"name": "bool"})
    else:
        low, high = _range(spec)
        bounds = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
        if bounds:
            domain_tag = "DoubleRangeDomain" if spec.kind is float else "IntRangeDomain"
            ET.SubElement(element, domain_tag, {"name": "range", **bounds})
    _documentation(element, option.help, " " * 10)
    _visibility(element, spec.conditions, properties)
    return element


@dataclass(frozen=True)
class Proxy:
    """One proxy: its ServerManager names, Python class, documentation and settings classes, and the
    hand-written properties that come before the settings (`leading`, which returns the names of those that
    belong in the Output panel group)."""

    group: str
    name: str
    label: str
    class_name: str
    short_help: str
    long_help: str
    documentation: str
    settings: tuple[type, ...]
    leading: Callable[[ET.Element], list[str]]
    reader: bool = False  # opens .srn files (File > Open)
    panel_groups: bool = True  # the settings in labelled groups


def _file_name_property(proxy: ET.Element, documentation: str, any_file: bool) -> None:
    attributes = {"name": "FileName", "command": "SetFileName", "number_of_elements": "1"}
    attributes |= {"default_values": ""} if any_file else {"animateable": "0"}
    element = ET.SubElement(proxy, "StringVectorProperty", attributes)
    ET.SubElement(element, "FileListDomain", {"name": "files"})
    _documentation(element, documentation, " " * 10)
    hints = ET.SubElement(element, "Hints")
    ET.SubElement(hints, "FileChooser", SRN_FILE)
    if any_file:
        ET.SubElement(hints, "AcceptAnyFile")


def _reader_file(proxy: ET.Element) -> list[str]:
    _file_name_property(proxy, "The .srn file to read.", any_file=False)
    _reader_series(proxy)
    return []


def _reader_series(proxy: ET.Element) -> None:
    """The file's time steps (for the animation toolbar) and its arrays with checkboxes (PointArrayStatus), as
    ParaView's Python readers declare them: both come from the algorithm (srnvtk.reader_series)."""
    times = ET.SubElement(proxy, "DoubleVectorProperty", {
        "name": "TimestepValues", "command": "GetTimestepValues", "information_only": "1",
        "repeatable": "1", "si_class": "vtkSITimeStepsProperty"})
    _documentation(times, "The time of every step the file holds (none for a single volume).", " " * 10)
    common = {"command": "GetPointDataArraySelection", "number_of_elements_per_command": "2",
              "si_class": "vtkSIDataArraySelectionProperty"}
    info = ET.SubElement(proxy, "StringVectorProperty", {"name": "PointArrayInfo", **common, "information_only": "1"})
    _documentation(info, "The arrays the file holds and whether each is decoded.", " " * 10)
    status = ET.SubElement(proxy, "StringVectorProperty", {
        "name": "PointArrayStatus", "information_property": "PointArrayInfo", **common,
        "element_types": "2 0", "repeat_command": "1"})
    domain = ET.SubElement(status, "ArraySelectionDomain", {"name": "array_list"})
    required = ET.SubElement(domain, "RequiredProperties")
    ET.SubElement(required, "Property", {"name": "PointArrayInfo", "function": "ArrayList"})
    _documentation(status, "The arrays to decode: only the checked ones are evaluated.", " " * 10)


def _encoder_inputs(proxy: ET.Element) -> list[str]:
    """The input image, the array to compress and the output file (hand-written: not settings)."""
    source = ET.SubElement(proxy, "InputProperty", {"name": "Input", "command": "SetInputConnection"})
    groups = ET.SubElement(source, "ProxyGroupDomain", {"name": "groups"})
    ET.SubElement(groups, "Group", {"name": "sources"})
    ET.SubElement(groups, "Group", {"name": "filters"})
    types = ET.SubElement(source, "DataTypeDomain", {"name": "input_type"})
    ET.SubElement(types, "DataType", {"value": "vtkImageData"})
    ET.SubElement(source, "InputArrayDomain", {"name": "input_array", "attribute_type": "point",
                                               "number_of_components": "1"})
    ET.SubElement(source, "InputArrayDomain", {"name": "point_arrays", "attribute_type": "point"})
    _documentation(source, "A 3D image (vtkImageData) with a scalar point-data array.", " " * 10)
    array = ET.SubElement(proxy, "StringVectorProperty", {
        "name": "SelectInputScalars", "label": "Scalars", "command": "SetInputArrayToProcess",
        "number_of_elements": "5", "element_types": "0 0 0 0 2", "animateable": "0"})
    domain = ET.SubElement(array, "ArrayListDomain", {"name": "array_list", "attribute_type": "Scalars",
                                                      "input_domain_name": "input_array"})
    required = ET.SubElement(domain, "RequiredProperties")
    ET.SubElement(required, "Property", {"name": "Input", "function": "Input"})
    _documentation(array, "The scalar point-data array to compress.", " " * 10)
    _file_name_property(proxy, "Where to write the compressed model (.srn). Empty: train and show the "
                        "reconstruction without writing a file.", any_file=True)
    return ["FileName", *_encoder_series(proxy)]


def _encoder_series(proxy: ET.Element) -> list[str]:
    """Several arrays (a list with checkboxes, as ParaView's writers choose arrays) and all time steps into one
    file (srnvtk.encoder_series); both empty or off by default, which keeps the single-array encoder."""
    arrays = ET.SubElement(proxy, "StringVectorProperty", {
        "name": "PointArrays", "command": "GetEncodeArraySelection", "number_of_elements_per_command": "1",
        "repeat_command": "1", "si_class": "vtkSIDataArraySelectionProperty", "animateable": "0"})
    domain = ET.SubElement(arrays, "ArrayListDomain", {"name": "array_list", "attribute_type": "Scalars",
                                                       "input_domain_name": "point_arrays"})
    required = ET.SubElement(domain, "RequiredProperties")
    ET.SubElement(required, "Property", {"name": "Input", "function": "Input"})
    _documentation(arrays, "Point arrays (scalars, or vectors of 3 components) to compress into one file of many "
                   "networks, one per array and time step. None checked: the Scalars array alone, in a file of one "
                   "network.", " " * 10)
    hints = ET.SubElement(arrays, "Hints")
    ET.SubElement(hints, "NoDefault")
    every = ET.SubElement(proxy, "IntVectorProperty", {"name": "AllTimeSteps", "command": "SetAllTimeSteps",
                                                      "number_of_elements": "1", "default_values": "0"})
    ET.SubElement(every, "BooleanDomain", {"name": "bool"})
    _documentation(every, "Compress every time step of the input into the file: the encoder asks the input for "
                   "each step in turn (as ParaView's writers do), then trains step 0 and warm-starts each later step "
                   "from the previous one. Needs a file name.", " " * 10)
    return ["PointArrays", "AllTimeSteps"]


ENCODER = Proxy(
    "filters", "SRNEncoder", "SRN Encoder", "srnvtk.vtkalgorithms.SRNEncoder",
    "Compress a volume with a scene representation network.",
    "Compress a point-data array of an image with an fV-SRN (latent grid + MLP) or Neurcomp (SIREN) network, "
    "optionally pruned while training.",
    "Trains a scene representation network (fV-SRN: a latent grid and an MLP; Neurcomp: a SIREN) on one scalar "
    "point-data array of a 3D image, optionally pruning it while training (Smallify, variational dropout or a "
    "binary mask). The output is the network's reconstruction (the same array name) and its absolute error "
    "(abs_error), with field data psnr, ratio, file_bytes, pruned_fraction, train_seconds, steps, final_loss, "
    "architecture, pruning and grid_resolution and wavelet (fV-SRN) or neurcomp_width (Neurcomp). With a "
    "wavelet, fV-SRN trains the latent grid's wavelet coefficients, and pruning prunes those. With a file name "
    "set, the compressed model is written there as a .srn file, which the SRN Reader opens. Training runs when "
    "the filter updates (Apply) and can take minutes.",
    ENCODER_SETTINGS, _encoder_inputs)
READER = Proxy(
    "sources", "SRNReader", "SRN Reader", "srnvtk.vtkalgorithms.SRNReader",
    "Read a .srn compressed volume.", "Reconstruct a volume stored in a srnvtk .srn file.",
    "Evaluates the network (fV-SRN or Neurcomp) stored in a .srn file on a grid: the original grid, every n-th "
    "point (Stride), a resampled grid (Target Dimensions) or a sub-extent of it. Only the requested pieces are "
    "decoded, so it streams and runs in parallel (pvbatch, pvserver). Field data carries the file's psnr, "
    "ratio, file_bytes, pruned_fraction and training statistics.",
    (DecodeConfig,), _reader_file, reader=True, panel_groups=False)


def proxy_element(root: ET.Element, proxy: Proxy) -> ET.Element:
    group = ET.SubElement(root, "ProxyGroup", {"name": proxy.group})
    element = ET.SubElement(group, "SourceProxy", {"name": proxy.name, "class": proxy.class_name,
                                                  "si_class": "vtkSIPythonSourceProxy", "label": proxy.label})
    _documentation(element, proxy.documentation, " " * 8, long_help=proxy.long_help, short_help=proxy.short_help)
    specs = [s for s in iter_settings(proxy.settings) if s.option.property]
    properties = {s.name: s.option.property for s in specs}
    panel: dict[str, list[str]] = {group_name: [] for group_name in PANEL_GROUPS}
    panel[OUTPUT] += proxy.leading(element)
    for group_name in PANEL_GROUPS:
        for spec in (s for s in specs if s.option.group == group_name):
            setting_property(element, spec, properties)
            panel[group_name].append(spec.option.property)
    if proxy.panel_groups:
        for group_name, names in panel.items():
            if names:
                group_element = ET.SubElement(element, "PropertyGroup", {"label": group_name})
                for name in names:
                    ET.SubElement(group_element, "Property", {"name": name})
    hints = ET.SubElement(element, "Hints")
    if proxy.reader:
        ET.SubElement(hints, "ReaderFactory", SRN_FILE)
    ET.SubElement(hints, "ShowInMenu", {"category": "SRN"})
    return element


def paraview_xml(proxies: tuple[Proxy, ...] = (ENCODER, READER)) -> str:
    """The whole plugin XML as text."""
    root = ET.Element("ServerManagerConfiguration")
    for proxy in proxies:
        proxy_element(root, proxy)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0"?>\n<!--{HEADER}-->\n{body}\n'


if __name__ == "__main__":
    sys.stdout.write(paraview_xml())
