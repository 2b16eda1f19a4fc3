"""A run folder is never reused under other settings: redone when that spends nothing, refused when it would refit."""

from __future__ import annotations

from pathlib import Path

import pytest

from privsynth.data.atomic import write_text_atomic
from privsynth.errors import ConfigError
from privsynth.pipeline import STAGES, PipelineConfig, _check_guidance_fields, _reuse, _settings, run_pipeline


def _config(tmp_path: Path, **changes: object) -> PipelineConfig:
    base: dict[str, object] = {"name": "r", "corpus": tmp_path / "corpus", "epsilon": 4.0, "runs_dir": tmp_path}
    return PipelineConfig.model_validate({**base, **changes})


def _finished(tmp_path: Path, config: PipelineConfig) -> Path:
    import json

    root = tmp_path / "r"
    for stage in STAGES:
        (root / stage).mkdir(parents=True)
        (root / stage / "stage.json").write_text("{}")
    write_text_atomic(root / "config.json", json.dumps(_settings(config)))
    return root


def _left(root: Path) -> list[str]:
    return [s for s in STAGES if (root / s).exists()]


def test_a_changed_fit_setting_on_a_real_corpus_is_refused_and_nothing_is_deleted(tmp_path: Path) -> None:
    root = _finished(tmp_path, _config(tmp_path))
    changed = _config(tmp_path, fit={"holdout_fraction": 0.3})
    with pytest.raises(ConfigError, match=r"fit\.holdout_fraction.*--fresh"):
        _reuse(root, changed, fresh=False, tell=lambda _m: None)
    assert _left(root) == list(STAGES)
    with pytest.raises(ConfigError, match="epsilon"):
        _reuse(root, _config(tmp_path, epsilon=5.0), fresh=False, tell=lambda _m: None)


def test_a_changed_sampling_setting_redoes_sampling_and_what_follows_only(tmp_path: Path) -> None:
    root = _finished(tmp_path, _config(tmp_path))
    said: list[str] = []
    _reuse(root, _config(tmp_path, sample={"n": 10}), fresh=False, tell=said.append)
    assert _left(root) == ["corpus", "pretrain", "fit"]
    assert "sample.n" in said[0] and "redoing sample, audit, gate, release" in said[0]


def test_text_sampling_settings_of_a_run_resample_without_fitting_again(tmp_path: Path) -> None:
    # 'sample: {text: {lengths: profile}}' changes how texts are drawn from the fitted model (post-processing):
    # on a real corpus it is not refused, and the fit stays
    root = _finished(tmp_path, _config(tmp_path))
    said: list[str] = []
    _reuse(root, _config(tmp_path, sample={"text": {"lengths": "profile"}}), fresh=False, tell=said.append)
    assert _left(root) == ["corpus", "pretrain", "fit"] and "sample.text.lengths" in said[0]
    guided = _config(tmp_path, sample={"text": {"guidance": 1.5, "guidance_fields": ["diagnosis"]}})
    assert guided.sample.text["guidance_fields"] == ["diagnosis"]  # a list of fields, as YAML writes it
    said.clear()
    for stage in STAGES:  # finished again
        (root / stage).mkdir(exist_ok=True)
        (root / stage / "stage.json").write_text("{}")
    _reuse(root, guided, fresh=False, tell=said.append)  # guidance is sampling too: the fit stays
    assert _left(root) == ["corpus", "pretrain", "fit"] and "sample.text.guidance_fields" in said[0]
    _check_guidance_fields(guided, ["age", "diagnosis"])  # columns of the corpus' (public) schema
    for typo in (["diagnosys"], "age, diagnosys"):
        wrong = _config(tmp_path, sample={"text": {"guidance": 1.5, "guidance_fields": typo}})
        with pytest.raises(ConfigError, match=r"'diagnosys' is not a column of the corpus"):
            _check_guidance_fields(wrong, ["age", "diagnosis"])  # before the fit: run_pipeline calls it first
    with pytest.raises(ValueError, match="extra"):
        _config(tmp_path, sample={"txt": {"lengths": "profile"}})
    with pytest.raises(ValueError, match=r"unknown setting.*length"):  # a typo is refused before any fit
        _config(tmp_path, sample={"text": {"length": "profile"}})


def test_a_run_refuses_an_unknown_guidance_field_before_anything_is_fitted(tmp_path: Path, demo_dir: Path) -> None:
    config = _config(tmp_path, corpus=demo_dir, sample={"text": {"guidance": 1.5, "guidance_fields": ["diagnosys"]}})
    with pytest.raises(ConfigError, match=r"'diagnosys' is not a column of the corpus \(its columns: .*diagnosis"):
        run_pipeline(config)
    assert not (tmp_path / "r" / "fit").exists()  # refused from the (public) schema: nothing spent


def test_a_changed_policy_redoes_the_release_only(tmp_path: Path) -> None:
    root = _finished(tmp_path, _config(tmp_path))
    _reuse(root, _config(tmp_path, policy="public"), fresh=False, tell=lambda _m: None)
    assert _left(root) == ["corpus", "pretrain", "fit", "sample", "audit", "gate"]


def test_a_demo_run_starts_over_on_its_own_since_its_people_are_invented(tmp_path: Path) -> None:
    demo = {"corpus": None, "demo": {"n": 100, "seed": 0}}
    root = _finished(tmp_path, _config(tmp_path, **demo))
    _reuse(root, _config(tmp_path, corpus=None, demo={"n": 120, "seed": 0}), fresh=False, tell=lambda _m: None)
    assert _left(root) == []


def test_unchanged_or_cosmetic_settings_reuse_every_stage_and_fresh_starts_over(tmp_path: Path) -> None:
    root = _finished(tmp_path, _config(tmp_path))
    _reuse(root, _config(tmp_path), fresh=False, tell=lambda _m: None)
    _reuse(root, _config(tmp_path, description="renamed"), fresh=False, tell=lambda _m: None)
    assert _left(root) == list(STAGES)
    _reuse(root, _config(tmp_path, epsilon=5.0), fresh=True, tell=lambda _m: None)
    assert not root.exists()


def test_a_setting_added_by_a_newer_version_is_not_a_change(tmp_path: Path) -> None:
    # A run folder written before a setting existed stores no value for it: it had the default, so a real-corpus
    # run (whose refit would be refused) resumes instead of asking for --fresh.
    import json

    root = _finished(tmp_path, _config(tmp_path))
    stored = json.loads((root / "config.json").read_text())
    del stored["fit"]["text"]["backbone"], stored["files"]
    (root / "config.json").write_text(json.dumps(stored))
    _reuse(root, _config(tmp_path), fresh=False, tell=lambda _m: None)
    assert _left(root) == ["corpus", "pretrain", "fit", "sample", "audit", "gate"]  # only the release is redone


def test_an_edited_policy_file_redoes_the_release(tmp_path: Path) -> None:
    policy = tmp_path / "mine.yaml"
    policy.write_text("name: mine\nrelease_class: controlled\nchecks: {}\n")
    root = _finished(tmp_path, _config(tmp_path, policy=str(policy)))
    policy.write_text("name: mine\nrelease_class: public\nchecks: {}\n")  # same path, other content
    said: list[str] = []
    _reuse(root, _config(tmp_path, policy=str(policy)), fresh=False, tell=said.append)
    assert _left(root) == ["corpus", "pretrain", "fit", "sample", "audit", "gate"]
    assert "files.policy" in said[0]


def test_a_run_folder_keeps_no_ledger_store_password_and_still_reuses_its_stages(tmp_path: Path) -> None:
    # config.json is the team's to read; the store holds the key of the release's keyed source fingerprint
    config = _config(tmp_path, ledger_store="postgresql://team:s3cret@db.example/ledger")
    assert "s3cret" not in str(_settings(config)) and "team:***@db.example" in str(_settings(config))
    root = _finished(tmp_path, config)
    assert "s3cret" not in (root / "config.json").read_text()
    _reuse(root, config, fresh=False, tell=lambda _m: None)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(STAGES)  # nothing redone
