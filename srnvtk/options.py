"""Each setting declared once: a settings dataclass field carries everything the faces of srnvtk need.

A setting is a field of one of the frozen settings dataclasses in srnvtk.config, declared with `setting(...)`:
its default, its range or choices, its help text, and how it appears on the command line (flag, metavar)
and in ParaView (property name, label, panel group, advanced or not, and when it applies: to which
architecture, pruning method, ...). Everything else is derived from those declarations:

- validation: `check_settings`, called by every settings class's `__post_init__`;
- the argparse options and reading them back (srnvtk.cli through `add_arguments` / `given_settings`);
- the `Set<Property>` / `Get<Property>` methods of the VTK algorithms (srnvtk.vtkalgorithms through
  `install_setters`);
- the ParaView ServerManager XML (srnvtk.paraview_xml).

A field without `setting(...)` metadata (such as fV-SRN's explicit grid shape) is part of the stored
settings but not a user-facing option.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import SettingsError

_UNSET: Any = object()  # "no value" marker for Option.none_as (None itself is a possible value)


@dataclass(frozen=True)
class Condition:
    """A setting applies only while another setting (a field name of the same face: the algorithm's or the
    command's options) has one of these values, or with `inverse` none of them."""

    setting: str
    values: tuple[str, ...]
    inverse: bool = False

    def holds(self, value: Any) -> bool:
        return (str(value) in self.values) != self.inverse

    def describe(self) -> str:
        return ("other than " if self.inverse else "") + "|".join(self.values)


@dataclass(frozen=True)
class Option:
    """How one setting is presented and checked (see the module docstring)."""

    help: str
    group: str  # the ParaView panel group and the --help section
    property: str = ""  # ParaView property and VTK setter name (CamelCase); "" for a setting with no such face
    flag: str = ""  # the command-line flag; "" for none
    label: str = ""  # ParaView's label; "" lets ParaView split the property name
    metavar: str | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    # The value standing for None on the command line and in ParaView (which has no "unset"), e.g. 0 for
    # "the architecture's default learning rate".
    none_as: Any = _UNSET
    advanced: bool = False
    applies: tuple[Condition, ...] = ()  # besides the conditions of the whole class (its `applies` ClassVar)
    elements: int = 1  # values per setting (a stride has three)
    nargs: int | str | None = None  # the command line's value count when not `elements` (argparse's word)
    exclusive: str = ""  # settings naming the same group cannot be given together on the command line
    false_flag: str = ""  # a boolean's second flag, which sets it false (--plain beside --residual)
    # Turns a value from the CLI or a VTK setter into the setting's value (e.g. one stride for three axes);
    # may raise SettingsError.
    normalize: Callable[[Any], Any] | None = None

    def choice_list(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices


def setting(default: Any, help: str, group: str, **option: Any) -> Any:  # noqa: A002 (argparse's word)
    """A dataclass field with its Option (see Option for the keywords)."""
    return dataclasses.field(default=default, metadata={"option": Option(help=help, group=group, **option)})


@dataclass(frozen=True)
class Setting:
    """One declared setting of a settings class: its field name, type and Option."""

    owner: type
    name: str
    kind: type  # int, float, bool or str (the type of a value other than None)
    optional: bool  # None is a valid value
    option: Option
    default: Any

    def to_face(self, value: Any) -> Any:
        """A settings value as the CLI's or ParaView's default shows it (None as none_as)."""
        return self.option.none_as if value is None and self.option.none_as is not _UNSET else value

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return (*getattr(self.owner, "applies", ()), *self.option.applies)

    def from_face(self, value: Any) -> Any:
        """A value from the CLI or a VTK setter as the settings class takes it (none_as as None; ParaView's
        booleans arrive as 0/1 integers)."""
        if isinstance(value, list):
            value = tuple(value)
        if self.option.normalize is not None:
            value = self.option.normalize(value)
        if self.option.none_as is not _UNSET and value == self.option.none_as:
            return None
        if self.kind is bool and isinstance(value, (int, float)) and not isinstance(value, bool):
            return bool(value)
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if self.kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        return value


def _kind(annotation: Any) -> tuple[type, bool]:
    """(value type, optional) of an annotation such as int, float | None, tuple[int, int, int]."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        kind, _ = _kind(others[0])
        return kind, type(None) in args
    return (origin or annotation), False


@functools.cache
def declared_settings(cls: type) -> tuple[Setting, ...]:
    """The settings a class declares with `setting(...)`, in field order."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        option = field.metadata.get("option")
        if option is None:
            continue
        kind, optional = _kind(hints[field.name])
        found.append(Setting(cls, field.name, kind, optional, option, field.default))
    return tuple(found)


def _interval(option: Option) -> str:
    low = "-inf" if option.low is None else f"{option.low:g}"
    high = "inf" if option.high is None else f"{option.high:g}"
    opening = "(" if option.low_open or option.low is None else "["
    closing = ")" if option.high_open or option.high is None else "]"
    return f"{opening}{low}, {high}{closing}"


def check_value(spec: Setting, value: Any) -> None:
    """SettingsError when the value is not of the setting's type, range or choices."""
    name, option = spec.name, spec.option
    if value is None and spec.optional:
        return
    if spec.kind is tuple:
        ok = isinstance(value, tuple) and len(value) == option.elements
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ok = ok and all((option.low is None or v >= option.low) and (option.high is None or v <= option.high)
                        for v in value)
        if not ok:
            raise SettingsError(f"{name} must be {option.elements} integers in [{option.low:g}, {option.high:g}], "
                                f"got {value!r}")
        return
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{name} must be true or false, got {value!r}")
        return
    choices = option.choice_list()
    if choices is not None:
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return
    if spec.kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (option.low is None or value >= option.low) and (option.high is None or value <= option.high)
        if not ok:
            raise SettingsError(f"{name} must be an integer in [{option.low:g}, {option.high:g}], got {value!r}")
        return
    if spec.kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and option.low is not None:
            ok = value > option.low if option.low_open else value >= option.low
        if ok and option.high is not None:
            ok = value < option.high if option.high_open else value <= option.high
        if not ok:
            raise SettingsError(f"{name} must be a number in {_interval(option)}, got {value!r}")
        return
    if spec.kind is str and not isinstance(value, str):
        raise SettingsError(f"{name} must be a string, got {value!r}")


def check_settings(instance: Any) -> None:
    """Check every declared setting of a settings object against its declaration."""
    for spec in declared_settings(type(instance)):
        check_value(spec, getattr(instance, spec.name))


def applies(spec: Setting, context: dict[str, Any]) -> Condition | None:
    """The first of the setting's conditions that the context (setting name -> value) violates, or None."""
    for condition in spec.conditions:
        if condition.setting in context and not condition.holds(context[condition.setting]):
            return condition
    return None


def iter_settings(classes: tuple[type, ...]) -> Iterator[Setting]:
    for cls in classes:
        yield from declared_settings(cls)
