"""The feature extractor of FD and KID fit for the data (training/extractors.py): the project's
classifier trained on one's own labelled images, and the seeded random-features fallback for
images without labels; the card names the one used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from training.cli import main  # noqa: E402
from training.extractors import RANDOM_FEATURES, RandomFeatures, open_extractor  # noqa: E402
from training.own import OwnData, read  # noqa: E402

TINY_CLASSIFIER = ["--set", "channels=4", "--set", "features=8", "--batch-size", "16"]
TINY_DCGAN = ["--set", "channels=4", "--set", "d_channels=4", "--set", "latent_dim=4",
              "--batch-size", "16", "--set", "heldout_samples=20"]  # fmt: skip


def _rgb_folder(root: Path, classes: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """Colour PNGs; with keys, one subfolder per class (a different mean colour each)."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(classes.items()):
        folder = root / name if name else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 120, (size, size, 3)).astype(np.uint8)
            a[..., k % 3] += 120
            Image.fromarray(a, "RGB").save(folder / f"{i:03}.png")
    return root


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_labelled_rgb_data_trains_its_classifier_then_tracks_and_cards_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # runs/classifier-<data> is looked for under the working dir
    folder = _rgb_folder(tmp_path / "colours", {"red": 40, "green": 40, "blue": 40})
    rc, err = _run(["train", "classifier", "--data", str(folder), "--epochs", "1",
                    *TINY_CLASSIFIER], capsys)  # fmt: skip
    assert rc == 0, err
    assert (tmp_path / "runs/classifier-colours/checkpoint.pt").is_file()
    run = tmp_path / "gan"
    rc, err = _run(["train", "dcgan", "--data", str(folder), "--epochs", "1", "--run-dir",
                    str(run), *TINY_DCGAN], capsys)  # fmt: skip
    assert rc == 0, err
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(history[0]["heldout_fd"])  # tracked with the data's own classifier
    store = tmp_path / "store"
    rc, err = _run(["export", str(run), "--name", "dcgan-colours", "--store", str(store),
                    "--fd-samples", "20"], capsys)  # fmt: skip
    assert rc == 0, err
    card = json.loads((store / "dcgan-colours.v1.json").read_text())
    extractor = card["evaluation"]["feature_extractor"]
    assert extractor["name"] == "classifier"
    assert extractor["input_shape"] == [3, 32, 32]
    assert extractor["class_names"] == ["blue", "green", "red"]
    assert len(extractor["sha256"]) == 64
    assert np.isfinite(card["metrics"]["fd"]) and card["metrics"]["class_entropy"] is not None


def test_labelled_data_without_its_classifier_is_told_how_to_train_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = _rgb_folder(tmp_path / "colours", {"red": 20, "green": 20})
    run = tmp_path / "gan"
    rc, err = _run(["train", "dcgan", "--data", str(folder), "--epochs", "1", "--run-dir",
                    str(run), *TINY_DCGAN], capsys)  # fmt: skip
    assert rc == 0, err
    assert "python -m training train classifier --data" in err  # tracked with the fallback
    rc, err = _run(["evaluate", str(run), "--fd-samples", "20"], capsys)
    assert rc == 2 and "python -m training train classifier --data" in err


def test_unlabelled_data_falls_back_to_random_features_named_on_the_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = _rgb_folder(tmp_path / "loose", {"": 40})
    run = tmp_path / "vae"
    rc, err = _run(["train", "vae", "--data", str(folder), "--epochs", "1", "--run-dir", str(run),
                    "--set", "channels=4", "--set", "latent_dim=4", "--batch-size", "16",
                    "--set", "heldout_samples=20"], capsys)  # fmt: skip
    assert rc == 0, err
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(history[0]["heldout_fd"])
    store = tmp_path / "store"
    rc, err = _run(["export", str(run), "--name", "vae-loose", "--store", str(store),
                    "--fd-samples", "20", "--iwae-k", "2"], capsys)  # fmt: skip
    assert rc == 0, err
    card = json.loads((store / "vae-loose.v1.json").read_text())
    extractor = card["evaluation"]["feature_extractor"]
    assert extractor["name"] == RANDOM_FEATURES
    assert extractor["seed"] == RandomFeatures([3, 32, 32]).seed
    assert extractor["input_shape"] == [3, 32, 32]
    assert extractor["weights_sha256"] == RandomFeatures([3, 32, 32]).sha256
    assert card["metrics"]["class_entropy"] is None and np.isfinite(card["metrics"]["fd"])


def test_random_features_are_fixed_and_take_any_shape() -> None:
    for shape in ((1, 28, 28), (3, 32, 32), (3, 64, 64)):
        a, b = RandomFeatures(shape), RandomFeatures(shape)
        assert a.sha256 == b.sha256
        x = np.random.default_rng(0).random((5, *shape), dtype=np.float32)
        logits, f = a(x)
        assert logits is None and f.shape == (5, 256)
        assert np.array_equal(f, b(x)[1])
    with pytest.raises(ValueError, match="takes 3×32×32 images, not 1×32×32"):
        RandomFeatures((3, 32, 32))(np.zeros((1, 1, 32, 32), np.float32))


def test_a_classifier_of_other_images_or_classes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = _rgb_folder(tmp_path / "colours", {"red": 20, "green": 20})
    rc, err = _run(["train", "classifier", "--data", str(folder), "--epochs", "1",
                    "--run-dir", str(tmp_path / "clf"), *TINY_CLASSIFIER], capsys)  # fmt: skip
    assert rc == 0, err
    # other image shape
    bigger = _rgb_folder(tmp_path / "bigger", {"red": 20, "green": 20}, size=40)
    rc, err = _run(["train", "dcgan", "--data", str(bigger), "--epochs", "1",
                    "--classifier", str(tmp_path / "clf"), *TINY_DCGAN], capsys)  # fmt: skip
    assert rc == 2 and "takes 3×32×32 images, but the data's are 3×40×40" in err
    # other classes
    other = _rgb_folder(tmp_path / "other", {"cat": 20, "dog": 20})
    with pytest.raises(ValueError, match="knows the classes green, red, but the data's are cat"):
        open_extractor(OwnData(other.resolve()), tmp_path / "clf")
    # the shipped Fashion-MNIST classifier on colour images
    fashion = Path(__file__).resolve().parents[2] / "model_store/classifier-fashion.classifier"
    if fashion.exists():
        with pytest.raises(ValueError, match="takes 1×28×28 images"):
            open_extractor(OwnData(folder.resolve()), fashion)
    read.cache_clear()


def test_the_noto_emoji_prep_reads_groups_and_draws_square_rgb(tmp_path: Path) -> None:
    from training.datasets import noto_emoji

    listing = tmp_path / "emoji-test.txt"
    listing.write_text(
        "# group: Smileys & Emotion\n"
        "1F600 ; fully-qualified # 😀 E1.0 grinning face\n"
        "263A ; unqualified # ☺ E0.6 smiling face\n"
        "# group: People & Body\n"
        "1F44B 1F3FB ; fully-qualified # 👋🏻 E1.0 waving hand: light skin tone\n"
        "# group: Component\n"
        "1F3FB ; component # 🏻 E1.0 light skin tone\n",
        encoding="utf-8",
    )
    assert noto_emoji.emoji_list(listing) == [
        ("smileys-emotion", "1f600", "😀"),
        ("people-body", "1f44b-1f3fb", "👋🏻"),
    ]
    assert len(noto_emoji.emoji_list(listing, skin_tones=False)) == 1
    if not noto_emoji.FONT.is_file():
        pytest.skip("no Noto Color Emoji font (make data-noto-emoji installs it)")
    font = noto_emoji.ImageFont.truetype(str(noto_emoji.FONT), noto_emoji.STRIKE)
    drawn = noto_emoji.render("😀", font)
    assert drawn is not None
    img = noto_emoji.to_square(drawn, 32, (255, 255, 255))
    assert img.mode == "RGB" and img.size == (32, 32)
    assert np.asarray(img)[0, 0].tolist() == [255, 255, 255]  # the corner: the white background
