"""Lab ``explain`` (ML2021/2022 "Explainable ML", HW9; EE-559 9-3): what does a network look at, and is it true?

Trains a Fashion-MNIST CNN that reads pixels in [0, 1] (``--model``), then:

* local explanations of ``--images`` test images with seven methods (:mod:`deepnotes.explain.attribution`):
  saliency, SmoothGrad, integrated gradients, occlusion, guided backpropagation, Grad-CAM, LIME;
* their faithfulness measured, not eyeballed (:mod:`deepnotes.explain.faithfulness`): deletion and insertion AUC on
  ``--faithfulness-images`` test images against random pixel orders, and the cascading model-randomization sanity
  check (rank correlation of the maps as the layers are re-initialized from the top);
* global explanations (:mod:`deepnotes.explain.maximize`): the image each class likes most with and without EE-559's
  multi-scale prior h(x), what second-layer filters respond to, the first layer's filters, and t-SNE / PCA of the
  penultimate features;
* the receptive field of every layer by seed 004's recursion, checked against the measured one
  (:mod:`deepnotes.analysis.receptive_field`);
* MobileNetV2 (ImageNet weights) on scikit-image's photos: the same maps for its top-1 class and their AUCs;
* a keyword classifier's log-mel spectrograms (the exercise's CNN on ``--keywords-dataset``): the same maps;
* probing (ML2021): linear probes on each layer of a phoneme classifier for the phoneme and for the speaker
  (:mod:`deepnotes.analysis.probing`), when the phoneme-frames data is built.

Over 400 lines: the homework's seven methods run on three models (the CNN, MobileNetV2, a keyword classifier), and
each study (faithfulness, sanity, global, receptive field, probing) is a short function and a report section.

Files it leaves in the run folder (beside config.json, metrics.csv, checkpoints/, model.safetensors):
    keywords/, probe/          the keyword and phoneme classifiers' Trainer folders
    data.json, explain.json    data; every measured number
    figures.safetensors        the arrays the figures are drawn from (images, maps, optimized inputs, embeddings)
    report.md + *.png          the report
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import nn

from deepnotes.analysis.probing import layer_features
from deepnotes.analysis.receptive_field import empirical_receptive_field, receptive_fields
from deepnotes.data.image_batches import pixel_preparer
from deepnotes.data.images import load_held_out, to_pixels
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.explain import (deletion_curve, grad_cam, guided_backprop, insertion_curve, integrated_gradients, lime,
                               model_randomization, occlusion, random_order_auc, saliency, smoothgrad)
from deepnotes.explain.maximize import (class_objective, filter_objective, first_layer_filters, maximize_activation,
                                        multiscale_edge_energy)
from deepnotes.io import atomic_path
from deepnotes.metrics.robustness import accuracy, predict
from deepnotes.models.pixels import build_pixel_model
from deepnotes.report import markdown_table
from deepnotes.report.explain_plots import plot_attribution_maps, plot_embedding, plot_image_rows, plot_lines
from deepnotes.train import supervised_trainer
from deepnotes.train.config import TrainConfig, option

NAME = "explain"
METHODS = ("saliency", "SmoothGrad", "integrated gradients", "occlusion", "guided backprop", "Grad-CAM", "LIME")
Method = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ExplainConfig(TrainConfig):
    epochs: int = option(4, "passes over the training set")
    batch_size: int = option(128, "examples per update, summed over all processes")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(2e-3, "peak learning rate")
    dataset: Literal["fashion-mnist", "mnist-subset"] = option("fashion-mnist", "dataset")
    data_dir: str | None = option(None, "folder with the dataset's four IDX files, read instead of the default places")
    limit_train: int = option(0, "use the first N training images (0 = all)", range="[0, 1000000000]")
    val_fraction: float = option(0.1, "share of each class of the training images held out", range="(0, 0.5]")
    model: Literal["lenet5", "lenet5-wide"] = option("lenet5-wide", "the CNN explained (LeNet-5, or 4x its channels)")
    images: int = option(8, "test images whose maps are drawn", range="[1, 64]")
    faithfulness_images: int = option(200, "test images of the deletion/insertion AUCs", range="[1, 10000]")
    curve_steps: int = option(28, "deletion/insertion steps (pixels changed per step: H*W / steps)", range="[1, 784]")
    smoothgrad_samples: int = option(50, "SmoothGrad: noisy copies averaged", range="[1, 10000]")
    ig_steps: int = option(50, "integrated gradients: points of the path integral", range="[1, 10000]")
    lime_samples: int = option(500, "LIME: perturbed images per explanation", range="[10, 100000]")
    lime_segments: int = option(25, "LIME: SLIC superpixels per 28x28 image (photos: 4x as many)", range="[2, 1000]")
    randomization_images: int = option(16, "test images of the model-randomization check", range="[1, 1000]")
    maximize_steps: int = option(200, "activation maximization: gradient-ascent steps", range="[1, 100000]")
    prior_weight: float = option(1.0, "activation maximization: weight of the multi-scale prior h(x)", range="[0, inf)")
    tsne_images: int = option(1000, "test images in the t-SNE / PCA maps of the penultimate features",
                              range="[10, 10000]")
    photos: bool = option(True, "explain MobileNetV2 (ImageNet weights) on scikit-image's photos")
    keywords: bool = option(True, "explain a keyword classifier's log-mel spectrograms (when the data is built)")
    keywords_dataset: Literal["speech-keywords", "speech-keywords-small"] = option("speech-keywords",
                                                                                   "keywords: the speech data")
    keywords_epochs: int = option(4, "keywords: epochs of the spectrogram CNN", range="[1, 1000]")
    probe: bool = option(True, "probe a phoneme classifier's layers for the phoneme and the speaker")
    probe_dataset: Literal["phoneme-frames-small", "phoneme-frames"] = option("phoneme-frames-small",
                                                                              "probing: the phoneme data")
    probe_epochs: int = option(8, "probing: epochs of the phoneme classifier (hw2-medium)", range="[1, 1000]")
    probe_frames: int = option(4000, "probing: training frames of each linear probe", range="[10, 10000000]")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 1, "limit_train": 1500, "model": "lenet5", "images": 3, "faithfulness_images": 8,
             "curve_steps": 7, "smoothgrad_samples": 4, "ig_steps": 8, "lime_samples": 20, "lime_segments": 6,
             "randomization_images": 2, "maximize_steps": 5, "tsne_images": 60, "photos": False,
             "probe_epochs": 1, "probe_frames": 200, "keywords_dataset": "speech-keywords-small",
             "keywords_epochs": 1},
}


def methods(cfg: ExplainConfig, cam_layer: Callable[[nn.Module], nn.Module], window: int, segments: int,
            guided: bool = True) -> dict[str, Method]:
    """The seven attribution methods as ``method(model, x, target) -> map``, seeded from the config."""
    g = torch.Generator().manual_seed(cfg.seed)

    def lime_maps(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.stack([lime(model, xi, int(ti), n_segments=segments, n_samples=cfg.lime_samples,
                                 generator=g).map for xi, ti in zip(x, t)])

    out: dict[str, Method] = {
        "saliency": saliency,
        "SmoothGrad": functools.partial(smoothgrad, n_samples=cfg.smoothgrad_samples, generator=g),
        "integrated gradients": functools.partial(integrated_gradients, steps=cfg.ig_steps),
        "occlusion": functools.partial(occlusion, window=window, stride=window // 2),
        "guided backprop": guided_backprop,
        "Grad-CAM": lambda m, x, t: grad_cam(m, cam_layer(m), x, t),
        "LIME": lime_maps,
    }
    if not guided:  # guided backprop needs nn.ReLU modules (MobileNetV2 has ReLU6)
        del out["guided backprop"]
    return out


def faithfulness(cfg: ExplainConfig, model: nn.Module, x: torch.Tensor, t: torch.Tensor,
                 how: dict[str, Method]) -> dict[str, Any]:
    """Mean deletion and insertion AUC of each method's maps, and of random pixel orders (Petsiuk et al. 2018)."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    steps = cfg.curve_steps
    out: dict[str, Any] = {"random": {
        "deletion_auc": float(random_order_auc(model, x, t, curve="deletion", generator=g, steps=steps).mean()),
        "insertion_auc": float(random_order_auc(model, x, t, curve="insertion", generator=g, steps=steps).mean())}}
    for name, method in how.items():
        t0 = time.perf_counter()
        maps = method(model, x, t)
        seconds = time.perf_counter() - t0
        out[name] = {"deletion_auc": float(deletion_curve(model, x, t, maps, steps=steps).auc.mean()),
                     "insertion_auc": float(insertion_curve(model, x, t, maps, steps=steps).auc.mean()),
                     "seconds_per_image": seconds / len(x)}
    return out


def lenet_cam_layer(model: nn.Module) -> nn.Module:
    """Grad-CAM's layer in a pixel LeNet-5: the rectified maps of its last convolution (the ReLU after it, 10 x 10),
    as Selvaraju et al. use the last convolutional layer's rectified output."""
    return model[1].features[4]


def global_explanations(cfg: ExplainConfig, model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor,
                        arrays: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Class and filter maximization, first-layer filters, t-SNE / PCA of penultimate features."""
    g = torch.Generator().manual_seed(cfg.seed + 2)
    k = int(test_y.max()) + 1
    shape = (1, 1, 28, 28)
    out: dict[str, Any] = {"class_logit": {}}
    for prior, key in ((cfg.prior_weight, "with_prior"), (0.0, "no_prior")):
        imgs = [maximize_activation(model, class_objective(c), shape, steps=cfg.maximize_steps,
                                    prior_weight=prior, generator=g) for c in range(k)]
        arrays[f"class_{key}"] = torch.cat(imgs)
        with torch.no_grad():
            logits = model(arrays[f"class_{key}"])
        out["class_logit"][key] = [float(logits[c, c]) for c in range(k)]
        out.setdefault("edge_energy", {})[key] = float(multiscale_edge_energy(arrays[f"class_{key}"]).mean())
        out["class_predicted"] = out.get("class_predicted", {}) | {key: logits.argmax(-1).tolist()}
    conv2 = "1.features.3"
    channels = min(8, model.get_submodule(conv2).out_channels)
    arrays["filters_conv2"] = torch.cat([maximize_activation(model, filter_objective(model, conv2, ch), shape,
                                                             steps=cfg.maximize_steps, prior_weight=cfg.prior_weight,
                                                             generator=g) for ch in range(channels)])
    arrays["filters_conv1"] = first_layer_filters(model)
    n = min(cfg.tsne_images, len(test_y))
    feats = layer_features(model, test_x[:n], ["1.classifier.5"])["1.classifier.5"]
    arrays["tsne"] = torch.from_numpy(TSNE(2, init="pca", random_state=cfg.seed, perplexity=min(30, n // 4))
                                      .fit_transform(feats).astype(np.float32))
    arrays["pca"] = torch.from_numpy(PCA(2, random_state=cfg.seed).fit_transform(feats).astype(np.float32))
    arrays["embedding_labels"] = test_y[:n].clone()
    return out


def receptive_field_table(model: nn.Module) -> list[dict[str, Any]]:
    """Each layer of the LeNet's feature chain: the recursion's receptive field and jump, and the measured one."""
    features = model[1].features
    rows = []
    for i, layer in enumerate(receptive_fields(features, 28)):
        measured = empirical_receptive_field(features[:i + 1], (1, 28, 28))
        rows.append({"layer": layer.name, "kernel": layer.kernel, "stride": layer.stride, "rf": layer.rf,
                     "jump": layer.jump, "measured": list(measured)})
    return rows


def sanity_check(cfg: ExplainConfig, model: nn.Module, x: torch.Tensor, t: torch.Tensor,
                 how: dict[str, Method]) -> dict[str, list]:
    """Adebayo et al. 2018: rank correlation of each method's maps as layers are re-initialized from the top."""
    g = torch.Generator().manual_seed(cfg.seed + 3)
    return {name: [[layer, rho] for layer, rho in model_randomization(model, x, t, how[name], generator=g)]
            for name in ("saliency", "SmoothGrad", "integrated gradients", "guided backprop", "Grad-CAM")}


def explain_photos(cfg: ExplainConfig, arrays: dict[str, torch.Tensor]) -> dict[str, Any]:
    """MobileNetV2 on scikit-image's photos: each method's map of its top-1 class, and the maps' AUCs."""
    from deepnotes.models.mobilenet import (imagenet_class_names, imagenet_classifier, imagenet_photo_batch,
                                            load_pretrained_mobilenet_v2)

    names = imagenet_class_names()
    model = imagenet_classifier(load_pretrained_mobilenet_v2()).eval()
    photos, x = imagenet_photo_batch()
    t = predict(model, x)
    how = methods(cfg, lambda m: m[1].features[18], window=32, segments=4 * cfg.lime_segments, guided=False)
    how["SmoothGrad"] = functools.partial(how["SmoothGrad"], batch_size=16)
    arrays["photos"] = x
    for name, method in how.items():
        arrays[f"photos_{name}"] = method(model, x, t).float()
    auc = {name: {"deletion_auc": float(deletion_curve(model, x, t, arrays[f"photos_{name}"],
                                                        steps=cfg.curve_steps).auc.mean()),
                  "insertion_auc": float(insertion_curve(model, x, t, arrays[f"photos_{name}"],
                                                         steps=cfg.curve_steps).auc.mean())} for name in how}
    g = torch.Generator().manual_seed(cfg.seed + 1)
    auc["random"] = {f"{c}_auc": float(random_order_auc(model, x, t, curve=c, generator=g, steps=cfg.curve_steps,
                                                        batch_size=16).mean()) for c in ("deletion", "insertion")}
    return {"photos": list(photos), "top1": [names[int(i)] for i in t], "auc": auc}


def keyword_maps(cfg: ExplainConfig, ctx: RunContext, arrays: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The exercise's spectrogram CNN on 40-band log-mel spectrograms (per-clip normalized) of the keyword set,
    trained in ``keywords/``; maps of the predicted word for ``--images`` test clips of different words, and the
    methods' deletion/insertion AUCs on up to ``--faithfulness-images`` test clips."""
    from deepnotes.audio.frontend import FeatureExtractor
    from deepnotes.data.speech import load_split, speech_folder
    from deepnotes.errors import UserError
    from deepnotes.models.registry import create_model

    try:
        root = speech_folder(cfg.keywords_dataset)
    except UserError as e:
        return {"skipped": str(e)}
    splits = {s: load_split(root, s) for s in ("train", "validation", "test")}
    logmel = FeatureExtractor("logmel", n_mels=40, norm="utterance")
    feats = {s: torch.cat([logmel(sp.clips[i:i + 512].float() / 32768) for i in range(0, len(sp.labels), 512)])
             for s, sp in splits.items()}  # (N, 1, 40, 101)
    classes = splits["train"].classes
    torch.manual_seed(cfg.seed)
    model = create_model("spectrogram-cnn", num_classes=len(classes), input_size=tuple(feats["train"].shape[-2:]),
                         dropout=0.2)
    kcfg = dataclasses.replace(cfg, epochs=cfg.keywords_epochs, batch_size=64, lr=1e-3)
    trainer = supervised_trainer(kcfg, model, ctx.run_dir / "keywords", (feats["train"], splits["train"].labels),
                                 None, {"val": (feats["validation"], splits["validation"].labels)}, ctx.device,
                                 ctx.info, ctx.main_log)
    if ctx.resume and (ctx.run_dir / "keywords" / "checkpoints").is_dir():
        trainer.resume()
    trainer.fit()
    model = model.cpu().eval()
    x, y = feats["test"], splits["test"].labels
    pred = predict(model, x)
    first = {}  # one correctly classified clip per word, the first words in class order
    for i in range(len(y)):
        if pred[i] == y[i] and int(y[i]) not in first:
            first[int(y[i])] = i
    idx = torch.tensor([first[k] for k in sorted(first)][:cfg.images] or list(range(min(cfg.images, len(y)))),
                       dtype=torch.int64)  # no clip right (an untrained model): the first clips
    how = {k: v for k, v in methods(cfg, lambda m: m.conv2, window=4, segments=cfg.lime_segments,
                                    guided=False).items() if k != "LIME"}  # no superpixels on a spectrogram
    lo, hi = x[idx].amin(dim=(1, 2, 3), keepdim=True), x[idx].amax(dim=(1, 2, 3), keepdim=True)
    arrays["keywords"] = (x[idx] - lo) / (hi - lo)  # for display only
    for name, method in how.items():
        arrays[f"keywords_{name}"] = method(model, x[idx], pred[idx]).float()
    n = min(cfg.faithfulness_images, len(y))
    f = faithfulness(cfg, model, x[:n], pred[:n], how)
    return {"dataset": cfg.keywords_dataset, "test_acc": float((pred == y).float().mean()), "n_test": len(y),
            "words": [classes[int(pred[i])] for i in idx], "auc": f}


def probing(cfg: ExplainConfig, ctx: RunContext) -> dict[str, Any]:
    """ML2021's probing: train HW2's medium MLP (11 frames, 3 x 256, the training frames' global normalization, not
    per-utterance CMVN, which subtracts each utterance's mean before any layer) in ``probe/``, then a linear probe
    per layer for the phoneme and for the speaker (the voice) of validation frames; chance is the majority share."""
    from deepnotes.analysis.probing import INPUT, probe_layers
    from deepnotes.data.frames import IndexBatches, frame_table
    from deepnotes.data.phonemes import PHONEME_DATASETS
    from deepnotes.models.registry import create_model
    from deepnotes.train import ClassificationTask, Trainer

    info = PHONEME_DATASETS[cfg.probe_dataset]
    if not info.manifest_path().is_file():
        return {"skipped": f"{cfg.probe_dataset} is not built: {info.how_to_get()}"}
    if not info.is_current():
        return {"skipped": f"{cfg.probe_dataset} is {info.status()}"}
    corpora = {s: info.load(s, build=False) for s in ("train", "validation")}
    table = frame_table(corpora, cmvn=False)
    voices = np.concatenate([np.repeat([u.split("-")[0] for u in c.utt_ids], c.lengths.numpy())
                             for c in corpora.values()])
    model = create_model("hw2-medium", in_channels=table.features.shape[1])
    ctx_frames = model.cfg.context
    make = lambda i: table.window_batch(i, ctx_frames, ctx.device)  # noqa: E731
    pcfg = dataclasses.replace(cfg, epochs=cfg.probe_epochs, batch_size=256)
    trainer = Trainer(pcfg, ClassificationTask(model), ctx.run_dir / "probe",
                      IndexBatches(table.frames("train"), make, 256, cfg.seed, ctx.info),
                      {"val": IndexBatches(table.frames("validation"), make, 4096, info=ctx.info, shuffle=False)},
                      ctx.device, ctx.info, ctx.main_log)
    if ctx.resume and (ctx.run_dir / "probe" / "checkpoints").is_dir():
        trainer.resume()
    trainer.fit()
    g = torch.Generator().manual_seed(cfg.seed + 4)
    train = table.frames("train")[torch.randperm(len(table.frames("train")), generator=g)[:cfg.probe_frames]]
    val = table.frames("validation")[torch.randperm(len(table.frames("validation")), generator=g)[:cfg.probe_frames]]
    rows = torch.cat([train, val])
    x, _ = table.window_batch(rows, ctx_frames, torch.device("cpu"))
    labels = {"phoneme": table.labels[rows].numpy(), "speaker": voices[rows.numpy()]}
    layers = [INPUT] + [f"blocks.{i}" for i, m in enumerate(model.blocks) if isinstance(m, nn.ReLU)] + ["head"]
    acc = probe_layers(model.cpu(), x, labels, layers, np.arange(len(train)), np.arange(len(train), len(rows)),
                       max_iter=300, seed=cfg.seed)
    chance = {k: float(np.unique(v[len(train):], return_counts=True)[1].max() / len(val)) for k, v in labels.items()}
    return {"dataset": cfg.probe_dataset, "layers": layers, "accuracy": acc, "chance": chance,
            "voices": sorted(set(voices.tolist())), "train_frames": len(train), "test_frames": len(val),
            "classifier_val_acc": trainer.history[-1].get("val_acc")}


def run(cfg: ExplainConfig, ctx: RunContext) -> dict[str, Any]:
    """Train the CNN, explain it (local, faithfulness, sanity, global, receptive field), photos, report."""
    data = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, 0, cfg.val_fraction, cfg.seed)
    run_folder = Run(ctx.run_dir)
    model = build_pixel_model(cfg.model, len(data.train.classes), data.mean, data.std).to(ctx.device)
    to_device = pixel_preparer(ctx.device)
    trainer = supervised_trainer(cfg, model, ctx.run_dir, (data.train.images, data.train.labels), to_device,
                                 {"val": (data.val.images, data.val.labels)}, ctx.device, ctx.info, ctx.main_log)
    if ctx.resume:
        trainer.resume()
    trainer.fit()
    if not ctx.info.is_main:
        return {}
    model = model.cpu().eval()
    run_folder.write_json("data.json", data.info(cfg.dataset))
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data.test), generator=g)
    x, y = to_pixels(data.test.images[order]), data.test.labels[order]
    t = predict(model, x[:cfg.faithfulness_images])  # explain what the model predicts
    res: dict[str, Any] = {"test_acc": accuracy(model, to_pixels(data.test.images), data.test.labels)}
    how = methods(cfg, lenet_cam_layer, window=4, segments=cfg.lime_segments)
    log = ctx.main_log
    log(f"test accuracy {100 * res['test_acc']:.2f}%; maps of {cfg.images} images by {len(how)} methods")
    arrays: dict[str, torch.Tensor] = {"images": x[:cfg.images], "labels": y[:cfg.images],
                                       "predicted": t[:cfg.images]}
    for name, method in how.items():
        arrays[f"map_{name}"] = method(model, x[:cfg.images], t[:cfg.images]).float()
    log(f"deletion/insertion AUC on {cfg.faithfulness_images} images")
    res["faithfulness"] = faithfulness(cfg, model, x[:cfg.faithfulness_images], t, how)
    log("model-randomization sanity check")
    n = cfg.randomization_images
    res["sanity"] = sanity_check(cfg, model, x[:n], predict(model, x[:n]), how)
    log("global explanations: activation maximization, filters, t-SNE")
    res["global"] = global_explanations(cfg, model, x, y, arrays)
    res["receptive_field"] = receptive_field_table(model)
    if cfg.photos:
        log("MobileNetV2 on scikit-image's photos")
        res["photos"] = explain_photos(cfg, arrays)
    if cfg.keywords:
        log(f"keyword spectrograms ({cfg.keywords_dataset})")
        res["keywords"] = keyword_maps(cfg, ctx, arrays)
    if cfg.probe:
        log(f"probing a phoneme classifier on {cfg.probe_dataset}")
        res["probing"] = probing(cfg, ctx)
    run_folder.write_json("explain.json", res)
    with atomic_path(run_folder / "figures.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in arrays.items()}, str(tmp))
    best = min((k for k in res["faithfulness"] if k != "random"), key=lambda k: res["faithfulness"][k]["deletion_auc"])
    log(f"lowest deletion AUC: {best} {res['faithfulness'][best]['deletion_auc']:.3f} (random "
        f"{res['faithfulness']['random']['deletion_auc']:.3f}); report: {report(run_folder)}")
    return {"test_acc": res["test_acc"], "best_deletion": best}


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data DATASET|FOLDER]``: test accuracy and the methods' deletion/insertion AUCs there."""
    from deepnotes.data.images import load_test_split

    cfg, d = run.config, run.read_json("data.json")
    split, name = load_test_split(data, cfg.dataset, d["classes"], cfg.data_dir)
    model = run.load_weights(build_pixel_model(cfg.model, len(d["classes"]), d["mean"], d["std"])).eval()
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.faithfulness_images]
    x = to_pixels(split.images[order])
    f = faithfulness(cfg, model, x, predict(model, x), methods(cfg, lenet_cam_layer, 4, cfg.lime_segments))
    metrics = {"data": name, "test_acc": accuracy(model, to_pixels(split.images), split.labels),
               **{f"{k} deletion": v["deletion_auc"] for k, v in f.items()},
               **{f"{k} insertion": v["insertion_auc"] for k, v in f.items()}}
    run.write_eval(name, metrics)
    return metrics


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its PNGs from explain.json and figures.safetensors."""
    cfg, res, a = run.config, run.read_json("explain.json"), load_file(str(run / "figures.safetensors"))
    classes = run.read_json("data.json")["classes"]
    maps = {m: a[f"map_{m}"] for m in METHODS if f"map_{m}" in a}
    plot_attribution_maps(a["images"], maps, run / "maps.png",
                          [f"{classes[int(p)]}" for p in a["predicted"]], title="maps of the predicted class")
    f = res["faithfulness"]
    rnd = f["random"]
    rep = Report(run, f"{NAME}: what a {cfg.model} looks at on {cfg.dataset}, and whether the maps are faithful",
                 intro=f"ML2021/2022 'Explainable ML', HW9; EE-559 9-3. Test accuracy of the explained model: "
                       f"{100 * res['test_acc']:.2f}%.")
    rows = [[k, f"{f[k]['deletion_auc']:.3f}", f"{f[k]['insertion_auc']:.3f}",
             f"{1000 * f[k]['seconds_per_image']:.1f}"] for k in METHODS if k in f]
    rep.results(rows + [["random order", f"{rnd['deletion_auc']:.3f}", f"{rnd['insertion_auc']:.3f}", ""]],
                headers=("method", "deletion AUC (lower: faithful)", "insertion AUC (higher: faithful)",
                         "ms per image"),
                note=f"{cfg.faithfulness_images} test images, the predicted class, {cfg.curve_steps} steps; deleted "
                     "pixels set to 0 (black background), insertion from a blurred image (Petsiuk et al. 2018).")
    rep.baselines([["HW9", "no number: the homework asks to look at the maps"]])
    rep.figure("Maps", "maps.png", note="Row 0: test images titled with the predicted class; then |map| of each "
               "method (99th percentile = white).")
    layers = [layer for layer, _ in next(iter(res["sanity"].values()))]
    plot_lines({k: (layers, [r for _, r in res["sanity"][k]]) for k in METHODS if k in res["sanity"]},
               run / "sanity.png",
               "layers re-initialized, cumulatively from the top", "Spearman rank correlation",
               title="model-randomization sanity check (Adebayo et al. 2018)", ylim=(-0.2, 1.05))
    rep.figure("Sanity check: maps of a randomized model", "sanity.png", note="A map that still correlates with the "
               "trained model's once the weights are random explains the image, not the model.")
    glob = res["global"]
    plot_image_rows({"with prior h(x)": a["class_with_prior"], "no prior": a["class_no_prior"]},
                    run / "class_maximization.png", classes, title="the input each class's logit likes most")
    plot_image_rows({"conv1 filters": a["filters_conv1"][:12], "conv2 maximized": a["filters_conv2"]},
                    run / "filters.png", title="first-layer filters; inputs that excite second-layer filters",
                    stretch=True)
    labels = a["embedding_labels"].numpy()
    plot_embedding({"t-SNE": a["tsne"].numpy(), "PCA": a["pca"].numpy()}, labels, classes, run / "embedding.png",
                   title="penultimate features of test images")
    rep.table("Global explanation: activation maximization", ["", *classes],
              [["logit, with prior"] + [f"{v:.1f}" for v in glob["class_logit"]["with_prior"]],
               ["logit, no prior"] + [f"{v:.1f}" for v in glob["class_logit"]["no_prior"]]],
              note=f"Gradient ascent on the class logit minus {cfg.prior_weight:g} h(x) (EE-559 9-3), or without h. "
                   f"Mean h(x) of the results: {glob['edge_energy']['with_prior']:.1f} with the prior, "
                   f"{glob['edge_energy']['no_prior']:.1f} without (the high-frequency energy the prior removes).")
    rep.figure("Class maximization", "class_maximization.png")
    rep.figure("Filters", "filters.png")
    rep.figure("Penultimate features", "embedding.png")
    rep.table("Receptive fields (seed 004's recursion; measured: non-zero input gradient of the centre unit)",
              ["layer", "kernel", "stride", "receptive field", "jump", "measured"],
              [[r["layer"], r["kernel"][0], r["stride"][0], r["rf"][0], r["jump"][0], "x".join(map(str, r["measured"]))]
               for r in res["receptive_field"]])
    if "photos" in res:
        ph = res["photos"]
        pmaps = {m: a[f"photos_{m}"] for m in METHODS if f"photos_{m}" in a}
        plot_attribution_maps(a["photos"], pmaps, run / "photos_maps.png", ph["top1"],
                              title="MobileNetV2: maps of its top-1 class")
        rep.section("MobileNetV2 on scikit-image's photos", markdown_table(
            ["method", "deletion AUC", "insertion AUC"],
            [[k, f"{ph['auc'][k]['deletion_auc']:.3f}", f"{ph['auc'][k]['insertion_auc']:.3f}"]
             for k in (*METHODS, "random") if k in ph["auc"]]))
        rep.figure("Photo maps", "photos_maps.png")
    kw = res.get("keywords")
    if kw and "skipped" in kw:
        rep.section("Keyword spectrograms", f"Skipped: {kw['skipped']}")
    elif kw:
        kmaps = {m: a[f"keywords_{m}"] for m in METHODS if f"keywords_{m}" in a}
        plot_attribution_maps(a["keywords"], kmaps, run / "keywords_maps.png", kw["words"],
                              title="log-mel spectrograms (40 bands x 1 s): maps of the predicted word")
        kf = kw["auc"]
        rep.section(f"Keyword spectrograms ({kw['dataset']}; the spectrogram CNN, test accuracy "
                    f"{100 * kw['test_acc']:.1f}% on {kw['n_test']} clips of unseen voices)", markdown_table(
                        ["method", "deletion AUC", "insertion AUC"],
                        [[k, f"{kf[k]['deletion_auc']:.3f}", f"{kf[k]['insertion_auc']:.3f}"]
                         for k in (*METHODS, "random") if k in kf]))
        rep.figure("Keyword maps", "keywords_maps.png")
    pr = res.get("probing")
    if pr and "skipped" in pr:
        rep.section("Probing", f"Skipped: {pr['skipped']}")
    elif pr:
        plot_lines({f"{k} (chance {100 * pr['chance'][k]:.0f}%)": (pr["layers"], [v[layer] for layer in pr["layers"]])
                    for k, v in pr["accuracy"].items()}, run / "probing.png", "layer", "linear probe accuracy",
                   title="what each layer of the phoneme classifier holds", ylim=(0, 1.02))
        rep.table(f"Probing (ML2021): linear probes on each layer of HW2's medium MLP ({pr['dataset']})",
                  ["label", "chance", *pr["layers"]],
                  [[k, f"{100 * pr['chance'][k]:.1f}%"] + [f"{100 * v[layer]:.1f}%" for layer in pr["layers"]]
                   for k, v in pr["accuracy"].items()],
                  note=f"Voices {', '.join(pr['voices'])}; {pr['train_frames']} training and {pr['test_frames']} "
                       f"validation frames per probe; the classifier's own validation accuracy "
                       f"{100 * (pr['classifier_val_acc'] or 0):.1f}%.")
        rep.figure("Where the speaker fades", "probing.png")
    return rep.write()


LAB = Lab(
    name=NAME,
    summary="saliency, SmoothGrad, IG, occlusion, guided backprop, Grad-CAM, LIME: maps, faithfulness, sanity",
    source="ML2021/2022 Explainable ML, HW9; EE-559 9-3",
    default_dataset="fashion-mnist",
    metric="deletion AUC of the maps (lower is faithful)",
    config_cls=ExplainConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
