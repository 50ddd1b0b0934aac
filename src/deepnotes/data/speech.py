"""Speech Commands folders: the WAV reader with header checks, the split lists, the loader, background noise.

Source: the "Audio Classification with Spectrogram" exercise of the curriculum notes (seed 000: the open
Speech Commands dataset, waveform -> spectrogram -> CNN, train 91 % / val 90 %); the dataset is
P. Warden, "Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition", arXiv:1804.03209 (2018).

The layout (v1: 30 words, v2: 35 words; the synthesized ``speech-keywords`` set of
:mod:`deepnotes.data.speech_build` has the same layout, so this code reads both)::

    ROOT/
      yes/0a7c2a8d_nohash_0.wav      one folder per word: 16 kHz mono 16-bit PCM, at most 1 s
      ...                            file name: <speaker hash>_nohash_<repetition>.wav
      validation_list.txt            relative paths (``right/a69b9b3e_nohash_0.wav``), one a line
      testing_list.txt
      _background_noise_/*.wav       long noise recordings for augmentation; not a class

A file belongs to validation or test when its relative path is in the list; every other WAV file of a
word folder is training data (how the dataset's README defines the split).

:func:`read_wav` parses the RIFF chunks itself (the header check is the lesson): ``RIFF``/``WAVE`` magic,
a ``fmt`` chunk with PCM format 1 (or WAVE_FORMAT_EXTENSIBLE with a PCM sub-format), one channel, 16-bit
samples, a consistent block size, and a ``data`` chunk that fits in the file. Every failure is a
:class:`DataError` that names the file and what is wrong. Sample rates other than the requested one are
resampled with ``soxr`` (libsoxr, the resampler of SoX), not a home-made filter.

In memory for training (the keyword-spotting lab): :class:`SpeechSplit` (int16 clips) from :func:`load_split` or
:func:`load_eval_folder`, :func:`load_noise`, the synthesizer of each clip (:func:`engines_of`) and per-engine
sampling weights (:func:`engine_weights`), and :func:`speech_folder` (``--data-dir`` or a built set).

Deliberate differences from the original TensorFlow/torchaudio loaders: they also read stereo or 8-bit
files silently (torchaudio) or assume the header (TF's ``decode_wav`` checks it but only for 16-bit);
here such files are errors unless ``skip_bad=True``, which logs and skips them.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from deepnotes.errors import DataError, UserError

#: The 35 words of Speech Commands v2 (alphabetical, the order of its folders).
SPEECH_COMMANDS_V2_WORDS: tuple[str, ...] = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
    "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
#: speech-keywords builds: the test clips of the first build's test voices (a second, older test set).
TESTING_LIST_V1 = "testing_list_v1.txt"
BACKGROUND_NOISE_DIR = "_background_noise_"
#: Sample rate of Speech Commands and of every clip this module returns by default (Hz).
SAMPLE_RATE = 16000

_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {1: "PCM", 3: "IEEE float", 6: "A-law", 7: "mu-law", 2: "Microsoft ADPCM", 0x11: "IMA ADPCM",
                 0x55: "MP3", _WAVE_FORMAT_EXTENSIBLE: "extensible"}


# ----------------------------------------------------------------------------------------------------------
# WAV files
# ----------------------------------------------------------------------------------------------------------


def parse_wav(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """Parse a mono 16-bit PCM WAV file's bytes into ``(samples, sample_rate)``.

    Walks the RIFF chunks (each: 4-byte id, 4-byte little-endian size, the payload, a pad byte when the
    size is odd), so files with extra chunks (``LIST``, ``fact``, ...) before or after ``data`` are read.

    Args:
        data: the whole file.
        name: the file's name, used in error messages.

    Returns:
        ``samples``: ``(T,)`` int16 numpy array; ``sample_rate``: Hz (any positive value).

    Raises:
        DataError: (message starts with ``name``) not ``RIFF``/``WAVE``; no ``fmt`` or ``data`` chunk; a
            format other than PCM; not exactly 1 channel; not 16 bits a sample; an inconsistent block
            size or byte rate; a chunk that runs past the end of the file (truncated); an empty or
            odd-sized ``data`` chunk.
    """
    if len(data) < 12 or data[:4] != b"RIFF":
        hint = " (big-endian RIFX is not supported)" if data[:4] == b"RIFX" else ""
        raise DataError(f"{name}: not a WAV file: expected 'RIFF' at byte 0, found {data[:4]!r}{hint}")
    if data[8:12] != b"WAVE":
        raise DataError(f"{name}: RIFF file of type {data[8:12]!r}, not 'WAVE'")
    riff_size = struct.unpack_from("<I", data, 4)[0]
    fmt = None
    data_chunk = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        start = pos + 8
        if chunk_id == b"data":
            available = len(data) - start
            if size > available:
                raise DataError(f"{name}: truncated: the data chunk declares {size} bytes but only {available} "
                                f"follow (re-copy or re-download the file)")
            data_chunk = (start, size)
        elif start + size > len(data):
            raise DataError(f"{name}: truncated: chunk {chunk_id!r} at byte {pos} declares {size} bytes but "
                            f"only {len(data) - start} follow")
        elif chunk_id == b"fmt ":
            fmt = data[start:start + size]
        pos = start + size + (size & 1)
    if riff_size + 8 > len(data) + 1:  # +1: some writers leave out the final pad byte
        raise DataError(f"{name}: truncated: the RIFF header declares {riff_size + 8} bytes but the file has "
                        f"{len(data)}")
    if fmt is None:
        raise DataError(f"{name}: no 'fmt ' chunk (not a valid WAV file)")
    if data_chunk is None:
        raise DataError(f"{name}: no 'data' chunk (not a valid WAV file, or truncated)")
    if len(fmt) < 16:
        raise DataError(f"{name}: 'fmt ' chunk of {len(fmt)} bytes; a PCM header needs 16")
    tag, channels, rate, byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt, 0)
    if tag == _WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the sub-format GUID
    if tag != _WAVE_FORMAT_PCM:
        raise DataError(f"{name}: audio format {tag} ({_FORMAT_NAMES.get(tag, 'unknown')}) is not PCM (1); "
                        f"convert it with `sox IN -e signed-integer -b 16 OUT.wav`")
    if channels != 1:
        raise DataError(f"{name}: {channels} channels; expected mono (1): convert it with `sox IN -c 1 OUT.wav`")
    if bits != 16:
        raise DataError(f"{name}: {bits}-bit samples; expected 16-bit: convert it with `sox IN -b 16 OUT.wav`")
    if rate == 0:
        raise DataError(f"{name}: sample rate 0 in the header")
    if block_align != 2 or byte_rate != 2 * rate:
        raise DataError(f"{name}: inconsistent header: block align {block_align} and byte rate {byte_rate} "
                        f"for mono 16-bit at {rate} Hz (expected 2 and {2 * rate})")
    start, size = data_chunk
    if size == 0:
        raise DataError(f"{name}: the data chunk holds no samples")
    if size % 2:
        raise DataError(f"{name}: data chunk of {size} bytes is not a whole number of 16-bit samples (truncated?)")
    samples = np.frombuffer(data, dtype="<i2", count=size // 2, offset=start).astype(np.int16)
    return samples, int(rate)


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a mono 16-bit PCM WAV file with the header checks of :func:`parse_wav`.

    Args:
        path: the file.

    Returns:
        ``samples``: ``(T,)`` float32 numpy array in ``[-1, 1)`` (int16 / 32768); ``sample_rate``: Hz.

    Raises:
        DataError: the file cannot be read, or any header check fails (the message names the file).

    Example::

        >>> x, sr = read_wav("yes/0a7c2a8d_nohash_0.wav")   # doctest: +SKIP
        >>> x.shape, sr
        ((16000,), 16000)
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror})") from e
    samples, rate = parse_wav(data, str(path))
    return samples.astype(np.float32) / 32768.0, rate


def wav_bytes(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A canonical 44-byte-header mono 16-bit PCM WAV file holding ``samples``.

    Args:
        samples: ``(T,)`` int16 array (other integer dtypes must fit in int16).
        sample_rate: Hz.

    Raises:
        ValueError: ``samples`` is not 1-D integer data within the int16 range, or ``sample_rate <= 0``.
    """
    samples = np.asarray(samples)
    if samples.ndim != 1 or samples.dtype.kind not in "iu":
        raise ValueError(f"samples must be a 1-D integer array, got dtype {samples.dtype} shape {samples.shape}")
    if samples.size and (samples.min() < -32768 or samples.max() > 32767):
        raise ValueError("samples must fit in int16 (-32768 ... 32767)")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    pcm = samples.astype("<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, _WAVE_FORMAT_PCM,
                         1, sample_rate, 2 * sample_rate, 2, 16, b"data", len(pcm))
    return header + pcm


def resample(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """``x`` (``(T,)`` float32) resampled from ``orig_rate`` to ``new_rate`` Hz with soxr ("HQ" quality).

    The output has ``round(T * new_rate / orig_rate)`` samples (libsoxr's own length rule); the same rate
    returns ``x`` unchanged.
    """
    if orig_rate == new_rate:
        return x
    import soxr  # libsoxr: a well-kept band-limited resampler (the one inside SoX)

    return soxr.resample(np.ascontiguousarray(x, dtype=np.float32), orig_rate, new_rate, quality="HQ")


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """``x`` zero-padded at the end, or cut, to exactly ``length`` samples (Speech Commands' own rule)."""
    if len(x) >= length:
        return x[:length]
    return np.concatenate([x, np.zeros(length - len(x), dtype=x.dtype)])


# ----------------------------------------------------------------------------------------------------------
# Folders and split lists
# ----------------------------------------------------------------------------------------------------------


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; download Speech Commands (http://download.tensorflow.org/data/"
                        f"speech_commands_v0.02.tar.gz) and extract it there, or build the offline set with "
                        f"`deepnotes data build speech-keywords`")


def word_folders(root: str | os.PathLike[str]) -> list[str]:
    """The class folders of ``root``, sorted: sub-folders that hold ``.wav`` files, except ``_background_noise_``
    and other names starting with ``_`` or ``.``.

    Raises:
        DataError: ``root`` is not a folder, or holds no word folder.
    """
    root = Path(root)
    _check_root(root)
    words = sorted(p.name for p in root.iterdir()
                   if p.is_dir() and not p.name.startswith(("_", ".")) and any(p.glob("*.wav")))
    if not words:
        raise DataError(f"{root}: no word folder with .wav files (is it the extracted Speech Commands folder?)")
    return words


def read_split_list(path: str | os.PathLike[str]) -> list[str]:
    """The relative paths of a ``validation_list.txt`` / ``testing_list.txt`` (blank lines skipped).

    Raises:
        DataError: the file is missing or unreadable (names it), or a line is not ``word/file.wav``.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise DataError(f"{path} is missing; every Speech Commands folder has it (re-extract the archive, or "
                        f"rebuild with `deepnotes data build speech-keywords`)") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it ({e})") from e
    out = []
    for i, line in enumerate(lines, 1):
        rel = line.strip()
        if not rel:
            continue
        parts = rel.split("/")
        if len(parts) != 2 or not parts[1].endswith(".wav") or not all(parts):
            raise DataError(f"{path} line {i}: expected 'word/file.wav', got {rel[:60]!r}")
        out.append(rel)
    return out


def speech_commands_files(root: str | os.PathLike[str], split: str = "train", words: Sequence[str] | None = None,
                          skip_bad: bool = False, log: Callable[[str], None] = print) -> tuple[list[str], list[str]]:
    """The relative paths of one split and the class names, without reading any audio.

    Args:
        root: the Speech Commands folder.
        split: ``"train"``, ``"validation"`` or ``"test"``. Validation and test are the files named in
            ``validation_list.txt`` / ``testing_list.txt``; train is every other WAV file of a word folder.
        words: the classes to keep, in label order (default: every word folder, sorted). Files of other
            words are left out.
        skip_bad: log and skip a listed file that does not exist instead of raising.
        log: where ``skip_bad`` messages go.

    Returns:
        ``(files, classes)``: relative paths ``word/name.wav`` (sorted) and the class names.

    Raises:
        ValueError: unknown ``split``.
        DataError: ``root`` is not a Speech Commands folder, a list is missing, a word in ``words`` has
            no folder, or a listed file is missing (unless ``skip_bad``).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    root = Path(root)
    present = word_folders(root)
    if words is None:
        classes = present
    else:
        classes = list(words)
        if len(set(classes)) != len(classes):
            raise ValueError(f"words must be distinct, got {classes}")
        missing = [w for w in classes if w not in present]
        if missing:
            raise DataError(f"{root}: no folder for the word(s) {', '.join(missing)}; the folders are: "
                            f"{', '.join(present)}")
    keep = set(classes)
    val = read_split_list(root / VALIDATION_LIST)
    test = read_split_list(root / TESTING_LIST)
    if split == "train":
        held_out = set(val) | set(test)
        files = sorted(f"{w}/{p.name}" for w in classes for p in (root / w).glob("*.wav"))
        return [f for f in files if f not in held_out], classes
    listed = val if split == "validation" else test
    list_name = VALIDATION_LIST if split == "validation" else TESTING_LIST
    files = []
    for rel in sorted(set(listed)):
        if rel.split("/")[0] not in keep:
            continue
        if not (root / rel).is_file():
            msg = f"{root / list_name} names {rel}, which is not in {root}"
            if not skip_bad:
                raise DataError(msg + " (re-extract the dataset, or pass skip_bad=True / --skip-bad)")
            log(f"skipping: {msg}")
            continue
        files.append(rel)
    return files, classes


# ----------------------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------------------


def load_clip(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE, length: int | None = None) -> np.ndarray:
    """One clip as ``(length,)`` float32: read with header checks, resampled to ``sample_rate``, then
    zero-padded at the end or cut to ``length`` samples (default ``sample_rate``, i.e. 1 s).

    Raises:
        DataError: from :func:`read_wav` (names the file).
    """
    x, rate = read_wav(path)
    x = resample(x, rate, sample_rate)
    return fit_length(x, sample_rate if length is None else length)


def load_speech_commands(root: str | os.PathLike[str], split: str = "train", sample_rate: int = SAMPLE_RATE,
                         skip_bad: bool = False, words: Sequence[str] | None = None,
                         log: Callable[[str], None] = print) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """Load one split of a Speech Commands v1/v2 folder (or of ``deepnotes data build speech-keywords``).

    Each WAV header is checked (:func:`parse_wav`); a clip at another rate is resampled to
    ``sample_rate`` with soxr; clips shorter than 1 s are zero-padded at the end, longer ones cut.

    Args:
        root: the dataset folder (word folders, ``validation_list.txt``, ``testing_list.txt``).
        split: ``"train"`` (default), ``"validation"`` or ``"test"``.
        sample_rate: output rate in Hz (default 16000); every clip becomes ``sample_rate`` samples (1 s).
        skip_bad: log and skip unreadable or malformed files (and listed files that are missing)
            instead of raising (default False).
        words: the classes, in label order (default: every word folder, sorted).
        log: receives one line per skipped file (default ``print``).

    Returns:
        ``(waveforms, labels, classes, files)``: ``waveforms`` float32 tensor ``(N, sample_rate)`` in
        ``[-1, 1)``; ``labels`` int64 tensor ``(N,)`` indexing ``classes``; ``classes`` the word list;
        ``files`` the ``N`` relative paths ``word/name.wav`` in row order (sorted).

    Shapes:
        waveforms: (N, sample_rate); labels: (N,).

    Raises:
        ValueError: unknown ``split`` or ``sample_rate <= 0``.
        DataError: not a Speech Commands folder, a list missing, or a bad file (names the file and what
            is wrong; unless ``skip_bad``), or the split holds no clip.

    Example::

        >>> x, y, classes, files = load_speech_commands("speech_commands_v0.02", "validation")  # doctest: +SKIP
        >>> x.shape, classes[y[0]], files[0]
        (torch.Size([9981, 16000]), 'backward', 'backward/0165e0e8_nohash_0.wav')
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    root = Path(root)
    rels, classes = speech_commands_files(root, split, words, skip_bad, log)
    index = {w: i for i, w in enumerate(classes)}
    waveforms = torch.empty(len(rels), sample_rate, dtype=torch.float32)
    labels, files = [], []
    for rel in rels:
        try:
            clip = load_clip(root / rel, sample_rate)
        except DataError as e:
            if not skip_bad:
                raise
            log(f"skipping: {e}")
            continue
        waveforms[len(files)] = torch.from_numpy(clip)
        labels.append(index[rel.split("/")[0]])
        files.append(rel)
    if not files:
        raise DataError(f"{root}: the {split} split holds no readable clip of the words {', '.join(classes)}")
    return waveforms[:len(files)].clone(), torch.tensor(labels, dtype=torch.int64), classes, files


def load_background_noise(root: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE, skip_bad: bool = False,
                          log: Callable[[str], None] = print) -> dict[str, torch.Tensor]:
    """The clips of ``ROOT/_background_noise_/`` (not a class): file stem -> float32 ``(T,)`` tensor at
    ``sample_rate`` (resampled with soxr if needed), sorted by name; lengths are kept (about 60 s each).

    Raises:
        DataError: the folder is missing or holds no ``.wav``, or a file is bad (unless ``skip_bad``).
    """
    folder = Path(root) / BACKGROUND_NOISE_DIR
    paths = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if not paths:
        raise DataError(f"{folder}: no background-noise .wav files (Speech Commands ships six; "
                        f"`deepnotes data build speech-keywords` makes white, pink and brown noise)")
    out = {}
    for p in paths:
        try:
            x, rate = read_wav(p)
        except DataError as e:
            if not skip_bad:
                raise
            log(f"skipping: {e}")
            continue
        out[p.stem] = torch.from_numpy(resample(x, rate, sample_rate).copy())
    return out


# ----------------------------------------------------------------------------------------------------------
# Splits in memory (the keyword-spotting lab's data)
# ----------------------------------------------------------------------------------------------------------


@dataclass
class SpeechSplit:
    """One split in memory: int16 clips (N, 16000), labels (N,) indexing ``classes``, relative file paths
    ``word/name.wav`` in row order, and the folder they come from."""

    clips: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    files: list[str]
    root: Path

    def subset(self, n: int) -> "SpeechSplit":
        """``n`` clips spread evenly over the split (every k-th; all words stay in); 0 or ``n >= N``: all."""
        if not n or n >= len(self.labels):
            return self
        idx = torch.linspace(0, len(self.labels) - 1, n).round().long()
        return self.select(idx)

    def select(self, index: torch.Tensor | Sequence[int]) -> "SpeechSplit":
        """The clips at ``index`` (a boolean mask (N,) or integer positions), in that order."""
        idx = torch.as_tensor(index)
        idx = idx.nonzero().flatten() if idx.dtype == torch.bool else idx.long()
        return SpeechSplit(self.clips[idx], self.labels[idx], self.classes, [self.files[i] for i in idx.tolist()],
                           self.root)

    @staticmethod
    def concat(splits: Sequence["SpeechSplit"]) -> "SpeechSplit":
        """One split of the clips of ``splits`` (same classes and folder), in order.

        Raises:
            ValueError: no split, or splits with other classes or folders.
        """
        if not splits or any(s.classes != splits[0].classes or s.root != splits[0].root for s in splits):
            raise ValueError("concat needs at least one split, all with the same classes and folder")
        return SpeechSplit(torch.cat([s.clips for s in splits]), torch.cat([s.labels for s in splits]),
                           splits[0].classes, [f for s in splits for f in s.files], splits[0].root)


def to_int16(x: torch.Tensor) -> torch.Tensor:
    """Float waveforms in [-1, 1) -> int16 samples (rounded, clipped)."""
    return (x * 32768.0).round_().clamp_(-32768, 32767).to(torch.int16)


def load_split(root: str | os.PathLike[str], split: str, classes: Sequence[str] | None = None) -> SpeechSplit:
    """One split of a Speech Commands folder as int16 clips (:func:`load_speech_commands`, silent).

    Raises:
        DataError: as :func:`load_speech_commands`.
    """
    x, y, cls, files = load_speech_commands(root, split, words=classes, log=lambda _m: None)
    return SpeechSplit(to_int16(x), y, list(cls), files, Path(root))


def load_eval_folder(root: str | os.PathLike[str], classes: Sequence[str], skip_bad: bool = False,
                     log: Callable[[str], None] = print) -> SpeechSplit:
    """The clips of a folder to score a trained model on: its test split when it has ``testing_list.txt``,
    else every WAV of its word folders; labels index ``classes``; other sample rates are resampled, shorter
    clips zero-padded to 1 s.

    Args:
        skip_bad: log (through ``log``) and skip a file that cannot be read as a WAV instead of raising.

    Raises:
        UserError: a word folder that is not one of ``classes`` (names them).
        DataError: no word folder; a bad file (names it, unless ``skip_bad``); no readable clip left.
    """
    root = Path(root)
    words = word_folders(root)
    unknown = [w for w in words if w not in classes]
    if unknown:
        raise UserError(f"--data {root}: word folder(s) {', '.join(unknown)} are not among the run's "
                        f"{len(classes)} classes ({', '.join(classes[:6])}, ...)")
    if (root / TESTING_LIST).is_file():
        x, y, _, files = load_speech_commands(root, "test", words=words, skip_bad=skip_bad, log=log)
        labels = torch.tensor([list(classes).index(words[int(i)]) for i in y], dtype=torch.int64)
        return SpeechSplit(to_int16(x), labels, list(classes), files, root)
    files, clips = [], []
    for f in (f"{w}/{p.name}" for w in words for p in sorted((root / w).glob("*.wav"))):
        try:
            clips.append(torch.from_numpy(load_clip(root / f)))
        except DataError as e:
            if not skip_bad:
                raise DataError(f"{e} (remove the file, or pass --skip-bad to leave it out)") from e
            log(f"skipping {root / f}: {e}")
            continue
        files.append(f)
    if not files:
        raise DataError(f"--data {root}: no readable WAV clip in its word folders")
    labels = torch.tensor([list(classes).index(f.split("/")[0]) for f in files], dtype=torch.int64)
    return SpeechSplit(to_int16(torch.stack(clips)), labels, list(classes), files, root)


def load_noise(root: str | os.PathLike[str], log: Callable[[str], None] = print) -> list[torch.Tensor]:
    """The folder's background-noise recordings of at least 1 s, for augmentation (an empty list, said in
    ``log``, when it has none)."""
    root = Path(root)
    if not (root / BACKGROUND_NOISE_DIR).is_dir():
        log(f"{root} has no {BACKGROUND_NOISE_DIR}/: background-noise augmentation is off")
        return []
    noise = [n for n in load_background_noise(root, log=log).values() if len(n) >= SAMPLE_RATE]
    if not noise:
        log(f"{root / BACKGROUND_NOISE_DIR} has no recording of 1 s or more: background-noise augmentation is off")
    return noise


def voices_of(root: str | os.PathLike[str], files: Sequence[str], key: str = "engine") -> list[str] | None:
    """A field of each clip's voice (``key``: ``"engine"``, ``"speaker"``, ``"voice_id"``), from the folder's
    ``manifest.json`` (``speech-keywords`` builds: a file's speaker hash names its voice); ``"other"`` for a
    file of no listed voice; None for a folder without a manifest (real recordings)."""
    try:
        manifest = json.loads((Path(root) / "manifest.json").read_text())
        by_hash = {v["voice_hash"]: v[key] for v in manifest["grid"]["voices"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [by_hash.get(Path(f).name.split("_nohash_")[0], "other") for f in files]


def engines_of(root: str | os.PathLike[str], files: Sequence[str]) -> list[str] | None:
    """The synthesizer of each clip (:func:`voices_of` with ``key="engine"``)."""
    return voices_of(root, files, "engine")


def engine_weights(root: str | os.PathLike[str], files: Sequence[str],
                   power: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-clip sampling weights (N,) that give engine e the share ``n_e ** power / sum_f n_f ** power``,
    and those shares by engine name.

    Each clip of engine e weighs ``n_e ** (power - 1)``: power 1 gives equal weights (the data's own
    shares), 0 equal shares per engine (the temperature sampling of multilingual training).

    Raises:
        DataError: the folder has no speech-keywords ``manifest.json`` saying which engine made each clip.
    """
    engines = engines_of(root, files)
    if engines is None:
        raise DataError(f"--engine-power needs {Path(root) / 'manifest.json'} (a `deepnotes data build "
                        "speech-keywords` folder) to know each clip's synthesizer; use --engine-power 1 with other "
                        "folders")
    counts = Counter(engines)
    total = sum(float(n) ** power for n in counts.values())
    shares = {e: float(n) ** power / total for e, n in sorted(counts.items())}
    return torch.tensor([float(counts[e]) ** (power - 1.0) for e in engines], dtype=torch.float64), shares


def speech_folder(dataset: str, data_dir: str | None = None) -> Path:
    """The Speech Commands-layout folder to read: ``data_dir``, or the built ``dataset`` (``speech-keywords``
    or ``speech-keywords-small``).

    Raises:
        UserError: ``data_dir`` is not a folder; an unknown dataset, one that is not a speech set, or one not
            built yet or built from an older grid (with the command that builds it).
    """
    if data_dir:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise UserError(f"--data-dir {root} is not a folder; pass a Speech Commands folder (word folders, "
                            "validation_list.txt, testing_list.txt)")
        return root
    from deepnotes.data.registry import get_dataset
    from deepnotes.data.speech_build import SPEECH_DATASETS, SPEECH_PACKAGES

    if dataset not in SPEECH_DATASETS:
        get_dataset(dataset)  # an unknown name -> UserError listing the datasets
        raise UserError(f"--dataset {dataset} is not a speech dataset; use {' or '.join(SPEECH_DATASETS)}, "
                        "or --data-dir FOLDER for a Speech Commands folder")
    info = get_dataset(dataset)
    if not info.is_current():
        what = "is not built yet" if not info.manifest_path().is_file() else "was built from an older grid of voices"
        raise UserError(f"--dataset {dataset} {what} ({info.status()}); build it with `deepnotes data build "
                        f"{dataset}` (needs: `sudo apt-get install {' '.join(SPEECH_PACKAGES)}`), or pass its "
                        "folder as --data-dir to use it as it is")
    return info.cache_dir()
