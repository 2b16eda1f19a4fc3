"""``release.yaml``: the human half of a datasheet, which only people can answer.

privsynth fills in what the run knows (composition, collection, preprocessing, privacy, audit); the fields here
(why the data exists, who made it, intended and out-of-scope uses, access, maintenance) must be written by the
people releasing it. Export refuses while a required field is empty.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from privsynth.errors import ConfigError
from privsynth.settings import load_settings


class Person(BaseModel):
    """A creator or maintainer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    affiliation: str = ""
    contact: str = ""


class Motivation(BaseModel):
    """Datasheet: motivation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    purpose: str = ""
    funding: str = ""


class Uses(BaseModel):
    """Datasheet: uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    intended: str = ""
    out_of_scope: str = ""
    limitations: str = ""


class Distribution(BaseModel):
    """Datasheet: distribution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access: str = ""
    terms: str = ""


class Maintenance(BaseModel):
    """Datasheet: maintenance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plan: str = ""
    erratum: str = ""


class ReleaseInfo(BaseModel):
    """Everything a person must state about a release."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = ""
    version: str = ""
    description: str = ""
    license: str = Field(default="", description="SPDX identifier (e.g. CC-BY-4.0) or a licence URL.")
    url: str = ""
    keywords: tuple[str, ...] = ()
    creators: tuple[Person, ...] = ()
    maintainer: Person = Person()
    motivation: Motivation = Motivation()
    uses: Uses = Uses()
    distribution: Distribution = Distribution()
    maintenance: Maintenance = Maintenance()
    biases: str = ""
    social_impact: str = ""
    citation: str = ""

    def missing(self) -> list[str]:
        """Required fields still empty."""
        required = {
            "title": self.title,
            "version": self.version,
            "description": self.description,
            "license": self.license,
            "creators": ", ".join(c.name for c in self.creators),
            "maintainer.contact": self.maintainer.contact,
            "motivation.purpose": self.motivation.purpose,
            "uses.intended": self.uses.intended,
            "uses.out_of_scope": self.uses.out_of_scope,
            "distribution.access": self.distribution.access,
            "maintenance.plan": self.maintenance.plan,
        }
        return [name for name, value in required.items() if not str(value).strip()]

    def require_complete(self, source: str) -> None:
        """Refuse an incomplete release description, naming every empty field."""
        missing = self.missing()
        if missing:
            raise ConfigError(
                f"{source}: required datasheet fields are empty: {', '.join(missing)}. Fill them in "
                "(see configs/release-template.yaml); privsynth will not export a release without them."
            )


def load_release_info(path: Path) -> ReleaseInfo:
    """Read ``release.yaml``."""
    return load_settings(ReleaseInfo, path, what="the release information")
