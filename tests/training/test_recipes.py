"""The parts of the GAN and VAE recipes (docs/training.md), and the sample metrics that choose
between them: each with a known answer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import ablate, data  # noqa: E402
from training.checkpoints import build_model  # noqa: E402
from training.metrics import frechet_distance, kid, precision_recall  # noqa: E402
from training.models.augment import diff_augment  # noqa: E402
from training.models.dcgan import recompute_batchnorm  # noqa: E402
from training.models.flow import RealNVP  # noqa: E402
from training.models.latent import standard_normal_log_prob  # noqa: E402

TINY_GAN = {"channels": 8, "latent_dim": 8, "batch_size": 32}
TINY_VAE = {"channels": 4, "latent_dim": 4, "batch_size": 32, "prior": "flow", "flow_hidden": 16}


def _clusters(n: int, centre: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(centre, 1.0, (n, 16))


def test_identical_sets_have_full_precision_and_recall_and_no_kid() -> None:
    a = _clusters(400, 0.0, 0)
    assert precision_recall(a, a) == (1.0, 1.0)
    mean, std = kid(a, a, subsets=20, subset_size=200)
    assert abs(mean) < 0.05 * kid(a, _clusters(400, 1.0, 1), subsets=20, subset_size=200)[0]
    assert std >= 0 and frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_disjoint_clusters_have_no_precision_nor_recall_and_a_large_kid() -> None:
    real, far = _clusters(300, 0.0, 0), _clusters(300, 50.0, 1)
    assert precision_recall(real, far) == (0.0, 0.0)
    assert kid(real, far, subsets=10, subset_size=100)[0] > 100


def test_kid_is_unbiased_between_two_draws_of_one_distribution() -> None:
    """Two independent sets from the same Gaussian: the estimate straddles 0."""
    estimates = [kid(_clusters(200, 0.0, s), _clusters(200, 0.0, 100 + s), 10, 200)[0]
                 for s in range(8)]  # fmt: skip
    assert min(estimates) < 0 < max(estimates)


def test_a_collapsed_generator_keeps_its_precision_and_loses_its_recall() -> None:
    real = _clusters(500, 0.0, 0)
    collapsed = real[np.argsort(np.linalg.norm(real, axis=1))[:50]].repeat(10, axis=0)
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.3


def test_the_flow_starts_as_the_identity_and_inverts_exactly() -> None:
    torch.manual_seed(0)
    flow = RealNVP(6, layers=4, hidden=16)
    z = torch.randn(5, 6)
    torch.testing.assert_close(flow(z), z)
    torch.testing.assert_close(flow.log_prob(z), standard_normal_log_prob(z))
    for layer in flow.couplings:  # leave the identity
        torch.nn.init.normal_(layer.net[-1].weight, std=0.3)
    eps, _ = flow.inverse(flow(z))
    torch.testing.assert_close(eps, z, rtol=1e-5, atol=1e-5)


def test_the_flow_log_density_has_the_jacobian_s_log_determinant() -> None:
    torch.manual_seed(1)
    flow = RealNVP(3, layers=4, hidden=8).double()
    for layer in flow.couplings:
        torch.nn.init.normal_(layer.net[-1].weight, std=0.5)
    z = torch.randn(1, 3, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: flow.inverse(v)[0], z)[0, :, 0]
    eps, _ = flow.inverse(z)
    expected = standard_normal_log_prob(eps) + torch.linalg.slogdet(jacobian).logabsdet
    torch.testing.assert_close(flow.log_prob(z), expected)


@pytest.mark.parametrize(
    "settings",
    [
        {"d_norm": "spectral", "loss": "hinge", "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9},
        {"d_norm": "none", "r1_gamma": 1.0},
        {"augment": "translation,cutout", "ema_batchnorm": "recompute"},
        {"generator": "deep", "d_channels": 4},
    ],
)
def test_every_gan_recipe_part_trains(settings: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = build_model("dcgan", {**TINY_GAN, **settings}).train()
    batch = data.synthetic(32)
    # Weights (a hinge loss leaves the last bias where it starts: its gradient there is 0).
    networks = (*model.generator.parameters(), *model.discriminator.parameters())
    trained = [p for p in networks if p.ndim > 1]
    before = [p.detach().clone() for p in trained]
    logs = model.training_step(batch.float_images(), batch.labels, model.configure_optimizers())
    assert logs and all(math.isfinite(v) for v in logs.values())
    assert all(not torch.equal(b, p) for b, p in zip(before, trained, strict=True))
    model.end_of_epoch()
    assert model.sample(4, torch.Generator().manual_seed(0)).shape == (4, 1, 28, 28)


def test_unknown_recipe_parts_are_refused() -> None:
    for settings in ({"loss": "wasserstein"}, {"d_norm": "layer"}, {"ema_batchnorm": "keep"},
                     {"generator": "resnet"}):  # fmt: skip
        with pytest.raises(ValueError, match="must be"):
            build_model("dcgan", {**TINY_GAN, **settings})
    with pytest.raises(ValueError, match="unknown augmentation 'colour'"):
        diff_augment(torch.zeros(1, 1, 28, 28), "colour")


def test_recomputed_batch_norm_statistics_are_those_of_the_generator_s_own_outputs() -> None:
    torch.manual_seed(0)
    model = build_model("dcgan", {**TINY_GAN, "ema_batchnorm": "recompute"})
    generator = model.generator_ema.eval()
    layer = generator.fc[1]
    layer.running_mean.fill_(5.0)  # statistics that describe other weights
    recompute_batchnorm(generator, 8)
    assert not generator.training
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(256, 8, generator=g) for _ in range(40)])
    torch.testing.assert_close(layer.running_mean, generator.fc[0](z).mean(0), rtol=1e-4, atol=1e-5)


def test_diff_augment_translates_and_cuts_out_on_the_background() -> None:
    torch.manual_seed(0)
    x = torch.full((64, 1, 28, 28), -1.0)
    x[:, :, 10:18, 10:18] = 1.0
    assert diff_augment(x, "") is x
    moved = diff_augment(x, "translation")
    assert moved.shape == x.shape and set(moved.unique().tolist()) == {-1.0, 1.0}
    assert (moved == 1.0).sum(dim=(1, 2, 3)).eq(64).float().mean() > 0.5  # most stay whole
    cut = diff_augment(x, "cutout")
    assert ((cut == 1.0).sum(dim=(1, 2, 3)) < 64).any() and (cut <= x).all()


def test_flow_prior_vae_trains_every_part_and_its_bound_is_of_the_served_graphs() -> None:
    torch.manual_seed(0)
    model = build_model("vae", TINY_VAE).train()
    batch = data.synthetic(32)
    before = [p.detach().clone() for p in model.parameters()]
    optimizers = model.configure_optimizers()
    for _ in range(2):  # the flow and the proposal start at zero: their inner layers move next
        logs = model.training_step(batch.float_images(), batch.labels, optimizers)
    assert {"bpd", "served_bpd"} <= set(logs) and all(math.isfinite(v) for v in logs.values())
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    model.eval()
    x = batch.float_images()[:4]
    graphs = model.onnx_graphs()
    with torch.no_grad():
        mean, log_var = graphs["encoder"].module(x)
        served_mean, served_log_var = model.served_posterior(x, batch.labels[:4])
        torch.testing.assert_close(mean, served_mean)
        z = torch.randn(3, 4)
        torch.testing.assert_close(graphs["decoder"].module(z)[0], model.served_likelihood(z, z)[0])
    bound = model.iwae_log_prob(x, batch.labels[:4], 8)
    assert torch.isfinite(bound).all() and model.card_fields()["prior"]["kind"] == "realnvp"


@pytest.mark.parametrize("study", sorted(ablate.STUDIES))
def test_every_ablation_variant_is_a_valid_recipe(study: str) -> None:
    spec = ablate.STUDIES[study]
    for settings in spec.variants.values():
        model = build_model(spec.family, settings)
        assert model.config.epochs >= 1


def test_the_ablation_table_gives_each_variant_its_best_epoch_and_training_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ablate, "RUNS", tmp_path)
    run = tmp_path / "dcgan-converged" / "v3-sn"
    run.mkdir(parents=True)
    # Three epochs of 60 s, the second one after a pause the table must not charge for.
    history = [(1, 300.0, 60.0), (2, 120.0, 120.0), (3, 150.0, 5000.0)]
    run.joinpath("metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "heldout_fd": fd, "seconds": s}) + "\n" for e, fd, s in history
    ))  # fmt: skip
    figures = {"fd": 118.0, "kid": 90.0, "precision": 0.7, "recall": 0.65, "class_entropy": 2.25}
    run.joinpath("heldout.json").write_text(json.dumps({"metrics": figures}))
    table = ablate.report("dcgan-converged").splitlines()
    assert len(table) == 3  # the header, its rule and the one variant measured
    assert table[2] == (
        "| v3-sn | d_norm=spectral | 118.0 | 90.0 | 0.700 | 0.650 | 2.250 | 2 of 3 | 3 min |"
    )


def test_an_unknown_ablation_variant_is_refused_before_anything_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ablate, "RUNS", tmp_path)
    assert ablate.main(["dcgan-converged", "--only", "v3,v4"]) == 2
    assert "no variant v4; choose from v3, v3-sn" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())
