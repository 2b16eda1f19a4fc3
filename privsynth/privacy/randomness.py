"""The one authority for randomness: an independent, named stream per (stage, column, purpose).

Randomness is part of a DP mechanism. Noise, Poisson masks, the holdout split, contribution bounding and
canaries must be unpredictable to anyone holding the release: if they could be replayed, the output would be
a deterministic function of the data and epsilon would be infinite. So every fit gets a *secret root* drawn
from the operating system's entropy (``secrets``, 128 bits) and every consumer asks it for its own stream by
name; numpy's ``SeedSequence`` derives each stream from the root and the name, so two names never share draws
(two columns never get the same noise vectors or Poisson masks), and asking for one name twice is refused.

The root is never stored, logged or released. What a fit must keep to resume exactly is saved by its owner, in
the owner-only work folder: generator *states* of DP-SGD runs, and the outcomes of one-shot draws (the split).

Two other kinds of streams use the same naming:

- **Sampling** streams come from the user's ``--seed``: sampling from a fitted model is post-processing, so its
  randomness may be public and reproducible (the same seed gives the same records).
- **Unsafe reproducible** mode, for tests only, derives the private root from the environment variable
  ``PRIVSYNTH_UNSAFE_REPRODUCIBLE_NOISE`` (an integer). Anyone who knows it can replay the noise: the ledger
  records the mode, datasheets state it, and release policies refuse it unless they say otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

UNSAFE_ENV = "PRIVSYNTH_UNSAFE_REPRODUCIBLE_NOISE"


class RngMode(StrEnum):
    """Where a stream's root came from."""

    OS_ENTROPY = "os-entropy"  # 128 fresh bits from the OS per fit: the only mode a release should carry
    UNSAFE_REPRODUCIBLE = "unsafe-reproducible"  # test-only: root from PRIVSYNTH_UNSAFE_REPRODUCIBLE_NOISE
    SEEDED = "seeded"  # models of privsynth <= 0.x seeded DP noise from the user seed: replayable
    SAMPLING = "sampling"  # the user's --seed, for post-processing only


#: What the ledger and the datasheet say about each mode (one sentence each).
RNG_NOTES: dict[RngMode, str] = {
    RngMode.OS_ENTROPY: (
        "every random draw that touched private data (noise, Poisson sampling, holdout split, contribution "
        "bounding, canaries) came from a fresh 128-bit secret root drawn from the operating system for this fit, "
        "one independent stream per (stage, column, purpose), never stored or released; profile noise is OpenDP's "
        "floating-point-safe Gaussian (OS randomness); DP-SGD noise is torch's Gaussian sampler with its whole "
        "state drawn from the secret root (on a GPU, a 64-bit Philox seed): it cannot be replayed, but it is "
        "floating-point noise, open to the known attacks on floating-point samplers by someone who observes the "
        "sampler's exact outputs"
    ),
    RngMode.UNSAFE_REPRODUCIBLE: (
        "UNSAFE TEST MODE: noise was derived from PRIVSYNTH_UNSAFE_REPRODUCIBLE_NOISE, so anyone who knows that "
        "value can replay it and the differential-privacy guarantee does not hold; never release this output"
    ),
    RngMode.SEEDED: (
        "noise was seeded from a user seed by an older privsynth version and can be replayed: the "
        "differential-privacy guarantee does not hold for this output"
    ),
    RngMode.SAMPLING: "sampling randomness from the user's seed (post-processing; reproducible by design)",
}


def _name_key(parts: tuple[str, ...]) -> tuple[int, ...]:
    """A stable spawn key for a stream name (four 32-bit words of its SHA-256)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


_PROBE_SEED = 20261129


def _init_genrand(seed: int) -> np.ndarray:
    """MT19937's standard seeding of its 624-word state from a 32-bit seed (what torch's ``manual_seed`` runs)."""
    state = np.zeros(624, dtype=np.uint64)
    state[0] = seed & 0xFFFFFFFF
    for i in range(1, 624):
        previous = int(state[i - 1])
        state[i] = (1812433253 * (previous ^ (previous >> 30)) + i) & 0xFFFFFFFF
    return state


def mt19937_generator(words: np.ndarray) -> torch.Generator:
    """A CPU torch generator whose whole MT19937 state is ``words`` (624 x 32 bits), not a 32-bit seed.

    torch exposes no way to set the state words, so the state of a generator seeded with a known probe seed is
    read, the probe's state words are found in it (the layout is checked, never assumed) and replaced. Raises
    if a future torch stores its state differently, rather than silently falling back to 32 bits.
    """
    import torch

    if words.shape != (624,) or not words.any():
        raise ValueError("an MT19937 state is 624 words, not all zero")
    generator = torch.Generator().manual_seed(_PROBE_SEED)
    raw = bytearray(generator.get_state().numpy().tobytes())
    probe = _init_genrand(_PROBE_SEED).tobytes()
    offset = raw.find(probe)
    if offset < 0 or raw.find(probe, offset + 1) >= 0:
        raise RuntimeError("unknown torch CPU generator state layout: cannot seed it with full entropy")
    raw[offset : offset + len(probe)] = words.astype(np.uint64).tobytes()
    generator.set_state(torch.frombuffer(raw, dtype=torch.uint8).clone())
    return generator


def unsafe_reproducible_seed() -> int | None:
    """The integer in ``PRIVSYNTH_UNSAFE_REPRODUCIBLE_NOISE``, or ``None`` when it is unset (read at call time)."""
    raw = os.environ.get(UNSAFE_ENV, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{UNSAFE_ENV} must be an integer (a test seed), got {raw!r}") from None


class Streams:
    """Named, independent random streams from one root.

    Use :meth:`private` for anything that touches private data (a fresh secret root per fit) and
    :meth:`sampling` for post-processing (the user's seed). Each name can be handed out once.

    >>> s = Streams.sampling(7)
    >>> a = s.numpy("sample", "age", "within-bin").random(3)
    >>> bool((a == Streams.sampling(7).numpy("sample", "age", "within-bin").random(3)).all())
    True
    >>> bool((a == Streams.sampling(7).numpy("sample", "wbc", "within-bin").random(3)).any())
    False
    """

    def __init__(self, root: np.random.SeedSequence, mode: RngMode) -> None:
        self._root = root
        self.mode = mode
        self._issued: set[tuple[str, ...]] = set()

    def __reduce__(self) -> Any:
        # The root replays every stream of the fit, the DP noise included: it must never reach a worker, a cache
        # or a file. A function sent to other processes that captured these streams fails here instead.
        raise TypeError("a fit's random streams never leave this process (pickling them would leak their root)")

    @classmethod
    def private(cls) -> Streams:
        """A fresh secret root from OS entropy, or the unsafe test root when the environment asks for it."""
        test_seed = unsafe_reproducible_seed()
        if test_seed is not None:
            log.warning(
                "%s is set: DP noise is REPRODUCIBLE and the privacy guarantee does not hold (tests only)", UNSAFE_ENV
            )
            return cls(np.random.SeedSequence(test_seed), RngMode.UNSAFE_REPRODUCIBLE)
        return cls(np.random.SeedSequence(secrets.randbits(128)), RngMode.OS_ENTROPY)

    @classmethod
    def sampling(cls, seed: int, round: int = 0) -> Streams:
        """Streams for sampling from a fitted model (post-processing): the same seed gives the same draws.

        ``round`` > 0 gives further independent streams of the same seed (more draws, e.g. for range conditions).
        """
        entropy = int(seed) if round == 0 else [int(seed), int(round)]
        return cls(np.random.SeedSequence(entropy), RngMode.SAMPLING)

    @property
    def note(self) -> str:
        """One sentence on where this randomness came from (for the ledger and datasheets)."""
        return RNG_NOTES[self.mode]

    def _sequence(self, parts: tuple[str, ...]) -> np.random.SeedSequence:
        if not parts or not all(parts):
            raise ValueError("a stream is named by non-empty (stage, column, purpose) parts")
        if parts in self._issued:
            raise ValueError(f"stream {'/'.join(parts)} was already handed out; every use needs its own name")
        self._issued.add(parts)
        if self.mode is RngMode.SAMPLING:  # the user's seed: public, and samples must stay what they were
            return np.random.SeedSequence(self._root.entropy, spawn_key=(*self._root.spawn_key, *_name_key(parts)))
        # A private stream's entropy is a one-way hash of the root and the stream's name: a numpy generator carries
        # its seed sequence (in its pickle, for one), so a stream that escapes gives away itself, never the root
        secret = self._root.generate_state(8, np.uint32).tobytes()
        digest = hashlib.sha256(secret + b"\x1f" + "\x1f".join(parts).encode()).digest()
        return np.random.SeedSequence(int.from_bytes(digest[:16], "little"))

    def numpy(self, *parts: str) -> np.random.Generator:
        """A numpy generator (PCG64) of its own for ``parts`` (for example ``("profile", "age", "noise")``)."""
        return np.random.Generator(np.random.PCG64(self._sequence(tuple(parts))))

    def integer(self, *parts: str) -> int:
        """A 63-bit integer of its own for ``parts``, for APIs that take a seed (torch, surrogates)."""
        words = self._sequence(tuple(parts)).generate_state(2, np.uint32)
        return (int(words[0]) << 31) ^ int(words[1])

    def torch(self, *parts: str, device: str | torch.device = "cpu") -> torch.Generator:
        """A torch generator of its own for ``parts``.

        On the CPU, torch's generator is an MT19937 whose ``manual_seed`` keeps only 32 bits, so its whole
        624-word state is filled from the stream instead (:func:`mt19937_generator`). A CUDA generator (Philox)
        takes a 64-bit seed, all of which is used.
        """
        import torch

        if torch.device(device).type == "cpu":
            return mt19937_generator(self._sequence(tuple(parts)).generate_state(624, np.uint32))
        return torch.Generator(device=device).manual_seed(self.integer(*parts))

    def child(self, *parts: str) -> Streams:
        """Streams of their own under ``parts`` (a sub-run, e.g. the canary shadow run), same mode."""
        return Streams(self._sequence(tuple(parts)), self.mode)

    def __repr__(self) -> str:  # never shows the root
        return f"Streams(mode={self.mode.value}, issued={len(self._issued)})"


__all__ = ["RNG_NOTES", "UNSAFE_ENV", "RngMode", "Streams", "unsafe_reproducible_seed"]
