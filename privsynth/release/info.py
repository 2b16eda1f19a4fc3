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


class Approver(BaseModel):
    """Who approved the release."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    role: str = ""
    date: str = ""


class Governance(BaseModel):
    """Datasheet: who approved the release and on what basis (required for controlled and public releases)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approver: Approver = Approver()
    legal_basis: str = Field(default="", description="e.g. GDPR Art. 6(1)(e) and 9(2)(j), or 'no personal data'.")
    dpia_reference: str = Field(default="", description="The data protection impact assessment's reference.")


#: Licence identifiers (lower-case SPDX prefixes) that let anyone share the data: not for an internal release.
OPEN_LICENCES = ("cc-by", "cc0", "odc-by", "odbl", "pddl", "cdla", "mit", "apache", "bsd", "unlicense", "gpl")
#: Words in distribution.access that mean anyone may get it.
PUBLIC_ACCESS = ("anyone", "everyone", "public", "open download", "the world", "internet")


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
    governance: Governance = Governance()
    biases: str = ""
    social_impact: str = ""
    citation: str = ""

    def missing(self, release_class: str = "internal") -> list[str]:
        """Required fields still empty (governance is required for controlled and public releases)."""
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
        if release_class != "internal":
            required |= {
                "governance.approver.name": self.governance.approver.name,
                "governance.legal_basis": self.governance.legal_basis,
                "governance.dpia_reference": self.governance.dpia_reference,
            }
        return [name for name, value in required.items() if not str(value).strip()]

    def require_complete(self, source: str, release_class: str = "internal") -> None:
        """Refuse an incomplete release description, naming every empty field, and one that contradicts its class.

        An internal release (no sharing outside the organisation) may not carry an open licence or say that anyone
        may access it.
        """
        missing = self.missing(release_class)
        if missing:
            raise ConfigError(
                f"{source}: required datasheet fields are empty: {', '.join(missing)}. Fill them in "
                "('privsynth release --template' writes the form); privsynth will not export a release without them."
            )
        if release_class == "internal":
            licence = self.license.strip().lower()
            if licence.startswith(OPEN_LICENCES):
                raise ConfigError(
                    f"{source}: licence {self.license} lets anyone share the data, but the policy's release class "
                    "is 'internal' (no sharing outside the organisation); use an internal licence or another policy"
                )
            access = self.distribution.access.lower()
            if any(word in access for word in PUBLIC_ACCESS):
                raise ConfigError(
                    f"{source}: distribution.access says anyone may get it, but the policy's release class is "
                    "'internal' (no sharing outside the organisation); say who inside may access it"
                )


def load_release_info(path: Path) -> ReleaseInfo:
    """Read ``release.yaml``."""
    return load_settings(ReleaseInfo, path, what="the release information")
