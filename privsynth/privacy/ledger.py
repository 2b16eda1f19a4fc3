"""The one privacy ledger: every mechanism that touches real data is spent here, before its noise is drawn.

A :class:`PrivacyLedger` holds a target (epsilon, delta), the accountant that composes mechanisms, and the
entries spent so far. :meth:`PrivacyLedger.spend` refuses (``BudgetExceededError``) when the composed epsilon
would pass the target, so callers must spend *before* drawing noise. The ledger is the only stateful privacy
object; the maths lives in :mod:`privsynth.privacy.accounting`.

Delta is split in two parts: ``extra_delta`` reserved by mechanisms with a failure probability of their own
(the thresholds of sparse histograms), and the rest, at which the accountant converts to epsilon. The whole
release is (epsilon, delta)-DP with ``delta = accountant delta + sum of extra deltas``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from privsynth.errors import BudgetExceededError
from privsynth.privacy.accounting import AccountantKind, Mechanism, composed_epsilon
from privsynth.privacy.randomness import RNG_NOTES, RngMode

#: Version 2 records where the noise came from (``rng``); version 1 ledgers (seeded noise) load as ``seeded``.
LEDGER_VERSION = 2
# Composed epsilons are upper estimates with ~0.01 resolution; this slack only absorbs float round-off.
_ROUNDOFF = 1e-9


class Stage(StrEnum):
    """The built-in stages that spend budget. A generator plug-in names its own stage (any short lowercase name)."""

    PROFILE = "profile"
    TABULAR = "tabular"
    TEXT = "text"
    IMAGE = "image"


#: A stage name: a built-in :class:`Stage` or a plug-in generator's own (stored as a plain string).
StageName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]


class LedgerEntry(BaseModel):
    """One spend: which stage ran which mechanism, and what the composed total was afterwards."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: StageName
    mechanism: Mechanism
    extra_delta: float = Field(default=0.0, ge=0)
    note: str = ""
    epsilon_after: float = Field(ge=0, description="Composed epsilon of the whole ledger after this entry.")
    at: dt.datetime


class PrivacyLedger:
    """Composes every mechanism spent on one corpus into one (epsilon, delta).

    Args:
        epsilon: target (maximum) epsilon for everything recorded here.
        delta: target delta for everything recorded here.
        accountant: PRV (default, tighter) or RDP.
        unit_of_privacy: what neighbouring datasets differ by, in words.
        rng: where the noise of every mechanism recorded here comes from (recorded, never hidden): fresh OS
            entropy in every real fit; anything else means the guarantee does not hold and policies refuse it.
    """

    def __init__(
        self,
        *,
        epsilon: float,
        delta: float,
        accountant: AccountantKind = AccountantKind.PRV,
        unit_of_privacy: str = "record",
        rng: RngMode = RngMode.OS_ENTROPY,
    ) -> None:
        if not epsilon > 0:
            raise ValueError(f"target epsilon must be > 0, got {epsilon}")
        if not 0 < delta < 1:
            raise ValueError(f"target delta must be in (0, 1), got {delta}")
        self.target_epsilon = float(epsilon)
        self.target_delta = float(delta)
        self.accountant = AccountantKind(accountant)
        self.unit_of_privacy = unit_of_privacy
        self.rng = RngMode(rng)
        self._entries: list[LedgerEntry] = []
        self._sinks: list[Callable[[PrivacyLedger, LedgerEntry], None]] = []

    def attach(self, sink: Callable[[PrivacyLedger, LedgerEntry], None]) -> None:
        """Call ``sink(ledger, entry)`` on every spend, before the spend returns (and before noise is drawn).

        A sink that raises (a persistent store refusing a per-source cap) cancels the spend.
        """
        self._sinks.append(sink)

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """Every spend so far, in order."""
        return tuple(self._entries)

    @property
    def extra_delta(self) -> float:
        """Delta reserved by threshold mechanisms."""
        return sum(e.extra_delta for e in self._entries)

    @property
    def epsilon(self) -> float:
        """Composed epsilon of everything spent so far (0 when nothing was)."""
        return self._entries[-1].epsilon_after if self._entries else 0.0

    @property
    def delta(self) -> float:
        """The delta the composed epsilon holds at (the target delta, once anything is spent)."""
        return self.target_delta if self._entries else 0.0

    def mechanisms(self, stage: str | None = None) -> list[Mechanism]:
        """Mechanisms spent so far, optionally for one stage."""
        return [e.mechanism for e in self._entries if stage is None or e.stage == stage]

    def projected_epsilon(self, mechanisms: list[Mechanism], *, extra_delta: float = 0.0) -> float:
        """Composed epsilon if ``mechanisms`` were spent too (nothing is recorded)."""
        accountant_delta = self.target_delta - self.extra_delta - extra_delta
        if accountant_delta <= 0:
            raise BudgetExceededError(
                f"threshold mechanisms would reserve {self.extra_delta + extra_delta:.3g} of delta "
                f"{self.target_delta:.3g}; raise delta or declare category domains in schema.yaml"
            )
        return composed_epsilon([*self.mechanisms(), *mechanisms], delta=accountant_delta, accountant=self.accountant)

    def spend(self, stage: str, mechanism: Mechanism, *, extra_delta: float = 0.0, note: str = "") -> LedgerEntry:
        """Record a mechanism *before* its noise is drawn; refuse if the target would be exceeded."""
        after = self.projected_epsilon([mechanism], extra_delta=extra_delta)
        if after > self.target_epsilon * (1 + _ROUNDOFF):
            raise BudgetExceededError(
                f"spending {stage} ({mechanism.noise_multiplier:.4g} noise, sample rate "
                f"{mechanism.sample_rate:.4g}, {mechanism.steps} steps) would bring epsilon to {after:.4f}, above "
                f"the target {self.target_epsilon:.4f}; raise --epsilon, add noise or train fewer steps"
            )
        entry = LedgerEntry(
            stage=str(stage),
            mechanism=mechanism,
            extra_delta=extra_delta,
            note=note,
            epsilon_after=after,
            at=dt.datetime.now(dt.UTC),
        )
        self._entries.append(entry)
        try:
            for sink in self._sinks:
                sink(self, entry)
        except BaseException:
            self._entries.pop()
            raise
        return entry

    def tighten_delta(self, delta: float) -> None:
        """Lower the target delta (never raise it), e.g. to a default computed from a DP count.

        Everything spent so far is composed again at the new delta; if it no longer fits the target epsilon the
        change is refused and nothing changes.
        """
        if not 0 < delta <= self.target_delta:
            raise ValueError(f"the target delta can only be lowered (now {self.target_delta:g}, asked {delta:g})")
        if self.extra_delta >= delta:
            raise BudgetExceededError(
                f"threshold mechanisms already reserve {self.extra_delta:.3g} of delta; it cannot drop to {delta:.3g}"
            )
        if self._entries:
            after = composed_epsilon(self.mechanisms(), delta=delta - self.extra_delta, accountant=self.accountant)
            if after > self.target_epsilon * (1 + _ROUNDOFF):
                raise BudgetExceededError(
                    f"at delta {delta:.3g} what is spent composes to epsilon {after:.4f}, above the target "
                    f"{self.target_epsilon:.4f}; pass --delta explicitly"
                )
        self.target_delta = float(delta)

    def stage_epsilons(self) -> dict[str, float]:
        """Epsilon each stage would cost on its own (for reports; the composed total is :attr:`epsilon`)."""
        out: dict[str, float] = {}
        for stage in dict.fromkeys(e.stage for e in self._entries):
            mechanisms = self.mechanisms(stage)
            if mechanisms:
                out[stage] = composed_epsilon(
                    mechanisms, delta=self.target_delta - self.extra_delta, accountant=self.accountant
                )
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state; :meth:`load_state_dict` restores it exactly."""
        return {
            "version": LEDGER_VERSION,
            "target_epsilon": self.target_epsilon,
            "target_delta": self.target_delta,
            "accountant": self.accountant.value,
            "unit_of_privacy": self.unit_of_privacy,
            "rng": self.rng.value,
            "rng_note": RNG_NOTES[self.rng],
            "epsilon": self.epsilon,
            "delta": self.target_delta,
            "extra_delta": self.extra_delta,
            "entries": [e.model_dump(mode="json") for e in self._entries],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict` (entries replace the current ones)."""
        version = state.get("version")
        if version not in (1, LEDGER_VERSION):
            raise ValueError(f"ledger version {version} is not supported (expected {LEDGER_VERSION})")
        self.target_epsilon = float(state["target_epsilon"])
        self.target_delta = float(state["target_delta"])
        self.accountant = AccountantKind(state["accountant"])
        self.unit_of_privacy = str(state["unit_of_privacy"])
        # version 1 seeded its noise from the user's seed (default 0): replayable, whatever it claimed
        self.rng = RngMode.SEEDED if version == 1 else RngMode(state["rng"])
        self._entries = [LedgerEntry.model_validate(e) for e in state["entries"]]

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PrivacyLedger:
        """A ledger restored from :meth:`state_dict` output."""
        ledger = cls(epsilon=float(state["target_epsilon"]), delta=float(state["target_delta"]))
        ledger.load_state_dict(state)
        return ledger

    def __repr__(self) -> str:
        return (
            f"PrivacyLedger(epsilon={self.epsilon:.4g}/{self.target_epsilon:.4g}, delta={self.target_delta:.3g}, "
            f"accountant={self.accountant.value}, entries={len(self._entries)})"
        )
