"""A small causal transformer over (prefix tokens + bytes), built only from layers DP-SGD handles well.

Attention is ``nn.Linear`` projections + ``F.scaled_dot_product_attention(is_causal=True)`` (Opacus'
``DPMultiheadAttention`` returns wrong outputs with ``batch_first=True`` and rejects causal masks); LayerNorm,
Embedding and Linear have ghost-clipping norm samplers. Positions are looked up from index tensors with a batch
dimension, contiguous (what ghost clipping needs). Sampling uses a key/value cache.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` [B, T, D]; with ``cache`` (keys, values of earlier positions) only the new positions are given."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if cache is not None:  # one new position attends to everything before it
            if t != 1:
                raise ValueError("cached attention takes one new position at a time")
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
            attended = F.scaled_dot_product_attention(q, k, v)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(b, t, d))
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return x, (k, v)


class TextLM(nn.Module):
    """Causal LM over ``prefix`` condition tokens then output tokens (bytes, specials, placeholders).

    Args:
        output_vocab: ids the model predicts (bytes, specials, placeholders).
        prefix_vocab: ids of condition tokens (the record's tabular tokens), embedded after the output ids.
        max_len: longest sequence (prefix + text) the position table covers.
    """

    def __init__(
        self, *, output_vocab: int, prefix_vocab: int, max_len: int, dim: int = 96, layers: int = 2, heads: int = 4
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError("dim must be a multiple of heads")
        self.output_vocab, self.max_len = output_vocab, max_len
        self.tokens = nn.Embedding(output_vocab + prefix_vocab, dim)
        self.positions = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, output_vocab)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, output_vocab]`` for token ids and position indices (both ``[B, T]``)."""
        x = self.tokens(ids) + self.positions(positions)
        for block in self.blocks:
            x, _ = block(x)
        return self.head(self.norm(x))

    @torch.no_grad()
    def generate(
        self,
        start: torch.Tensor,
        *,
        max_new: int,
        eos: int,
        generator: torch.Generator,
        temperature: float = 1.0,
        banned: list[int] | None = None,
        lengths: torch.Tensor | None = None,
        max_bytes: int | None = None,
    ) -> torch.Tensor:
        """Sample continuations of ``start`` ([N, S]) with a key/value cache.

        A row stops at ``eos``, or once its tokens stand for ``max_bytes`` bytes (``lengths``: bytes per id).
        """
        n, s = start.shape
        positions = torch.arange(s).expand(n, s)
        x = self.tokens(start) + self.positions(positions)
        caches: list[tuple[torch.Tensor, torch.Tensor]] = []
        for block in self.blocks:
            x, cache = block(x)
            caches.append(cache)
        logits = self.head(self.norm(x[:, -1:, :]))[:, 0]
        out = torch.full((n, max_new), eos, dtype=torch.long)
        done = torch.zeros(n, dtype=torch.bool)
        used = torch.zeros(n, dtype=torch.long)
        mask = torch.zeros(self.output_vocab)
        for banned_id in banned or []:
            mask[banned_id] = -math.inf
        for step in range(min(max_new, self.max_len - s)):
            probs = torch.softmax((logits + mask) / temperature, dim=-1)
            drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            drawn = torch.where(done, torch.full_like(drawn, eos), drawn)
            out[:, step] = drawn
            done |= drawn == eos
            if lengths is not None and max_bytes is not None:
                used += lengths[drawn]
                done |= used >= max_bytes
            if bool(done.all()):
                break
            x = self.tokens(drawn[:, None]) + self.positions(torch.full((n, 1), s + step))
            for i, block in enumerate(self.blocks):
                x, caches[i] = block(x, caches[i])
            logits = self.head(self.norm(x))[:, 0]
        return out
