"""Process-wide runtime settings applied at the start of long work (never at import time)."""

from __future__ import annotations

import contextlib


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
