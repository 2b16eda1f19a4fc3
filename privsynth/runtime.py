"""Process-wide runtime settings applied at the start of long work (never at import time)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """``auto``: the first GPU when torch sees one, else the CPU; any other name as torch spells it (``cuda:1``)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads(threads: int) -> None:
    """Limit torch and BLAS threads.

    One is the default: on busy 2-core machines, two threads made small models up to 100x slower (measured,
    DESIGN.md).
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # inter-op threads can only be set before first use
        torch.set_num_interop_threads(threads)
    threadpool_limits(threads)
