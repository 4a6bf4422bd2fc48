"""Training package: one step per family, determinism and resume, export parity, the card."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from modelstore.checksums import sha256_of as sha256  # noqa: E402
from tests.support.triton_repository import check_repository  # noqa: E402
from training import data  # noqa: E402
from training.checkpoints import build_model, load_checkpoint  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.export import IR_VERSION, OPSET, export_checkpoint, train_command  # noqa: E402
from training.imageset import DataSpec  # noqa: E402
from training.metrics import bits_per_dim, class_entropy, frechet_distance  # noqa: E402
from training.models import MODEL_CLASSES  # noqa: E402
from training.models.pixelcnn import PixelCNN, PixelCNNConfig  # noqa: E402
from training.models.pixelrnn import PixelRNN, PixelRNNConfig  # noqa: E402
from training.nn import mixture_log_prob  # noqa: E402
from training.trainer import train  # noqa: E402

TINY = {
    "vae": {"channels": 4, "latent_dim": 4, "batch_size": 32},
    "dcgan": {"channels": 8, "latent_dim": 8, "batch_size": 32},
    "pixelcnn": {"channels": 8, "layers": 2, "mixture_components": 2, "batch_size": 32},
    "classifier": {"channels": 4, "features": 8, "batch_size": 32},
    "autoencoder": {"channels": 4, "latent_dim": 4, "batch_size": 32},
    "cvae": {"channels": 4, "latent_dim": 4, "label_dim": 3, "batch_size": 32},
    "wgan-gp": {"channels": 8, "latent_dim": 8, "batch_size": 32},
    "pixelrnn": {"channels": 8, "layers": 2, "mixture_components": 2, "batch_size": 32},
}
GENERATIVE = ("vae", "dcgan", "pixelcnn", "autoencoder", "cvae", "wgan-gp", "pixelrnn")


@pytest.mark.parametrize("family", sorted(TINY))
def test_one_training_step_per_family_changes_weights(family: str) -> None:
    torch.manual_seed(0)
    model = build_model(family, TINY[family]).train()
    batch = data.synthetic(32)
    before = [p.detach().clone() for p in model.parameters()]
    logs = model.training_step(batch.float_images(), batch.labels, model.configure_optimizers())
    assert logs and all(math.isfinite(v) for v in logs.values())
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)]
    assert all(changed), f"{family}: {changed.count(False)} parameter tensors did not move"


def test_unknown_setting_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="vae has no setting colour.*latent_dim"):
        build_model("vae", {"colour": 3})


def test_same_seed_same_weights_and_resume_matches_uninterrupted(tmp_path: Path) -> None:
    kw = {"seed": 3, "limit": 64, "progress": False, "precision": "fp32"}
    straight = train(
        "vae", "synthetic", tmp_path / "a", overrides={**TINY["vae"], "epochs": 2}, **kw
    )
    train("vae", "synthetic", tmp_path / "b", overrides={**TINY["vae"], "epochs": 1}, **kw)
    resumed = train(
        "vae", "synthetic", tmp_path / "b", overrides={**TINY["vae"], "epochs": 2}, **kw
    )
    a, b = torch.load(straight, weights_only=False), torch.load(resumed, weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    model, ckpt = load_checkpoint(straight)
    assert ckpt["config"]["latent_dim"] == 4 and model.config.latent_dim == 4


CLASSIFIER = Path(__file__).resolve().parents[2] / "model_store" / "classifier-fashion.classifier"


def test_a_tracked_scheduled_run_resumed_matches_it_uninterrupted(tmp_path: Path) -> None:
    """Held-out FD every epoch, a decaying rate and the best epoch kept: 2 epochs straight and
    1 epoch plus a resumed 1 give the same weights, optimisers, curve and best checkpoint."""
    config = {**TINY["dcgan"], "heldout_samples": 64, "lr_schedule": "linear", "lr_hold": 0.5,
              "lr_horizon": 2}  # fmt: skip
    kw = {"seed": 5, "limit": 64, "progress": False, "classifier": CLASSIFIER}
    straight = train("dcgan", "synthetic", tmp_path / "a", overrides={**config, "epochs": 2}, **kw)
    train("dcgan", "synthetic", tmp_path / "b", overrides={**config, "epochs": 1}, **kw)
    resumed = train("dcgan", "synthetic", tmp_path / "b", overrides={**config, "epochs": 2}, **kw)
    a, b = torch.load(straight, weights_only=False), torch.load(resumed, weights_only=False)
    for key, value in a["model"].items():  # the EMA generator included
        assert torch.equal(value, b["model"][key]), key
    for opt_a, opt_b in zip(a["optimizers"], b["optimizers"], strict=True):
        assert opt_a["param_groups"] == opt_b["param_groups"]
    assert a["history"] == [
        {**r, "seconds": a["history"][i]["seconds"],
         "images_per_second": a["history"][i]["images_per_second"]}
        for i, r in enumerate(b["history"])
    ]  # fmt: skip
    first, second = a["history"]  # the rate of each epoch's last step (2 steps an epoch)
    assert first["lr"] == pytest.approx(2e-4)  # 0.5 epochs done: still held
    assert second["lr"] == pytest.approx(2e-4 / 3)  # 1.5 done: 2/3 of the way from 0.5 to 2
    assert all(math.isfinite(r["heldout_fd"]) and "heldout_kid" in r for r in a["history"])
    curve = [
        json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in curve] == [1, 2]
    best = torch.load(tmp_path / "b" / "best.pt", weights_only=False)
    best_epoch = min(curve, key=lambda r: r["heldout_fd"])["epoch"]
    assert best["epoch"] == best_epoch == a["selection"]["best_epoch"]
    assert load_checkpoint(tmp_path / "b")[1]["epoch"] == best_epoch  # a run folder: its best


def test_an_unset_horizon_is_the_epochs_the_run_started_with(tmp_path: Path) -> None:
    config = {**TINY["vae"], "lr_schedule": "cosine"}
    kw = {"limit": 32, "progress": False}
    train("vae", "synthetic", tmp_path, overrides={**config, "epochs": 1}, **kw)
    resumed = train("vae", "synthetic", tmp_path, overrides={**config, "epochs": 2}, **kw)
    ckpt = torch.load(resumed, weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["config"]["lr_horizon"] == 1


def test_a_run_stops_early_when_held_out_fd_stops_improving(tmp_path: Path) -> None:
    """patience=1 with a frozen model (lr 0): the second epoch cannot beat the first."""
    config = {**TINY["dcgan"], "heldout_samples": 32, "lr": 0.0, "epochs": 5, "patience": 1}
    kw = {"limit": 32, "progress": False, "classifier": CLASSIFIER}
    ckpt = torch.load(train("dcgan", "synthetic", tmp_path, overrides=config, **kw),
                      weights_only=False)  # fmt: skip
    assert ckpt["epoch"] == 2 and "no better heldout_fd in 1 epochs" in ckpt["stopped"]
    # resuming a run that stopped early trains nothing more
    again = torch.load(train("dcgan", "synthetic", tmp_path, overrides=config, **kw),
                       weights_only=False)  # fmt: skip
    assert again["epoch"] == 2


@pytest.mark.parametrize(
    ("schedule", "done", "factor"),
    [("constant", 30.0, 1.0), ("linear", 5.0, 1.0), ("linear", 15.0, 0.55), ("linear", 40.0, 0.1),
     ("cosine", 15.0, 0.55), ("cosine", 25.0, 0.1)],
)  # fmt: skip
def test_learning_rate_schedule_holds_then_decays_to_its_floor(
    schedule: str, done: float, factor: float
) -> None:
    from training.models.base import lr_factor

    config = build_model("dcgan", {"lr_schedule": schedule, "lr_hold": 10, "lr_horizon": 20,
                                   "lr_final": 0.1}).config  # fmt: skip
    assert lr_factor(config, done) == pytest.approx(factor)


def test_a_schedule_and_a_per_step_decay_together_are_refused() -> None:
    with pytest.raises(ValueError, match="lr_decay=1.0"):
        build_model("pixelcnn", {"lr_schedule": "cosine"})


def test_auto_precision_is_bf16_only_with_bf16_instructions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from training import hardware

    monkeypatch.setattr(hardware, "_cpuinfo", lambda: "flags\t: fpu avx2 amx_bf16 amx_tile\n")
    assert hardware.auto_precision() == "bf16" and hardware.bf16_instructions() == ["amx_bf16"]
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: "flags\t: fpu avx2 fma\n")
    assert hardware.auto_precision() == "fp32" and "no bf16" in hardware.cpu_description()


def test_resume_refuses_a_checkpoint_with_other_settings(tmp_path: Path) -> None:
    kw = {"limit": 32, "progress": False, "overrides": {**TINY["vae"], "epochs": 1}}
    train("vae", "synthetic", tmp_path, seed=1, **kw)
    with pytest.raises(ValueError, match="trained with other settings"):
        train("vae", "synthetic", tmp_path, seed=2, **kw)


def test_resume_refuses_to_stop_measuring_what_chooses_the_best_epoch(tmp_path: Path) -> None:
    kw = {"limit": 64, "progress": False, "classifier": CLASSIFIER}
    config = {**TINY["dcgan"], "heldout_samples": 64, "epochs": 1}
    train("dcgan", "synthetic", tmp_path, overrides=config, **kw)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    for overrides, given in (({**config, "heldout_samples": 0, "epochs": 2}, kw),
                             ({**config, "epochs": 2}, {**kw, "classifier": None})):  # fmt: skip
        with pytest.raises(ValueError, match="keeps its best epoch by held-out FD"):
            train("dcgan", "synthetic", tmp_path, overrides=overrides, **given)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    ("family", "seen_by_the_last_pixel"),
    [
        # no blind spot: it sees the pixel up and to the right
        ("pixelcnn", [(26, 27), (25, 27), (27, 26)]),
        # the row above through the LSTM state, the left neighbour too
        ("pixelrnn", [(26, 27), (0, 27), (27, 26)]),
    ],
)
def test_autoregressive_output_never_depends_on_the_current_or_later_pixels(
    family: str, seen_by_the_last_pixel: list[tuple[int, int]]
) -> None:
    torch.manual_seed(0)
    layers = {"pixelcnn": 3, "pixelrnn": 2}[family]
    net = build_model(family, {"channels": 8, "layers": layers}).net
    order = np.arange(28 * 28).reshape(28, 28)
    for i, j in [(0, 0), (5, 17), (27, 27)]:
        x = torch.rand(1, 1, 28, 28, requires_grad=True)
        net(x)[0, :, i, j].sum().backward()
        seen = (x.grad[0, 0].abs() > 0).numpy()
        assert not seen[order >= i * 28 + j].any(), f"pixel {(i, j)} sees itself or the future"
        if (i, j) == (27, 27):
            assert all(seen[p] for p in seen_by_the_last_pixel)


def test_pixelrnn_row_steps_give_the_full_forward_pass_exactly() -> None:
    """The sampler's one-row steps compute the same params as the whole-image forward pass,
    and a shorter image gives the same rows as the full one (the graph's dynamic height)."""
    torch.manual_seed(0)
    model = PixelRNN(
        PixelRNNConfig(channels=8, layers=2, mixture_components=2), data.spec("fashion-mnist")
    ).eval()
    net, reach = model.net, model.net.reach
    x = model.sample(3, torch.Generator().manual_seed(0))
    assert set(torch.unique(x * 255).round().tolist()) <= set(range(256))
    with torch.no_grad():
        full = net(x)
        centred = torch.cat([torch.zeros(3, 1, reach, 28), x * 2 - 1], dim=2)
        states = [layer.initial(torch.zeros(3, 28, 8)) for layer in net.rows]
        for i in range(28):
            params, states = net.step(centred[:, :, i : i + reach + 1], states)
            torch.testing.assert_close(params[:, :, 0], full[:, :, i], rtol=0, atol=1e-5)
        torch.testing.assert_close(net(x[:, :, :13]), full[:, :, :13], rtol=0, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_pixelcnn_windowed_sampler_draws_the_naive_samplers_pixels(channels: int) -> None:
    """The evaluation's fast sampler is exact: the same generator gives the same pixels as
    one pass of the whole network per pixel, grey and colour, and at a lower temperature."""
    torch.manual_seed(0)
    spec = data.spec("fashion-mnist")
    if channels == 3:
        spec = DataSpec((3, 12, 12), spec.class_names)
    model = PixelCNN(PixelCNNConfig(channels=8, layers=3, mixture_components=2), spec).eval()
    for temperature in (1.0, 0.8):
        fast = model.sample(3, torch.Generator().manual_seed(1), temperature)
        naive = model.sample_naive(3, torch.Generator().manual_seed(1), temperature)
        assert fast.shape == (3, *spec.image_shape)
        assert torch.equal(fast, naive)
        assert len(torch.unique(fast)) > 10  # real draws, not a constant image


def test_wgan_gp_generator_steps_once_per_n_critic_critic_steps() -> None:
    torch.manual_seed(0)
    model = build_model("wgan-gp", {**TINY["wgan-gp"], "n_critic": 3}).train()
    optimizers = model.configure_optimizers()
    batch = data.synthetic(32)
    moved = []
    for _ in range(7):
        before = [p.detach().clone() for p in model.generator.parameters()]
        model.training_step(batch.float_images(), batch.labels, optimizers)
        moved.append(
            any(
                not torch.equal(b, p)
                for b, p in zip(before, model.generator.parameters(), strict=True)
            )
        )
    assert moved == [True, False, False, True, False, False, True]


LATENT = ("vae", "dcgan", "autoencoder", "cvae", "wgan-gp")


@pytest.mark.parametrize("family", LATENT)
@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 28, 28)])
def test_latent_families_build_train_and_export_at_colour_shapes(
    family: str, shape: tuple[int, int, int]
) -> None:
    """Their layers follow ``DataSpec.image_shape``: colour images, other sizes."""
    model_cls, config_cls = MODEL_CLASSES[family]
    torch.manual_seed(0)
    spec = data.DataSpec(shape, tuple(map(str, range(10))))
    model = model_cls(config_cls(**TINY[family]), spec).train()
    x, y = torch.rand(8, *shape), torch.randint(0, 10, (8,))
    logs = model.training_step(x, y, model.configure_optimizers())
    assert logs and all(math.isfinite(v) for v in logs.values())
    model.eval()
    for role, graph in model.onnx_graphs().items():
        with torch.no_grad():
            out = graph.module(*graph.example_inputs)
        outputs = out if isinstance(out, tuple) else (out,)
        images = [o for o in outputs if o.ndim == 4]
        assert images or role == "encoder"
        assert all(tuple(o.shape[1:]) == shape for o in images), (role, graph.output_names)


@pytest.mark.parametrize("family", ["pixelcnn", "pixelrnn"])
@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 36, 36), (1, 64, 64)])
def test_pixel_families_model_colour_and_other_sizes(
    family: str, shape: tuple[int, int, int]
) -> None:
    """Colour: 10 K params per pixel (PixelCNN++: R, then G given R, then B given R and G), a
    pixel's params blind to all its channels; the layers grow with the height, recorded in the
    config; a training step, and graphs of the image's shape."""
    model_cls, config_cls = MODEL_CLASSES[family]
    torch.manual_seed(0)
    spec = data.DataSpec(shape, tuple(map(str, range(10))))
    assert model_cls.unsupported(spec) is None
    settings = {k: v for k, v in TINY[family].items() if k != "layers"}
    model = model_cls(config_cls(**settings), spec)
    base = {"pixelcnn": 8, "pixelrnn": 4}[family]
    assert model.config.layers == max(base, round(base * shape[1] / 28))
    assert len(model.net.layers) == model.config.layers
    c = shape[0]
    x = torch.randint(0, 256, (2, *shape)).float() / 255
    logs = model.train().training_step(x, torch.zeros(2), model.configure_optimizers())
    assert all(math.isfinite(v) for v in logs.values())
    model.eval()
    with torch.no_grad():
        params = model.net(x)
        assert params.shape == (2, (10 if c == 3 else 3) * 2, *shape[1:])
        changed = x.clone()
        changed[:, :, 5, 5] = torch.rand(2, c)
        after = model.net(changed)
        torch.testing.assert_close(after[:, :, :5], params[:, :, :5], rtol=0, atol=0)
        torch.testing.assert_close(after[:, :, 5, :6], params[:, :, 5, :6])
        assert not torch.allclose(after[:, :, 5, 6], params[:, :, 5, 6])
        drawn = model.sample(1, torch.Generator().manual_seed(0)) if shape[1] == 28 else None
    if drawn is not None:
        assert drawn.shape == (1, *shape)
    likelihood = model.card_fields()["likelihood"]
    assert likelihood.get("channels", 1) == c and likelihood.get("coefficients", False) == (c == 3)


def test_cvae_decoder_follows_the_label() -> None:
    torch.manual_seed(0)
    model = build_model("cvae", TINY["cvae"]).eval()
    z = torch.randn(2, 4)
    with torch.no_grad():
        a = model.decoder(z, torch.tensor([0, 0]))[0]
        b = model.decoder(z, torch.tensor([0, 9]))[0]
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


def test_bits_per_dim_of_a_uniform_model_is_exactly_8() -> None:
    dims = 28 * 28
    assert bits_per_dim(np.full(5, dims * math.log(256)), dims) == pytest.approx(8.0, abs=1e-12)


def test_discretized_logistic_mixture_sums_to_one_over_the_256_values() -> None:
    values = torch.arange(256, dtype=torch.float64).div(255).view(256, 1, 1, 1)
    params = torch.randn(1, 9, 1, 1, dtype=torch.float64).expand(256, 9, 1, 1)
    assert mixture_log_prob(values, params).exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_frechet_distance_known_answers() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2000, 6))
    shift = np.array([1.0, -2.0, 0, 0, 0, 0.5])
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + shift) == pytest.approx((shift**2).sum(), rel=1e-6)
    # Features b against 2b: |mu|^2 + Tr(S + 4S - 2 * 2S) = |mu|^2 + Tr(S), for the sample S.
    b = rng.standard_normal((5000, 3)) @ rng.standard_normal((3, 3))
    expected = (b.mean(0) ** 2).sum() + np.trace(np.cov(b, rowvar=False))
    assert frechet_distance(b, 2 * b) == pytest.approx(expected, rel=1e-9)


def test_class_entropy_known_answers() -> None:
    assert class_entropy(np.arange(1000) % 10) == pytest.approx(math.log(10))
    assert class_entropy(np.full(50, 7)) == 0.0


def test_missing_dataset_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(data.DatasetMissingError, match="apt-get install -y dataset-fashion-mnist"):
        data.load_fashion_mnist("train", root=tmp_path)
    env = {**os.environ, "FASHION_MNIST_DIR": str(tmp_path)}
    cli = subprocess.run(
        [sys.executable, "-m", "training", "train", "vae", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 2
    assert "dataset-fashion-mnist" in cli.stderr and "Traceback" not in cli.stderr


def test_test_split_is_disjoint_from_training() -> None:
    train_set = data.load_fashion_mnist("train")
    held = data.load_fashion_mnist("heldout")
    test = data.load_fashion_mnist("test")
    assert (len(train_set), len(held), len(test)) == (50_000, 10_000, 10_000)
    train_hashes = {bytes(img.numpy()) for img in train_set.images}
    held_hashes = {bytes(img.numpy()) for img in held.images}
    test_hashes = {bytes(img.numpy()) for img in test.images}
    assert not held_hashes & train_hashes and not test_hashes & train_hashes


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store exported from tiny checkpoints trained on the synthetic set, with real metrics."""
    root = tmp_path_factory.mktemp("store")
    for family in ("classifier", *GENERATIVE):
        ckpt = train(
            family, "synthetic", root / "runs" / family, overrides={**TINY[family], "epochs": 1},
            limit=64, progress=False,
        )  # fmt: skip
        model, info = load_checkpoint(ckpt)
        if family == "classifier":
            metrics = evaluate(model, "synthetic", root / "x", limit=64)
        else:
            metrics = evaluate(
                model, "synthetic", root / "store" / "classifier-synthetic.classifier",
                fd_samples=20,
                iwae_k=3, limit=40,
            )  # fmt: skip
        export_checkpoint(ckpt, root / "store", f"{family}-synthetic", metrics=metrics)
    return root / "store"


def test_export_writes_a_card_that_describes_and_checksums_every_file(tiny_store: Path) -> None:
    cards = sorted(tiny_store.glob("*.v1.json"))
    assert len(cards) == 1 + len(GENERATIVE)
    for path in cards:
        card = json.loads(path.read_text())
        required = set(
            "schema_version name version family dataset image_shape latent_dim graphs metrics "
            "evaluation training export files".split()
        )
        assert required <= set(card), f"{path}: missing {required - set(card)}"
        on_disk = {
            p.relative_to(tiny_store).as_posix() for p in tiny_store.glob(f"{card['name']}.*/1/*")
        }
        assert set(card["files"]) == on_disk
        for name, entry in card["files"].items():
            assert entry["sha256"] == sha256(tiny_store / name)
        for role, graph in card["graphs"].items():
            assert graph["file"] == f"{card['name']}.{role}/1/model.onnx"
            model = onnx.load(str(tiny_store / graph["file"]))
            assert model.ir_version <= IR_VERSION and model.opset_import[0].version == OPSET
            assert card["export"]["parity"][role]["max_abs_diff"] <= 1e-4
            assert graph["inputs"][0]["shape"][0] == -1  # dynamic batch
        assert card["training"]["command"].startswith("python -m training train")
        assert card["training"]["seconds"] > 0 and card["training"]["hardware"]
    # A Triton model repository: one model per graph, configs that match the graphs.
    graphs = {f"{c.stem.rsplit('.', 1)[0]}.{role}" for c in cards for role in _graphs(c)}
    assert check_repository(tiny_store) == sorted(graphs)


def _graphs(card: Path) -> list[str]:
    return list(json.loads(card.read_text())["graphs"])


def test_export_records_the_metrics_each_family_promises(tiny_store: Path) -> None:
    def metrics(name: str) -> dict[str, float]:
        return json.loads((tiny_store / f"{name}.v1.json").read_text())["metrics"]

    assert 0 <= metrics("classifier-synthetic")["test_accuracy"] <= 1
    # IWAE is the tighter bound in expectation; both are Monte Carlo estimates, and on a barely
    # trained model (posterior near the prior) their gap is within that noise.
    noise = 1e-3
    vae = metrics("vae-synthetic")
    assert vae["test_bpd_iwae"] <= vae["test_bpd_neg_elbo"] + noise
    assert 0 < metrics("pixelcnn-synthetic")["test_bpd"] < 16
    dcgan = json.loads((tiny_store / "dcgan-synthetic.v1.json").read_text())
    selection = dcgan["evaluation"]["generator_selection"]  # chosen on held-out, not test
    assert selection["chosen"] in {"ema", "trained"} and set(selection["heldout_fd"]) == {
        "ema",
        "trained",
    }
    samplers = ("vae", "dcgan", "pixelcnn", "cvae", "wgan-gp", "pixelrnn")
    for name in (f"{family}-synthetic" for family in samplers):
        m = metrics(name)
        assert m["fd"] >= 0 and m["fd_real_floor"] >= 0
        assert 0 <= m["class_entropy"] <= math.log(10) + 1e-9
    assert 0 < metrics("pixelrnn-synthetic")["test_bpd"] < 16
    cvae = metrics("cvae-synthetic")
    assert cvae["test_bpd_iwae"] <= cvae["test_bpd_neg_elbo"] + noise
    assert 0 <= cvae["conditional_accuracy"] <= 1
    autoencoder = metrics("autoencoder-synthetic")
    assert "fd" not in autoencoder  # nothing to sample: its reconstructions are measured
    assert autoencoder["test_reconstruction_mse"] > 0 and autoencoder["reconstruction_fd"] >= 0


def test_new_families_export_the_graph_contracts_the_service_reads(tiny_store: Path) -> None:
    def card(name: str) -> dict:
        return json.loads((tiny_store / f"{name}.v1.json").read_text())

    def io(graph: dict) -> tuple[list, list]:
        def spec(ts: list) -> list:
            return [(t["name"], t["dtype"], t["shape"]) for t in ts]

        return spec(graph["inputs"]), spec(graph["outputs"])

    cvae = card("cvae-synthetic")
    assert cvae["family"] == "cvae" and cvae["latent_dim"] == 4 and len(cvae["class_names"]) == 10
    assert io(cvae["graphs"]["encoder"]) == (
        [("image", "float32", [-1, 1, 28, 28]), ("label", "int64", [-1])],
        [("mean", "float32", [-1, 4]), ("log_var", "float32", [-1, 4])],
    )
    assert io(cvae["graphs"]["decoder"]) == (
        [("z", "float32", [-1, 4]), ("label", "int64", [-1])],
        [("image", "float32", [-1, 1, 28, 28]), ("log_scale", "float32", [-1, 1, 28, 28])],
    )
    ae = card("autoencoder-synthetic")
    assert io(ae["graphs"]["encoder"])[1] == [("z", "float32", [-1, 4])]
    assert io(ae["graphs"]["decoder"]) == (
        [("z", "float32", [-1, 4])],
        [("image", "float32", [-1, 1, 28, 28])],
    )
    wgan = card("wgan-gp-synthetic")
    assert wgan["family"] == "wgan-gp"
    assert io(wgan["graphs"]["generator"]) == (
        [("z", "float32", [-1, 8])],
        [("image", "float32", [-1, 1, 28, 28])],
    )
    rnn = card("pixelrnn-synthetic")
    assert list(rnn["graphs"]) == ["pixelrnn", "step"] and rnn["latent_dim"] is None
    assert rnn["likelihood"] == {"kind": "discretized_logistic_mixture", "components": 2}
    assert rnn["sampler"] == {"kind": "row_step", "window_rows": 4}  # the 7×7 mask's rows
    assert io(rnn["graphs"]["pixelrnn"]) == (
        [("image", "float32", [-1, 1, -1, 28])],
        [("params", "float32", [-1, 6, -1, 28])],
    )
    layers, channels = TINY["pixelrnn"]["layers"], TINY["pixelrnn"]["channels"]
    state = [-1, layers, 2, 28, channels]
    assert io(rnn["graphs"]["step"]) == (
        [("image", "float32", [-1, 1, -1, 28]), ("state", "float32", state)],
        [("params", "float32", [-1, 6, 1, 28]), ("next_state", "float32", state)],
    )


def test_the_card_command_trains_the_epochs_that_were_trained() -> None:
    """A run planned for 40 epochs and stopped after 12 is reproduced by asking for 12."""
    model = build_model("wgan-gp", {"epochs": 40, "n_critic": 2})
    ckpt = {"dataset": "fashion-mnist", "seed": 0, "precision": "fp32", "limit": None,
            "config": {**vars(model.config)}, "epoch": 12}  # fmt: skip
    assert train_command(model, ckpt) == (
        "python -m training train wgan-gp --dataset fashion-mnist --seed 0 --precision fp32 "
        "--set epochs=12 --set n_critic=2"
    )


def test_export_never_overwrites_a_version(tiny_store: Path) -> None:
    ckpt = tiny_store.parent / "runs" / "dcgan" / "checkpoint.pt"
    with pytest.raises(ValueError, match="never overwritten"):
        export_checkpoint(
            ckpt,
            tiny_store,
            "dcgan-synthetic",
            version=1,
            metrics={"metrics": {}, "evaluation": {}},
        )
    assert not list(tiny_store.glob(".*"))  # no staging folder left behind


def test_mnist_digits_split_into_disjoint_train_heldout_and_test() -> None:
    parts = {s: data.load("mnist", s) for s in data.SPLITS}
    assert [len(parts[s]) for s in data.SPLITS] == [3000, 1000, 1000]
    assert len(data.load_mnist_digits()) == 5000  # all of them, as out-of-distribution data
    seen = {bytes(img.numpy()) for img in parts["train"].images}
    assert not seen & {bytes(img.numpy()) for img in parts["test"].images}


def test_exported_dcgan_is_the_generator_its_card_says_was_chosen(tiny_store: Path) -> None:
    import onnxruntime as ort

    card = json.loads((tiny_store / "dcgan-synthetic.v1.json").read_text())
    chosen = card["evaluation"]["generator_selection"]
    model, _ = load_checkpoint(tiny_store.parent / "runs" / "dcgan" / "checkpoint.pt")
    generator = model.generator_ema if chosen["chosen"] == "ema" else model.generator
    z = torch.randn(4, model.config.latent_dim, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(tiny_store / card["graphs"]["generator"]["file"]))
    (got,) = session.run(["image"], {"z": z.numpy()})
    with torch.no_grad():
        expected = (generator.eval()(z) + 1) / 2
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def test_pixel_families_measure_fd_at_each_temperature_asked() -> None:
    torch.manual_seed(0)
    model = build_model("pixelcnn", TINY["pixelcnn"], "synthetic").eval()
    result = evaluate(model, "synthetic", CLASSIFIER, fd_samples=8, limit=8, temperatures=(0.8,))
    metrics = result["metrics"]
    assert math.isfinite(metrics["fd_temperature_0.8"]) and math.isfinite(metrics["fd"])
    assert 0 <= metrics["class_entropy_temperature_0.8"] <= math.log(10)
    assert result["evaluation"]["temperatures"] == [0.8, 1.0]
