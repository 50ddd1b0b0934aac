"""Frame tables (HW2): per-utterance CMVN, global statistics, frame windows and padded utterance batches against
each utterance, index batches in the order of TensorBatches, and predictions in frame order."""

from __future__ import annotations

import torch

from deepnotes.data.frames import IGNORE_INDEX, IndexBatches, frame_table, normalize_utterances, predict_frames
from deepnotes.data.phonemes import FrameCorpus
from deepnotes.models.framewise import concat_frames
from deepnotes.train import TensorBatches


def _tiny_corpora(test_labels: bool = True):
    g = torch.Generator().manual_seed(0)
    out = {}
    for split, lengths in (("train", [5, 3, 7]), ("validation", [4]), ("test", [6, 2])):
        n = sum(lengths)
        labels = torch.randint(0, 41, (n,), generator=g)
        out[split] = FrameCorpus(torch.randn(n, 39, generator=g) * 3 + 1, labels if split != "test" or test_labels else None,
                                 torch.tensor(lengths), tuple(f"{split}{i}" for i in range(len(lengths))))
    return out


def test_cmvn_normalizes_each_utterance():
    c = _tiny_corpora()["train"]
    out = normalize_utterances(c)
    o = c.offsets.tolist()
    for u in range(len(c)):
        x = out[o[u]: o[u + 1]].double()
        torch.testing.assert_close(x.mean(0), torch.zeros(39, dtype=torch.float64), atol=1e-6, rtol=0)
        torch.testing.assert_close(x.std(0, unbiased=False), torch.ones(39, dtype=torch.float64), atol=1e-5, rtol=0)


def test_frame_windows_and_utterance_batches_match_each_utterance():
    corpora = _tiny_corpora()
    table = frame_table(corpora)
    assert table.utt_split["test"].tolist() == [4, 5] and table.stats is None
    frames = table.frames("train")
    x, y = table.window_batch(frames, 5, torch.device("cpu"))
    expected = torch.cat([concat_frames(table.features[int(table.offsets[u]): int(table.offsets[u + 1])], 5)
                          for u in range(3)])
    torch.testing.assert_close(x, expected, rtol=0, atol=0)  # windows never cross an utterance's edge
    assert torch.equal(y, corpora["train"].labels)
    (xb, lengths), yb = table.utterance_batch(torch.tensor([1, 2]), torch.device("cpu"))
    assert xb.shape == (2, 7, 39) and lengths.tolist() == [3, 7]
    torch.testing.assert_close(xb[0, :3], table.features[5:8], rtol=0, atol=0)
    assert (xb[0, 3:] == 0).all() and (yb[0, 3:] == IGNORE_INDEX).all()
    assert torch.equal(yb[1], corpora["train"].labels[8:15])


def test_global_statistics_instead_of_cmvn():
    corpora = _tiny_corpora(test_labels=False)
    table = frame_table(corpora, cmvn=False)
    tr = table.features[table.frames("train")].double()
    torch.testing.assert_close(tr.mean(0), torch.zeros(39, dtype=torch.float64), atol=1e-5, rtol=0)
    assert len(table.stats[0]) == 39 and table.labelled == {"train": True, "validation": True, "test": False}
    assert (table.labels[table.frames("test")] == IGNORE_INDEX).all()
    again = frame_table({"test": corpora["test"]}, cmvn=False, stats=table.stats)  # a run's statistics, re-applied
    torch.testing.assert_close(again.features, table.features[table.frames("test")])


def test_index_batches_follow_tensor_batches():
    index = torch.arange(10, 33)
    batches = IndexBatches(index, lambda i: i * 2, 4, seed=3)
    ref = TensorBatches((index,), 4, 3)
    assert len(batches) == len(ref) == 6
    for e in (0, 1):
        assert [b.tolist() for b in batches.epoch(e)] == [(2 * b).tolist() for (b,) in ref.epoch(e)]
    assert torch.cat(list(IndexBatches(index, lambda i: i, 5, shuffle=False))).tolist() == index.tolist()


def test_predict_frames_in_frame_order():
    table = frame_table(_tiny_corpora())

    class First(torch.nn.Module):  # class = the sign of the first feature of the centre frame
        def forward(self, x, lengths=None):
            f = x[..., 39 * 1] if x.ndim == 2 else x[..., 0]
            return torch.stack([-f, f], dim=-1)

    frames = table.frames("test")
    by_window = predict_frames(First(), table, "test", torch.device("cpu"), context=3)
    by_utterance = predict_frames(First(), table, "test", torch.device("cpu"), sequence=True)
    expected = (table.features[frames, 0] > 0).long()
    assert torch.equal(by_window, expected) and torch.equal(by_utterance, expected)
