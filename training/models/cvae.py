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

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..nn import MIN_LOG_SCALE, discretized_logistic_log_prob, mean_bits_per_dim
from .base import GenerativeModel, GraphSpec

NUM_CLASSES = 10
LOG_VAR_MIN, LOG_VAR_MAX = -12.0, 6.0
"""The posterior's log-variance is clamped: an unclamped one once overflowed exp() in the KL."""
GRAD_CLIP = 5.0


@dataclass
class CVAEConfig:
    latent_dim: int = 8
    channels: int = 32
    label_dim: int = 16
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    kl_warmup_steps: int = 2000
    classifier_weight: float = 0.2
    """Weight of the auxiliary classifier's cross-entropy (nats) on prior samples, beside the
    negative ELBO in bits/dim; it is warmed up with the KL term."""


class ClassPrior(nn.Module):
    """label (B,) -> mean, log_std (B, d) of p(z | y); N(0, I) for every class at first."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.mean = nn.Embedding(NUM_CLASSES, d)
        self.log_std = nn.Embedding(NUM_CLASSES, d)
        nn.init.zeros_(self.mean.weight)
        nn.init.zeros_(self.log_std.weight)

    def forward(self, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(label), torch.clamp(self.log_std(label), LOG_VAR_MIN / 2, LOG_VAR_MAX / 2)


class Encoder(nn.Module):
    """image (B, 1, 28, 28), label (B,) -> mean, log_var (B, d) of the standardised code
    (z - m_y) / s_y."""

    def __init__(self, c: int, d: int, e: int, prior: ClassPrior) -> None:
        super().__init__()
        self.prior = prior
        self.embed = nn.Embedding(NUM_CLASSES, e)
        self.net = nn.Sequential(
            nn.Conv2d(1 + e, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # (B, 2c, 14, 14)
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1), nn.SiLU(),  # (B, 4c, 7, 7)
            nn.Flatten(),
            nn.Linear(4 * c * 49, 2 * d),
        )  # fmt: skip

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(label)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        h = torch.cat([x * 2 - 1, e.to(x.dtype)], dim=1)  # (B, 1 + e, 28, 28)
        mean, log_var = self.net(h).chunk(2, dim=1)  # each (B, d), of z
        log_var = torch.clamp(log_var, LOG_VAR_MIN, LOG_VAR_MAX)
        prior_mean, prior_log_std = self.prior(label)
        prior_mean, prior_log_std = prior_mean.to(mean.dtype), prior_log_std.to(mean.dtype)
        return (mean - prior_mean) * torch.exp(-prior_log_std), log_var - 2 * prior_log_std


class Decoder(nn.Module):
    """standardised code (B, d), label (B,) -> (mu, log_scale) of the pixel likelihood; mu is
    the image."""

    def __init__(self, c: int, d: int, e: int, prior: ClassPrior) -> None:
        super().__init__()
        self.c = c
        self.prior = prior
        self.embed = nn.Embedding(NUM_CLASSES, e)
        self.fc = nn.Linear(d + e, 4 * c * 49)
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # 14x14
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.SiLU(),  # 28x28
            nn.Conv2d(c, 2, 3, padding=1),
        )  # fmt: skip

    def forward(self, code: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prior_mean, prior_log_std = self.prior(label)
        z = prior_mean.to(code.dtype) + torch.exp(prior_log_std).to(code.dtype) * code
        h = self.fc(torch.cat([z, self.embed(label).to(z.dtype)], dim=1))
        out = self.net(h.view(-1, 4 * self.c, 7, 7))  # (B, 2, 28, 28)
        mu = torch.sigmoid(out[:, :1])
        log_scale = torch.clamp(out[:, 1:], min=MIN_LOG_SCALE)
        return mu, log_scale


class AuxiliaryClassifier(nn.Module):
    """image (B, 1, 28, 28) in [0, 1] -> class logits (B, 10); used in training only."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1), nn.SiLU(),  # (B, c, 14, 14)
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.SiLU(),  # (B, 2c, 7, 7)
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(2 * c * 49, NUM_CLASSES),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def balanced_labels(n: int) -> torch.Tensor:
    """0, 1, ..., 9, 0, 1, ...: n labels, every class as often as possible."""
    return torch.arange(n) % NUM_CLASSES


class CVAE(GenerativeModel):
    family = "cvae"
    uses_labels = True

    def __init__(self, config: CVAEConfig) -> None:
        super().__init__(config)
        prior = ClassPrior(config.latent_dim)
        self.encoder = Encoder(config.channels, config.latent_dim, config.label_dim, prior)
        self.decoder = Decoder(config.channels, config.latent_dim, config.label_dim, prior)
        self.classifier = AuxiliaryClassifier(config.channels)
        self.step: torch.Tensor  # optimisation steps taken, for the KL warm-up; checkpointed
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=self.config.lr)]

    def neg_elbo(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """Per-image negative ELBO of log p(x | y) in nats. (B, 1, 28, 28), (B,) -> (B,)"""
        mean, log_var = self.encoder(x, y)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        mu, log_scale = self.decoder(z, y)
        rec = discretized_logistic_log_prob(x, mu.float(), log_scale.float())
        kl = 0.5 * (mean.float() ** 2 + log_var.float().exp() - 1 - log_var.float()).sum(1)
        return -rec + beta * kl

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        (opt,) = optimizers
        beta = min(1.0, (int(self.step) + 1) / max(1, self.config.kl_warmup_steps))
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
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float(mean_bits_per_dim(self.neg_elbo(x, y), x))

    @torch.no_grad()
    def iwae_log_prob(self, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        """Importance-weighted lower bound on log p(x | y) in nats, k samples. -> (B,)"""
        mean, log_var = self.encoder(x, y)
        std = torch.exp(0.5 * log_var)
        log_w = []
        for _ in range(k):
            eps = torch.randn_like(mean)
            z = mean + eps * std
            mu, log_scale = self.decoder(z, y)
            log_px_z = discretized_logistic_log_prob(x, mu, log_scale)
            log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(1)
            log_qz = -0.5 * (eps**2 + log_var + math.log(2 * math.pi)).sum(1)
            log_w.append(log_px_z + log_pz - log_qz)
        return torch.logsumexp(torch.stack(log_w), dim=0) - math.log(k)

    @torch.no_grad()
    def sample_labels(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One image (the decoder's mean) per requested label. (n,) -> (n, 1, 28, 28)"""
        z = torch.randn(len(labels), self.config.latent_dim, generator=generator)
        return self.decoder(z, labels)[0]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n images with balanced labels (0, 1, ..., 9, 0, ...)."""
        return self.sample_labels(balanced_labels(n), generator)

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        d = self.config.latent_dim
        label = torch.tensor([3, 7])
        return {
            "encoder": GraphSpec(
                self.encoder, (torch.rand(2, 1, 28, 28), label), ["image", "label"],
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
            "conditioning": {"input": "label", "dtype": "int64", "classes": NUM_CLASSES},
        }
