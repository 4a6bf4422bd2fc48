"""Convolutional VAE with a discretized logistic likelihood on the 8-bit pixels, and a prior
that is either N(0, I) or learned.

With ``prior = "flow"`` the prior is a RealNVP flow, z = f(eps) with eps ~ N(0, I), trained with
the rest: the ELBO's KL term becomes log q(z | x) - log p(z), estimated from the sampled z, and
the prior learns where the codes of the data are (the aggregate posterior), instead of the
codes being pulled towards a ball they never fill. Samples drawn from it land where codes are.

The flow is folded into the exported graphs, so the service keeps its contract (a latent with
prior N(0, I)): the decoder graph maps eps through f, then decodes; the encoder graph gives a
diagonal Gaussian q(eps | x), the proposal the service's /score needs. That proposal is the
image of q(z | x) through f^-1 (its mean exactly, its spread through the flow's diagonal
scales), corrected by a small network trained on the exported graphs' own ELBO while the rest
learns, with the generative side held fixed for it. Every bound the card gives, like every
/score, is a bound on the likelihood of the model the service samples from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..imageset import DataSpec
from ..nn import MIN_LOG_SCALE, discretized_logistic_log_prob, mean_bits_per_dim
from .base import GraphSpec, descend
from .flow import RealNVP
from .latent import (
    ConvDecoder,
    GaussianLatentModel,
    ImageEncoder,
    VariationalConfig,
    gaussian_kl,
    gaussian_log_prob,
)


@dataclass
class VAEConfig(VariationalConfig):
    epochs: int = 12
    prior: str = "normal"
    """normal: N(0, I); flow: a RealNVP flow learned with the rest (folded into the graphs)."""
    flow_layers: int = 8
    flow_hidden: int = 256


class Encoder(ImageEncoder):
    """image (B, C, H, W) -> mean, log_var (B, d)."""

    def __init__(self, c: int, d: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__(c, 2 * d, image_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        mean, log_var = super().forward(x).chunk(2, dim=1)  # each (B, d)
        return mean, log_var


class Decoder(ConvDecoder):
    """z -> (mu, log_scale) of the pixel likelihood; mu in (0, 1) is also the image shown."""

    def __init__(self, c: int, d: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__(d, c, 2 * image_shape[0], image_shape)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_scale = self.stack(z).chunk(2, dim=1)  # each (B, C, H, W)
        return torch.sigmoid(mu), torch.clamp(log_scale, min=MIN_LOG_SCALE)


class Proposal(nn.Module):
    """q(z | x)'s mean and log-variance -> q(eps | x)'s, for eps = f^-1(z): the mean's image
    through f^-1, the log-variance shifted by the flow's diagonal log-scales there, plus a
    learned correction of both (zero at first)."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        last = nn.Linear(hidden, 2 * d)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(nn.Linear(2 * d, hidden), nn.SiLU(), last)

    def forward(
        self, mean: torch.Tensor, log_var: torch.Tensor, flow: RealNVP
    ) -> tuple[torch.Tensor, torch.Tensor]:
        eps, scales = flow.inverse(mean)
        shift, stretch = self.net(torch.cat([mean, log_var], dim=1)).chunk(2, dim=1)
        return eps + shift, log_var + 2 * scales + stretch


class ServedEncoder(nn.Module):
    """The exported encoder of a flow-prior VAE: image -> mean, log_var of q(eps | x)."""

    def __init__(self, encoder: Encoder, proposal: Proposal, flow: RealNVP) -> None:
        super().__init__()
        self.encoder, self.proposal, self.flow = encoder, proposal, flow

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(x)
        out: tuple[torch.Tensor, torch.Tensor] = self.proposal(mean, log_var, self.flow)
        return out


class ServedDecoder(nn.Module):
    """The exported decoder of a flow-prior VAE: eps -> z = f(eps) -> image, log_scale."""

    def __init__(self, decoder: Decoder, flow: RealNVP) -> None:
        super().__init__()
        self.decoder, self.flow = decoder, flow

    def forward(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out: tuple[torch.Tensor, torch.Tensor] = self.decoder(self.flow(eps))
        return out


class VAE(GaussianLatentModel):
    family = "vae"

    def __init__(self, config: VAEConfig, data: DataSpec) -> None:
        super().__init__(config, data)
        if config.prior not in ("normal", "flow"):
            raise ValueError(f"prior must be 'normal' or 'flow', got {config.prior!r}")
        self.encoder: Encoder = Encoder(config.channels, config.latent_dim, data.image_shape)
        self.decoder: Decoder = Decoder(config.channels, config.latent_dim, data.image_shape)
        self.flow: RealNVP | None = None
        if config.prior == "flow":
            d = config.latent_dim
            self.flow = RealNVP(d, config.flow_layers, config.flow_hidden)
            self.proposal = Proposal(d, config.flow_hidden)

    def log_prior(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.flow is None:
            return super().log_prior(z, y)
        return self.flow.log_prob(z.float())

    def kl(
        self, z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        if self.flow is None:
            return gaussian_kl(mean, log_var)
        return gaussian_log_prob(z.float(), mean.float(), log_var.float()) - self.log_prior(z, y)

    def served_posterior(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flow is None:
            return super().served_posterior(x, y)
        mean, log_var = self.encoder(x)
        out: tuple[torch.Tensor, torch.Tensor] = self.proposal(mean, log_var, self.flow)
        return out

    def served_likelihood(
        self, z: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flow is None:
            return super().served_likelihood(z, y)
        mu, log_scale = self.decoder(self.flow(z))
        return mu, log_scale

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        (opt,) = optimizers
        beta = self.kl_weight(int(self.step))
        loss = mean_bits_per_dim(self.neg_elbo(x, y, beta), x)
        logs = {"bpd": loss.item(), "beta": beta}
        if self.flow is not None:
            proposal = mean_bits_per_dim(self._proposal_loss(x), x)
            logs["served_bpd"] = proposal.item()
            loss = loss + proposal
        descend(opt, loss)
        self.step.add_(1)
        return logs

    def _proposal_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The exported graphs' negative ELBO, per image, with only the proposal's correction
        learning from it: the encoder's outputs are detached, the flow and decoder frozen."""
        assert self.flow is not None
        with torch.no_grad():
            mean, log_var = self.encoder(x)
        frozen = (self.flow, self.decoder)
        for module in frozen:
            module.requires_grad_(False)
        try:
            q_mean, q_log_var = self.proposal(mean.float(), log_var.float(), self.flow)
            eps = q_mean + torch.randn_like(q_mean) * torch.exp(0.5 * q_log_var)
            mu, log_scale = self.decoder(self.flow(eps))
            rec = discretized_logistic_log_prob(x, mu.float(), log_scale.float())
            return -rec + gaussian_kl(q_mean, q_log_var)
        finally:
            for module in frozen:
                module.requires_grad_(True)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator)
        return self.served_likelihood(z, torch.zeros(n, dtype=torch.long))[0]

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        d = self.config.latent_dim
        encoder: nn.Module = self.encoder
        decoder: nn.Module = self.decoder
        if self.flow is not None:
            encoder = ServedEncoder(self.encoder, self.proposal, self.flow)
            decoder = ServedDecoder(self.decoder, self.flow)
        return {
            "encoder": GraphSpec(
                encoder, (self.example_images(),), ["image"], ["mean", "log_var"],
                {"image": {0: "batch"}, "mean": {0: "batch"}, "log_var": {0: "batch"}},
            ),
            "decoder": GraphSpec(
                decoder, (torch.randn(2, d),), ["z"], ["image", "log_scale"],
                {"z": {0: "batch"}, "image": {0: "batch"}, "log_scale": {0: "batch"}},
            ),
        }  # fmt: skip

    def card_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "latent_dim": self.config.latent_dim,
            "likelihood": {"kind": "discretized_logistic", "components": 1},
        }
        if self.flow is not None:
            fields["prior"] = {
                "kind": "realnvp",
                "layers": self.config.flow_layers,
                "folded": "the decoder graph maps its z ~ N(0, I) through the flow before "
                "decoding; the encoder graph gives q(z | x) over that same z",
            }
        return fields
