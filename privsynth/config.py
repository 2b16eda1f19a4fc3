"""Pipeline configuration: frozen pydantic models, built once from YAML at the boundary.

A config file (``configs/*.yaml``) is owned by the data team. Everything in it is public: it is chosen without
looking at the records, and it is written into every model and release.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from privsynth.errors import ConfigError
from privsynth.generators.image.generator import ImageConfig
from privsynth.generators.tabular.generator import TabularConfig
from privsynth.generators.text.generator import TextConfig
from privsynth.privacy.accounting import AccountantKind
from privsynth.privacy.ledger import Stage
from privsynth.profile.profiler import ProfileConfig

log = logging.getLogger(__name__)

#: Relative budget weights per stage; normalised over the stages a corpus needs.
DEFAULT_SPLIT: dict[Stage, float] = {Stage.PROFILE: 1.0, Stage.TABULAR: 9.0, Stage.TEXT: 6.0, Stage.IMAGE: 6.0}


class FitConfig(BaseModel):
    """How ``privsynth fit`` runs: budget split, accountant, holdout, profile and generator settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accountant: AccountantKind = AccountantKind.PRV
    split: dict[Stage, float] = Field(default_factory=lambda: dict(DEFAULT_SPLIT))
    holdout_fraction: float = Field(default=0.2, ge=0.0, lt=1.0, description="Real records kept out for audits.")
    threads: int = Field(default=1, ge=1, le=256, description="torch/OpenMP threads (1 is fastest on 2 cores).")
    profile: ProfileConfig = ProfileConfig()
    tabular: TabularConfig = TabularConfig()
    text: TextConfig = TextConfig()
    image: ImageConfig = ImageConfig()

    def shares(self, stages: list[Stage]) -> dict[Stage, float]:
        """The split restricted to ``stages`` (weights, not yet normalised)."""
        missing = [s.value for s in stages if self.split.get(s, 0.0) <= 0]
        if missing:
            raise ConfigError(f"the budget split gives no share to stage(s) {', '.join(missing)}; add them to 'split'")
        return {s: self.split[s] for s in stages}


def load_config(path: Path | str | None) -> FitConfig:
    """Read a YAML config (``None``: defaults); errors name the entries to fix."""
    if path is None:
        return FitConfig()
    path = Path(path)
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    data.pop("description", None)
    if "secure_noise" in data:  # older configs: profile noise now always comes from OpenDP's secure sampler
        data.pop("secure_noise")
        log.warning("%s: 'secure_noise' is no longer needed (profile noise always uses OS randomness); remove it", path)
    try:
        return FitConfig.model_validate(data)
    except ValidationError as exc:
        lines = "\n".join(f"  - {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path} is invalid:\n{lines}") from None
