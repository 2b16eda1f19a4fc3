"""Privacy: accounting maths, the one ledger, budget planning, noise, contribution bounding, the ledger store."""

from privsynth.privacy.accounting import AccountantKind, Mechanism, composed_epsilon
from privsynth.privacy.ledger import LedgerEntry, PrivacyLedger, Stage
from privsynth.privacy.planner import BudgetPlan, StageShape, default_delta, plan_budget
from privsynth.privacy.store import LedgerStore

__all__ = [
    "AccountantKind",
    "BudgetPlan",
    "LedgerEntry",
    "LedgerStore",
    "Mechanism",
    "PrivacyLedger",
    "Stage",
    "StageShape",
    "composed_epsilon",
    "default_delta",
    "plan_budget",
]
