"""Pipeline configuration: frozen pydantic models, built once from YAML at the boundary.

A config file (``configs/*.yaml``) is owned by the data team. Everything in it is public: it is chosen without
looking at the records, and it is written into every model and release.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from privsynth.errors import ConfigError
from privsynth.generators.image.generator import ImageConfig
from privsynth.generators.tabular.generator import TabularConfig
from privsynth.generators.text.generator import TextConfig
from privsynth.privacy.accounting import AccountantKind
from privsynth.privacy.ledger import Stage
from privsynth.profile.profiler import ProfileConfig
from privsynth.settings import read_yaml, validate

log = logging.getLogger(__name__)

#: Relative budget weights per stage; normalised over the stages a corpus needs. A plug-in generator's stage not
#: named here gets the generator's own ``default_share``.
DEFAULT_SPLIT: dict[str, float] = {Stage.PROFILE: 1.0, Stage.TABULAR: 9.0, Stage.TEXT: 6.0, Stage.IMAGE: 6.0}


class FitConfig(BaseModel):
    """How ``privsynth fit`` runs: budget split, accountant, holdout, profile and generator settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accountant: AccountantKind = AccountantKind.PRV
    split: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SPLIT))
    holdout_fraction: float = Field(default=0.2, ge=0.0, lt=1.0, description="Real records kept out for audits.")
    threads: int = Field(default=1, ge=1, le=256, description="torch/OpenMP threads (1 is fastest on 2 cores).")
    profile: ProfileConfig = ProfileConfig()
    tabular: TabularConfig = TabularConfig()
    text: TextConfig = TextConfig()
    image: ImageConfig = ImageConfig()
    generators: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Settings of plug-in generators, by registered name."
    )

    def shares(self, stages: list[str], defaults: dict[str, float] | None = None) -> dict[str, float]:
        """The split restricted to ``stages`` (weights, not yet normalised); ``defaults`` fill unnamed stages."""
        weights = {s: self.split.get(s, (defaults or {}).get(s, 0.0)) for s in stages}
        missing = [s for s, w in weights.items() if w <= 0]
        if missing:
            raise ConfigError(f"the budget split gives no share to stage(s) {', '.join(missing)}; add them to 'split'")
        return weights

    def settings_for(self, name: str, model: type[BaseModel]) -> BaseModel:
        """A generator's settings: the built-in sections (tabular, text, image) or ``generators.NAME``."""
        if name in ("tabular", "text", "image"):
            section = getattr(self, name)
            if not isinstance(section, model):
                raise ConfigError(f"the '{name}' settings are not {model.__name__}")
            return section
        return validate(model, self.generators.get(name, {}), source="config", what=f"generators.{name}")


def load_config(path: Path | str | None) -> FitConfig:
    """Read a YAML config (``None``: defaults); errors name the entries to fix."""
    if path is None:
        return FitConfig()
    path = Path(path)
    data: Any = read_yaml(path, what="the fit config") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    data.pop("description", None)
    if "fit" in data and not set(data) & set(FitConfig.model_fields):
        raise ConfigError(
            f"{path} is a pipeline config for 'privsynth run' (it has a 'fit:' section); a fit config is that "
            f"section alone: run 'privsynth run {path}', or copy its 'fit:' entries into a file of their own"
        )
    if "secure_noise" in data:  # older configs: profile noise now always comes from OpenDP's secure sampler
        data.pop("secure_noise")
        log.warning("%s: 'secure_noise' is no longer needed (profile noise always uses OS randomness); remove it", path)
    return validate(FitConfig, data, source=path, what="the fit config")
