"""Built-in policies and the release template ship in the package (issue 20): usable outside the repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privsynth.errors import ConfigError
from privsynth.gate import load_policy, resolve_policy
from privsynth.resources import BUILTIN_POLICIES, RELEASE_TEMPLATE, builtin_policy, resource_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", BUILTIN_POLICIES)
def test_shipped_policies_are_the_repositorys(name: str) -> None:
    # privacy officers edit audits/*.yaml; the package ships them unchanged
    assert builtin_policy(name).read_bytes() == (ROOT / "audits" / f"{name}.yaml").read_bytes()


def test_the_shipped_release_template_is_the_repositorys() -> None:
    assert resource_path(RELEASE_TEMPLATE).read_bytes() == (ROOT / "configs" / "release-template.yaml").read_bytes()


def test_policies_resolve_by_name_and_by_the_repository_path_outside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: outside the repository '--policy audits/default.yaml' (the default) failed.
    monkeypatch.chdir(tmp_path)
    assert resolve_policy("public") == builtin_policy("public")
    assert resolve_policy("audits/default.yaml") == builtin_policy("default")
    assert load_policy("internal").name == "internal"
    own = tmp_path / "public"  # an existing file wins over a built-in name
    own.write_text("name: mine\nrelease_class: internal\nchecks: {}\n")
    assert load_policy("public").name == "mine"
    with pytest.raises(ConfigError, match="built-in policy"):
        resolve_policy("audits/strict.yaml")


def test_policies_list_show_and_the_release_template(cli, tmp_path: Path) -> None:
    listed = cli("policies", "list", "--json")
    assert listed.exit_code == 0 and [p["name"] for p in json.loads(listed.stdout)] == list(BUILTIN_POLICIES)
    shown = cli("policies", "show", "public")
    assert shown.exit_code == 0 and "release_class: public" in shown.stdout
    target = tmp_path / "release.yaml"
    assert cli("release", "--template", target).exit_code == 0
    assert target.read_text() == resource_path(RELEASE_TEMPLATE).read_text()
    assert cli("release", "--template", target).exit_code == 2  # exists: --force to replace
    missing = cli("release", "-s", tmp_path)
    assert missing.exit_code == 2 and "--template" in missing.stderr
