"""Defaults that fit the cohort: one rule, shared by the generators, for settings a config leaves at default.

DP-SGD on a few thousand people has little signal per step: the defaults (tuned on 22,611 Adult rows and 60,000
Fashion-MNIST images) then learn mostly noise. Below :data:`SMALL_COHORT` people (the fit's DP count, public), a
generator's settings still at their large-cohort default take the small-cohort values its config class names
(measured in ``benchmarks/default_config.py``; the values and numbers are in the data teams' guide). A value the
config states differently is never changed, and ``size_rule: false`` keeps every value as written. The rule reads
only the DP count and public settings, so it spends nothing and reveals nothing the ledger does not cover.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

#: Below this many people (the DP count), the small-cohort values apply.
SMALL_COHORT = 10_000

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def apply_size_rule(
    config: ConfigT, units: int, *, settings: Mapping[str, Any], optim: Mapping[str, Any], applies: bool = True
) -> ConfigT:
    """``config`` with the small-cohort ``settings`` (and ``optim`` settings) where still at default, then fixed.

    The result has ``size_rule`` false, so applying it again (a resumed fit, a loaded model) changes nothing.
    ``applies=False`` (a model the rule was not measured for) only fixes it.
    """
    update: dict[str, Any] = {"size_rule": False}
    if getattr(config, "size_rule", False) and applies and units < SMALL_COHORT:
        fields = type(config).model_fields
        update.update({k: v for k, v in settings.items() if getattr(config, k) == fields[k].default})
        sized: Any = config  # every sized config has an ``optim`` (OptimConfig)
        current, default = sized.optim, fields["optim"].default
        changed = {k: v for k, v in optim.items() if getattr(current, k) == getattr(default, k)}
        if changed:
            update["optim"] = current.model_copy(update=changed)
    return config.model_copy(update=update)


__all__ = ["SMALL_COHORT", "apply_size_rule"]
