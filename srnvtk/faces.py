"""The command line's options and the VTK algorithms' setters, derived from the settings declarations.

A face is the set of settings classes one command or algorithm exposes (the encoder: EncodeConfig, the two
model classes, PruningConfig and TrainConfig; the reader: DecodeConfig). Within a face every field name,
flag and property name is unique, and a setting's conditions (srnvtk.options.Condition) name other fields of
the same face.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from .errors import SettingsError, SRNError
from .options import Setting, applies, iter_settings


def _dest(spec: Setting) -> str:
    return f"{spec.owner.__name__}__{spec.name}"


def _shown_default(spec: Setting) -> str:
    value = spec.to_face(spec.default)
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def add_arguments(parser: argparse.ArgumentParser, classes: tuple[type, ...]) -> None:
    """One option per declared setting with a flag, in argument groups named by the settings' panel groups.

    Every option defaults to None, so `settings_from_args` can tell what was given from what was not.
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    flags = {spec.name: spec.option.flag for spec in iter_settings(classes)}
    for spec in iter_settings(classes):
        option = spec.option
        if not option.flag:
            continue
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group.lower() + " options")
        group = groups[option.group]
        only = "; ".join(f"{flags[c.setting]} {c.describe()}" for c in spec.conditions)
        help_text = f"{option.help} (default {_shown_default(spec)}{'; with ' + only if only else ''})"
        if spec.kind is bool:
            pair = group.add_mutually_exclusive_group()
            pair.add_argument(option.flag, dest=_dest(spec), action="store_const", const=True, default=None,
                              help=help_text)
            if option.false_flag:
                pair.add_argument(option.false_flag, dest=_dest(spec), action="store_const", const=False,
                                  help=f"the opposite of {option.flag}")
            continue
        kwargs: dict[str, Any] = {"dest": _dest(spec), "default": None, "help": help_text}
        choices = option.choices if isinstance(option.choices, tuple) else None  # long lists: the config checks
        if choices:
            kwargs["choices"] = choices
        elif option.metavar is not None:
            kwargs["metavar"] = option.metavar
        if spec.kind in (int, float):
            kwargs["type"] = spec.kind
        elif spec.kind is tuple:
            kwargs["type"] = int
            kwargs["nargs"] = option.nargs or option.elements
        group.add_argument(option.flag, **kwargs)


def _flag(spec: Setting, value: Any) -> str:
    return spec.option.false_flag if value is False and spec.option.false_flag else spec.option.flag


def given_flags(args: argparse.Namespace, classes: tuple[type, ...]) -> dict[str, tuple[Setting, Any]]:
    """Field name -> (setting, value as given) of every option on the command line."""
    given = {}
    for spec in iter_settings(classes):
        value = getattr(args, _dest(spec), None) if spec.option.flag else None
        if value is not None:
            given[spec.name] = (spec, value)
    return given


def check_given(args: argparse.Namespace, classes: tuple[type, ...], choice: dict[str, Any]) -> None:
    """SettingsError for options given together that exclude each other, or given where they do not apply.

    choice: the face's values of the settings that conditions refer to (such as the architecture), given or
    default."""
    given = given_flags(args, classes)
    exclusive: dict[str, str] = {}
    for spec, value in given.values():
        group = spec.option.exclusive
        if group and group in exclusive:
            raise SettingsError(f"argument {_flag(spec, value)}: not allowed with argument {exclusive[group]}")
        if group:
            exclusive[group] = _flag(spec, value)
        violated = applies(spec, choice)
        if violated is not None:
            other = next(s for s in iter_settings(classes) if s.name == violated.setting)
            raise SettingsError(f"{_flag(spec, value)} applies to {other.option.flag} {violated.describe()}, not "
                                f"{other.option.flag} {choice[violated.setting]}")


def settings_from_args(args: argparse.Namespace, cls: type) -> Any:
    """An instance of cls from the options given for it (defaults for the rest); SettingsError when invalid."""
    given = given_flags(args, (cls,))
    for spec, value in given.values():
        # A negative marker for "off" (such as -1 for no error bound) is ParaView's; a negative number typed on
        # the command line for a setting that must be >= 0 is an error, not "off".
        negative_marker = isinstance(spec.option.none_as, (int, float)) and spec.option.none_as < 0
        if negative_marker and isinstance(value, (int, float)) and value < 0:
            raise SettingsError(f"{spec.option.flag} must be >= 0, got {value:g}")
    values = {name: spec.from_face(value) for name, (spec, value) in given.items()}
    return cls(**values)


def face_value(args: argparse.Namespace, classes: tuple[type, ...], name: str) -> Any:
    """A setting's value on the command line, or its default, as the command line shows it."""
    spec = next(s for s in iter_settings(classes) if s.name == name)
    value = getattr(args, _dest(spec), None)
    return spec.to_face(spec.default) if value is None else value


# ---------------------------------------------------------------------------------------------------------
# VTK setters


def install_setters(algorithm_class: type, classes: tuple[type, ...],
                    report: Callable[[Any, str], None]) -> None:
    """Add `Set<Property>(*values)` and `Get<Property>()` to a VTK algorithm class for each declared setting
    with a property name.

    The algorithm keeps one instance of each settings class in `self.settings[cls]`. A setter replaces that
    instance with the new value and calls Modified() when it changed; a bad value is reported through
    `report(algorithm, message)` (VTK's error output) and the old settings stay.
    """
    for spec in iter_settings(classes):
        if spec.option.property:
            setattr(algorithm_class, f"Set{spec.option.property}", _setter(spec, report))
            setattr(algorithm_class, f"Get{spec.option.property}", _getter(spec))


def _setter(spec: Setting, report: Callable[[Any, str], None]) -> Callable[..., None]:
    def set_value(self, *values: Any) -> None:
        value = values[0] if len(values) == 1 and spec.option.elements == 1 else tuple(values)
        current = self.settings[spec.owner]
        try:
            changed = dataclasses.replace(current, **{spec.name: spec.from_face(value)})
        except SRNError as exc:
            report(self, str(exc))
            return
        if changed != current:
            self.settings[spec.owner] = changed
            self.Modified()

    set_value.__name__ = f"Set{spec.option.property}"
    set_value.__doc__ = spec.option.help
    return set_value


def _getter(spec: Setting) -> Callable[[Any], Any]:
    def get_value(self) -> Any:
        return spec.to_face(getattr(self.settings[spec.owner], spec.name))

    get_value.__name__ = f"Get{spec.option.property}"
    get_value.__doc__ = f"The current value of {spec.option.property} (see Set{spec.option.property})."
    return get_value
