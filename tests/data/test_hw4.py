"""HW4 folder reader on tiny folders made here (every failure names its file), and the random segment crop."""

from __future__ import annotations

import json

import pytest
import torch

from deepnotes.data.hw4 import HW4_PAD_VALUE, load_hw4_folder, random_segment, read_hw4_feature
from deepnotes.errors import DataError

N_MELS = 4


def _make_folder(root, lens=None, n_mels=N_MELS):
    """Three speakers (ids 0..2): 'spkA' 2 utterances, 'spkB' 1, 'spkC' 2; features are arange-filled."""
    lens = lens or {"spkA": [5, 3], "spkB": [7], "spkC": [2, 4]}
    speaker2id = {"spkA": 0, "spkB": 1, "spkC": 2}
    speakers, k = {}, 0
    for spk, ls in lens.items():
        speakers[spk] = []
        for L in ls:
            name = f"uttr-{k:03d}.pt"
            torch.save(torch.arange(L * n_mels, dtype=torch.float32).view(L, n_mels) + 100 * k, root / name)
            speakers[spk].append({"feature_path": name, "mel_len": L})
            k += 1
    (root / "mapping.json").write_text(json.dumps({"speaker2id": speaker2id,
                                                   "id2speaker": {str(v): s for s, v in speaker2id.items()}}))
    (root / "metadata.json").write_text(json.dumps({"n_mels": n_mels, "speakers": speakers}))
    return root


def test_load_folder(tmp_path):
    data = load_hw4_folder(_make_folder(tmp_path))
    assert len(data) == 5 and data.num_speakers == 3 and data.n_mels == N_MELS
    assert data.speaker_ids.tolist() == [0, 0, 1, 2, 2]
    assert data.id2speaker == {0: "spkA", 1: "spkB", 2: "spkC"}
    assert data.mel_lens == [5, 3, 7, 2, 4]
    assert data.paths[2] == "uttr-002.pt"
    torch.testing.assert_close(data.features[2], torch.arange(28.0).view(7, 4) + 200)
    assert data.features[0].dtype == torch.float32


def test_lazy_loading_and_max_speakers(tmp_path):
    _make_folder(tmp_path)
    lazy = load_hw4_folder(tmp_path, preload=False)
    assert lazy.features is None
    torch.testing.assert_close(lazy.load(3), load_hw4_folder(tmp_path).features[3])
    small = load_hw4_folder(tmp_path, max_speakers=2)
    assert small.speaker_ids.tolist() == [0, 0, 1] and small.speaker2id == {"spkA": 0, "spkB": 1}
    with pytest.raises(ValueError, match="max_speakers"):
        load_hw4_folder(tmp_path, max_speakers=0)


def test_missing_folder_and_json(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_hw4_folder(tmp_path / "nope")
    _make_folder(tmp_path)
    (tmp_path / "mapping.json").unlink()
    with pytest.raises(DataError, match=r"mapping\.json is missing.*HW4 data folder"):
        load_hw4_folder(tmp_path)


def test_missing_metadata_and_malformed_json(tmp_path):
    _make_folder(tmp_path)
    (tmp_path / "metadata.json").unlink()
    with pytest.raises(DataError, match=r"metadata\.json is missing"):
        load_hw4_folder(tmp_path)
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(DataError, match=r"metadata\.json: not a readable JSON file"):
        load_hw4_folder(tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({"speakers": {}}))
    with pytest.raises(DataError, match=r"metadata\.json: expected .*n_mels"):
        load_hw4_folder(tmp_path)
    (tmp_path / "mapping.json").write_text(json.dumps({"id2speaker": {}}))
    with pytest.raises(DataError, match=r"mapping\.json: expected .*speaker2id"):
        load_hw4_folder(tmp_path)


def test_speaker_missing_from_mapping(tmp_path):
    _make_folder(tmp_path)
    mapping = json.loads((tmp_path / "mapping.json").read_text())
    del mapping["speaker2id"]["spkB"]
    (tmp_path / "mapping.json").write_text(json.dumps(mapping))
    with pytest.raises(DataError, match=r"speaker 'spkB' is not in .*mapping\.json"):
        load_hw4_folder(tmp_path)


def test_missing_or_malformed_feature_files(tmp_path):
    _make_folder(tmp_path)
    (tmp_path / "uttr-001.pt").unlink()
    with pytest.raises(DataError, match=r"uttr-001\.pt is missing.*re-extract"):
        load_hw4_folder(tmp_path)
    load_hw4_folder(tmp_path, preload=False)  # the JSON alone is fine
    (tmp_path / "uttr-001.pt").write_bytes(b"not a tensor file")
    with pytest.raises(DataError, match=r"uttr-001\.pt: cannot read it as a tensor file"):
        load_hw4_folder(tmp_path)
    torch.save(torch.zeros(3, N_MELS + 1), tmp_path / "uttr-001.pt")
    with pytest.raises(DataError, match=r"uttr-001\.pt: expected a \(frames, n_mels=4\) float tensor, got shape \(3"):
        load_hw4_folder(tmp_path)
    torch.save(torch.zeros(3, N_MELS, 1), tmp_path / "uttr-001.pt")
    with pytest.raises(DataError, match=r"got shape \(3, 4, 1\)"):
        load_hw4_folder(tmp_path)
    torch.save(torch.zeros(6, N_MELS), tmp_path / "uttr-001.pt")
    with pytest.raises(DataError, match=r"6 frames, but metadata\.json says mel_len=3"):
        load_hw4_folder(tmp_path)
    torch.save({"mel": torch.zeros(3, N_MELS)}, tmp_path / "uttr-001.pt")
    with pytest.raises(DataError, match="got dict"):
        read_hw4_feature(tmp_path / "uttr-001.pt", N_MELS)


def test_wrong_n_mels_in_metadata(tmp_path):
    _make_folder(tmp_path)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    meta["n_mels"] = 40
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"uttr-000\.pt: expected a \(frames, n_mels=40\)"):
        load_hw4_folder(tmp_path)


# -------------------------------------------------------------------------------------- random segment
def test_random_segment_crops_a_window_uniformly():
    x = torch.arange(10.0)[:, None].repeat(1, 3)  # frame t holds t
    g = torch.Generator().manual_seed(0)
    starts = []
    for _ in range(300):
        seg, n = random_segment(x, 4, g)
        assert seg.shape == (4, 3) and n == 4
        start = int(seg[0, 0])
        torch.testing.assert_close(seg, x[start:start + 4])  # a contiguous window
        starts.append(start)
    assert set(starts) == set(range(7))  # every start 0..L-segment_len is drawn
    a = [random_segment(x, 4, torch.Generator().manual_seed(5))[0] for _ in range(2)]
    torch.testing.assert_close(a[0], a[1])  # same seed, same crop


def test_random_segment_pads_short_utterances():
    x = torch.ones(3, 2)
    seg, n = random_segment(x, 5)
    assert n == 3 and seg.shape == (5, 2)
    torch.testing.assert_close(seg[:3], x)
    assert torch.all(seg[3:] == HW4_PAD_VALUE)
    seg, n = random_segment(x, 3)
    assert n == 3 and torch.equal(seg, x)
    with pytest.raises(ValueError, match="segment_len"):
        random_segment(x, 0)
    with pytest.raises(ValueError, match="features"):
        random_segment(torch.ones(3), 2)
