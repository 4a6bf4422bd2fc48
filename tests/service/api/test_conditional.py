"""Class labels through the real app, on the tiny store's cvae-tiny (class names as
Fashion-MNIST's): /sample with a label, the latent operations with one, and clear 422s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.conftest import tiny_settings
from tests.support.api import ok
from tests.support.tiny_store import FASHION_CLASSES

NOISE = np.random.default_rng(0).random((28, 28)).tolist()


@pytest.fixture(scope="module")
def client(tiny_store_all: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(tiny_settings(tiny_store_all, max_iwae_k=20, max_iwae_samples=500))
    ) as test_client:
        yield test_client


def test_models_say_which_are_conditional(client: TestClient) -> None:
    cvae = client.get("/models/cvae-tiny").json()
    assert cvae["conditional"] is True and cvae["class_names"] == FASHION_CLASSES
    assert client.get("/models/vae-tiny").json()["conditional"] is False


def test_sample_with_a_label_by_name_or_index(client: TestClient) -> None:
    by_name = ok(client, "/sample", {"model": "cvae-tiny", "n": 3, "seed": 1, "label": "Sneaker"})
    by_index = ok(client, "/sample", {"model": "cvae-tiny", "n": 3, "seed": 1, "label": 7})
    assert by_name["labels"] == ["sneaker"] * 3 and by_name["images"] == by_index["images"]
    bag = ok(client, "/sample", {"model": "cvae-tiny", "n": 3, "seed": 1, "label": "bag"})
    assert bag["images"] != by_name["images"]  # the label conditions the decoder


def test_sample_without_a_label_draws_each_class_from_the_seed(client: TestClient) -> None:
    four = ok(client, "/sample", {"model": "cvae-tiny", "n": 4, "seed": 9})
    two = ok(client, "/sample", {"model": "cvae-tiny", "n": 2, "seed": 9})
    assert set(four["labels"]) <= set(FASHION_CLASSES)
    assert two["labels"] == four["labels"][:2] and two["images"] == four["images"][:2]
    fixed = ok(client, "/sample", {"model": "cvae-tiny", "n": 1, "seed": 9,
                                    "label": four["labels"][0]})  # fmt: skip
    assert fixed["images"] == four["images"][:1]
    assert "labels" not in ok(client, "/sample", {"model": "vae-tiny", "seed": 9})
    grid = client.post("/sample", json={"model": "cvae-tiny", "n": 4, "seed": 9},
                       headers={"Accept": "image/png"})  # fmt: skip
    assert grid.headers["x-labels"] == ",".join(four["labels"])


def test_latent_operations_take_a_label(client: TestClient) -> None:
    encoded = [
        ok(client, "/encode", {"model": "cvae-tiny", "images": [NOISE], "label": label})
        for label in ("trouser", "bag")
    ]
    assert encoded[0]["mean"] != encoded[1]["mean"]
    per_image = ok(client, "/encode", {"model": "cvae-tiny", "images": [NOISE, NOISE],
                                        "label": ["trouser", 8]})  # fmt: skip
    assert per_image["mean"] == encoded[0]["mean"] + encoded[1]["mean"]
    recon = ok(client, "/reconstruct", {"model": "cvae-tiny", "images": [NOISE], "label": 1})
    assert len(recon["error"]) == 1
    ends = {"start": {"image": NOISE}, "end": {"seed": 2}}
    path = ok(client, "/interpolate", {"model": "cvae-tiny", **ends, "steps": 3, "label": "coat"})
    assert len(path["images"]) == 3
    strip = ok(client, "/traverse", {"model": "cvae-tiny", "dim": 1, "image": NOISE,
                                      "label": "coat"})  # fmt: skip
    assert strip["label"] == "coat"


def test_traverse_from_a_seed_uses_the_class_sample_draws(client: TestClient) -> None:
    strip = ok(client, "/traverse", {"model": "cvae-tiny", "dim": 0, "seed": 9})
    sampled = ok(client, "/sample", {"model": "cvae-tiny", "n": 1, "seed": 9})
    assert [strip["label"]] == sampled["labels"]


def test_score_under_a_label_or_the_mixture_of_classes(client: TestClient) -> None:
    body = {"model": "cvae-tiny", "images": [NOISE], "k": 5, "seed": 3}
    per_class = [ok(client, "/score", {**body, "label": c})["log_likelihood"][0] for c in range(10)]
    mixture = ok(client, "/score", body)
    assert "labels" not in mixture
    # log p(x) = log mean_y p(x | y), each bound with the same noise.
    expected = np.logaddexp.reduce(per_class) - np.log(10)
    assert mixture["log_likelihood"][0] == pytest.approx(expected, rel=1e-9)
    labelled = ok(client, "/score", {**body, "label": "Bag"})
    assert labelled["labels"] == ["bag"]


def test_v2_sample_takes_a_label(client: TestClient) -> None:
    def infer(label: int) -> list[int]:
        inputs = [
            {"name": "n", "datatype": "INT64", "shape": [1], "data": [1]},
            {"name": "seed", "datatype": "INT64", "shape": [1], "data": [4]},
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [label]},
        ]
        response = client.post("/v2/models/cvae-tiny.sample/infer", json={"inputs": inputs})
        assert response.status_code == 200, response.text
        data: list[int] = response.json()["outputs"][0]["data"]
        return data

    assert infer(7) != infer(8)
    assert client.get("/v2/models/cvae-tiny.reconstruct").status_code == 404  # needs labels
    rest = ok(client, "/sample", {"model": "cvae-tiny", "n": 1, "seed": 4, "label": 7,
                                   "format": "array"})  # fmt: skip
    assert infer(7) == np.rint(np.array(rest["images"][0]) * 255).astype(int).ravel().tolist()


SNEAKER = "sneaker"
BAD: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("unknown_class", "/sample", {"model": "cvae-tiny", "label": "sock"}, "invalid_input",
     "label: unknown class 'sock' for model 'cvae-tiny': 't-shirt/top', 'trouser'"),
    ("index_out_of_range", "/sample", {"model": "cvae-tiny", "label": 10}, "invalid_input",
     "label: class index 10 is out of range for model 'cvae-tiny': 0 to 9"),
    ("label_on_vae", "/sample", {"model": "vae-tiny", "label": SNEAKER}, "invalid_input",
     "label: model 'vae-tiny' (vae) is not class-conditional; a label applies only to cvae"),
    ("label_on_gan", "/sample", {"model": "dcgan-tiny", "label": 1}, "invalid_input",
     "label: model 'dcgan-tiny' (dcgan) is not class-conditional"),
    ("label_on_pixelcnn", "/sample", {"model": "pixelcnn-tiny", "label": 1}, "invalid_input",
     "is not class-conditional"),
    ("label_not_a_class", "/sample", {"model": "cvae-tiny", "label": 1.5}, "validation_error",
     "label"),
    ("label_bool", "/sample", {"model": "cvae-tiny", "label": True}, "validation_error", "label"),
    ("encode_without_label", "/encode", {"model": "cvae-tiny", "images": [NOISE]},
     "invalid_input", "label: model 'cvae-tiny' is class-conditional, so encoding needs a label"),
    ("reconstruct_without_label", "/reconstruct", {"model": "cvae-tiny", "images": [NOISE]},
     "invalid_input", "so reconstruction needs a label"),
    ("labels_per_image_count", "/encode",
     {"model": "cvae-tiny", "images": [NOISE], "label": [1, 2]}, "invalid_input",
     "label: give one label for every image (1), got 2"),
    ("one_bad_label_of_many", "/reconstruct",
     {"model": "cvae-tiny", "images": [NOISE, NOISE], "label": [1, "sock"]}, "invalid_input",
     "label[1]: unknown class 'sock'"),
    ("interpolate_without_label", "/interpolate",
     {"model": "cvae-tiny", "start": {"seed": 1}, "end": {"seed": 2}}, "invalid_input",
     "so an interpolation needs a label"),
    ("traverse_latent_without_label", "/traverse",
     {"model": "cvae-tiny", "dim": 0, "latent": [0] * 8}, "invalid_input",
     "so a traversal from an image or a latent needs a label"),
    ("label_on_vae_encode", "/encode", {"model": "vae-tiny", "images": [NOISE], "label": 1},
     "invalid_input", "is not class-conditional"),
    ("score_mixture_too_much_work", "/score",
     {"model": "cvae-tiny", "images": [NOISE] * 3, "k": 20}, "limit_exceeded",
     "got 3 x 20 x 10 classes = 600; send fewer images or a smaller k, or a label"),
    ("sample_autoencoder", "/sample", {"model": "ae-tiny"}, "unsupported_operation",
     "a plain autoencoder has no prior to sample from"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "code", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_labels_are_422(
    client: TestClient, path: str, body: dict[str, Any], code: str, message: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert message in response.json()["error"]


@pytest.mark.parametrize("label", [None, 0])
def test_a_huge_n_is_refused_before_any_label_is_drawn(
    client: TestClient, label: int | None
) -> None:
    body = {"model": "cvae-tiny", "n": 2**62, "label": label}
    response = client.post("/sample", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "limit_exceeded"
