"""Class-conditional mixture of factor analysers, with every parameter behind an ``nn.Embedding``.

For class ``c`` and component ``k``: ``x = mu_ck + W_ck z + sigma_ck * e`` with ``z ~ N(0, I_r)``, ``e ~ N(0, I)``.
The log-likelihood uses the Woodbury identity, so each component costs O(D r^2). Parameters are embedding
tables indexed by (class, component), which Opacus' ghost clipping handles without per-sample gradients.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MixtureOfFactorAnalysers(nn.Module):
    """``classes`` x ``components`` factor analysers of rank ``rank`` in ``dims`` dimensions."""

    def __init__(self, *, classes: int, components: int, dims: int, rank: int, init_scale: float = 1.0) -> None:
        super().__init__()
        self.classes, self.components, self.dims, self.rank = classes, components, dims, rank
        self.means = nn.Embedding(classes * components, dims)
        self.log_scales = nn.Embedding(classes * components, dims)
        self.factors = nn.Embedding(classes * components, dims * rank)
        self.logits = nn.Embedding(classes, components)
        nn.init.normal_(self.means.weight, std=0.1 * init_scale)
        nn.init.constant_(self.log_scales.weight, math.log(init_scale))
        nn.init.normal_(self.factors.weight, std=0.1 * init_scale)
        nn.init.zeros_(self.logits.weight)

    def _component_ids(self, labels: torch.Tensor) -> torch.Tensor:
        return (labels[:, None] * self.components + torch.arange(self.components)[None, :]).contiguous()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``log p(x | class)`` per row ``[B]`` (what DP-SGD maximises)."""
        return self.log_likelihood(x, labels)

    def log_likelihood(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``log p(x | class)`` per row ``[B]``."""
        ids = self._component_ids(labels)
        mu = self.means(ids)  # [B, K, D]
        log_s = self.log_scales(ids).clamp(-7.0, 5.0)
        w = self.factors(ids).view(len(x), self.components, self.dims, self.rank)
        inv_var = torch.exp(-2 * log_s)  # [B, K, D]
        diff = x[:, None, :] - mu
        wt_inv = w * inv_var[..., None]  # D^-1 W, [B, K, D, r]
        m = torch.eye(self.rank) + torch.einsum("bkdr,bkds->bkrs", w, wt_inv)  # I + W^T D^-1 W
        chol = torch.linalg.cholesky(m)
        proj = torch.einsum("bkdr,bkd->bkr", wt_inv, diff)  # W^T D^-1 (x - mu)
        solved = torch.cholesky_solve(proj[..., None], chol)[..., 0]
        mahalanobis = (diff * diff * inv_var).sum(-1) - (proj * solved).sum(-1)
        log_det = 2 * log_s.sum(-1) + 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        log_pi = torch.log_softmax(self.logits(labels[:, None])[:, 0, :], dim=-1)
        per_component = log_pi - 0.5 * (mahalanobis + log_det + self.dims * math.log(2 * math.pi))
        return torch.logsumexp(per_component, dim=-1)

    @torch.no_grad()
    def sample(
        self, labels: torch.Tensor, generator: torch.Generator, temperature: float = 1.0, residual: float = 1.0
    ) -> torch.Tensor:
        """One draw per label ``[N, D]``: ``temperature`` scales the factors' draw, ``residual`` the diagonal noise."""
        n = len(labels)
        probs = torch.softmax(self.logits.weight[labels], dim=-1)
        k = torch.multinomial(probs, 1, generator=generator)[:, 0]
        ids = labels * self.components + k
        mu = self.means.weight[ids]
        scale = torch.exp(self.log_scales.weight[ids].clamp(-7.0, 5.0))
        w = self.factors.weight[ids].view(n, self.dims, self.rank)
        z = torch.randn(n, self.rank, 1, generator=generator)
        e = torch.randn(n, self.dims, generator=generator)
        return mu + temperature * (w @ z)[..., 0] + residual * scale * e

    @torch.no_grad()
    def class_posterior(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``p(class = label | x)`` per row under this model with equal class priors (its likelihood ratio)."""
        ll = torch.stack([self.log_likelihood(x, torch.full_like(labels, c)) for c in range(self.classes)], dim=1)
        return torch.softmax(ll, dim=1).gather(1, labels[:, None])[:, 0]

    @torch.no_grad()
    def sample_recognisable(
        self,
        labels: torch.Tensor,
        generator: torch.Generator,
        *,
        floor: float,
        redraws: int = 16,
        temperature: float = 1.0,
        residual: float = 1.0,
    ) -> torch.Tensor:
        """Draws that the model itself assigns to their class (one per label ``[N, D]``).

        Each row is drawn again (up to ``redraws`` times) until its :meth:`class_posterior` reaches ``floor``; a
        row that never does keeps its most recognisable draw. The model's own diagonal noise (``residual`` 1)
        keeps synthetic images as varied as the real ones, but a small cohort's noisy class means put many draws
        where the classes overlap, where the image no longer shows its record's class. Redrawing those reads
        nothing but the model: post-processing.
        """
        best = self.sample(labels, generator, temperature=temperature, residual=residual)
        if floor <= 0.0 or self.classes < 2:
            return best
        score = self.class_posterior(best, labels)
        for _ in range(redraws):
            open_rows = torch.nonzero(score < floor)[:, 0]
            if open_rows.numel() == 0:
                break
            # every row draws each round (the stream then does not depend on which rows were still open)
            candidate = self.sample(labels, generator, temperature=temperature, residual=residual)[open_rows]
            posterior = self.class_posterior(candidate, labels[open_rows])
            better = posterior > score[open_rows]
            best[open_rows[better]] = candidate[better]
            score[open_rows[better]] = posterior[better]
        return best
