"""ViT and MAE: patches, masking, the loss by hand, torch's encoder layer as the reference, weight transfer."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from deepnotes.nn.transformer import copy_weights_from_torch
from deepnotes.nn.vit import (
    MAE,
    PatchEmbed,
    ViT,
    mae_loss,
    normalize_patches,
    patchify,
    random_masking,
    sincos_2d_pos_embed,
    unpatchify,
)

pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")

TINY = dict(image_size=8, patch_size=4, in_channels=2, d_model=8, depth=2, n_heads=2)  # 4 patches of 32 values


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _perturb(module: nn.Module, seed: int) -> None:
    """Non-trivial weights everywhere (LayerNorms start at 1/0, biases at 0)."""
    g = _gen(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


# ------------------------------------------------------------------------------------------------ patches
def test_patchify_order_by_hand():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)  # C=2, 4x4, p=2 -> 4 patches of 8
    patches = patchify(x, 2)
    assert patches.shape == (1, 4, 8)
    # patch 1 = top-right block (rows 0-1, columns 2-3), flattened (row, column, channel)
    expected = [x[0, c, r, q].item() for r in (0, 1) for q in (2, 3) for c in (0, 1)]
    assert patches[0, 1].tolist() == expected
    assert patches[0, 2].tolist() == [x[0, c, r, q].item() for r in (2, 3) for q in (0, 1) for c in (0, 1)]


def test_patchify_unpatchify_are_inverses():
    x = torch.randn(2, 3, 8, 12, generator=_gen(0))
    p = patchify(x, 4)
    assert p.shape == (2, 6, 48)
    assert torch.equal(unpatchify(p, 4, (8, 12)), x)
    sq = torch.randn(3, 1, 28, 28, generator=_gen(1))
    assert torch.equal(unpatchify(patchify(sq, 4), 4), sq)
    q = torch.randn(2, 49, 16, generator=_gen(2))
    assert torch.equal(patchify(unpatchify(q, 4), 4), q)


def test_patch_count():
    embed = PatchEmbed(28, 4, 1, 64)
    assert (embed.grid_size, embed.num_patches) == ((7, 7), 49)
    assert embed(torch.zeros(2, 1, 28, 28)).shape == (2, 49, 64)
    rect = PatchEmbed((28, 16), 4, 3, 8)
    assert (rect.grid_size, rect.num_patches) == ((7, 4), 28)
    assert rect(torch.zeros(1, 3, 28, 16)).shape == (1, 28, 8)


def test_patch_errors():
    with pytest.raises(ValueError, match=r"image_size=28 is not divisible by patch_size=5"):
        PatchEmbed(28, 5, 1, 64)
    with pytest.raises(ValueError, match=r"image size 28x28 is not divisible by patch_size=3"):
        patchify(torch.zeros(1, 1, 28, 28), 3)
    with pytest.raises(ValueError, match=r"not a multiple of patch_size\*\*2"):
        unpatchify(torch.zeros(1, 49, 15), 4)
    with pytest.raises(ValueError, match="not a square grid"):
        unpatchify(torch.zeros(1, 28, 16), 4)
    with pytest.raises(ValueError, match=r"PatchEmbed expects images \(B, 1, 28, 28\)"):
        PatchEmbed(28, 4, 1, 8)(torch.zeros(1, 3, 28, 28))


def test_patch_embed_equals_linear_on_patches():
    embed = PatchEmbed(8, 4, 3, 5).double()
    x = torch.randn(2, 3, 8, 8, generator=_gen(0), dtype=torch.float64)
    w = embed.proj.weight.permute(0, 2, 3, 1).reshape(5, -1)  # (d_model, p p C) in patchify's order
    expected = patchify(x, 4) @ w.T + embed.proj.bias
    torch.testing.assert_close(embed(x), expected)


# ------------------------------------------------------------------------------------------------ ViT
def test_vit_shapes():
    vit = ViT()
    x = torch.rand(3, 1, 28, 28)
    assert vit(x).shape == (3, 10)
    assert vit.features(x).shape == (3, 50, 64)
    assert len(vit.blocks) == 4 and vit.blocks[0].ff.linear1.out_features == 256
    with pytest.raises(ValueError, match="must be divisible by n_heads"):
        ViT(d_model=30, n_heads=4)


def test_vit_init():
    vit = ViT(d_model=64)
    for p in (vit.pos_embed, vit.cls_token, vit.blocks[0].self_attn.q_proj.weight):
        assert p.abs().max() <= 0.04 + 1e-7  # truncated at 2 std
        assert 0.012 < p.std() < 0.022
    assert torch.count_nonzero(vit.head.bias) == 0


def test_vit_every_patch_reaches_class_token():
    torch.manual_seed(0)
    vit = ViT(depth=1)
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    vit(x).sum().backward()
    per_patch = patchify(x.grad.abs(), 4).sum(-1)  # (1, 49)
    assert bool((per_patch > 0).all())
    y = x.detach().clone()
    y[..., 24:, 24:] += 1.0  # the last patch only
    assert not torch.allclose(vit(x), vit(y))


def test_vit_features_hand_composition():
    torch.manual_seed(0)
    vit = ViT(use_fused=False).double()
    _perturb(vit, 1)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)  # (B, 49, d)
    h = torch.cat([vit.cls_token.expand(2, -1, -1), tokens], 1) + vit.pos_embed
    for block in vit.blocks:
        a = block.norm1(h)
        h = h + block.self_attn(a, a, a)[0]
        h = h + block.ff.linear2(torch.nn.functional.gelu(block.ff.linear1(block.norm2(h))))
    h = vit.norm(h)
    torch.testing.assert_close(vit.features(x), h, atol=1e-6, rtol=0)
    torch.testing.assert_close(vit(x), vit.head(h[:, 0]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("use_fused", [False, True])
def test_vit_encoder_matches_torch_layers(use_fused):
    torch.manual_seed(0)
    vit = ViT(depth=2, use_fused=use_fused)
    refs = [nn.TransformerEncoderLayer(64, 4, dim_feedforward=256, dropout=0.0, activation="gelu",
                                       layer_norm_eps=1e-6, batch_first=True, norm_first=True) for _ in range(2)]
    for i, ref in enumerate(refs):
        _perturb(ref, 10 + i)
        copy_weights_from_torch(vit.blocks[i], ref)
    _perturb(vit.norm, 3)
    x = torch.rand(2, 1, 28, 28)
    tokens = torch.randn(2, 50, 64, generator=_gen(4))
    torch.testing.assert_close(vit.blocks[0](tokens), refs[0](tokens), atol=1e-5, rtol=0)
    h = torch.cat([vit.cls_token.expand(2, -1, -1), vit.patch_embed(x)], 1) + vit.pos_embed
    for ref in refs:
        h = ref(h)
    ref_norm = nn.LayerNorm(64, eps=1e-6)
    ref_norm.load_state_dict(vit.norm.state_dict())
    torch.testing.assert_close(vit.features(x), ref_norm(h), atol=1e-5, rtol=0)


def test_vit_fused_equals_readable_and_batched_equals_one_by_one():
    torch.manual_seed(0)
    vit = ViT(depth=2)
    x = torch.rand(3, 1, 28, 28)
    fused = vit(x)
    for m in vit.modules():
        if hasattr(m, "use_fused"):
            m.use_fused = False
    torch.testing.assert_close(vit(x), fused, atol=1e-5, rtol=0)
    one_by_one = torch.cat([vit(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(one_by_one, fused, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ masking
@pytest.mark.parametrize("N,ratio,kept", [(49, 0.75, 12), (10, 0.9, 1), (16, 0.75, 4), (4, 0.5, 2), (49, 0.0, 49)])
def test_random_masking_counts(N, ratio, kept):
    x = torch.randn(5, N, 3, generator=_gen(0))
    x_kept, mask, ids_restore = random_masking(x, ratio, _gen(1))
    assert x_kept.shape == (5, kept, 3)
    assert mask.shape == ids_restore.shape == (5, N)
    assert mask.sum(1).tolist() == [N - kept] * 5
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    # the kept tokens are exactly the rows of x where mask == 0
    for b in range(5):
        rows = x[b][mask[b] == 0]
        assert torch.equal(rows[rows[:, 0].argsort()], x_kept[b][x_kept[b, :, 0].argsort()])


def test_random_masking_unshuffle():
    x = torch.randn(4, 49, 6, generator=_gen(0))
    x_kept, mask, ids_restore = random_masking(x, 0.75, _gen(1))
    assert torch.equal(ids_restore.sort(1).values, torch.arange(49).expand(4, -1))  # a permutation
    filler = torch.zeros(4, 49 - 12, 6)
    restored = torch.cat([x_kept, filler], 1).gather(1, ids_restore[..., None].expand(-1, -1, 6))
    visible = (mask == 0)[..., None]
    assert torch.equal(restored, torch.where(visible, x, torch.zeros(())))
    # shuffled position i of a token at original position n: ids_restore[b, n]; kept ones are < K
    assert torch.equal(mask, (ids_restore >= 12).float())


def test_random_masking_deterministic_and_errors():
    x = torch.randn(3, 49, 4)
    a, b = random_masking(x, 0.75, _gen(7)), random_masking(x, 0.75, _gen(7))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = random_masking(x, 0.75, _gen(8))
    assert not torch.equal(a[1], c[1])
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="mask_ratio must be in"):
            random_masking(x, bad)
    with pytest.raises(ValueError, match=r"x must be \(B, N, D\)"):
        random_masking(torch.zeros(49, 4), 0.5)


def test_sincos_matches_official_numpy():
    def official(embed_dim, grid_size):  # MAE util/pos_embed.py, transcribed
        def one_d(dim, pos):
            omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
            omega = 1.0 / 10000 ** omega
            out = np.einsum("m,d->md", pos.reshape(-1), omega)
            return np.concatenate([np.sin(out), np.cos(out)], axis=1)

        g = np.arange(grid_size, dtype=np.float64)
        grid = np.stack(np.meshgrid(g, g), axis=0).reshape([2, 1, grid_size, grid_size])
        emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
        return np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)

    ours = sincos_2d_pos_embed(16, 3, cls_token=True)
    assert ours.shape == (10, 16)
    np.testing.assert_allclose(ours.numpy(), official(16, 3), atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d_pos_embed(10, 3)


# ------------------------------------------------------------------------------------------------ MAE
def _hand_targets(images: torch.Tensor, p: int, norm: bool) -> torch.Tensor:
    """Patches by explicit loops (row-major; each in (row, column, channel) order), normalized per patch."""
    B, _, H, W = images.shape
    out = []
    for b in range(B):
        patches = []
        for i in range(0, H, p):
            for j in range(0, W, p):
                v = images[b, :, i:i + p, j:j + p].permute(1, 2, 0).reshape(-1)
                if norm:
                    m = v.sum() / v.numel()
                    var = ((v - m) ** 2).sum() / (v.numel() - 1)
                    v = (v - m) / torch.sqrt(var + 1e-6)
                patches.append(v)
        out.append(torch.stack(patches))
    return torch.stack(out)


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_mae_loss_by_hand(norm_pix_loss):
    torch.manual_seed(0)
    mae = MAE(**TINY, decoder_d_model=4, decoder_depth=1, decoder_n_heads=1, mask_ratio=0.5,
              norm_pix_loss=norm_pix_loss).double()
    images = torch.rand(3, 2, 8, 8, dtype=torch.float64)
    loss, pred, mask = mae(images, generator=_gen(5))
    assert pred.shape == (3, 4, 32) and mask.sum().item() == 6
    target = _hand_targets(images, 4, norm_pix_loss)
    total, count = 0.0, 0
    for b in range(3):
        for n in range(4):
            if mask[b, n] == 1:
                total += ((pred[b, n] - target[b, n]) ** 2).mean()
                count += 1
    torch.testing.assert_close(loss, total / count)
    torch.testing.assert_close(mae_loss(pred, mae.targets(images), mask), loss)


def test_mae_loss_ignores_visible_patches():
    torch.manual_seed(0)
    mae = MAE(**TINY, decoder_d_model=4, decoder_depth=1, decoder_n_heads=1, mask_ratio=0.5)
    images = torch.rand(4, 2, 8, 8)
    latent, mask, ids_restore = mae.forward_encoder(images, generator=_gen(3))
    pred = mae.forward_decoder(latent, ids_restore)
    pred.retain_grad()
    mae_loss(pred, mae.targets(images), mask).backward()
    g = pred.grad.abs().sum(-1)  # (B, N)
    assert bool((g[mask == 0] == 0).all()) and bool((g[mask == 1] > 0).all())
    with pytest.raises(ValueError, match="mae_loss"):
        mae_loss(pred, pred[:, :2], mask)


def test_mae_encoder_sees_only_visible_patches():
    torch.manual_seed(0)
    mae = MAE()
    images = torch.rand(2, 1, 28, 28)
    latent, mask, _ = mae.forward_encoder(images, generator=_gen(1))
    assert latent.shape == (2, 13, 64) and mask.sum(1).tolist() == [37.0, 37.0]
    changed = patchify(images, 4) + 5.0 * mask[..., None]  # alter the masked patches only
    latent2, _, _ = mae.forward_encoder(unpatchify(changed, 4), generator=_gen(1))
    torch.testing.assert_close(latent2, latent)
    loss, pred, mask2 = mae(images, generator=_gen(1))
    assert pred.shape == (2, 49, 16) and torch.equal(mask2, mask) and loss.ndim == 0
    assert not mae.pos_embed.requires_grad and not mae.decoder_pos_embed.requires_grad
    assert MAE(learned_pos_embed=True).pos_embed.requires_grad


def test_mae_no_masking_shapes():
    torch.manual_seed(0)
    mae = MAE(mask_ratio=0.0)
    images = torch.rand(2, 1, 28, 28)
    latent, mask, _ = mae.forward_encoder(images)
    assert latent.shape == (2, 50, 64) and mask.sum() == 0
    loss, pred, mask = mae(images)
    assert pred.shape == (2, 49, 16) and loss.item() == 0.0
    with pytest.raises(ValueError, match="mask_ratio must be in"):
        MAE(mask_ratio=1.0)


def test_mae_decoder_unshuffles():
    """With nothing masked, the encoder is permutation-equivariant and the decoder sees the original order, so
    pred does not depend on the random shuffle (it would, were ids_restore not applied)."""
    torch.manual_seed(0)
    mae = MAE(mask_ratio=0.0, depth=1, decoder_depth=1).double()
    images = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    _, pred_a, _ = mae(images, generator=_gen(1))
    _, pred_b, _ = mae(images, generator=_gen(2))
    torch.testing.assert_close(pred_a, pred_b, atol=1e-10, rtol=0)


def test_weight_transfer_into_vit():
    torch.manual_seed(0)
    mae = MAE(mask_ratio=0.0).double()
    _perturb(mae, 1)
    vit = ViT(num_classes=10).double()
    head = vit.head.weight.clone()
    assert vit.load_mae_encoder(mae) is vit
    assert torch.equal(vit.head.weight, head) and vit.pos_embed.requires_grad
    images = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    latent, _, ids_restore = mae.forward_encoder(images, generator=_gen(2))
    unshuffled = latent[:, 1:].gather(1, ids_restore[..., None].expand(-1, -1, 64))
    feats = vit.features(images)
    torch.testing.assert_close(feats[:, 1:], unshuffled, atol=1e-6, rtol=0)
    torch.testing.assert_close(feats[:, 0], latent[:, 0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="shape mismatch"):
        ViT(n_heads=8).load_mae_encoder(mae)


@pytest.fixture
def one_thread():
    """One intra-op thread: on a small shared machine, extra threads make these tiny steps slower, not faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train_mae(steps: int, lr: float) -> list[float]:
    """Adam on a fixed batch of 16 gratings a_i sin(0.5 x + 0.3 y) + b_i: once normalized per patch, the target
    depends on the patch position only, so the decoder can learn it; a fresh mask each step."""
    torch.manual_seed(0)
    g = _gen(0)
    grid = torch.arange(28.0)
    a, b = 0.5 + torch.rand(16, 1, 1, 1, generator=g), torch.randn(16, 1, 1, 1, generator=g)
    images = a * torch.sin(0.5 * grid[None, :] + 0.3 * grid[:, None]) + b  # (16, 1, 28, 28)
    mae = MAE(depth=1, decoder_depth=1)
    opt = torch.optim.Adam(mae.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        loss, _, _ = mae(images, generator=_gen(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    return losses


def test_mae_training_smoke(one_thread):
    start = time.perf_counter()
    losses = _train_mae(30, 3e-3)
    # 30 steps remove the initial output offset (about 1.95 -> 0.94, the predict-zero level 15/16 of a
    # normalized 16-pixel patch); learning the pattern itself takes ~100+ steps (the slow test below)
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0], losses
    assert time.perf_counter() - start < 5.0


@pytest.mark.slow
def test_mae_learns_the_pattern(one_thread):
    losses = _train_mae(200, 3e-3)
    assert sum(losses[-5:]) / 5 < 0.5, losses  # well below the predict-zero level 15/16


def test_normalize_patches():
    p = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    out = normalize_patches(p)
    var = torch.tensor(5.0 / 3.0)  # unbiased
    torch.testing.assert_close(out, (p - 2.5) / torch.sqrt(var + 1e-6))
    with pytest.raises(ValueError, match=">= 2 values"):
        normalize_patches(torch.zeros(1, 2, 1))
