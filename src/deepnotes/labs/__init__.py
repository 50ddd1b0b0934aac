"""Labs: runnable experiments on real data, one module each, found by name in :data:`LABS`.

A lab is thin wiring: a frozen config dataclass (every field is a command-line flag), presets,
``run(cfg, ctx)`` that trains, evaluates and writes the report, ``evaluate(run_dir, data, device)``
for ``deepnotes eval`` and ``report(run_dir)`` for ``deepnotes report``. The knowledge lives in the
modules it uses (``models``, ``nn``, ``train``, ``data``, ``report``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from deepnotes.errors import UserError
from deepnotes.io import write_json_atomic
from deepnotes.train import distributed as distr


@dataclass(frozen=True)
class RunContext:
    """What a lab's ``run`` gets besides its config: the run folder, device, rank, and whether to resume."""

    run_dir: Path
    device: torch.device
    info: distr.DistInfo = distr.DistInfo()
    resume: bool = False
    log: Callable[[str], None] = print


@dataclass(frozen=True)
class Lab:
    """One lab: name, what it teaches, and its entry points (see the module docstring)."""

    name: str
    summary: str
    source: str
    default_dataset: str
    metric: str
    config_cls: type
    run: Callable[[Any, RunContext], dict]
    evaluate: Callable[[Path, str | None, torch.device], dict]
    report: Callable[[Path], Path]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # generative labs: sample(run_dir, prompt, n_chars, temperature, top_k, top_p, seed, device) -> text
    sample: Callable[..., str] | None = None


def _registry() -> dict[str, Lab]:
    # Imported here, not at the top: a lab imports this module for Lab and RunContext.
    from deepnotes.labs import (
        batch_and_momentum,
        char_lm,
        critical_points,
        generalization,
        image_classification,
        keyword_spotting,
        optimizers,
        phoneme_classification,
        regression,
        translation,
        word2vec,
    )

    labs = [
        image_classification.LAB,  # lecture 3 (CNN), HW3
        regression.LAB,  # lecture 1, HW1
        critical_points.LAB,  # lecture 2: local minima and saddle points
        batch_and_momentum.LAB,  # lecture 2: batch and momentum
        optimizers.LAB,  # lecture 2: adaptive learning rate, schedules
        generalization.LAB,  # ML2022: why more parameters overfit
        word2vec.LAB,  # EE-559 12-3: CBOW word embeddings with negative sampling
        char_lm.LAB_GPT,  # ML2021/2022 Transformer, GPT; nanoGPT
        char_lm.LAB_LSTM,  # EE-559 12-2 LSTM
        keyword_spotting.LAB,  # seed 000: Speech Commands exercise
        translation.LAB,  # ML2021/2022 HW5: machine translation
        phoneme_classification.LAB,  # ML2021/2022 HW2: framewise phoneme classification ladder
    ]
    return {lab.name: lab for lab in labs}


def get_lab(name: str) -> Lab:
    """The lab called ``name``.

    Raises:
        UserError: unknown name (the message lists the labs).
    """
    labs = _registry()
    if name not in labs:
        raise UserError(f"unknown lab {name!r}; `deepnotes list` shows the labs: {', '.join(sorted(labs))}")
    return labs[name]


def all_labs() -> list[Lab]:
    return list(_registry().values())


# ----------------------------------------------------------------------------------- run folders
def new_run_dir(out: Path, lab: str) -> Path:
    """``out/<lab>/<timestamp>``, made unique with a suffix if two runs start in the same second."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / lab / stamp
    run_dir, n = base, 1
    while True:
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return run_dir
        except FileExistsError:
            n += 1
            run_dir = base.with_name(f"{stamp}-{n}")


def save_config(run_dir: Path, lab: Lab, cfg: Any) -> None:
    write_json_atomic(run_dir / "config.json", {"lab": lab.name, "config": dataclasses.asdict(cfg)})


def read_run_json(path: Path) -> Any:
    """The JSON content of a file of a run folder (``data.json``, ``results.json``, ...).

    Raises:
        UserError: the file is missing or unreadable, or not valid JSON (the message names it and the fix).
    """
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}; is this a finished run folder?") from e
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}); re-run or restore that file") from e


def load_run_weights(model: torch.nn.Module, path: Path, run_dir: Path) -> torch.nn.Module:
    """Load the safetensors file ``path`` of run folder ``run_dir`` into ``model`` (returned, same device).

    Raises:
        UserError: the file is missing (the run did not finish: the message says to resume it), or it
            cannot be read or does not fit ``model`` (damaged, or from another model or config).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing: the run did not finish; resume it with --resume {run_dir}")
    try:
        model.load_state_dict(load_file(str(path)))
    except (OSError, RuntimeError, SafetensorError) as e:
        raise UserError(f"cannot load {path}: {e}; the file is damaged or from another model") from e
    return model


def load_config(run_dir: Path) -> tuple[Lab, Any]:
    """Read ``config.json`` of a run folder back into its lab and config dataclass.

    Raises:
        UserError: the folder is not a run folder or its config is unreadable.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.json); pass a folder under runs/<lab>/")
    try:
        data = json.loads(path.read_text())
        lab = get_lab(data["lab"])
        fields = {f.name for f in dataclasses.fields(lab.config_cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data["config"].items() if k in fields}
        return lab, lab.config_cls(**values)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read {path}: {e}") from e
