"""RunConfig: every field checked from its declared type, range and choices, in one place."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pytest

from deepnotes.errors import UserError
from deepnotes.experiment.config import RunConfig, in_range, make_config, option, parse_range
from deepnotes.train import TrainConfig


@dataclass(frozen=True)
class Toy(RunConfig):
    rate: float = option(0.5, "a rate", range="[0, 1)")
    count: int = option(3, "a count", range="(0, 10]")
    widths: tuple[int, ...] = option((4, 8), "widths", range="[1, 64]", nonempty=True)
    mode: Literal["a", "b"] = option("a", "a mode")
    name: str | None = option(None, "a name")
    flag: bool = option(False, "a switch")

    def check(self) -> None:
        if self.mode == "b" and self.count < 2:
            raise UserError("--mode b needs --count >= 2")


@dataclass(frozen=True)
class ToyChild(Toy):
    rate: float = option(0.25, "a rate with another default")  # no range given: the base's applies


def test_parse_range_and_membership():
    assert parse_range("[0, 1)") == (0.0, 1.0, True, False)
    assert parse_range("(0, inf)") == (0.0, math.inf, False, False)
    assert in_range(0.0, "[0, 1)") and not in_range(1.0, "[0, 1)") and not in_range(0.0, "(0, 1]")
    assert not in_range(float("nan"), "(-inf, inf)")
    with pytest.raises(ValueError, match="interval notation"):
        parse_range("0..1")
    with pytest.raises(ValueError, match="interval notation"):
        option(1, "bad", range=">= 0")


def test_valid_values_pass_and_are_coerced():
    cfg = Toy(rate=0, count=10, widths=[1, 64], mode="b", name="x")
    assert cfg.rate == 0.0 and isinstance(cfg.rate, float)  # an int where a float is asked
    assert cfg.widths == (1, 64)  # a JSON list becomes a tuple


@pytest.mark.parametrize("values, message", [
    ({"rate": 1.0}, "--rate must be in [0, 1), got 1.0"),
    ({"rate": -0.1}, "--rate must be in [0, 1)"),
    ({"rate": float("nan")}, "--rate must be in [0, 1)"),
    ({"count": 0}, "--count must be in (0, 10], got 0"),
    ({"count": 2.5}, "--count must be an integer, got 2.5"),
    ({"count": True}, "--count must be an integer"),
    ({"rate": "abc"}, "--rate must be a number, got 'abc'"),
    ({"widths": (0, 8)}, "each value of --widths must be in [1, 64], got 0"),
    ({"widths": "abc"}, "--widths must be comma-separated int values"),
    ({"widths": ()}, "--widths needs at least one value"),
    ({"mode": "c"}, "--mode must be one of a, b, got 'c'"),
    ({"flag": "yes"}, "--flag must be true or false"),
    ({"name": 3}, "--name must be a string"),
    ({"seed": -1}, "--seed must be in [0, 4294967295]"),
    ({"device": "tpu"}, "--device must be one of auto, cpu, cuda"),
    ({"mode": "b", "count": 1}, "--mode b needs --count >= 2"),
])
def test_bad_values_raise_one_line_naming_the_flag(values, message):
    with pytest.raises(UserError) as e:
        Toy(**values)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_redeclared_field_keeps_the_base_range():
    assert ToyChild().rate == 0.25
    with pytest.raises(UserError, match="--rate must be in"):
        ToyChild(rate=2.0)


def test_make_config_names_unknown_settings():
    with pytest.raises(UserError, match="unknown setting --colour"):
        make_config(Toy, {"colour": 1})


def test_train_config_rules():
    with pytest.raises(UserError, match="cannot be combined"):
        TrainConfig(ema_decay=0.9, lookahead_steps=5)
    with pytest.raises(UserError, match="--label-smoothing must be in"):
        TrainConfig(label_smoothing=1.0)
    assert TrainConfig(lr=1e9).lr == 1e9  # the optimizers lab scales learning rates far up on purpose
