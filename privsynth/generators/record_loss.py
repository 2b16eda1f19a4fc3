"""A DP-SGD loss whose records are explicit, so a worker can hold only its shard of them.

A generator's loss used to be a closure over its record arrays: whoever ran it held every record. A
:class:`RecordLoss` names the per-record arrays (``columns``) and keeps the computation (``fn``) apart, so
:meth:`RecordLoss.subset` builds the same loss over some of the records. On a cluster each DP-SGD worker then
receives, once, only the records of its shard (:mod:`privsynth.generators.dpsgd_workers`), and each step only
the positions of its shard's records in the Poisson batch.

``fn`` must reach records only through ``columns``: what it captures besides (shapes, settings, the loss's
own torch generator for column orders or diffusion draws) is sent to every worker, so it must hold no record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


def _length(column: Any) -> int:
    return int(column.shape[0]) if isinstance(column, torch.Tensor | np.ndarray) else len(column)


def _contents(cell: Any) -> Any:
    """What a closure cell holds (``None`` for a name bound later, such as a generator the trainer makes)."""
    try:
        return cell.cell_contents
    except ValueError:
        return None


def take(column: Any, rows: np.ndarray) -> Any:
    """The ``rows`` of one per-record column: a tensor (on its device), an array, or a list of per-record items.

    >>> take([10, 11, 12], np.array([2, 0]))
    [12, 10]
    >>> take(torch.arange(4) * 2, np.array([1, 3])).tolist()
    [2, 6]
    """
    if isinstance(column, torch.Tensor):
        return column[torch.as_tensor(rows, dtype=torch.long, device=column.device)]
    if isinstance(column, np.ndarray):
        return column[rows]
    return [column[int(i)] for i in rows]


@dataclass(frozen=True)
class RecordLoss:
    """``fn(module, *(each column at the batch's rows), *extra)``: the per-record losses ``[B]`` of a batch.

    ``extra`` is what the trainer passes besides the rows (the multi-draw trainer's torch generator).

    >>> loss = RecordLoss(lambda module, x: module(x).sum(1), (torch.ones(5, 2),))
    >>> len(loss), len(loss.subset(np.array([0, 3])))
    (5, 2)
    """

    fn: Callable[..., torch.Tensor]
    columns: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("a RecordLoss needs at least one per-record column")
        lengths = {_length(c) for c in self.columns}
        if len(lengths) != 1:
            raise ValueError("a RecordLoss's columns must hold one entry per record (their lengths differ)")
        captured = [_contents(cell) for cell in (getattr(self.fn, "__closure__", None) or ())]
        if any(value is column for value in captured for column in self.columns):
            # a worker would receive every record with fn, whatever shard it was given
            raise ValueError(
                "a RecordLoss's fn captures one of its record columns; reach records through its arguments"
            )

    def __len__(self) -> int:
        return _length(self.columns[0])

    def __call__(self, module: nn.Module, rows: np.ndarray, *extra: Any) -> torch.Tensor:
        """The per-record losses of records ``rows``."""
        return self.fn(module, *(take(c, rows) for c in self.columns), *extra)

    def subset(self, rows: Sequence[int] | np.ndarray) -> RecordLoss:
        """The same loss over records ``rows`` only (position ``j`` of the subset is record ``rows[j]``)."""
        picked = np.asarray(rows, dtype=np.int64)
        return RecordLoss(self.fn, tuple(take(c, picked) for c in self.columns))


__all__ = ["RecordLoss", "take"]
