"""Vision Transformer (ViT) and Masked Autoencoder (MAE): images as sequences of patches.

Sources: ML2022 self-supervised lectures (the course's ViT and MAE digests in seed 004: "cut the image into
fixed-size patches, a linear map gives patch embeddings, the analogue of word embeddings; only the Transformer
encoder is used"; MAE "randomly masks patches and reconstructs the missing regions; an asymmetric
encoder-decoder; a high mask ratio, 75%"). Papers: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale", §3.1 eq. 1-4; He et al. 2022, "Masked Autoencoders Are
Scalable Vision Learners", §3; the official MAE code (``models_mae.py``, ``util/pos_embed.py``) for the
details below.

ViT (:class:`ViT`), with x_p^i the i-th flattened patch (p·p·C pixels) and E a linear map::

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos                  E_pos: (1 + N, d_model), learned
    z'_l = z_{l-1} + MSA(LN(z_{l-1}))       z_l = z'_l + MLP(LN(z'_l))        l = 1..depth
    y = head(LN(z_depth)[class])

MAE (:class:`MAE`)::

    tokens = patch_embed(x) + E_pos[1:]        keep a random 1 - mask_ratio of them (:func:`random_masking`)
    latent = LN(Encoder([x_class + E_pos[0]; kept]))                    the encoder never sees masked patches
    z = Linear(latent); append mask tokens; unshuffle with ids_restore; + E_pos^dec; Decoder; LN; Linear
    loss = mean over MASKED patches of mean_pixels (pred - target)²,  target = patch normalized per patch

Both are built from :class:`deepnotes.nn.transformer.TransformerEncoderLayer` (``norm_first=True``,
``activation="gelu"``, ``dim_feedforward = int(d_model * mlp_ratio)``) and :class:`LayerNorm`.

Deliberate choices, where the sources differ:

* Patch pixels are flattened in (row p, column q, channel C) order and patches row-major, as the official
  MAE ``patchify``; :class:`PatchEmbed`'s Conv2d (kernel = stride = p) equals a Linear on these vectors.
* LayerNorm eps is 1e-6 (timm and MAE); torch's default is 1e-5.
* ViT: the class token and position embeddings are drawn from a normal N(0, 0.02²) truncated at ±2σ (timm's
  ``trunc_normal_(std=.02)`` cuts at ±2 *absolute*, i.e. no cut; JAX ViT has a plain normal for positions and
  zeros for the class token); Linear weights the same, biases 0 (timm). The head is one Linear (the paper's
  fine-tuning head; its pre-training head has a hidden layer). Dropout is applied after adding positions,
  inside each block (attention weights, sub-layer outputs, MLP) as in the project's layer.
* MAE: position embeddings are the fixed 2-D sine-cosine table of the paper and the official code
  (:func:`sincos_2d_pos_embed`, not trained); ``learned_pos_embed=True`` gives learned ones instead (ViT's
  init). Linear weights are Xavier-uniform, biases 0; class and mask tokens N(0, 0.02²), as the official code
  (our q, k, v are three Linears, each Xavier-initialised: the JAX ViT's init, not a packed (3d, d) matrix).
* The number of kept patches is ``round(N * (1 - mask_ratio))`` (Python's round, half to even); the
  official code truncates with ``int()``. Both keep 12 of N = 49 patches at mask_ratio 0.75 (49 · 0.25 =
  12.25), masking 37, but ``int()`` can lose one to float error (``int(10 * (1 - 0.9)) == 0``).
* With ``norm_pix_loss`` the per-patch variance is the unbiased one (``Tensor.var``'s default, as the official
  code). When no patch is masked (mask_ratio 0) the loss is 0, not 0/0 = NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from deepnotes.nn.normalization import LayerNorm
from deepnotes.nn.transformer import TransformerEncoderLayer

__all__ = ["MAE", "PatchEmbed", "ViT", "mae_loss", "normalize_patches", "patchify", "random_masking",
           "sincos_2d_pos_embed", "unpatchify"]

LN_EPS = 1e-6  # timm / MAE LayerNorm epsilon


def _pair(size: int | tuple[int, int], name: str) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return h, w


# ------------------------------------------------------------------------------------------------ patches
def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into non-overlapping patches and flatten each: (B, C, H, W) -> (B, N, p·p·C).

    Patches are numbered row-major (N = (H/p)·(W/p)); each patch vector is in (row, column, channel) order,
    as the official MAE ``patchify``. :func:`unpatchify` is the exact inverse.

    Args:
        images: (B, C, H, W).
        patch_size: p, the side of a square patch in pixels; must divide H and W.

    Returns:
        (B, N, p·p·C) patches.

    Raises:
        ValueError: images not 4-D, or H or W not divisible by ``patch_size``.

    Example::

        patches = patchify(torch.rand(8, 1, 28, 28), 4)  # (8, 49, 16)
    """
    if images.dim() != 4:
        raise ValueError(f"patchify: images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if patch_size < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch_size}")
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"patchify: image size {H}x{W} is not divisible by patch_size={p}; choose a patch_size "
                         f"that divides both sides or resize the images")
    h, w = H // p, W // p
    x = images.reshape(B, C, h, p, w, p)  # (B, C, h, p, w, q)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, q, C)
    return x.reshape(B, h * w, p * p * C)  # (B, N, p p C)


def unpatchify(patches: Tensor, patch_size: int, image_size: int | tuple[int, int] | None = None) -> Tensor:
    """Reassemble flattened patches into images, the inverse of :func:`patchify`: (B, N, p·p·C) -> (B, C, H, W).

    Args:
        patches: (B, N, p·p·C), patches row-major, each in (row, column, channel) order.
        patch_size: p.
        image_size: H (square) or (H, W). Default None: a square image, N must be a perfect square.

    Raises:
        ValueError: patches not 3-D, a feature size not a multiple of p·p, or N not matching ``image_size``.
    """
    if patches.dim() != 3:
        raise ValueError(f"unpatchify: patches must be (B, N, p*p*C), got shape {tuple(patches.shape)}")
    if patch_size < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch_size}")
    B, N, F = patches.shape
    p = patch_size
    if F % (p * p):
        raise ValueError(f"unpatchify: feature size {F} is not a multiple of patch_size**2 = {p * p}")
    C = F // (p * p)
    if image_size is None:
        h = w = math.isqrt(N)
        if h * w != N:
            raise ValueError(f"unpatchify: N={N} patches is not a square grid; pass image_size=(H, W)")
    else:
        H, W = _pair(image_size, "image_size")
        if H % p or W % p or (H // p) * (W // p) != N:
            raise ValueError(f"unpatchify: image_size={image_size!r} with patch_size={p} does not give N={N} "
                             f"patches")
        h, w = H // p, W // p
    x = patches.reshape(B, h, w, p, p, C)  # (B, h, w, p, q, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, q)
    return x.reshape(B, C, h * p, w * p)


class PatchEmbed(nn.Module):
    """Split an image into p x p patches and map each linearly to d_model (ViT eq. 1, ``x_p E``).

    A Conv2d with kernel = stride = p, which equals ``patchify(x, p) @ W^T + b`` with
    ``W = proj.weight.permute(0, 2, 3, 1).reshape(d_model, -1)`` (tested).

    Args:
        image_size: H (square) or (H, W), pixels.
        patch_size: p, pixels; must divide H and W.
        in_channels: C.
        d_model: embedding size.

    Attributes:
        grid_size: (H/p, W/p); num_patches: N = (H/p)·(W/p).

    Shapes:
        images: (B, C, H, W) -> (B, N, d_model).

    Raises:
        ValueError: ``image_size`` not divisible by ``patch_size``, non-positive sizes; in forward, images of
            another shape.

    Example::

        embed = PatchEmbed(28, 4, 1, 64)  # 49 patches
        tokens = embed(torch.rand(8, 1, 28, 28))  # (8, 49, 64)
    """

    def __init__(self, image_size: int | tuple[int, int], patch_size: int, in_channels: int, d_model: int):
        super().__init__()
        H, W = _pair(image_size, "image_size")
        if patch_size < 1 or in_channels < 1 or d_model < 1:
            raise ValueError(f"patch_size, in_channels, d_model must be >= 1, got {patch_size}, {in_channels}, "
                             f"{d_model}")
        if H % patch_size or W % patch_size:
            raise ValueError(f"image_size={image_size!r} is not divisible by patch_size={patch_size}; choose a "
                             f"patch_size that divides both sides (28: 1, 2, 4, 7, 14, 28)")
        self.image_size, self.patch_size, self.in_channels, self.d_model = (H, W), patch_size, in_channels, d_model
        self.grid_size = (H // patch_size, W // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_channels, d_model, kernel_size=patch_size, stride=patch_size)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, patch_size={self.patch_size}, num_patches={self.num_patches}"

    def forward(self, images: Tensor) -> Tensor:
        expected = (self.in_channels, *self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"PatchEmbed expects images (B, {expected[0]}, {expected[1]}, {expected[2]}), got "
                             f"shape {tuple(images.shape)}")
        return self.proj(images).flatten(2).transpose(1, 2)  # (B, d_model, h, w) -> (B, N, d_model)


def sincos_2d_pos_embed(d_model: int, grid_size: int | tuple[int, int], cls_token: bool = False) -> Tensor:
    """The fixed 2-D sine-cosine position table of MAE (official ``get_2d_sincos_pos_embed``).

    For patch n at (row r, column c): the first d_model/2 features encode c, the last d_model/2 encode r, each
    half ``[sin(pos ω_k), cos(pos ω_k)]`` with ``ω_k = 1 / 10000^(k / (d_model/4))``, k = 0..d_model/4 - 1.

    Args:
        d_model: feature size, a multiple of 4.
        grid_size: patches per side (square) or (rows, columns).
        cls_token: prepend a row of zeros (the class token's position). Default False.

    Returns:
        (N, d_model), or (1 + N, d_model) with ``cls_token``; default dtype.

    Raises:
        ValueError: ``d_model`` not a multiple of 4.
    """
    if d_model < 4 or d_model % 4:
        raise ValueError(f"sincos_2d_pos_embed: d_model={d_model} must be a positive multiple of 4 (use learned "
                         f"position embeddings otherwise)")
    gh, gw = _pair(grid_size, "grid_size")
    rows = torch.arange(gh, dtype=torch.float64).repeat_interleave(gw)  # (N,) row of patch n (row-major)
    cols = torch.arange(gw, dtype=torch.float64).repeat(gh)  # (N,) column of patch n
    quarter = d_model // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (d_model/4,)

    def half(pos: Tensor) -> Tensor:
        angle = pos[:, None] * omega[None, :]  # (N, d_model/4)
        return torch.cat([angle.sin(), angle.cos()], dim=1)  # (N, d_model/2)

    table = torch.cat([half(cols), half(rows)], dim=1)  # (N, d_model)
    if cls_token:
        table = torch.cat([torch.zeros(1, d_model, dtype=torch.float64), table])
    return table.to(torch.get_default_dtype())


# ------------------------------------------------------------------------------------------------ masking
def random_masking(x: Tensor, mask_ratio: float, generator: torch.Generator | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Keep a random subset of each sample's tokens (MAE §3, "random sampling"; official ``random_masking``).

    Per sample, uniform noise is argsorted (ascending) into a random permutation ``ids_shuffle``; its first
    ``K = round(N * (1 - mask_ratio))`` positions are kept (Python's round; N = 49 at 0.75 keeps 12, masks 37).
    ``ids_restore = argsort(ids_shuffle)`` is the inverse permutation: for a sequence in shuffled order,
    ``seq.gather(1, ids_restore)`` puts it back in the original order (the decoder's unshuffle).

    Args:
        x: (B, N, D) tokens.
        mask_ratio: fraction of tokens removed, in [0, 1).
        generator: for the noise (reproducible masks). Default None: the global RNG.

    Returns:
        ``(x_kept, mask, ids_restore)``: x_kept (B, K, D) the kept tokens in shuffled order; mask (B, N) float,
        1 = removed, 0 = kept, in the original order; ids_restore (B, N) int64.

    Raises:
        ValueError: x not 3-D, or mask_ratio outside [0, 1).

    Example::

        kept, mask, ids_restore = random_masking(tokens, 0.75, torch.Generator().manual_seed(0))
    """
    if x.dim() != 3:
        raise ValueError(f"random_masking: x must be (B, N, D), got shape {tuple(x.shape)}")
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    B, N, D = x.shape
    len_keep = round(N * (1.0 - mask_ratio))
    noise_device = x.device if generator is None else generator.device
    noise = torch.rand(B, N, generator=generator, device=noise_device).to(x.device)  # (B, N)
    ids_shuffle = noise.argsort(dim=1)  # (B, N): the smallest noise is kept
    ids_restore = ids_shuffle.argsort(dim=1)  # (B, N): inverse permutation
    ids_keep = ids_shuffle[:, :len_keep]  # (B, K)
    x_kept = x.gather(1, ids_keep[..., None].expand(-1, -1, D))  # (B, K, D)
    mask = torch.ones(B, N, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    mask[:, :len_keep] = 0  # in shuffled order ...
    mask = mask.gather(1, ids_restore)  # ... then back in the original order
    return x_kept, mask, ids_restore


def normalize_patches(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-patch normalized pixels, MAE's ``norm_pix_loss`` target: ``(x - mean) / sqrt(var + eps)``.

    mean and var are over each patch's p·p·C values (last dim); var is unbiased, as the official code.

    Shapes:
        patches: (B, N, p·p·C) -> same.

    Raises:
        ValueError: fewer than 2 values per patch (no unbiased variance).
    """
    if patches.shape[-1] < 2:
        raise ValueError(f"normalize_patches needs >= 2 values per patch, got {patches.shape[-1]}")
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)  # unbiased
    return (patches - mean) / (var + eps).sqrt()


def mae_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MAE's reconstruction loss: mean squared error per patch, averaged over the MASKED patches only.

    ::

        loss = Σ_{b,n} mask[b,n] · mean_j (pred[b,n,j] - target[b,n,j])² / Σ_{b,n} mask[b,n]

    (0 when nothing is masked.) Visible patches get no gradient.

    Shapes:
        pred, target: (B, N, p·p·C); mask: (B, N), 1 = masked -> scalar.

    Raises:
        ValueError: shapes that do not match.
    """
    if pred.shape != target.shape or pred.dim() != 3 or tuple(mask.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"mae_loss: pred and target must be (B, N, P) and mask (B, N), got {tuple(pred.shape)}, "
                         f"{tuple(target.shape)}, {tuple(mask.shape)}")
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, N)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1.0)


# ------------------------------------------------------------------------------------------------ models
def _blocks(d_model: int, depth: int, n_heads: int, mlp_ratio: float, dropout: float, eps: float,
            use_fused: bool) -> nn.ModuleList:
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if mlp_ratio <= 0:
        raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")
    return nn.ModuleList(
        TransformerEncoderLayer(d_model, n_heads, dim_feedforward=int(d_model * mlp_ratio), dropout=dropout,
                                activation="gelu", norm_first=True, eps=eps, use_fused=use_fused)
        for _ in range(depth)
    )


def _trunc_normal_(p: Tensor, std: float = 0.02) -> None:
    nn.init.trunc_normal_(p, std=std, a=-2 * std, b=2 * std)


class ViT(nn.Module):
    """Vision Transformer (Dosovitskiy et al. 2021): patch tokens + class token + learned positions, pre-LN
    Transformer encoder, final LayerNorm, a linear head on the class token.

    Args:
        image_size: H (square) or (H, W). Default 28.
        patch_size: p, must divide the image sides. Default 4 (49 patches of 28 x 28).
        in_channels: C. Default 1.
        num_classes: Default 10.
        d_model: token size. Default 64.
        depth: encoder blocks. Default 4.
        n_heads: attention heads (divides d_model). Default 4.
        mlp_ratio: MLP hidden size / d_model. Default 4.0.
        dropout: after the position embeddings and inside the blocks. Default 0.0.
        eps: LayerNorm epsilon. Default 1e-6.
        use_fused: fused attention / LayerNorm kernels (tested equal to the readable paths). Default True.

    Shapes:
        images: (B, C, H, W) -> logits (B, num_classes); :meth:`features` -> (B, 1 + N, d_model).

    Raises:
        ValueError: bad sizes (``image_size`` not divisible by ``patch_size``, ``d_model`` by ``n_heads``, ...),
            or images of another shape.

    Example::

        vit = ViT()  # Fashion-MNIST size
        logits = vit(torch.rand(8, 1, 28, 28))  # (8, 10)
        vit.load_mae_encoder(mae)  # fine-tune or linear-probe an MAE-pre-trained encoder
    """

    def __init__(self, image_size: int | tuple[int, int] = 28, patch_size: int = 4, in_channels: int = 1,
                 num_classes: int = 10, d_model: int = 64, depth: int = 4, n_heads: int = 4, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, eps: float = LN_EPS, use_fused: bool = True):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.d_model, self.depth, self.n_heads, self.mlp_ratio, self.eps = d_model, depth, n_heads, mlp_ratio, eps
        self.patch_embed = PatchEmbed(image_size, patch_size, in_channels, d_model)
        N = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + N, d_model))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = _blocks(d_model, depth, n_heads, mlp_ratio, dropout, eps, use_fused)
        self.norm = LayerNorm(d_model, eps=eps, use_fused=use_fused)
        self.head = nn.Linear(d_model, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        _trunc_normal_(self.pos_embed)
        _trunc_normal_(self.cls_token)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _trunc_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def features(self, images: Tensor) -> Tensor:
        """The final normalized tokens, class token first: (B, C, H, W) -> (B, 1 + N, d_model)."""
        x = self.patch_embed(images)  # (B, N, d_model)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, d_model)
        x = self.pos_drop(torch.cat([cls, x], dim=1) + self.pos_embed)  # (B, 1 + N, d_model)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images)[:, 0])  # (B, num_classes), from the class token

    @torch.no_grad()
    def load_mae_encoder(self, mae: MAE) -> ViT:
        """Copy an :class:`MAE`'s encoder (patch embedding, class token, positions, blocks, norm) into this ViT;
        the head is left as it is. Returns ``self``.

        Raises:
            ValueError: the MAE's encoder has another shape (image/patch size, channels, d_model, depth,
                n_heads, mlp_ratio or eps).
        """
        ours = (self.patch_embed.image_size, self.patch_embed.patch_size, self.patch_embed.in_channels,
                self.d_model, self.depth, self.n_heads, int(self.d_model * self.mlp_ratio), self.eps)
        theirs = (mae.patch_embed.image_size, mae.patch_embed.patch_size, mae.patch_embed.in_channels,
                  mae.d_model, mae.depth, mae.n_heads, int(mae.d_model * mae.mlp_ratio), mae.eps)
        if ours != theirs:
            raise ValueError(f"load_mae_encoder: shape mismatch (image_size, patch_size, in_channels, d_model, "
                             f"depth, n_heads, mlp hidden, eps): ViT {ours}, MAE {theirs}; build the ViT with the "
                             f"MAE's sizes")
        missing, unexpected = self.load_state_dict(mae.encoder_state_for_vit(), strict=False)
        if unexpected or any(not k.startswith("head.") for k in missing):
            raise ValueError(f"load_mae_encoder: unexpected keys {unexpected}, missing {missing}")
        return self


class MAE(nn.Module):
    """Masked Autoencoder (He et al. 2022): a ViT encoder on the visible patches only, a light decoder that
    reconstructs the pixels of every patch, a loss on the masked ones.

    The encoder's parameter names are :class:`ViT`'s (``patch_embed``, ``cls_token``, ``pos_embed``,
    ``blocks``, ``norm``): :meth:`encoder_state_for_vit` / :meth:`ViT.load_mae_encoder` transfer them.

    Args:
        image_size: H (square) or (H, W). Default 28.
        patch_size: p. Default 4.
        in_channels: C. Default 1.
        d_model, depth, n_heads: the encoder. Defaults 64, 4, 4.
        decoder_d_model, decoder_depth, decoder_n_heads: the decoder. Defaults 32, 2, 4.
        mlp_ratio: MLP hidden size / width, encoder and decoder. Default 4.0.
        mask_ratio: fraction of patches removed, in [0, 1). Default 0.75.
        norm_pix_loss: targets normalized per patch (:func:`normalize_patches`). Default True.
        learned_pos_embed: learned position embeddings (ViT's init) instead of the fixed 2-D sine-cosine tables
            (which need d_model and decoder_d_model multiples of 4). Default False.
        eps: LayerNorm epsilon. Default 1e-6.
        use_fused: fused attention / LayerNorm kernels. Default True.

    Shapes:
        images (B, C, H, W) -> loss (scalar), pred (B, N, p·p·C), mask (B, N) float, 1 = masked.

    Raises:
        ValueError: bad sizes or mask_ratio; images of another shape.

    Example::

        mae = MAE()
        loss, pred, mask = mae(images)  # images (B, 1, 28, 28); 37 of 49 patches masked
        vit = ViT(num_classes=10).load_mae_encoder(mae)
    """

    def __init__(self, image_size: int | tuple[int, int] = 28, patch_size: int = 4, in_channels: int = 1,
                 d_model: int = 64, depth: int = 4, n_heads: int = 4, decoder_d_model: int = 32,
                 decoder_depth: int = 2, decoder_n_heads: int = 4, mlp_ratio: float = 4.0, mask_ratio: float = 0.75,
                 norm_pix_loss: bool = True, learned_pos_embed: bool = False, eps: float = LN_EPS,
                 use_fused: bool = True):
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if norm_pix_loss and patch_size * patch_size * in_channels < 2:
            raise ValueError("norm_pix_loss needs patches of >= 2 values (patch_size**2 * in_channels >= 2)")
        if decoder_d_model < 1:
            raise ValueError(f"decoder_d_model must be >= 1, got {decoder_d_model}")
        self.d_model, self.depth, self.n_heads, self.mlp_ratio, self.eps = d_model, depth, n_heads, mlp_ratio, eps
        self.mask_ratio, self.norm_pix_loss, self.learned_pos_embed = mask_ratio, norm_pix_loss, learned_pos_embed
        # encoder (ViT's names)
        self.patch_embed = PatchEmbed(image_size, patch_size, in_channels, d_model)
        N = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + N, d_model), requires_grad=learned_pos_embed)
        self.blocks = _blocks(d_model, depth, n_heads, mlp_ratio, 0.0, eps, use_fused)
        self.norm = LayerNorm(d_model, eps=eps, use_fused=use_fused)
        # decoder
        self.decoder_embed = nn.Linear(d_model, decoder_d_model)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_d_model))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1 + N, decoder_d_model), requires_grad=learned_pos_embed)
        self.decoder_blocks = _blocks(decoder_d_model, decoder_depth, decoder_n_heads, mlp_ratio, 0.0, eps, use_fused)
        self.decoder_norm = LayerNorm(decoder_d_model, eps=eps, use_fused=use_fused)
        self.decoder_pred = nn.Linear(decoder_d_model, patch_size * patch_size * in_channels)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        if self.learned_pos_embed:
            _trunc_normal_(self.pos_embed)
            _trunc_normal_(self.decoder_pos_embed)
        else:
            grid = self.patch_embed.grid_size
            self.pos_embed.copy_(sincos_2d_pos_embed(self.d_model, grid, cls_token=True)[None])
            self.decoder_pos_embed.copy_(sincos_2d_pos_embed(self.decoder_pos_embed.shape[-1], grid,
                                                             cls_token=True)[None])
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # as a Linear on flattened patches
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def targets(self, images: Tensor) -> Tensor:
        """The reconstruction targets: patchified images, normalized per patch if ``norm_pix_loss``.
        (B, C, H, W) -> (B, N, p·p·C)."""
        target = patchify(images, self.patch_embed.patch_size)
        return normalize_patches(target) if self.norm_pix_loss else target

    def forward_encoder(self, images: Tensor, mask_ratio: float | None = None,
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Encode the visible patches only.

        Args:
            images: (B, C, H, W).
            mask_ratio: Default None: ``self.mask_ratio``.
            generator: for the random mask. Default None: the global RNG.

        Returns:
            ``(latent, mask, ids_restore)``: latent (B, 1 + K, d_model), the class token then the K kept
            patches in shuffled order; mask (B, N) 1 = masked; ids_restore (B, N).
        """
        x = self.patch_embed(images) + self.pos_embed[:, 1:]  # (B, N, d_model)
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        x, mask, ids_restore = random_masking(x, ratio, generator)  # (B, K, d_model)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)  # (B, 1, d_model)
        x = torch.cat([cls, x], dim=1)  # (B, 1 + K, d_model)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Reconstruct every patch: latent (B, 1 + K, d_model), ids_restore (B, N) -> pred (B, N, p·p·C)."""
        x = self.decoder_embed(latent)  # (B, 1 + K, d_dec)
        B, N, D = x.shape[0], ids_restore.shape[1], x.shape[2]
        mask_tokens = self.mask_token.expand(B, N + 1 - x.shape[1], -1)  # (B, N - K, d_dec)
        x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)  # (B, N, d_dec), shuffled order
        x_ = x_.gather(1, ids_restore[..., None].expand(-1, -1, D))  # unshuffle: original order
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed  # (B, 1 + N, d_dec)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # (B, N, p p C), the class token dropped

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Mask, encode, decode, score: images (B, C, H, W) -> ``(loss, pred, mask)``; pred is in target space
        (normalized per patch when ``norm_pix_loss``)."""
        latent, mask, ids_restore = self.forward_encoder(images, generator=generator)
        pred = self.forward_decoder(latent, ids_restore)
        return mae_loss(pred, self.targets(images), mask), pred, mask

    def encoder_state_for_vit(self) -> dict[str, Tensor]:
        """The encoder's weights under :class:`ViT`'s names (copies): patch_embed.*, cls_token, pos_embed,
        blocks.*, norm.*; load them with ``vit.load_state_dict(state, strict=False)`` or
        :meth:`ViT.load_mae_encoder`."""
        prefixes = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k.startswith(prefixes)}
