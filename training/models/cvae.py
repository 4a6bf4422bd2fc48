"""Conditional VAE (Sohn et al. 2015): the class label conditions the encoder, the decoder and
the prior, so sampling can ask for a class. The likelihood is the VAE's discretized logistic.

A learned embedding of the label enters the encoder as extra input channels (every position
sees it) and the decoder beside `z`, before its first layer.

Two things make samples follow the label (the plain model's prior samples were the asked-for
class 82% of the time, against 90% wanted):

- **A learned prior per class**, p(z | y) = N(m_y, diag s_y²), as in Sohn et al.'s prior
  network. `z` still carries some of the class (the ELBO pays only log 10 nats to move it into
  the free label), so each class's posteriors sit off centre; with a prior per class, samples
  for class y are drawn where that class's codes are. The prior is folded into both graphs: the
  encoder returns (z - m_y) / s_y and the decoder takes that standardised code, so every
  exported latent has the prior N(0, I) and the service needs no per-class tables.
- **An auxiliary classifier** (training only, never exported), trained on the real batch. Its
  loss on prior samples for the batch's labels, weighted by `classifier_weight`, goes to the
  decoder and the prior alone, never to the classifier itself (which would learn to call every
  sample what was asked). It is a separate, smaller network than the project classifier that
  the evaluation uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..imageset import DataSpec
from ..nn import MIN_LOG_SCALE, mean_bits_per_dim
from .base import GraphSpec
from .latent import ConvDecoder, GaussianLatentModel, VariationalConfig, conv_encoder

if TYPE_CHECKING:
    from ..evaluation import Evaluation

LOG_VAR_MIN, LOG_VAR_MAX = -12.0, 6.0
"""The posterior's log-variance is clamped: an unclamped one once overflowed exp() in the KL."""
GRAD_CLIP = 5.0


@dataclass
class CVAEConfig(VariationalConfig):
    latent_dim: int = 8
    label_dim: int = 16
    """The size of the label's embedding, in the encoder and the decoder."""
    classifier_weight: float = 0.2
    """Weight of the auxiliary classifier's cross-entropy (nats) on prior samples, beside the
    negative ELBO in bits/dim; it is warmed up with the KL term."""


class ClassPrior(nn.Module):
    """label (B,) -> mean, log_std (B, d) of p(z | y); N(0, I) for every class at first."""

    def __init__(self, classes: int, d: int) -> None:
        super().__init__()
        self.mean = nn.Embedding(classes, d)
        self.log_std = nn.Embedding(classes, d)
        nn.init.zeros_(self.mean.weight)
        nn.init.zeros_(self.log_std.weight)

    def forward(self, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(label), torch.clamp(self.log_std(label), LOG_VAR_MIN / 2, LOG_VAR_MAX / 2)


class Encoder(nn.Module):
    """image (B, C, H, W), label (B,) -> mean, log_var (B, d) of the standardised code
    (z - m_y) / s_y."""

    def __init__(self, c: int, d: int, e: int, prior: ClassPrior, data: DataSpec) -> None:
        super().__init__()
        self.prior = prior
        self.embed = nn.Embedding(data.num_classes, e)
        self.net = conv_encoder(data.image_shape[0] + e, c, 2 * d, data.image_shape)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(label)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        h = torch.cat([x * 2 - 1, e.to(x.dtype)], dim=1)  # (B, C + e, H, W)
        mean, log_var = self.net(h).chunk(2, dim=1)  # each (B, d), of z
        log_var = torch.clamp(log_var, LOG_VAR_MIN, LOG_VAR_MAX)
        prior_mean, prior_log_std = self.prior(label)
        prior_mean, prior_log_std = prior_mean.to(mean.dtype), prior_log_std.to(mean.dtype)
        return (mean - prior_mean) * torch.exp(-prior_log_std), log_var - 2 * prior_log_std


class Decoder(ConvDecoder):
    """standardised code (B, d), label (B,) -> (mu, log_scale) of the pixel likelihood; mu is
    the image."""

    def __init__(self, c: int, d: int, e: int, prior: ClassPrior, data: DataSpec) -> None:
        nn.Module.__init__(self)
        self.prior = prior
        self.embed = nn.Embedding(data.num_classes, e)
        self.build(d + e, c, 2 * data.image_shape[0], data.image_shape)

    def forward(self, code: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prior_mean, prior_log_std = self.prior(label)
        z = prior_mean.to(code.dtype) + torch.exp(prior_log_std).to(code.dtype) * code
        out = self.stack(torch.cat([z, self.embed(label).to(z.dtype)], dim=1))  # (B, 2C, H, W)
        mu, log_scale = out.chunk(2, dim=1)
        return torch.sigmoid(mu), torch.clamp(log_scale, min=MIN_LOG_SCALE)


class AuxiliaryClassifier(nn.Module):
    """image (B, C, H, W) in [0, 1] -> class logits (B, classes); used in training only."""

    def __init__(self, c: int, data: DataSpec) -> None:
        super().__init__()
        channels, h, w = data.image_shape
        self.net = nn.Sequential(
            nn.Conv2d(channels, c, 3, stride=2, padding=1), nn.SiLU(),  # (B, c, H/2, W/2)
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.SiLU(),  # (B, 2c, H/4, W/4)
            nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(2 * c * ((h + 3) // 4) * ((w + 3) // 4), data.num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def balanced_labels(n: int, classes: int) -> torch.Tensor:
    """0, 1, ..., classes - 1, 0, 1, ...: n labels, every class as often as possible."""
    return torch.arange(n) % classes


class CVAE(GaussianLatentModel):
    family = "cvae"
    uses_labels = True
    needs_classes = True

    def __init__(self, config: CVAEConfig, data: DataSpec) -> None:
        super().__init__(config, data)
        d, c, e = config.latent_dim, config.channels, config.label_dim
        prior = ClassPrior(data.num_classes, d)
        self.encoder = Encoder(c, d, e, prior, data)
        self.decoder = Decoder(c, d, e, prior, data)
        self.classifier = AuxiliaryClassifier(c, data)

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        (opt,) = optimizers
        beta = self.kl_weight(int(self.step))
        bpd = mean_bits_per_dim(self.neg_elbo(x, y, beta), x)
        real_ce = F.cross_entropy(self.classifier(x).float(), y)
        sample_ce = self.sample_cross_entropy(y)
        loss = bpd + real_ce + beta * self.config.classifier_weight * sample_ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        vae = [p for name, p in self.named_parameters() if not name.startswith("classifier.")]
        nn.utils.clip_grad_norm_(vae, GRAD_CLIP)
        nn.utils.clip_grad_norm_(self.classifier.parameters(), GRAD_CLIP)
        opt.step()
        self.step.add_(1)
        return {"bpd": bpd.item(), "beta": beta, "real_ce": real_ce.item(),
                "sample_ce": sample_ce.item()}  # fmt: skip

    def sample_cross_entropy(self, labels: torch.Tensor) -> torch.Tensor:
        """The auxiliary classifier's cross-entropy on one prior sample per label, with its
        weights held fixed: the gradient reaches the decoder and the prior only."""
        samples = self.decoder(torch.randn(len(labels), self.config.latent_dim), labels)[0]
        frozen = {k: v.detach() for k, v in self.classifier.named_parameters()}
        logits = functional_call(self.classifier, frozen, (samples,))
        return F.cross_entropy(logits.float(), labels)

    @torch.no_grad()
    def sample_labels(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One image (the decoder's mean) per requested label. (n,) -> (n, C, H, W)"""
        z = torch.randn(len(labels), self.config.latent_dim, generator=generator)
        return self.decoder(z, labels)[0]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n images with balanced labels (0, 1, ..., 9, 0, ...)."""
        return self.sample_labels(balanced_labels(n, self.data.num_classes), generator)

    def evaluate(self, ev: Evaluation) -> dict[str, float | None]:
        """The bounds on log p(x | y), given each image's own label; the samples' quality; and
        how often a sample asked for class c is classified as c."""
        metrics = super().evaluate(ev)
        ev.how["likelihood"] = "conditional on the test image's label, p(x | y)"
        return {**metrics, **self.conditional_accuracy(ev)}

    def conditional_accuracy(self, ev: Evaluation) -> dict[str, float | None]:
        """The fraction of samples asked for class c that the project classifier classifies as
        c, over ``fd_samples`` samples with balanced labels (and per class)."""
        n, classes = ev.fd_samples, self.data.num_classes
        g = torch.Generator().manual_seed(ev.seed + 2)
        labels = balanced_labels(n, classes)
        samples = torch.cat([self.sample_labels(labels[i : i + 500], g) for i in range(0, n, 500)])
        logits, _ = ev.features(samples)
        if logits is None:  # a feature extractor that is no classifier
            return {"conditional_accuracy": None}
        hit = logits.argmax(1) == labels.numpy()
        per_class = [float(hit[labels.numpy() == c].mean()) for c in range(classes)]
        ev.how["conditional_accuracy"] = {
            "samples": n, "per_class": per_class, "seed": ev.seed + 2,
            "meaning": "fraction of samples for class c that the classifier calls c",
        }  # fmt: skip
        return {"conditional_accuracy": float(hit.mean())}

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        d = self.config.latent_dim
        label = torch.tensor([3, 7]) % self.data.num_classes
        return {
            "encoder": GraphSpec(
                self.encoder, (self.example_images(), label), ["image", "label"],
                ["mean", "log_var"],
                {"image": {0: "batch"}, "label": {0: "batch"}, "mean": {0: "batch"},
                 "log_var": {0: "batch"}},
            ),
            "decoder": GraphSpec(
                self.decoder, (torch.randn(2, d), label), ["z", "label"], ["image", "log_scale"],
                {"z": {0: "batch"}, "label": {0: "batch"}, "image": {0: "batch"},
                 "log_scale": {0: "batch"}},
            ),
        }  # fmt: skip

    def card_fields(self) -> dict[str, Any]:
        return {
            "latent_dim": self.config.latent_dim,
            "likelihood": {"kind": "discretized_logistic", "components": 1},
            "conditioning": {"input": "label", "dtype": "int64", "classes": self.data.num_classes},
        }
