"""Lab ``vit-mae``: a Vision Transformer on Fashion-MNIST, from scratch and after masked-autoencoder pre-training.

Sources: ML2022 self-supervised lectures (pre-train on unlabelled data, fine-tune on few labels); seed 004's ViT and
MAE digests; Dosovitskiy et al. 2021 (ViT), He et al. 2022 (MAE: 75% of the patches masked, an asymmetric
encoder that sees only the visible ones, a light decoder, the loss on the masked patches with per-patch normalized
targets). The networks: :mod:`deepnotes.nn.vit`; the pre-training task: :mod:`deepnotes.models.vit`.

The setting is the lecture's: every training image serves the MAE without its label; the supervised rungs see
``--labelled`` of them with labels (a stratified, seeded pick), the same budget each:

* ``scratch``: the ViT from random weights;
* ``finetune``: the ViT starting from the MAE's encoder, every weight trained;
* ``probe``: the MAE's encoder frozen, only the linear head on the class token trained (a linear probe).

Files it leaves in the run folder (beside config.json):
    data.json                   dataset, split sizes, the labelled subset's size, pixel mean/std
    models/mae/                 the MAE's Trainer folder (metrics.csv, checkpoints/, model.safetensors)
    models/<rung>/              each rung's Trainer folder
    results.json                per rung: test and validation accuracy, training time; the MAE's losses
    report.md + *.png           reconstructions.png (test images, masked, reconstructed), rung_curves.png
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from deepnotes.data import get_image_dataset
from deepnotes.data.image_batches import ImageBatchPreparer
from deepnotes.data.images import ImageSplit, load_held_out, load_test_split
from deepnotes.data.splits import stratified_holdout
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.metrics.image_eval import evaluate_images
from deepnotes.models.registry import create_model
from deepnotes.models.vit import MAEPretrainTask
from deepnotes.nn.vit import MAE, ViT, patchify, unpatchify
from deepnotes.report import new_figure, read_metrics_csv, save_figure
from deepnotes.train import EvalBatches, TensorBatches, TrainConfig, Trainer, option, supervised_trainer
from deepnotes.train.engine import use_cpu_bf16

NAME = "vit-mae"
RUNGS = ("scratch", "finetune", "probe")


@dataclass(frozen=True)
class VitMaeConfig(TrainConfig):
    # The supervised rungs' training (each the same budget); the MAE has its own epochs and lr below.
    epochs: int = option(30, "epochs of each supervised rung over the labelled images")
    batch_size: int = option(256, "examples per update, summed over all processes")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(1e-3, "peak learning rate of the scratch and finetune rungs")
    weight_decay: float = option(0.05, "weight decay on weight matrices (AdamW; ViT and MAE use 0.05)")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "cosine", "learning-rate schedule over all updates (see deepnotes.train.schedule)")
    warmup: float = option(0.1, "share of all updates warming the learning rate up")
    cpu_bf16: Literal["auto", "on", "off"] = option(
        "auto", "bfloat16 autocast on CPU; auto = only where the CPU has native bf16 (avx512_bf16, amx_bf16)")
    dataset: str = option("fashion-mnist", "dataset name (see `deepnotes data list`)")
    data_dir: str | None = option(None, "folder with the dataset's four IDX files, read instead of the default places")
    labelled: int = option(5000, "training images whose labels the supervised rungs see (stratified pick; 0 = all)",
                           range="[0, 1000000000]")
    limit_train: int = option(0, "use only the first N training images (0 = all); for smoke runs",
                              range="[0, 1000000000]")
    limit_test: int = option(0, "score only the first N test images (0 = all)", range="[0, 1000000000]")
    val_fraction: float = option(0.1, "share of the training images held out for validation (stratified)",
                                 range="(0, 0.9)")
    crop_padding: int = option(2, "random-crop augmentation in every rung and the MAE (0 disables)", range="[0, 28]")
    hflip: Literal["auto", "on", "off"] = option("auto", "mirror augmentation; auto = on for clothes, off for digits")
    patch_size: int = option(4, "p: the image is cut into (28 / p)^2 patches of p x p pixels", range="[1, 28]")
    d_model: int = option(64, "token size of the ViT and the MAE encoder", range="[1, 4096]")
    depth: int = option(4, "Transformer blocks of the ViT and the MAE encoder", range="[1, 64]")
    n_heads: int = option(4, "attention heads (divides --d-model)", range="[1, 256]")
    decoder_d_model: int = option(32, "MAE decoder: token size", range="[1, 4096]")
    decoder_depth: int = option(2, "MAE decoder: Transformer blocks", range="[1, 64]")
    mask_ratio: float = option(0.75, "MAE: share of the patches hidden from the encoder (He et al.: 0.75)",
                               range="[0, 1)")
    pretrain_epochs: int = option(10, "MAE pre-training epochs over every training image (labels unused)",
                                  range="[1, 100000]")
    pretrain_lr: float = option(1.5e-3, "MAE pre-training peak learning rate", range="(0, inf)")
    probe_lr: float = option(1e-2, "linear probe's peak learning rate (only the head trains)", range="(0, inf)")
    rungs: tuple[str, ...] = option(RUNGS, "supervised rungs to train: scratch, finetune, probe (comma-separated)",
                                    nonempty=True)

    def check(self) -> None:
        super().check()
        if self.d_model % self.n_heads:
            raise UserError(f"--d-model {self.d_model} must be divisible by --n-heads {self.n_heads}")
        if 28 % self.patch_size:
            raise UserError(f"--patch-size {self.patch_size} must divide the 28-pixel side (1, 2, 4, 7, 14, 28)")
        unknown = [r for r in self.rungs if r not in RUNGS]
        if unknown or len(set(self.rungs)) < len(self.rungs):
            raise UserError(f"--rungs must be distinct names among {', '.join(RUNGS)}; got {','.join(self.rungs)}")


PRESETS: dict[str, dict[str, Any]] = {
    # seconds: the whole pipeline on 2,000 images, a 2-block network
    "fast": {"limit_train": 2000, "limit_test": 500, "labelled": 500, "epochs": 2, "pretrain_epochs": 2,
             "batch_size": 128, "d_model": 32, "depth": 2, "n_heads": 2, "decoder_d_model": 16, "decoder_depth": 1},
}


def vit_sizes(cfg: VitMaeConfig) -> dict[str, Any]:
    return dict(image_size=28, patch_size=cfg.patch_size, d_model=cfg.d_model, depth=cfg.depth, n_heads=cfg.n_heads)


def build_mae(cfg: VitMaeConfig, in_channels: int) -> MAE:
    return create_model("mae", in_channels=in_channels, decoder_d_model=cfg.decoder_d_model,
                        decoder_depth=cfg.decoder_depth, decoder_n_heads=min(cfg.n_heads, cfg.decoder_d_model),
                        mask_ratio=cfg.mask_ratio, **vit_sizes(cfg))


def build_vit(cfg: VitMaeConfig, in_channels: int, num_classes: int) -> ViT:
    return create_model("vit", in_channels=in_channels, num_classes=num_classes, **vit_sizes(cfg))




def run(cfg: VitMaeConfig, ctx: RunContext) -> dict[str, Any]:
    """Pre-train the MAE on every training image, train each rung on the labelled ones, score the test split."""
    if ctx.info.world_size > 1:
        raise UserError("the vit-mae lab runs in one process; launch it without torchrun")
    log, folder = ctx.main_log, Run(ctx.run_dir)
    torch.manual_seed(cfg.seed)
    data = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, cfg.limit_test, cfg.val_fraction, cfg.seed)
    x_all, y_all, val, test = data.train.images, data.train.labels, data.val, data.test
    share = 1.0 if cfg.labelled == 0 or cfg.labelled >= len(y_all) else cfg.labelled / len(y_all)
    labelled = (stratified_holdout(y_all, share, cfg.seed)[1] if share < 1
                else torch.arange(len(y_all)))
    hflip = get_image_dataset(cfg.dataset).hflip_ok if cfg.hflip == "auto" else cfg.hflip == "on"
    in_channels, classes = x_all.shape[1], test.classes
    folder.write_json("data.json", {**data.info(cfg.dataset), "labelled": len(labelled), "hflip": hflip})
    log(f"{cfg.dataset}: {len(y_all)} training images for the MAE, {len(labelled)} of them labelled for the rungs; "
        f"{len(val)} validation, {len(test)} test")
    prep = ImageBatchPreparer(data.mean, data.std, cfg.crop_padding, hflip, ctx.device, False,
                              use_cpu_bf16(cfg, ctx.device))

    mae_dir = ctx.run_dir / "models" / "mae"
    mae = build_mae(cfg, in_channels).to(ctx.device)
    mae_cfg = dataclasses.replace(cfg, epochs=cfg.pretrain_epochs, lr=cfg.pretrain_lr)
    trainer = Trainer(mae_cfg, MAEPretrainTask(mae, prep, cfg.seed), mae_dir,
                      TensorBatches((x_all, y_all), cfg.batch_size, cfg.seed, ctx.info),
                      {"val": EvalBatches((val.images, val.labels), 1000, ctx.info)}, ctx.device, ctx.info,
                      lambda m: log(f"[mae] {m}"))
    results: dict[str, Any] = {"mae": {"train_time_s": trainer.fit_or_load(ctx.resume),
                                       "parameters": sum(p.numel() for p in mae.parameters())}}
    last = read_metrics_csv(mae_dir / "metrics.csv")[-1]  # also when kept from an earlier session
    results["mae"].update(train_loss=float(last["train_loss"]), val_loss=float(last["val_loss"]))
    mae.eval()

    for rung in cfg.rungs:
        rung_dir = ctx.run_dir / "models" / rung
        torch.manual_seed(cfg.seed)
        model = build_vit(cfg, in_channels, len(classes)).to(ctx.device)
        rung_cfg = cfg
        if rung in ("finetune", "probe"):
            model.load_mae_encoder(mae)
        if rung == "probe":  # only the head learns; the encoder's weights stay the MAE's
            for name, p in model.named_parameters():
                p.requires_grad_(name.startswith("head."))
            rung_cfg = dataclasses.replace(cfg, lr=cfg.probe_lr)
        trainer = supervised_trainer(rung_cfg, model, rung_dir, (x_all[labelled], y_all[labelled]), prep,
                                     {"val": (val.images, val.labels)}, ctx.device, ctx.info,
                                     lambda m, r=rung: log(f"[{r}] {m}"))
        seconds = trainer.fit_or_load(ctx.resume)
        test_m, _ = evaluate_images(model, prep, test, tta=False)
        val_m, _ = evaluate_images(model, prep, val, tta=False)
        results[rung] = {"test_acc": test_m["acc"], "test_loss": test_m["loss"], "val_acc": val_m["acc"],
                         "train_time_s": seconds, "trainable": sum(p.numel() for p in model.parameters()
                                                                   if p.requires_grad),
                         "confusion_matrix": test_m["confusion_matrix"]}
        log(f"{rung}: test accuracy {100 * test_m['acc']:.2f}% (validation {100 * val_m['acc']:.2f}%)")
    save_reconstructions(mae, prep, test, cfg.seed, ctx.run_dir / "reconstructions.npz")
    folder.write_json("results.json", results)
    log(f"report: {report(folder)}")
    return results


@torch.no_grad()
def save_reconstructions(mae: MAE, prep: ImageBatchPreparer, split: ImageSplit, seed: int, path: Path) -> None:
    """Eight test images, their masked view and the MAE's reconstruction (pixels in the normalized scale; with
    per-patch normalized targets the prediction is put back on each patch's own mean and spread), as an .npz."""
    import numpy as np

    x = prep.normalize(split.images[:8])
    gen = torch.Generator().manual_seed(seed)
    _, pred, mask = mae(x, generator=gen)
    p = mae.patch_embed.patch_size
    patches = patchify(x, p)  # (8, N, p*p*C)
    if mae.norm_pix_loss:
        mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
        pred = pred.float() * (var + 1e-6).sqrt() + mean
    keep = (1 - mask).unsqueeze(-1)  # (8, N, 1): 1 where the encoder saw the patch
    masked = unpatchify(patches * keep, p, x.shape[-1])
    recon = unpatchify(patches * keep + pred.float() * (1 - keep), p, x.shape[-1])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, original=x.cpu().numpy(), masked=masked.cpu().numpy(), recon=recon.cpu().numpy())
    tmp.replace(path)


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data X]``: every trained rung on the run's test split or on ``X``."""
    cfg = run.config
    info = run.read_json("data.json")
    split, name = load_test_split(data, cfg.dataset, info["classes"], cfg.data_dir)
    prep = ImageBatchPreparer(info["mean"], info["std"], 0, False, device, False, use_cpu_bf16(cfg, device))
    out: dict[str, Any] = {"data": name, "n": len(split)}
    for rung in cfg.rungs:
        weights = Path("models") / rung / "model.safetensors"
        if not (run / str(weights)).is_file():
            continue
        model = run.load_weights(build_vit(cfg, split.images.shape[1], len(info["classes"])), str(weights)).to(device)
        out[f"{rung}_acc"] = evaluate_images(model, prep, split, tta=False)[0]["acc"]
    run.write_eval(name, out)
    return out


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its figures from the run folder."""
    import numpy as np

    cfg, res, info = run.config, run.read_json("results.json"), run.read_json("data.json")
    rows = [[rung, f"{100 * res[rung]['test_acc']:.2f}%", f"{100 * res[rung]['val_acc']:.2f}%",
             f"{res[rung]['trainable']:,}", f"{res[rung]['train_time_s']:.0f} s"] for rung in RUNGS if rung in res]
    fig = new_figure(6, 4)
    axes = fig.subplots()
    for rung in RUNGS:
        path = run / f"models/{rung}/metrics.csv"
        accs = [row.get("val_acc") for row in read_metrics_csv(path)] if path.is_file() else []
        if accs and None not in accs:
            axes.plot(accs, label=rung)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation accuracy")
    axes.legend()
    save_figure(fig, run / "rung_curves.png")
    rec = np.load(run / "reconstructions.npz")
    fig = new_figure(12, 4.8)
    axes = fig.subplots(3, 8, squeeze=False)
    for i in range(8):
        for row, key in enumerate(("original", "masked", "recon")):
            axes[row][i].imshow(rec[key][i, 0], cmap="gray")
            axes[row][i].axis("off")
    save_figure(fig, run / "reconstructions.png")
    mae = res["mae"]
    return (Report(run, f"{NAME}: ViT from scratch vs MAE pre-training on {cfg.dataset}",
                   intro=f"The MAE saw {info.get('n_train')} training images without labels ({cfg.pretrain_epochs} "
                         f"epochs, {100 * cfg.mask_ratio:.0f}% of the patches masked); each rung trained "
                         f"{cfg.epochs} epochs on {info['labelled']} labelled images.")
            .results(rows, headers=["rung", "test accuracy", "validation accuracy", "trainable parameters",
                                    "training time"])
            .table("The MAE", ["metric", "value"], [["MAE validation loss (masked patches, normalized targets)",
                       f"{mae['val_loss']:.4f}" if mae.get("val_loss") is not None else "-"],
                      ["MAE training time", f"{mae['train_time_s']:.0f} s"]])
            .baselines([["course baseline", "none published"]])
            .figure("Validation accuracy per epoch", "rung_curves.png")
            .figure("Test images, what the encoder saw, the MAE's reconstruction", "reconstructions.png")
            .write())


LAB = Lab(name=NAME, default_dataset="fashion-mnist", metric="test accuracy per rung",
          summary="ViT from scratch vs MAE pre-training (fine-tune, linear probe) with few labels",
          source="ML2022 self-supervised learning; seed 004 ViT and MAE digests", config_cls=VitMaeConfig, run=run,
          evaluate=evaluate, report=report, presets=PRESETS)
