"""`python -m training evaluate-served`: FD against sampling temperature of a pixel-by-pixel
model as a real service serves it, written into its card."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from harness.live_server import free_port, running_service  # noqa: E402
from training import cli  # noqa: E402
from training.export import export_checkpoint  # noqa: E402
from training.served import served_quality  # noqa: E402
from training.trainer import train  # noqa: E402

TINY = {
    "pixelcnn-small": ("pixelcnn", {"channels": 8, "layers": 3, "mixture_components": 3}),
    "vae-small": ("vae", {"channels": 4, "latent_dim": 4}),
}
QUICK = ["--fd-samples", "20", "--temperatures", "0.8", "--classifier", "random-features"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A PixelCNN and a VAE, one epoch on 64 synthetic images each, exported and served."""
    root = tmp_path_factory.mktemp("served")
    for name, (family, config) in TINY.items():
        ckpt = train(family, "synthetic", root / name, overrides={**config, "epochs": 1,
                     "batch_size": 32}, limit=64, progress=False)  # fmt: skip
        export_checkpoint(ckpt, root / "store", name, metrics={"metrics": {"fd": 1.0},
                          "evaluation": {"fd_samples": 300}})  # fmt: skip
    with running_service(root / "store", SERVICE_DEVICE="cpu") as url:
        yield {"url": url, "store": root / "store"}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_temperature_rows_go_into_the_served_version_s_card(
    served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    card = served["store"] / "pixelcnn-small.v1.json"
    code, out, err = _run(capsys, "evaluate-served", "pixelcnn-small", "--url", served["url"],
                          *QUICK, "--card", str(card))  # fmt: skip
    assert code == 0, err
    printed = json.loads(out)
    body = json.loads(card.read_text())
    rows = {k: v for k, v in body["metrics"].items() if "_temperature_" in k}
    assert set(rows) == {f"{m}_temperature_{t}" for m in ("fd", "class_entropy") for t in (0.8, 1)}
    assert rows["fd_temperature_0.8"] == printed["metrics"]["fd_temperature_0.8"] > 0
    assert rows["class_entropy_temperature_1"] is None  # random features have no classes
    assert body["metrics"]["fd"] == 1.0  # the export's own figures stay
    how = body["evaluation"]["served_temperatures"]
    assert how["version"] == 1 and how["fd_samples"] == 20 and how["temperatures"] == [0.8, 1.0]
    assert how["at_temperature_1"]["fd"] == rows["fd_temperature_1"]
    assert how["at_temperature_1"]["fd_real_floor"] >= 0
    assert body["evaluation"]["fd_samples"] == 300


def test_a_served_measurement_draws_the_same_images_again(served: dict[str, Any]) -> None:
    first, again = (served_quality(served["url"], "pixelcnn-small", (0.7,), 20,
                                   Path("random-features")) for _ in range(2))  # fmt: skip
    assert first["metrics"] == again["metrics"]
    assert first["metrics"]["fd_temperature_0.7"] != first["metrics"]["fd_temperature_1"]


def test_what_cannot_be_measured_is_refused_before_sampling(
    served: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, store = served["url"], served["store"]
    card = store / "pixelcnn-small.v1.json"
    before = card.read_text()
    cases = [
        (["vae-small", "--url", url], "vae-small has no sampling temperature"),
        (["pixelcnn-small", "--url", url, "--card", str(store / "vae-small.v1.json")],
         "is the card of 'vae-small', not 'pixelcnn-small'"),
        (["nothing-here", "--url", url], "nothing-here"),
        (["pixelcnn-small", "--url", f"http://127.0.0.1:{free_port()}"], "127.0.0.1"),
    ]  # fmt: skip
    for args, message in cases:
        code, out, err = _run(capsys, "evaluate-served", *args, *QUICK)
        assert (code, out) == (2, ""), err
        assert message in err
    other = tmp_path / "pixelcnn-small.v2.json"
    other.write_text(json.dumps({**json.loads(before), "version": 2}))
    code, _, err = _run(capsys, "evaluate-served", "pixelcnn-small", "--url", url, *QUICK,
                        "--card", str(other))  # fmt: skip
    assert code == 2 and "serves pixelcnn-small v1, not v2" in err
    assert card.read_text() == before
