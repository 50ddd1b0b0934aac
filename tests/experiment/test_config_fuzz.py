"""Every lab's flags, fuzzed: a value outside a field's declared range, of the wrong type, or not among its choices
ends the command with exit status 2, one line naming the flag, and no run folder; a value on a range's boundary is
accepted or refused with one such line, never with a traceback.

The labs' ``run`` is replaced by a function that fails the test, so a value that slips through validation shows up
as "accepted" instead of starting a training run.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepnotes.cli import main, parse_run_config
from deepnotes.errors import UserError
from deepnotes.experiment import all_labs, flag
from deepnotes.experiment.config import _declared, parse_range
from deepnotes.experiment.registry import _registry

LAB_NAMES = [lab.name for lab in all_labs()]


def _kind(tp) -> tuple[str, type | None]:
    """("number" | "tuple" | "choice" | "bool" | "other", item type)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
        origin = typing.get_origin(tp)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        return ("tuple", item) if item in (int, float) else ("other", None)
    if origin is typing.Literal:
        return "choice", None
    if tp is bool:
        return "bool", None
    if tp in (int, float):
        return "number", tp
    return "other", None


def _fields(lab):
    hints = typing.get_type_hints(lab.config_cls)
    return [(f.name, *_kind(hints[f.name])) for f in dataclasses.fields(lab.config_cls)]


@pytest.mark.parametrize("name", LAB_NAMES)
def test_every_numeric_field_declares_its_range(name):
    lab = _registry()[name]
    missing = [flag(f) for f, kind, _ in _fields(lab)
               if kind in ("number", "tuple") and _declared(lab.config_cls, f, "range") is None]
    assert not missing, f"{name}: declare range= for {', '.join(missing)}"


def _outside(item: type, interval: str) -> st.SearchStrategy[str]:
    low, high, low_in, high_in = parse_range(interval)
    options = []
    if item is int:
        if math.isfinite(low):
            top = int(math.ceil(low)) - (1 if low_in or low != int(low) else 0)
            options.append(st.integers(max_value=top, min_value=top - 10**6))
        if math.isfinite(high):
            bottom = int(math.floor(high)) + (1 if high_in or high != int(high) else 0)
            options.append(st.integers(min_value=bottom, max_value=bottom + 10**6))
        options.append(st.just(None))  # wrong type below
        return st.one_of(options).map(lambda v: "1.5" if v is None else str(v))
    if math.isfinite(low):
        options.append(st.floats(max_value=low, exclude_max=low_in, allow_nan=False, allow_infinity=False,
                                 min_value=low - 1e6))
    if math.isfinite(high):
        options.append(st.floats(min_value=high, exclude_min=high_in, allow_nan=False, allow_infinity=False,
                                 max_value=high + 1e6))
    options.append(st.just(float("nan")))
    return st.one_of(options).map(repr)


def _bad_value(kind: str, item, interval: str | None) -> st.SearchStrategy[str]:
    wrong = st.sampled_from(["abc", "1e", "--", "x1"])
    if kind == "number":
        return st.one_of(wrong, _outside(item, interval)) if interval else wrong
    if kind == "tuple":
        tuples = wrong.map(lambda w: f"1,{w}")
        if interval:
            tuples = st.one_of(tuples, _outside(item, interval).map(lambda v: f"{v}" if item is float else v))
        return tuples
    if kind == "choice":
        return st.sampled_from(["no-such-choice", "AUTO", "1"])
    return st.none()


def _call(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def refuse_runs(monkeypatch):
    def accepted(cfg, ctx):
        raise AssertionError(f"the config was accepted and a run started: {cfg}")

    for name, lab in list(_registry().items()):
        monkeypatch.setitem(_registry(), name, dataclasses.replace(lab, run=accepted))


@pytest.mark.parametrize("name", LAB_NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bad_values_exit_2_with_one_line_and_no_run_folder(name, data, tmp_path_factory, capsys, refuse_runs):
    lab = _registry()[name]
    fields = [(f, kind, item) for f, kind, item in _fields(lab) if kind in ("number", "tuple", "choice")]
    field, kind, item = data.draw(st.sampled_from(fields))
    value = data.draw(_bad_value(kind, item, _declared(lab.config_cls, field, "range")))
    out = tmp_path_factory.mktemp("out")
    code, err = _call(["run", name, f"{flag(field)}={value}", "--out", str(out), "--device", "cpu"], capsys)
    assert code == 2, (field, value, err)
    assert err.count("\n") == 1 and flag(field) in err, (field, value, err)
    assert not any(out.iterdir()), f"{flag(field)}={value} left {list(out.iterdir())}"


@pytest.mark.parametrize("name", LAB_NAMES)
def test_boundary_values_are_accepted_or_refused_in_one_line(name):
    lab = _registry()[name]
    for field, kind, item in _fields(lab):
        interval = _declared(lab.config_cls, field, "range")
        if kind not in ("number", "tuple") or interval is None:
            continue
        low, high, low_in, high_in = parse_range(interval)
        for bound, included in ((low, low_in), (high, high_in)):
            if not (included and math.isfinite(bound)):
                continue
            value = str(int(bound)) if item is int else repr(float(bound))
            try:
                cfg, _ = parse_run_config(lab, [f"{flag(field)}={value}"])
            except UserError as e:  # a cross-field rule may refuse it: one line, naming a flag
                assert "\n" not in str(e) and "--" in str(e), (field, value, e)
            else:
                got = getattr(cfg, field)
                assert (got == (float(value) if item is float else int(value))) or kind == "tuple", (field, got)
