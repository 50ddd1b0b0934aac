"""The course's ML2022 HW4 speaker-classification files, read by path, and HW4's random segments.

Source: ML2022 (Hung-yi Lee) HW4, "speaker classification" (VoxCeleb2 subset: 600 speakers; each utterance
pre-processed by the TAs into log-mel frames, 40 mels). The data folder (``Dataset/`` once unzipped)::

    mapping.json    {"speaker2id": {"id10473": 0, ...}, "id2speaker": {"0": "id10473", ...}}
    metadata.json   {"n_mels": 40, "speakers": {"id10473": [{"feature_path": "uttr-<hash>.pt", "mel_len": 435},
                                                            ...], ...}}
    testdata.json   (the unlabelled Kaggle test set; not read here)
    uttr-*.pt       one (mel_len, 40) float tensor each, read with ``torch.load(weights_only=True)``

:func:`load_hw4_folder` checks all of it and names the file and the fix on any problem
(:class:`~deepnotes.errors.DataError`). :func:`random_segment` is the sample code's training crop: a random
window of ``segment_len`` frames (128 in the sample code), shorter utterances kept whole and padded with -20
(the sample's ``pad_sequence(..., padding_value=-20)``: "log 10^-20, a very small value").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from deepnotes.errors import DataError

__all__ = ["HW4_PAD_VALUE", "HW4_SEGMENT_LEN", "HW4Speakers", "load_hw4_folder", "random_segment",
           "read_hw4_feature"]

HW4_SEGMENT_LEN = 128  # frames per training segment in the sample code
HW4_PAD_VALUE = -20.0  # the sample code's padding value for log-mel frames
_FIX = "re-extract the course's HW4 Dataset folder (mapping.json, metadata.json and uttr-*.pt side by side)"


@dataclass
class HW4Speakers:
    """The labelled utterances of an HW4 folder (see :func:`load_hw4_folder`).

    Attributes:
        root: the folder.
        n_mels: features per frame (metadata.json's ``n_mels``).
        paths: (U,) each utterance's ``feature_path``, relative to ``root``.
        mel_lens: (U,) frames per utterance (metadata.json's ``mel_len``; the files' when preloaded; None where
            neither is known).
        speaker_ids: (U,) int64, the mapping's speaker id of each utterance.
        speaker2id: speaker name -> id; id2speaker: id -> speaker name (ints, not JSON's strings).
        features: (U,) (mel_len, n_mels) float32 tensors, or None when not preloaded (use :meth:`load`).
    """

    root: Path
    n_mels: int
    paths: list[str]
    mel_lens: list[int | None]
    speaker_ids: Tensor
    speaker2id: dict[str, int]
    id2speaker: dict[int, str]
    features: list[Tensor] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_speakers(self) -> int:
        """Speakers in the mapping (the classifier's ``num_classes``)."""
        return len(self.speaker2id)

    def load(self, i: int) -> Tensor:
        """Utterance i's (mel_len, n_mels) features: the preloaded tensor, else read and checked from its file."""
        if self.features is not None:
            return self.features[i]
        return read_hw4_feature(self.root / self.paths[i], self.n_mels, self.mel_lens[i])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing; pass the HW4 data folder that holds it, or {_FIX}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON file ({type(e).__name__}: {e}); {_FIX}") from e


def read_hw4_feature(path: str | os.PathLike[str], n_mels: int = 40, mel_len: int | None = None) -> Tensor:
    """One ``uttr-*.pt`` file: a (mel_len, n_mels) float tensor, checked, as float32.

    Args:
        path: the file.
        n_mels: expected features per frame. Default 40.
        mel_len: expected frames (metadata.json's ``mel_len``); None = any number >= 1.

    Raises:
        DataError: the file is missing, is not a tensor file (``torch.load(weights_only=True)`` refuses it),
            or holds something other than a 2-D float tensor of n_mels columns and mel_len rows.
    """
    path = Path(path)
    try:
        x = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path} is missing (listed in metadata.json); {_FIX}") from None
    except Exception as e:  # torch raises several kinds for a damaged or non-tensor file
        raise DataError(f"{path}: cannot read it as a tensor file ({type(e).__name__}: {e}); {_FIX}") from e
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point() or x.shape[1] != n_mels \
            or x.shape[0] < 1:
        got = f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"{path}: expected a (frames, n_mels={n_mels}) float tensor, got {got}; {_FIX}")
    if mel_len is not None and x.shape[0] != mel_len:
        raise DataError(f"{path}: {x.shape[0]} frames, but metadata.json says mel_len={mel_len}; {_FIX}")
    return x.float()


def load_hw4_folder(root: str | os.PathLike[str], preload: bool = True,
                    max_speakers: int | None = None) -> HW4Speakers:
    """The labelled utterances of the course's HW4 data folder, by path.

    Utterances come in metadata.json's order (speaker by speaker). ``id2speaker`` is rebuilt from
    ``speaker2id`` (JSON's keys are strings).

    Args:
        root: the folder holding ``mapping.json``, ``metadata.json`` and the ``uttr-*.pt`` files.
        preload: read and check every feature file now (all 56,666 of the course's: several GB of RAM);
            False reads only the JSON files, and :meth:`HW4Speakers.load` reads each utterance when asked.
            Default True.
        max_speakers: keep only the speakers with id < max_speakers (a smaller task for a CPU; ids stay
            0..max_speakers-1 and the mapping shrinks to them). Default None: all.

    Returns:
        :class:`HW4Speakers`.

    Raises:
        DataError: ``root`` not a folder; mapping.json or metadata.json missing, not JSON, or without their
            keys; a speaker of metadata.json missing from the mapping; a metadata entry without
            ``feature_path``; (preload) a missing or malformed ``.pt`` file (wrong shape, wrong n_mels, a
            frame count other than mel_len). Each message names the file and the fix.
        ValueError: max_speakers < 1.

    Example::

        data = load_hw4_folder("Dataset", max_speakers=50)
        x, length = random_segment(data.load(0), 128)
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass the course's HW4 data folder (Dataset/, unzipped)")
    if max_speakers is not None and max_speakers < 1:
        raise ValueError(f"max_speakers must be >= 1 or None, got {max_speakers}")
    mapping_path, metadata_path = root / "mapping.json", root / "metadata.json"
    mapping, metadata = _read_json(mapping_path), _read_json(metadata_path)
    if not isinstance(mapping, dict) or not isinstance(mapping.get("speaker2id"), dict):
        raise DataError(f"{mapping_path}: expected {{\"speaker2id\": {{speaker: id, ...}}, ...}}; {_FIX}")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("speakers"), dict) \
            or not isinstance(metadata.get("n_mels"), int):
        raise DataError(f"{metadata_path}: expected {{\"n_mels\": 40, \"speakers\": {{speaker: [{{\"feature_path\": "
                        f"..., \"mel_len\": ...}}, ...]}}}}; {_FIX}")
    speaker2id = {str(k): int(v) for k, v in mapping["speaker2id"].items()}
    if max_speakers is not None:
        speaker2id = {k: v for k, v in speaker2id.items() if v < max_speakers}
    n_mels = metadata["n_mels"]

    paths, mel_lens, ids = [], [], []
    for speaker, utterances in metadata["speakers"].items():
        if speaker not in mapping["speaker2id"]:
            raise DataError(f"{metadata_path}: speaker {speaker!r} is not in {mapping_path}'s speaker2id (the two "
                            f"files do not belong together); {_FIX}")
        if speaker not in speaker2id:
            continue  # dropped by max_speakers
        for entry in utterances:
            if not isinstance(entry, dict) or "feature_path" not in entry:
                raise DataError(f"{metadata_path}: an utterance of speaker {speaker!r} has no feature_path: "
                                f"{entry!r}; {_FIX}")
            try:
                mel_lens.append(int(entry["mel_len"]) if "mel_len" in entry else None)
            except (TypeError, ValueError):
                raise DataError(f"{metadata_path}: mel_len of {entry['feature_path']} is not an integer: "
                                f"{entry['mel_len']!r}; {_FIX}") from None
            paths.append(str(entry["feature_path"]))
            ids.append(speaker2id[speaker])
    if not paths:
        raise DataError(f"{metadata_path}: no utterances{' for the kept speakers' if max_speakers else ''}; {_FIX}")
    features = [read_hw4_feature(root / p, n_mels, n) for p, n in zip(paths, mel_lens)] if preload else None
    if features is not None:
        mel_lens = [len(x) for x in features]
    return HW4Speakers(root, n_mels, paths, mel_lens, torch.tensor(ids, dtype=torch.int64), speaker2id,
                       {v: k for k, v in speaker2id.items()}, features)


def random_segment(features: Tensor, segment_len: int = HW4_SEGMENT_LEN, generator: torch.Generator | None = None,
                   pad_value: float = HW4_PAD_VALUE) -> tuple[Tensor, int]:
    """A random window of ``segment_len`` frames, as HW4's training data loader cuts (and pads) them.

    Longer utterances: a window starting uniformly at random in [0, L - segment_len]. Shorter or equal ones:
    the whole utterance, followed by ``segment_len - L`` frames of ``pad_value``; ``length`` says how many
    frames are real (for :func:`deepnotes.nn.attention.padding_mask`).

    Args:
        features: (L, n_mels) frames.
        segment_len: frames out (>= 1). Default 128 (the sample code).
        generator: for the start frame (``torch.randint``); None = torch's global generator.
        pad_value: fill of the padding frames. Default -20.0 (the sample code's).

    Returns:
        ``(segment, length)``: segment (segment_len, n_mels), length = min(L, segment_len).

    Raises:
        ValueError: features not 2-D or empty, segment_len < 1.

    Example::

        g = torch.Generator().manual_seed(0)
        x, n = random_segment(data.load(0), 128, g)
    """
    if features.dim() != 2 or features.shape[0] < 1:
        raise ValueError(f"features must be (L >= 1, n_mels), got shape {tuple(features.shape)}")
    if segment_len < 1:
        raise ValueError(f"segment_len must be >= 1, got {segment_len}")
    L = features.shape[0]
    if L > segment_len:
        start = int(torch.randint(0, L - segment_len + 1, (1,), generator=generator))
        return features[start:start + segment_len], segment_len
    out = features.new_full((segment_len, features.shape[1]), pad_value)  # (segment_len, n_mels)
    out[:L] = features
    return out, L
