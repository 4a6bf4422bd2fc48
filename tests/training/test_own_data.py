"""Training on one's own images: a folder or an .npz read, converted, split and checked
(training/own.py), and `python -m training train FAMILY --data PATH`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from training import data  # noqa: E402
from training.checkpoints import load_checkpoint  # noqa: E402
from training.cli import main  # noqa: E402
from training.export import train_command  # noqa: E402
from training.imageset import DataError  # noqa: E402
from training.own import OwnData, OwnImages, read  # noqa: E402

TINY_VAE = ["--set", "channels=4", "--set", "latent_dim=4", "--batch-size", "16"]


def _grey(rng: np.random.Generator, size: int = 32, h: int | None = None) -> np.ndarray:
    return rng.integers(0, 256, (h or size, size), dtype=np.uint8)


def _folder(root: Path, classes: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """One subfolder per class of grey PNGs (none when ``classes`` has the key "")."""
    rng = np.random.default_rng(seed)
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(_grey(rng, size), "L").save(root / name / f"{i:03}.png")
    return root


def _read(path: Path, size: int | None = None, channels: int | None = None) -> OwnImages:
    return read(OwnData(path.resolve(), size, channels))


def _train(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["train", *argv, "--classifier", "/nonexistent"])
    return rc, capsys.readouterr().err


# --- the shipped datasets are unchanged ------------------------------------------------------

BEFORE = {  # sha256 of float_images() and of the labels, as the models got them before --data
    "synthetic/train": ("7a51b7c44fd9aaf6", "e17e6942dc9e2749"),
    "synthetic/heldout": ("194284eec377e0bc", "b66009402fc8a621"),
    "synthetic/test": ("7d427b3919a42bd7", "feab50f0421c6a1b"),
    "mnist/train": ("eebd7759420f7a6a", "1cf64abae5cb13f9"),
    "mnist/test": ("9d49c4d162cff294", "83007b8460327275"),
    "fashion-mnist/train": ("531f80be11f04dbf", "a7964b55b485e275"),
    "fashion-mnist/heldout": ("1d89979be330d813", "d00e7a958ed03c52"),
}


@pytest.mark.parametrize("key", sorted(BEFORE))
def test_the_shipped_datasets_give_the_models_the_same_tensors(key: str) -> None:
    dataset, split = key.split("/")
    try:
        images = data.load(dataset, split)
    except data.DatasetMissingError as e:
        pytest.skip(str(e))
    x = images.float_images()
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28) and x.is_contiguous()
    assert images.images.shape == (len(images), 1, 28, 28)
    digest = hashlib.sha256(x.numpy().tobytes()).hexdigest()[:16]
    labels = hashlib.sha256(images.labels.numpy().tobytes()).hexdigest()[:16]
    assert (digest, labels) == BEFORE[key]


# --- reading a folder or an .npz -------------------------------------------------------------


def test_a_folder_of_png_jpeg_and_webp_in_class_subfolders(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for cls in ("shoes", "bags"):
        (tmp_path / cls / "deeper").mkdir(parents=True)
        Image.fromarray(_grey(rng), "L").save(tmp_path / cls / "a.png")
        Image.fromarray(_grey(rng), "L").save(tmp_path / cls / "b.JPG", quality=95)
        Image.fromarray(_grey(rng), "L").save(tmp_path / cls / "deeper" / "c.webp", lossless=True)
        (tmp_path / cls / "notes.txt").write_text("not an image: skipped")
        (tmp_path / cls / ".hidden.png").write_bytes(b"skipped too")
    own = _read(tmp_path)
    assert own.spec == data.DataSpec((1, 32, 32), ("bags", "shoes"))  # sorted names
    assert own.images.shape == (6, 1, 32, 32) and own.images.dtype == torch.uint8
    assert own.labels.tolist() == [0, 0, 0, 1, 1, 1]
    lossless = np.asarray(Image.open(tmp_path / "bags" / "deeper" / "c.webp").convert("L"))
    assert np.array_equal(own.images[2, 0].numpy(), lossless)  # a/b.JPG/deeper/c.webp
    record = own.record
    assert record["format"] == "folder" and record["files"] == 6 and record["images"] == 6
    assert record["image_shape"] == [1, 32, 32] and record["class_names"] == ["bags", "shoes"]
    assert record["path"] == str(tmp_path.resolve())
    assert sum(record["split"].values()) == 6 and record["split"]["test"] >= 1


def test_a_folder_without_subfolders_has_no_classes(tmp_path: Path) -> None:
    _folder(tmp_path, {"": 5}, size=28)
    own = _read(tmp_path)
    assert own.spec == data.DataSpec((1, 28, 28), ()) and own.labels.tolist() == [0] * 5


def test_colour_alpha_and_the_channels_asked_for(tmp_path: Path) -> None:
    red = np.zeros((28, 28, 3), np.uint8)
    red[..., 0] = 200
    rgba = np.full((28, 28, 4), 255, np.uint8)
    rgba[:14, :, 3] = 0  # the top half fully transparent white
    Image.fromarray(red, "RGB").save(tmp_path / "a.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    Image.fromarray(np.full((28, 28), 90, np.uint8), "L").save(tmp_path / "c.png")

    own = _read(tmp_path)  # one colour image: 3 channels
    assert own.spec.image_shape == (3, 28, 28)
    assert own.images[0, :, 0, 0].tolist() == [200, 0, 0]
    assert own.images[1, :, 0, 0].tolist() == [0, 0, 0]  # transparent onto black
    assert own.images[1, :, 27, 0].tolist() == [255, 255, 255]
    assert own.images[2, :, 0, 0].tolist() == [90, 90, 90]  # grey repeated

    grey = _read(tmp_path, channels=1)
    assert grey.spec.image_shape == (1, 28, 28)
    luma = np.asarray(Image.fromarray(red, "RGB").convert("L"))
    assert np.array_equal(grey.images[0, 0].numpy(), luma) and luma[0, 0] == 60  # 0.299 * 200
    assert grey.images[2, 0, 0, 0] == 90


def test_grey_saved_as_rgb_or_palette_is_one_channel_and_three_when_asked(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    g = _grey(rng, 28)
    Image.fromarray(np.stack([g] * 3, -1), "RGB").save(tmp_path / "rgb.png")
    Image.fromarray(g, "L").convert("P").save(tmp_path / "palette.png")
    Image.fromarray(g, "L").convert("LA").save(tmp_path / "la.png")
    own = _read(tmp_path)
    assert own.spec.image_shape == (1, 28, 28)
    assert all(np.array_equal(own.images[i, 0].numpy(), g) for i in range(3))
    rgb = _read(tmp_path, channels=3)
    assert rgb.spec.image_shape == (3, 28, 28) and torch.equal(rgb.images[:, :1], own.images)


def test_size_crops_the_centre_square_and_resizes_with_antialiasing(tmp_path: Path) -> None:
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    Image.fromarray(checker, "L").save(tmp_path / "a.png")
    wide = np.zeros((40, 60), np.uint8)
    wide[:, 10:50] = 77  # the centre square is uniform
    Image.fromarray(wide, "L").save(tmp_path / "b.png")
    Image.fromarray(np.full((30, 30), 10, np.uint8), "L").save(tmp_path / "c.png")
    own = _read(tmp_path, size=32)
    assert own.images.shape == (3, 1, 32, 32) and own.record["size_asked"] == 32
    inner = own.images[0, 0, 4:-4, 4:-4].float()  # away from the border
    assert 100 < inner.min() and inner.max() < 155  # averaged, not aliased to 0 or 255
    assert (own.images[1] == 77).all() and (own.images[2] == 10).all()


def test_an_npz_with_labels_and_class_names_in_any_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    labels = np.array([0, 1, 0, 1, 2, 2])
    nhw = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=nhw, labels=labels, class_names=np.array(["x", "y", "z"]))
    own = _read(tmp_path / "a.npz")
    assert own.spec == data.DataSpec((1, 28, 28), ("x", "y", "z"))
    assert torch.equal(own.images[:, 0], torch.from_numpy(nhw))
    assert own.labels.tolist() == labels.tolist() and own.record["format"] == "npz"
    assert OwnData((tmp_path / "a.npz").resolve()).name == "a"

    colour = rng.random((6, 32, 32, 3))
    np.savez(tmp_path / "b.npz", images=colour, labels=labels)
    own = _read(tmp_path / "b.npz")
    assert own.spec == data.DataSpec((3, 32, 32), ("0", "1", "2"))
    expected = np.rint(colour * 255).astype(np.uint8).transpose(0, 3, 1, 2)
    assert np.array_equal(own.images.numpy(), expected)

    np.savez(tmp_path / "c.npz", images=expected)  # (N, C, H, W), no labels
    own = _read(tmp_path / "c.npz")
    assert own.spec == data.DataSpec((3, 32, 32), ()) and np.array_equal(own.images, expected)


def test_the_split_is_deterministic_stratified_and_independent_of_file_order(
    tmp_path: Path,
) -> None:
    a = _folder(tmp_path / "a", {"p": 20, "q": 30, "r": 10}, seed=4)
    b = tmp_path / "b"
    for path in sorted(a.rglob("*.png"), reverse=True):  # the same files, made in another order
        (b / path.parent.name).mkdir(parents=True, exist_ok=True)
        (b / path.parent.name / path.name).write_bytes(path.read_bytes())
    first = _read(a)
    read.cache_clear()
    again, other = _read(a), _read(b)
    for split in data.SPLITS:
        assert torch.equal(first.split(split).images, again.split(split).images)
        assert torch.equal(first.split(split).images, other.split(split).images)
    parts = [first.parts[s] for s in data.SPLITS]
    assert [len(p) for p in parts] == [48, 6, 6]
    assert sorted(torch.cat(parts).tolist()) == list(range(60))  # each image once
    held, test = (first.labels[p].bincount(minlength=3).tolist() for p in parts[1:])
    assert held == test == [2, 3, 1]  # every class in proportion
    assert data.load(OwnData(a.resolve()), "heldout").images.shape == (6, 1, 32, 32)


# --- errors name the file; nothing is written ------------------------------------------------


def _unreadable(root: Path) -> tuple[list[str], str]:
    _folder(root, {"a": 20, "b": 20})
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return [], str(root / "b" / "broken.png")


def _truncated(root: Path) -> tuple[list[str], str]:
    _folder(root, {"a": 20, "b": 20})
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "a" / "cut.jpg")
    (root / "a" / "cut.jpg").write_bytes((root / "a" / "cut.jpg").read_bytes()[:300])
    return [], f"{root / 'a' / 'cut.jpg'}: not a readable PNG, JPEG or WebP image"


def _mixed_sizes(root: Path) -> tuple[list[str], str]:
    _folder(root, {"a": 20, "b": 20})
    Image.fromarray(np.zeros((40, 40), np.uint8), "L").save(root / "b" / "zz.png")
    return [], f"{root / 'b' / 'zz.png'}: 40×40, but {root / 'a' / '000.png'} is 32×32"


def _too_few(root: Path) -> tuple[list[str], str]:
    _folder(root, {"a": 10, "b": 10})
    return ["--batch-size", "64"], f"{root}: 16 training images, fewer than a batch of 64"


def _one_image_class(root: Path) -> tuple[list[str], str]:
    _folder(root, {"a": 20, "b": 1})
    return [], f"{root / 'b' / '000.png'}: the only image of class folder 'b'"


def _npz_single_label(root: Path) -> tuple[list[str], str]:
    root.mkdir()
    np.savez(root / "d.npz", images=np.zeros((40, 32, 32), np.uint8), labels=[0] * 39 + [1])
    return [], f"{root / 'd.npz'}: class 1 ('1') has 1 image"


def _npz_without_images(root: Path) -> tuple[list[str], str]:
    root.mkdir()
    np.savez(root / "d.npz", pixels=np.zeros((40, 32, 32), np.uint8))
    return [], f"{root / 'd.npz'}: no 'images' array (it has pixels)"


def _too_large_without_size(root: Path) -> tuple[list[str], str]:
    _folder(root, {"a": 20}, size=100)
    return [], f"{root / 'a' / '000.png'}: 100×100 pixels"


def _missing(root: Path) -> tuple[list[str], str]:
    return [], f"{root}: no such folder or .npz file"


CASES = {
    "unreadable": _unreadable, "truncated": _truncated, "mixed-sizes": _mixed_sizes,
    "too-few-for-a-batch": _too_few, "one-image-class": _one_image_class,
    "npz-one-image-label": _npz_single_label, "npz-without-images": _npz_without_images,
    "too-large": _too_large_without_size, "missing": _missing,
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_is_refused_naming_the_file_and_nothing_is_written(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    extra, message = CASES[case](root)
    target = next(root.glob("*.npz"), root) if root.exists() else root
    run = tmp_path / "run"
    rc, err = _train(["vae", "--data", str(target), "--run-dir", str(run), *TINY_VAE, *extra],
                     capsys)  # fmt: skip
    assert rc == 2 and f"error: {message}" in err, err
    assert "Traceback" not in err
    assert not run.exists() and not (Path("runs") / "vae-data").exists()


def test_a_family_that_cannot_take_the_shape_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _folder(tmp_path / "d", {"a": 20, "b": 20}, size=30)
    run = tmp_path / "run"
    rc, err = _train(["vae", "--data", str(tmp_path / "d"), "--run-dir", str(run)], capsys)
    assert rc == 2 and "vae takes heights and widths that are multiples of 4, not 1×30×30" in err
    _folder(tmp_path / "flat", {"": 40})
    rc, err = _train(["cvae", "--data", str(tmp_path / "flat"), "--run-dir", str(run)], capsys)
    assert rc == 2 and "cvae learns from labels and needs at least 2 classes (a subfolder" in err
    assert not run.exists()
    with pytest.raises(SystemExit):
        main(["train", "vae", "--data", str(tmp_path / "d"), "--size", "65"])
    rc, err = _train(["vae", "--size", "32"], capsys)
    assert rc == 2 and "--size and --channels apply to your own images" in err
    with pytest.raises(DataError, match="--channels 2"):
        _read(tmp_path / "d", channels=2)


def test_cli_trains_a_family_on_a_folder_and_records_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path / "mine", {"cats": 24, "dogs": 24}, size=36)
    run = tmp_path / "run"
    argv = ["vae", "--data", str(folder), "--size", "32", "--epochs", "1", "--limit", "32",
            "--run-dir", str(run), *TINY_VAE]  # fmt: skip
    rc, err = _train(argv, capsys)
    assert rc == 0, err
    model, ckpt = load_checkpoint(run)
    assert model.data == data.DataSpec((1, 32, 32), ("cats", "dogs"))
    assert ckpt["dataset"] == "mine" and ckpt["epoch"] == 1
    record = ckpt["data"]
    assert record["path"] == str(folder.resolve()) and record["files"] == 48
    assert record["size_asked"] == 32 and record["channels_asked"] is None
    assert record["image_shape"] == [1, 32, 32] and record["split"] == {
        "train": 38, "heldout": 5, "test": 5,
    }  # fmt: skip
    assert f"--data {folder.resolve()} --size 32" in train_command(model, ckpt)
    sample = model.sample(2, torch.Generator().manual_seed(0))
    assert sample.shape == (2, 1, 32, 32)
    # resuming over other images is refused
    Image.fromarray(np.zeros((36, 36), np.uint8), "L").save(folder / "cats" / "new.png")
    read.cache_clear()
    rc, err = _train([*argv, "--epochs", "2"], capsys)
    assert rc == 2 and "trained with other settings" in err


def test_the_card_says_what_the_model_was_trained_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1×28×28 folder: evaluated with the project classifier like the shipped data, then
    exported; the card names the data and the command that reproduces the run."""
    from training.evaluate import evaluate_checkpoint
    from training.export import export_checkpoint

    classifier = Path(__file__).resolve().parents[2] / "model_store/classifier-fashion.classifier"
    folder = _folder(tmp_path / "mine", {"a": 20, "b": 20}, size=28)
    run = tmp_path / "run"
    rc, err = _train(["vae", "--data", str(folder), "--epochs", "1", "--run-dir", str(run),
                      *TINY_VAE], capsys)  # fmt: skip
    assert rc == 0, err
    metrics = evaluate_checkpoint(run, classifier, fd_samples=20, iwae_k=2)
    assert (
        metrics["evaluation"]["split"] == "mine/test" and metrics["evaluation"]["test_images"] == 4
    )
    card_path = export_checkpoint(run, tmp_path / "store", "vae-mine", metrics=metrics)
    card = json.loads(card_path.read_text())
    assert card["dataset"] == "mine" and card["class_names"] == ["a", "b"]
    assert card["image_shape"] == [1, 28, 28]
    assert card["training"]["data"]["path"] == str(folder.resolve())
    assert card["training"]["data"]["files"] == 40
    assert f"--data {folder.resolve()}" in card["training"]["command"]
