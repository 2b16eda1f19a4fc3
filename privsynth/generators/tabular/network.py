"""The any-order autoregressive network over token sub-columns (TabularARGN family, arXiv:2501.12012).

For every target sub-column ``j`` the network sees the embeddings of the sub-columns that come before ``j`` in a
column order (the others are masked to zero, and a 0/1 mask says which are visible), plus an embedding of ``j``
itself, and predicts ``j``'s token with a shared MLP. Training mixes the canonical order with random orders, so
at sampling time any subset of columns can be fixed first (conditional sampling) and the rest generated in the
canonical order.

Ordered sub-columns (numeric and date bins) carry each token's place on the column's scale (public: the token
layout). The network reads it as one more input per sub-column and adds a learned shift along it to the target's
logits, so a monotone relation between two numbers is one direction to learn instead of one weight per bin pair:
under DP-SGD's noise that is the difference between keeping and losing, for example, age against blood pressure
(measured in issue 18's note).

Only Linear, Embedding and ReLU layers: Opacus' ghost clipping has fast paths for all of them, and there are no
buffers or BatchNorm. Token ids arrive already offset into one shared vocabulary (no buffers needed).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class ARGN(nn.Module):
    """Masked, any-order autoregressive MLP.

    Args:
        vocab_sizes: vocabulary size of each token sub-column.
        embed_dim: token embedding width.
        hidden: MLP width.
        layers: number of hidden layers (>= 1).
        positions: each sub-column's token positions in [-1, 1] where its tokens are ordered (``None`` where
            not; :meth:`ColumnCodec.positions`); ``None`` or all ``None``: no ordinal terms (older models).
    """

    def __init__(
        self,
        vocab_sizes: list[int],
        *,
        embed_dim: int = 16,
        hidden: int = 256,
        layers: int = 2,
        positions: list[np.ndarray | None] | None = None,
    ) -> None:
        super().__init__()
        self.vocab_sizes = list(vocab_sizes)
        self.columns = len(vocab_sizes)
        self.total = sum(vocab_sizes)
        self.embed_dim = embed_dim
        self.ordinal = positions is not None and any(p is not None for p in positions)
        # each token's place on its sub-column's scale (0 for unordered ones): a plain tensor, not a buffer
        self.position = torch.zeros(self.total)
        if self.ordinal and positions is not None:
            if len(positions) != self.columns:
                raise ValueError(f"{len(positions)} position lists for {self.columns} sub-columns")
            self.position = torch.cat(
                [
                    torch.zeros(size) if p is None else torch.as_tensor(np.asarray(p), dtype=torch.float32)
                    for p, size in zip(positions, vocab_sizes, strict=True)
                ]
            )
            if len(self.position) != self.total:
                raise ValueError("each position list must have its sub-column's vocabulary size")
        self.tokens = nn.Embedding(self.total, embed_dim)
        self.targets = nn.Embedding(self.columns, embed_dim)
        width = self.columns * embed_dim + self.columns * (2 if self.ordinal else 1) + embed_dim
        blocks: list[nn.Module] = [nn.Linear(width, hidden), nn.ReLU()]
        for _ in range(layers - 1):
            blocks += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.mlp = nn.Sequential(*blocks)
        self.out = nn.Linear(hidden, self.total)
        # the target's shift along its own scale: starts at 0, so training starts at the DP marginals
        self.shift: nn.Linear | None = nn.Linear(hidden, self.columns) if self.ordinal else None
        if self.shift is not None:
            nn.init.zeros_(self.shift.weight)
            nn.init.zeros_(self.shift.bias)
        offsets = [0]
        for size in vocab_sizes[:-1]:
            offsets.append(offsets[-1] + size)
        self.offsets = offsets
        # Post-hoc logit offsets (not trained): calibrate sampled marginals to the DP profile's marginals.
        self.calibration = torch.zeros(self.total)
        owner = torch.cat([torch.full((size,), i) for i, size in enumerate(vocab_sizes)])
        # additive mask: 0 on a column's own vocabulary, -inf elsewhere (a plain tensor, not a buffer)
        self._vocab_mask = torch.where(owner[None, :] == torch.arange(self.columns)[:, None], 0.0, float("-inf"))

    @torch.no_grad()
    def start_from_prior(self, priors: list[np.ndarray | None]) -> None:
        """Start every target at its DP marginal: output bias = log prior, output weights small.

        The marginals come from the DP profile (post-processing), so DP-SGD spends its noisy steps on the
        dependencies between columns rather than on re-learning each column's distribution.
        """
        for sub, prior in enumerate(priors):
            start, size = self.offsets[sub], self.vocab_sizes[sub]
            values = np.full(size, 1.0 / size) if prior is None else prior
            self.out.bias[start : start + size] = torch.as_tensor(np.log(values), dtype=self.out.bias.dtype)
        self.out.weight.mul_(0.1)

    def forward(self, tokens: torch.Tensor, visible: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Log-probabilities over each target's vocabulary.

        Args:
            tokens: ``[B, C]`` global token ids (offset into the shared vocabulary).
            visible: ``[B, T, C]`` 1.0 where sub-column ``k`` is visible when predicting target ``t``.
            targets: ``[B, T]`` which sub-column each target row predicts.

        Returns:
            ``[B, T, total]`` log-probabilities, -inf outside the target's vocabulary.
        """
        embedded = self.tokens(tokens)  # [B, C, d]
        context = (visible.unsqueeze(-1) * embedded.unsqueeze(1)).flatten(2)  # [B, T, C*d]
        parts = [context, visible]
        if self.ordinal:
            parts.append(visible * self.position[tokens].unsqueeze(1))  # [B, T, C]: visible tokens' places
        features = torch.cat([*parts, self.targets(targets)], dim=-1)
        hidden = self.mlp(features)
        logits = self.out(hidden) + self._vocab_mask.to(features.dtype)[targets] + self.calibration
        if self.shift is not None:
            logits = logits + self.shift(hidden).gather(-1, targets.unsqueeze(-1)) * self.position
        return F.log_softmax(logits, dim=-1)


class IncrementalSampler:
    """Exact, fast sampling with a trained :class:`ARGN` (column by column, visible set shared by all rows).

    The first layer is linear in the masked context, so each sampled token's contribution is one row of a
    precomputed table added to a running pre-activation; only the later layers and the target's own slice of
    the output layer run per step. Equivalent to calling the network with the visible mask of each step.
    """

    def __init__(self, net: ARGN) -> None:
        first = net.mlp[0]
        if not isinstance(first, nn.Linear):
            raise TypeError("the ARGN's first layer must be linear for incremental sampling")
        d, c = net.embed_dim, net.columns
        weight = first.weight.detach()
        self.net = net
        self.bias = first.bias.detach()
        self.tables = []
        places = c * d + c  # where the ordinal inputs start (after the embeddings and the visibility bits)
        for k in range(c):
            block = weight[:, k * d : (k + 1) * d]  # [H, d]
            start, size = net.offsets[k], net.vocab_sizes[k]
            table = net.tokens.weight.detach()[start : start + size] @ block.T + weight[:, c * d + k]
            if net.ordinal:
                table = table + net.position[start : start + size, None] * weight[:, places + k]
            self.tables.append(table)
        targets_from = places + (c if net.ordinal else 0)
        self.target_terms = net.targets.weight.detach() @ weight[:, targets_from:].T  # [C, H]
        self.rest = net.mlp[1:]

    @torch.no_grad()
    def sample(self, n: int, order: list[int], fixed: dict[int, int], generator: torch.Generator) -> torch.Tensor:
        """Tokens ``[n, C]`` (local ids per sub-column) sampled in ``order``; ``fixed`` sub-columns are set."""
        net = self.net
        tokens = torch.zeros(n, net.columns, dtype=torch.long)
        pre = self.start(n)
        for sub in order:
            if sub in fixed:
                chosen = torch.full((n,), fixed[sub], dtype=torch.long)
            else:
                probs = torch.softmax(self.logits(pre, sub), dim=-1)
                chosen = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            tokens[:, sub] = chosen
            pre += self.tables[sub][chosen]
        return tokens

    @torch.no_grad()
    def start(self, n: int) -> torch.Tensor:
        """The first layer's pre-activation ``[n, H]`` with nothing visible yet."""
        return self.bias.expand(n, -1).clone()

    @torch.no_grad()
    def logits(self, pre: torch.Tensor, sub: int) -> torch.Tensor:
        """Logits ``[n, vocab]`` of sub-column ``sub`` given the pre-activation of what is visible."""
        net = self.net
        hidden = self.rest(torch.relu(pre + self.target_terms[sub]))
        start, size = net.offsets[sub], net.vocab_sizes[sub]
        logits = hidden @ net.out.weight.detach()[start : start + size].T + net.out.bias.detach()[start : start + size]
        logits = logits + net.calibration[start : start + size]
        if net.shift is not None:
            shift = hidden @ net.shift.weight.detach()[sub] + net.shift.bias.detach()[sub]
            logits = logits + shift.unsqueeze(1) * net.position[start : start + size]
        return logits


def random_visibility(
    batch: int, columns: int, *, random_share: float, generator: torch.Generator, groups: list[list[int]]
) -> torch.Tensor:
    """``[B, C, C]`` visibility for teacher forcing: canonical order, or a random order of column groups.

    Sub-columns of one column (``groups``) stay together and in order, so a column's parts are predicted one
    after another.
    """
    n_groups = len(groups)
    keys = torch.rand(batch, n_groups, generator=generator)
    canonical = torch.rand(batch, generator=generator) >= random_share
    keys[canonical] = torch.arange(n_groups, dtype=keys.dtype).expand(int(canonical.sum()), n_groups)
    group_rank = keys.argsort(dim=1).argsort(dim=1)  # position of each group in its row's order
    position = torch.empty(batch, columns)
    for g, members in enumerate(groups):
        for k, sub in enumerate(members):
            position[:, sub] = group_rank[:, g] * columns + k
    return (position.unsqueeze(1) < position.unsqueeze(2)).float()  # [B, target, visible]
