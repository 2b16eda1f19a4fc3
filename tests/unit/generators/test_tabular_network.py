"""The tabular network: ordinal terms, and incremental sampling that equals the network."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from privsynth.generators.tabular.codecs import BooleanCodec, CategoricalCodec, DatetimeCodec, NumericalCodec
from privsynth.generators.tabular.network import ARGN, IncrementalSampler

SIZES = [3, 6, 2, 5]
POSITIONS: list[np.ndarray | None] = [None, np.append(np.linspace(-1, 1, 5), 0.0), None, np.linspace(-1, 1, 5)]


def trained_like(ordinal: bool, seed: int = 0) -> ARGN:
    torch.manual_seed(seed)
    net = ARGN(SIZES, embed_dim=4, hidden=16, layers=2, positions=POSITIONS if ordinal else None)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # away from the zero start of the shift
        net.calibration = torch.randn(net.total) * 0.1
    return net.eval()


@pytest.mark.parametrize("ordinal", [True, False])
def test_incremental_sampling_computes_the_networks_conditionals(ordinal: bool) -> None:
    net = trained_like(ordinal)
    assert net.ordinal is ordinal and (net.shift is not None) is ordinal
    rows = torch.stack([torch.randint(0, size, (7,)) for size in SIZES], dim=1)
    ids = rows + torch.tensor(net.offsets)
    c = len(SIZES)
    visible = torch.tril(torch.ones(c, c), diagonal=-1).expand(7, c, c)
    expected = net(ids, visible, torch.arange(c).expand(7, -1))
    sampler = IncrementalSampler(net)
    pre = sampler.start(7)
    for sub in range(c):
        start, size = net.offsets[sub], net.vocab_sizes[sub]
        got = torch.log_softmax(sampler.logits(pre, sub), dim=-1)
        torch.testing.assert_close(got, expected[:, sub, start : start + size], rtol=1e-5, atol=1e-5)
        pre = pre + sampler.tables[sub][rows[:, sub]]


def test_the_ordinal_terms_start_at_zero_so_training_starts_at_the_dp_marginals() -> None:
    torch.manual_seed(0)
    net = ARGN(SIZES, embed_dim=4, hidden=16, positions=POSITIONS)
    priors = [
        np.full(s, 1.0 / s) if i % 2 else np.arange(1, s + 1) / np.arange(1, s + 1).sum() for i, s in enumerate(SIZES)
    ]
    net.start_from_prior(priors)
    assert net.shift is not None and not net.shift.weight.any() and not net.shift.bias.any()
    with torch.no_grad():
        net.out.weight.zero_()
    ids = torch.zeros(2, len(SIZES), dtype=torch.long) + torch.tensor(net.offsets)
    c = len(SIZES)
    logp = net(ids, torch.ones(2, c, c), torch.arange(c).expand(2, -1))
    for sub, prior in enumerate(priors):
        start, size = net.offsets[sub], net.vocab_sizes[sub]
        np.testing.assert_allclose(logp[0, sub, start : start + size].exp().detach().numpy(), prior, rtol=1e-5)


def test_a_shift_moves_mass_along_the_scale() -> None:
    net = ARGN(SIZES, embed_dim=4, hidden=16, positions=POSITIONS)
    net.start_from_prior([None] * len(SIZES))
    assert net.shift is not None
    with torch.no_grad():
        net.out.weight.zero_()
        net.shift.bias[3] = 2.0  # sub-column 3 leans to its top bins
    c = len(SIZES)
    ids = torch.zeros(1, c, dtype=torch.long) + torch.tensor(net.offsets)
    p = net(ids, torch.zeros(1, c, c), torch.arange(c).expand(1, -1))[0, 3, net.offsets[3] :].exp().detach().numpy()
    assert np.all(np.diff(p) > 0)


def test_positions_follow_each_codecs_token_layout() -> None:
    numbers = NumericalCodec(
        "n", bin_edges=[0, 1, 2, 3], fine_edges=[0, 3], fine_counts=[1], integer=False, bounds=(0, 3), nullable=True
    )
    (scale,) = numbers.positions()
    assert scale is not None and len(scale) == numbers.vocab_sizes()[0]
    assert list(scale) == [-1.0, 0.0, 1.0, 0.0]  # three bins in order, then the missing token in the middle
    dates = DatetimeCodec(
        "d",
        date_only=True,
        bin_edges=[0, 10, 20],
        fine_edges=[0, 20],
        fine_counts=[1],
        integer=True,
        bounds=(0, 20),
        nullable=False,
    )
    assert [None if p is None else len(p) for p in dates.positions()] == [2, None]  # weekdays unordered
    assert CategoricalCodec("c", categories=["a", "b"], has_other=False, nullable=False).positions() == [None]
    assert BooleanCodec("b", nullable=True).positions() == [None]
    for codec in (numbers, dates):
        assert len(codec.positions()) == len(codec.vocab_sizes()) == codec.encode(pd.Series([1.0, 2.0])).shape[1]
