"""Training the text model on PUBLIC batches, without noise (public pretraining, and a fit's public corpus).

Nothing private may reach the batches: this is plain training, not DP-SGD. Used by ``privsynth pretrain-text``
and by a fit's ``text.public_corpus`` stage before DP-SGD.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from privsynth.generators.text.network import TextLM
from privsynth.generators.text.tokens import PAD

Batches = Callable[[np.random.Generator], tuple[torch.Tensor, int]]
"""``batches(rng) -> (ids [B, T], c)``: token ids whose first ``c`` columns are condition tokens (not predicted)."""


def train_public(
    network: TextLM,
    batches: Batches,
    *,
    steps: int,
    lr: float,
    rng: np.random.Generator,
    progress: Callable[[int, int, float], None] | None = None,
) -> float:
    """Train ``network`` on PUBLIC batches without noise (Adam, cosine schedule, clipped norm); the last loss.

    Nothing private may reach ``batches``: this is plain training, not DP-SGD.
    """
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    network.train()
    value = float("nan")
    for step in range(1, steps + 1):
        ids, c = batches(rng)
        positions = torch.arange(ids.shape[1] - 1).expand(len(ids), -1).contiguous()
        logits = network(ids[:, :-1].contiguous(), positions)[:, c:, :]
        targets = ids[:, c + 1 :]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        value = float(loss.detach())
        if progress is not None:
            progress(step, steps, value)
    return value


__all__ = ["Batches", "train_public"]
