"""Run configuration: one frozen dataclass per lab, every field a command-line flag, validated in one place.

A lab's config subclasses :class:`RunConfig` (or :class:`deepnotes.train.TrainConfig`, which extends it) and
declares each field with :func:`option`: its default, a one-line help text, and the values it accepts
(``range="[0, 1)"`` for numbers, or for each item of a tuple; ``Literal[...]`` for choices). Building the
config checks every field (type, range, choice) and then the lab's cross-field rules (:meth:`RunConfig.check`),
so a bad value ends the command with one line that names the flag, before any run folder exists.

Example::

    @dataclass(frozen=True)
    class MyConfig(TrainConfig):
        dropout: float = option(0.1, "dropout before the classifier", range="[0, 1)")
        widths: tuple[int, ...] = option((32, 64), "channels of each stage", range="[1, 4096]")

    MyConfig(dropout=1.5)   # UserError: --dropout must be in [0, 1), got 1.5
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from deepnotes.errors import UserError

_RANGE = re.compile(r"^\s*([\[(])\s*(-?inf|-?[0-9.eE+-]+)\s*,\s*(-?inf|-?[0-9.eE+-]+)\s*([\])])\s*$")


def option(default: Any, help: str, *, range: str | None = None, nonempty: bool = False, **kwargs: Any) -> Any:
    """A dataclass field with a default, the help text of its flag, and the values it accepts.

    Args:
        default: the default value (tuples for list-valued flags).
        help: one line for ``--help``.
        range: interval notation, ``"[0, 1)"``, ``"(0, inf)"``, ``"[1, 4096]"``; for a tuple field it bounds
            each item. Default None: any value of the type.
        nonempty: a tuple field must have at least one item.

    Raises:
        ValueError: ``range`` is not interval notation (a programming error, found at import).
    """
    if range is not None:
        parse_range(range)
    return field(default=default, metadata={"help": help, "range": range, "nonempty": nonempty, **kwargs})


def parse_range(text: str) -> tuple[float, float, bool, bool]:
    """``"[0, 1)"`` -> ``(0.0, 1.0, True, False)``: low, high, whether each end is included.

    Raises:
        ValueError: not of the form ``[a, b]`` / ``(a, b)`` / mixed, with numbers or ``inf``.
    """
    m = _RANGE.match(text)
    if not m:
        raise ValueError(f"range {text!r} is not interval notation such as '[0, 1)' or '(0, inf)'")
    low, high = float(m.group(2)), float(m.group(3))
    return low, high, m.group(1) == "[", m.group(4) == "]"


def in_range(value: float, text: str) -> bool:
    """Whether ``value`` lies in the interval ``text`` (see :func:`parse_range`); NaN never does."""
    low, high, low_in, high_in = parse_range(text)
    if isinstance(value, float) and math.isnan(value):
        return False
    above = value >= low if low_in else value > low
    below = value <= high if high_in else value < high
    return above and below


def flag(name: str) -> str:
    """The command-line flag of a config field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"comma-separated {typing.get_args(tp)[0].__name__} values"
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def coerce_value(name: str, tp: Any, value: Any) -> Any:
    """``value`` as the field type ``tp`` (JSON lists become tuples, ints become floats where a float is asked).

    Raises:
        UserError: the value does not have the field's type (the message names the flag).
    """
    origin = typing.get_origin(tp)
    bad = UserError(f"{flag(name)} must be {_describe(tp)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return coerce_value(name, inner, value)
    if origin is Literal:
        if value not in typing.get_args(tp) or isinstance(value, bool) != any(isinstance(c, bool) for c in typing.get_args(tp)):
            raise bad
        return value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise bad
        item = typing.get_args(tp)[0]
        return tuple(coerce_value(name, item, v) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    return value


@dataclass(frozen=True)
class RunConfig:
    """Fields every lab has; a lab's config extends it (directly, or through ``TrainConfig``).

    Construction validates every field (:meth:`validate`): a wrong type, a value outside the field's declared
    ``range`` or choices, or a broken cross-field rule (:meth:`check`) raises :class:`UserError` naming the flag.
    """

    seed: int = option(0, "random seed (weights, data order, augmentation)", range="[0, 4294967295]")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where to run: auto picks CUDA when available")
    progress: bool = option(True, "show a progress bar (only on a terminal)")
    threads: int = option(0, "CPU threads of torch (0 = one per core idle at the start, or OMP_NUM_THREADS)",
                          range="[0, 1024]")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field's type and declared range, then :meth:`check`.

        Raises:
            UserError: one line naming the flag, the accepted values and the value given.
        """
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = coerce_value(f.name, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)
            if _declared(type(self), f.name, "nonempty") and isinstance(value, tuple) and not value:
                raise UserError(f"{flag(f.name)} needs at least one value")
            interval = _declared(type(self), f.name, "range")
            if interval is None or value is None:
                continue
            for v in value if isinstance(value, tuple) else (value,):
                if not in_range(v, interval):
                    what = "each value of " if isinstance(value, tuple) else ""
                    raise UserError(f"{what}{flag(f.name)} must be in {interval}, got {v!r}")
        self.check()

    def check(self) -> None:
        """Rules across fields (e.g. one flag needs another); a lab overrides it and raises :class:`UserError`.

        The default checks nothing.
        """


def _declared(cls: type, name: str, key: str) -> Any:
    """``key`` of field ``name``'s metadata, from the nearest class that declares it: a lab that changes a
    field's default (``lr: float = option(0.05, ...)``) keeps the base class's range."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and f.metadata.get(key) is not None:
            return f.metadata[key]
    return None


def make_config(cls: type, values: dict[str, Any]) -> Any:
    """``cls(**values)`` with a one-line error for unknown field names.

    Raises:
        UserError: a name that is not a field of ``cls``, or a value rejected by :meth:`RunConfig.validate`.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"unknown setting {', '.join(flag(k) for k in unknown)} for {cls.__name__}")
    return cls(**values)
