"""Checkpoints: weights and optimizer tensors as safetensors, the rest of the run state as JSON.

Layout of one checkpoint (a folder ``checkpoints/epoch-NNNN/`` in the run folder)::

    model.safetensors      the model's state_dict
    optimizer.safetensors  the optimizer's per-parameter tensors (momentum buffers, Adam moments); a task with
                           several named optimizers (a GAN's) has ``optimizer-NAME.safetensors`` for each
    NAME.safetensors       the state_dict of each extra module passed by name (e.g. ``ema``, the
                           moving average of the weights)
    state.json             epoch, step, optimizer hyper-parameters and scalar state, LR-schedule
                           state, RNG states (Python, NumPy, torch CPU and CUDA), metrics so far

A checkpoint is written into a hidden temporary folder and renamed into place, so a folder named
``epoch-NNNN`` is always complete. No pickle is used anywhere: a checkpoint handed to someone else
cannot run code when loaded.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deepnotes.errors import UserError

CHECKPOINT_DIR = "checkpoints"


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def rng_state() -> dict[str, Any]:
    """Every RNG state a training step may draw from, as JSON-serializable values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [list(v) if isinstance(v, tuple) else v for v in random.getstate()],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


def _split_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of the optimizer state go to safetensors; numbers and hyper-parameters to JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` detached, on the CPU and contiguous: what ``safetensors.save_file`` takes."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


Optimizers = "torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer]"


def _named(optimizer: Any) -> dict[str, torch.optim.Optimizer]:
    """name -> optimizer; a single optimizer (or the name "") is saved as ``optimizer``."""
    if optimizer is None:
        return {}
    return dict(optimizer) if isinstance(optimizer, Mapping) else {"": optimizer}


def _file(name: str) -> str:
    return "optimizer" if name == "" else f"optimizer-{name}"


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: Optimizers,
    state: dict[str, Any],
    keep: int = 2,
    extra_modules: dict[str, torch.nn.Module] | None = None,
) -> Path:
    """Write ``checkpoints/epoch-{state['epoch']:04d}`` atomically and keep the newest ``keep``.

    Args:
        state: JSON-serializable run state; must hold ``epoch`` (epochs completed) and ``step``.
        extra_modules: name -> module whose state_dict is saved as ``NAME.safetensors`` beside the
            model's (names other than ``model``, ``optimizer``, ``state``). Default None: none.
    Returns:
        The checkpoint folder.
    """
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"epoch-{int(state['epoch']):04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        save_file(cpu_state_dict(model), str(tmp / "model.safetensors"))
        opt_meta: dict[str, Any] = {}
        for name, opt in _named(optimizer).items():
            opt_tensors, opt_meta[_file(name)] = _split_optimizer_state(opt)
            save_file(opt_tensors, str(tmp / f"{_file(name)}.safetensors"))
        for name, module in (extra_modules or {}).items():
            if name in ("model", "optimizer", "state"):
                raise ValueError(f"extra module name {name!r} is taken by the checkpoint's own files")
            save_file(cpu_state_dict(module), str(tmp / f"{name}.safetensors"))
        full_state = {**state, **opt_meta, "rng": rng_state()}
        (tmp / "state.json").write_text(json.dumps(full_state, indent=1) + "\n")
        os.chmod(tmp, 0o755)
        if final.exists():  # re-saving the same epoch (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("epoch-"))


def load_checkpoint(
    checkpoint: Path, model: torch.nn.Module, optimizer: Optimizers | None, device: torch.device,
    extra_modules: dict[str, torch.nn.Module] | None = None,
) -> dict[str, Any]:
    """Load weights (and optimizer state) into ``model``/``optimizer``; restore RNGs; return the state.

    ``extra_modules`` (name -> module) are loaded from the ``NAME.safetensors`` that
    :func:`save_checkpoint` wrote for them.

    Raises:
        UserError: the folder is missing a file or cannot be read (names the file).
    """
    checkpoint = Path(checkpoint)
    try:
        state = json.loads((checkpoint / "state.json").read_text())
        model.load_state_dict(load_file(str(checkpoint / "model.safetensors"), device=str(device)))
        for name, opt in _named(optimizer).items():
            tensors = load_file(str(checkpoint / f"{_file(name)}.safetensors"), device=str(device))
            opt.load_state_dict(_join_optimizer_state(tensors, state[_file(name)]))
        for name, module in (extra_modules or {}).items():
            module.load_state_dict(load_file(str(checkpoint / f"{name}.safetensors"), device=str(device)))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        raise UserError(f"cannot read checkpoint {checkpoint}: {e}. Delete that folder to resume from an older one") from e
    set_rng_state(state["rng"])
    return state
