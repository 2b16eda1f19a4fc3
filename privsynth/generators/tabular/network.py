"""The any-order autoregressive network over token sub-columns (TabularARGN family, arXiv:2501.12012).

For every target sub-column ``j`` the network sees the embeddings of the sub-columns that come before ``j`` in a
column order (the others are masked to zero, and a 0/1 mask says which are visible), plus an embedding of ``j``
itself, and predicts ``j``'s token with a shared MLP. Training mixes the canonical order with random orders, so
at sampling time any subset of columns can be fixed first (conditional sampling) and the rest generated in the
canonical order.

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
    """

    def __init__(self, vocab_sizes: list[int], *, embed_dim: int = 16, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.vocab_sizes = list(vocab_sizes)
        self.columns = len(vocab_sizes)
        self.total = sum(vocab_sizes)
        self.embed_dim = embed_dim
        self.tokens = nn.Embedding(self.total, embed_dim)
        self.targets = nn.Embedding(self.columns, embed_dim)
        width = self.columns * embed_dim + self.columns + embed_dim
        blocks: list[nn.Module] = [nn.Linear(width, hidden), nn.ReLU()]
        for _ in range(layers - 1):
            blocks += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.mlp = nn.Sequential(*blocks)
        self.out = nn.Linear(hidden, self.total)
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
        features = torch.cat([context, visible, self.targets(targets)], dim=-1)
        logits = self.out(self.mlp(features)) + self._vocab_mask.to(features.dtype)[targets] + self.calibration
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
        for k in range(c):
            block = weight[:, k * d : (k + 1) * d]  # [H, d]
            start, size = net.offsets[k], net.vocab_sizes[k]
            self.tables.append(net.tokens.weight.detach()[start : start + size] @ block.T + weight[:, c * d + k])
        self.target_terms = net.targets.weight.detach() @ weight[:, c * d + c :].T  # [C, H]
        self.rest = net.mlp[1:]

    @torch.no_grad()
    def sample(self, n: int, order: list[int], fixed: dict[int, int], generator: torch.Generator) -> torch.Tensor:
        """Tokens ``[n, C]`` (local ids per sub-column) sampled in ``order``; ``fixed`` sub-columns are set."""
        net = self.net
        tokens = torch.zeros(n, net.columns, dtype=torch.long)
        pre = self.bias.expand(n, -1).clone()
        out_weight, out_bias = net.out.weight.detach(), net.out.bias.detach()
        for sub in order:
            if sub in fixed:
                chosen = torch.full((n,), fixed[sub], dtype=torch.long)
            else:
                hidden = self.rest(torch.relu(pre + self.target_terms[sub]))
                start, size = net.offsets[sub], net.vocab_sizes[sub]
                logits = hidden @ out_weight[start : start + size].T + out_bias[start : start + size]
                logits = logits + net.calibration[start : start + size]
                chosen = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
            tokens[:, sub] = chosen
            pre += self.tables[sub][chosen]
        return tokens


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
