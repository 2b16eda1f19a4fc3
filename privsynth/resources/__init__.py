"""Files shipped inside the package, so privsynth works outside its repository.

The built-in release policies (``default``, ``public``, ``internal``) are byte-for-byte copies of the repository's
``audits/*.yaml`` (which privacy officers own and edit there) and ``release-template.yaml`` of
``configs/release-template.yaml``; a test keeps them identical.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BUILTIN_POLICIES = ("default", "internal", "public")
RELEASE_TEMPLATE = "release-template.yaml"


def resource_path(name: str) -> Path:
    """The installed path of a shipped file."""
    return Path(str(resources.files(__name__).joinpath(name)))


def builtin_policy(name: str) -> Path:
    """The shipped policy called ``name`` (one of :data:`BUILTIN_POLICIES`)."""
    return resource_path(f"{name}.yaml")


__all__ = ["BUILTIN_POLICIES", "RELEASE_TEMPLATE", "builtin_policy", "resource_path"]
