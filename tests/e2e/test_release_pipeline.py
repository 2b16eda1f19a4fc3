"""Gate, release, verify and run through the CLI; kill tests; no real value in released documents."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from privsynth.audit.pii import build_replay
from privsynth.cli.output import ExitCode
from privsynth.data.corpus import read_corpus
from privsynth.pii.engine import PiiScanner

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "configs" / "small.yaml"
INFO = ROOT / "configs" / "demo-release.yaml"
LENIENT = """
name: lenient
release_class: controlled
max_epsilon: 50
max_delta: 1.0e-4
checks:
  identical_excess: {threshold: 0.05, severity: hard, required: true}
  pii_replay: {threshold: 0, severity: hard, required: true}
  tstr_ratio: {threshold: 0.8, severity: soft}
"""


def write_run_config(folder: Path, *, name: str, epsilon: float = 3.0, policy: Path | None = None) -> Path:
    config = {
        "name": name,
        "demo": {"n": 200, "seed": 3},
        "epsilon": epsilon,
        "fit": str(SMALL),
        "pretrain_text": {"public_demo": {"n": 40, "seed": 4}, "steps": 2},
        "sample": {"n": 150, "seed": 1},
        "audit": {"ocr": "off", "bootstrap": 30, "fidelity": False},
        "policy": str(policy or folder / "lenient.yaml"),
        "release": {"info": str(INFO)},
        "runs_dir": str(folder / "runs"),
        "ledger_store": str(folder / "ledger.sqlite"),
    }
    (folder / "lenient.yaml").write_text(LENIENT)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from privsynth.cli import main

    folder = tmp_path_factory.mktemp("run")
    config = write_run_config(folder, name="t")
    assert main(["run", str(config)]) == 0
    return folder / "runs" / "t"


def test_run_produces_a_verified_release(cli, finished_run: Path) -> None:
    bundle = finished_run / "release" / "bundle"
    for name in (
        "datasheet.md",
        "README.md",
        "croissant.json",
        "manifest.json",
        "audit-summary.json",
        "data/records.parquet",
        "data/schema.yaml",
    ):
        assert (bundle / name).is_file(), name
    assert cli("verify", bundle).exit_code == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["gate"]["passed"] is True and manifest["ledger"]["epsilon"] <= 3.0
    assert "person identified by 'patient_id'" in manifest["unit_of_privacy"]
    assert manifest["text_sampling"]["note"]["candidates"] == 1  # how the notes were drawn travels with them
    # and how many identifier-like spans the sampling scrub replaced, in the manifest, the audit and the datasheet
    scrubbed = manifest["text_scrubbed"]["note"]
    audit = json.loads((finished_run / "audit" / "audit.json").read_text())
    assert audit["pii"]["scrubbed"] == {"columns": {"note": scrubbed}, "records": 150, "rate": scrubbed / 150}
    assert f"record's registered fakes (`text.scrub`): {scrubbed} in `note`" in (bundle / "datasheet.md").read_text()
    card = (bundle / "README.md").read_text()
    assert card.startswith("---\n") and "differential-privacy" in card
    assert "## Composition" in (bundle / "datasheet.md").read_text()
    # one verdict: the report and the datasheet show the decision under the policy the run applied
    policy = manifest["gate"]["policy"]
    assert f"Release allowed under policy <code>{policy}</code>" in (finished_run / "audit" / "report.html").read_text()
    assert f"Checks under policy `{policy}`" in (bundle / "datasheet.md").read_text()
    assert any((bundle / "data" / "images" / "scan").glob("*.png"))  # every modality is generated
    # the public demo corpus (another seed) is learned, after its records' fields, before DP-SGD
    model = json.loads((finished_run / "fit" / "model" / "model.json").read_text())
    assert model["config"]["text"]["public_corpus"].endswith("public-corpus")
    assert model["config"]["text"]["public_steps"] == 2
    text = json.loads((finished_run / "fit" / "model" / "text-note" / "text.json").read_text())
    assert text["public_corpus"]["records"] == 40 and text["public_corpus"]["steps"] == 2
    datasheet = (bundle / "datasheet.md").read_text()
    assert f"public corpus `{text['public_corpus']['fingerprint']}` for `text:note`, 2 steps" in datasheet


def test_run_reports_each_stage_and_training_progress_outside_a_terminal(cli, tmp_path: Path) -> None:
    path = write_run_config(tmp_path, name="log", epsilon=2.0)
    result = cli("run", path)
    assert result.exit_code == 0, result.output
    assert "privsynth run: fitting DP generators" in result.stderr
    # it ends with the gate's decision and the paths that matter
    assert "PASS under policy 'lenient'" in result.stdout
    for label in ("Audit report:", "Synthetic corpus:", "Release:"):
        assert label in result.stdout
    assert "privsynth run: DP-SGD tabular, step" in result.stderr


def test_public_pretraining_never_reads_the_private_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import privsynth.data.corpus
    import privsynth.pipeline
    from privsynth.config import load_config
    from privsynth.errors import ConfigError
    from privsynth.pipeline import _pretrain, load_pipeline

    path = write_run_config(tmp_path, name="p")

    # the public stage runs with every way of reading a corpus booby-trapped: it must not need the private one
    def trapped(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the public pretraining stage read a corpus")

    monkeypatch.setattr(privsynth.data.corpus, "read_corpus", trapped)
    monkeypatch.setattr(privsynth.pipeline, "read_corpus", trapped)
    settings = _pretrain(load_pipeline(path), load_config(SMALL), tmp_path / "pretrain")
    assert settings["public_corpus"].is_dir()
    monkeypatch.undo()
    config = yaml.safe_load(path.read_text())
    config["pretrain_text"] = {"public_demo": {"n": 40, "seed": 3}}  # the private demo's own seed
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="must never be the private one"):
        load_pipeline(path)
    config["pretrain_text"] = {"steps": 3}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="needs 'public_text'"):
        load_pipeline(path)


def test_rerunning_skips_finished_stages(cli, finished_run: Path) -> None:
    config = finished_run.parent.parent / "t.yaml"
    result = cli("run", config)
    assert result.exit_code == 0, result.output
    assert "corpus, pretrain, fit, sample, audit, release" in result.stdout


@pytest.mark.parametrize(
    "target",
    [
        "datasheet.md",
        "data/records.parquet",
        "croissant.json",
        "manifest.json",
        "manifest.json.sha256",
        "README.md",
        "audit-summary.json",
        "data/schema.yaml",
    ],
)
def test_one_changed_byte_fails_verification(cli, finished_run: Path, tmp_path: Path, target: str) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(finished_run / "release" / "bundle", copy)
    path = copy / target
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = cli("verify", copy)
    assert result.exit_code == ExitCode.INTEGRITY
    assert "Verification failed" in result.stderr


def test_extra_or_missing_files_fail_verification(cli, finished_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(finished_run / "release" / "bundle", copy)
    (copy / "extra.txt").write_text("x")
    assert "not in the manifest" in cli("verify", copy).stderr
    (copy / "extra.txt").unlink()
    (copy / "datasheet.md").unlink()
    assert "missing file: datasheet.md" in cli("verify", copy).stderr


def test_signed_release_and_wrong_key(cli, finished_run: Path, tmp_path: Path) -> None:
    assert cli("keygen", tmp_path / "keys").exit_code == 0
    assert cli("keygen", tmp_path / "other", "--name", "other").exit_code == 0
    assert (tmp_path / "keys" / "release-signing.key").stat().st_mode & 0o777 == 0o600
    out = tmp_path / "signed"
    result = cli(
        "release",
        "-s",
        finished_run / "sample" / "synthetic",
        "-a",
        finished_run / "audit",
        "-i",
        INFO,
        "-o",
        out,
        "-p",
        finished_run.parent.parent / "lenient.yaml",
        "--sign-key",
        tmp_path / "keys" / "release-signing.key",
    )
    assert result.exit_code == 0, result.output
    good = cli("verify", out, "--public-key", tmp_path / "keys" / "release-signing.pub")
    assert good.exit_code == 0 and "valid (trusted key)" in good.stdout
    bad = cli("verify", out, "--public-key", tmp_path / "other" / "other.pub")
    assert bad.exit_code == ExitCode.INTEGRITY


def test_gate_refusal_exits_3_and_writes_nothing(cli, finished_run: Path, tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text("name: strict\nrelease_class: public\nmax_epsilon: 0.5\nchecks: {}\n")
    assert cli("gate", finished_run / "audit", "--policy", strict).exit_code == ExitCode.REFUSED
    assert "Release refused under policy <code>strict</code>" in (finished_run / "audit" / "report.html").read_text()
    out = tmp_path / "nope"
    result = cli(
        "release",
        "-s",
        finished_run / "sample" / "synthetic",
        "-a",
        finished_run / "audit",
        "-i",
        INFO,
        "-o",
        out,
        "-p",
        strict,
    )
    assert result.exit_code == ExitCode.REFUSED
    assert "epsilon" in result.stderr
    assert not out.exists()


def test_empty_human_fields_are_refused(cli, finished_run: Path, tmp_path: Path) -> None:
    info = yaml.safe_load(INFO.read_text())
    info["uses"]["out_of_scope"] = ""
    info["maintainer"]["contact"] = ""
    path = tmp_path / "info.yaml"
    path.write_text(yaml.safe_dump(info))
    out = tmp_path / "r"
    result = cli(
        "release",
        "-s",
        finished_run / "sample" / "synthetic",
        "-a",
        finished_run / "audit",
        "-i",
        path,
        "-o",
        out,
        "-p",
        finished_run.parent.parent / "lenient.yaml",
    )
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "uses.out_of_scope" in result.stderr and "maintainer.contact" in result.stderr
    assert not out.exists()


def _release(cli, finished_run: Path, info: dict, policy: Path, out: Path):
    path = out.parent / f"{out.name}-info.yaml"
    path.write_text(yaml.safe_dump(info))
    synthetic, audit = finished_run / "sample" / "synthetic", finished_run / "audit"
    return cli("release", "-s", synthetic, "-a", audit, "-i", path, "-o", out, "-p", policy)


def test_governance_is_required_and_an_internal_release_cannot_be_open(cli, finished_run: Path, tmp_path: Path) -> None:
    # Before: an "internal, no sharing" release went out with "Access: Anyone" and cc-by-4.0 without a word.
    lenient = finished_run.parent.parent / "lenient.yaml"
    info = yaml.safe_load(INFO.read_text())
    without = {**info, "governance": {}}
    result = _release(cli, finished_run, without, lenient, tmp_path / "a")
    assert result.exit_code == ExitCode.BAD_INPUT and "governance.legal_basis" in result.stderr
    internal = tmp_path / "internal.yaml"
    internal.write_text(lenient.read_text().replace("release_class: controlled", "release_class: internal"))
    result = _release(cli, finished_run, info, internal, tmp_path / "b")
    assert result.exit_code == ExitCode.BAD_INPUT and "CC-BY-4.0 lets anyone share" in result.stderr
    closed = {**info, "license": "LicenseRef-internal", "distribution": {"access": "Anyone in the company"}}
    result = _release(cli, finished_run, closed, internal, tmp_path / "c")
    assert result.exit_code == ExitCode.BAD_INPUT and "anyone may get it" in result.stderr
    closed["distribution"] = {"access": "Analysts of the data platform team, on request"}
    assert _release(cli, finished_run, closed, internal, tmp_path / "d").exit_code == 0
    assert not any((tmp_path / name).exists() for name in "abc")


def test_a_release_is_readable_as_the_umask_allows_and_states_its_governance(finished_run: Path) -> None:
    # Before: bundle folders were owner-only (0700) whatever the umask.
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    bundle = finished_run / "release" / "bundle"
    assert bundle.stat().st_mode & 0o777 == 0o777 & ~mask
    datasheet = (bundle / "datasheet.md").read_text()
    assert "## Governance" in datasheet and "**Approved by:** privsynth developers" in datasheet
    assert json.loads((bundle / "manifest.json").read_text())["governance"]["dpia_reference"]


def test_released_documents_hold_no_real_value(finished_run: Path) -> None:
    real = read_corpus(finished_run / "corpus" / "data")
    replay = build_replay(real, PiiScanner())
    bundle = finished_run / "release" / "bundle"
    for name in ("datasheet.md", "README.md", "croissant.json", "manifest.json", "audit-summary.json"):
        hits = replay.find((bundle / name).read_text())
        assert hits == [], (name, [h.kind for h in hits])


def _kill_script(body: str) -> str:
    return textwrap.dedent(body)


def test_sigkill_while_writing_a_release_leaves_no_release(finished_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    script = _kill_script(f"""
        import os, signal, sys
        import privsynth.release.bundle as bundle
        def die(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        bundle.check_croissant = die   # dies halfway: data and datasheet already in the temporary folder
        from privsynth.cli import main
        sys.exit(main(["release", "-s", {str(finished_run / "sample" / "synthetic")!r},
                       "-a", {str(finished_run / "audit")!r}, "-i", {str(INFO)!r}, "-o", {str(out)!r},
                       "-p", {str(finished_run.parent.parent / "lenient.yaml")!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == -9
    assert not out.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert all(name.startswith(".killed.tmp-") for name in leftovers)  # only the hidden temporary folder


def test_sigkill_during_fit_then_resume_spends_exactly_the_plan(tmp_path: Path) -> None:
    from privsynth.cli import main
    from privsynth.privacy.store import LedgerStore

    killed_dir = tmp_path / "killed"
    killed_dir.mkdir()
    config = write_run_config(killed_dir, name="ref")
    script = _kill_script(f"""
        import os, signal, sys
        from privsynth.generators import dpsgd
        original = dpsgd.DPSGDTrainer.run
        def run_then_die(self, **kwargs):
            kwargs["checkpoint_every"] = 2
            original(self, until=self.mechanism.steps // 2, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        dpsgd.DPSGDTrainer.run = run_then_die
        from privsynth.cli import main
        sys.exit(main(["run", {str(config)!r}]))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    work = killed_dir / "runs" / "ref" / "fit" / "work"
    assert (work / "tabular-checkpoint" / "state.json").exists()
    assert work.stat().st_mode & 0o777 == 0o700  # real keys and RNG states: owner-only
    assert not (killed_dir / "runs" / "ref" / "fit" / "stage.json").exists()
    before = json.loads((work / "ledger.json").read_text())["entries"]
    plan = json.loads((work / "plan.json").read_text())
    run_id = json.loads((work / "run.json").read_text())["run_id"]
    assert main(["run", str(config)]) == 0
    resumed = json.loads((killed_dir / "runs" / "ref" / "fit" / "model" / "ledger.json").read_text())
    assert [e["stage"] for e in resumed["entries"]] == ["profile", "profile", "tabular", "text", "image"]
    assert resumed["entries"][: len(before)] == before  # what the killed run spent, not spent again
    assert resumed["epsilon"] == pytest.approx(plan["composed_epsilon"], rel=0.01)  # exactly the plan
    rows = LedgerStore(killed_dir / "ledger.sqlite").rows()
    assert len(rows) == 5 and {r["run_id"] for r in rows} == {run_id}  # nothing recorded twice across the kill
    assert not work.exists()  # the work folder (keys, RNG states) is deleted once the model is written


def test_three_runs_of_one_config_are_three_spends_in_the_store(cli, tmp_path: Path) -> None:
    # Before: every run of a config was recorded as run-<name>, so the store kept one run's epsilon out of three.
    config = write_run_config(tmp_path, name="again", epsilon=1.0)
    settings = yaml.safe_load(config.read_text())
    settings.pop("pretrain_text")
    settings.pop("release")
    settings["demo"] = {"n": 150, "seed": 3}
    settings["sample"] = {"n": 40, "seed": 1}
    settings["audit"] = {"ocr": "off", "bootstrap": 20, "fidelity": False, "attacks": False, "pii": False}
    config.write_text(yaml.safe_dump(settings))
    for _ in range(3):
        assert cli("run", config).exit_code in (0, ExitCode.REFUSED)
        shutil.rmtree(tmp_path / "runs" / "again")
    shown = cli("ledger", "show", "--json", "--ledger-store", tmp_path / "ledger.sqlite")
    totals = json.loads(shown.stdout)["sources"]
    assert len(totals) == 1 and totals[0]["runs"] == 3
    assert len({s["run_id"] for s in json.loads(shown.stdout)["spends"]}) == 3
    assert 3 * 0.97 <= totals[0]["epsilon"] <= 3.0


def test_no_release_or_synthetic_folder_carries_a_plain_hash_of_the_private_corpus(finished_run: Path) -> None:
    # Before: datasheet, synthetic.json and model.json carried sha256 of the private corpus' content, which answers
    # membership for anyone who knows every record but one. Any canonicalisation: content hash, file bytes.
    import hashlib

    from privsynth.data.fingerprint import corpus_fingerprint

    corpus_dir = finished_run / "corpus" / "data"
    real = read_corpus(corpus_dir)
    digests = {corpus_fingerprint(real).removeprefix("sha256:")}
    digests |= {hashlib.sha256(p.read_bytes()).hexdigest() for p in corpus_dir.rglob("*") if p.is_file()}
    digests.add(hashlib.sha256(real.records.to_csv(index=False).encode()).hexdigest())
    folders = [
        finished_run / "release" / "bundle",
        finished_run / "sample" / "synthetic",
        finished_run / "fit" / "model",
    ]
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and "internal" not in path.parts:
                content = path.read_bytes()
                for digest in digests:
                    assert digest.encode() not in content, path
    model = json.loads((finished_run / "fit" / "model" / "model.json").read_text())
    assert model["source"].startswith("hmac-sha256:") and "seed" not in model


def test_the_release_states_what_it_says_outside_epsilon_and_carries_no_real_count(finished_run: Path) -> None:
    bundle = finished_run / "release" / "bundle"
    summary = json.loads((bundle / "audit-summary.json").read_text())
    assert summary["inputs"] == {"synthetic": 150}  # train, holdout and audited counts of real records: left out
    assert "replay_needles" not in summary["pii"]  # distinct real identifier values: nearly a count of real people
    assert summary["pii"]["scanned_cells"] > 0  # counts of synthetic cells stay
    assert "members" not in summary["attacks"]["membership_inference"]
    datasheet = (bundle / "datasheet.md").read_text()
    assert "### What this release says outside the guarantee" in datasheet
    assert "Audit statistics computed on real records" in datasheet and "os-entropy" in datasheet
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert any("gate's decision" in item for item in manifest["outside_guarantee"])
    # no number anywhere in the summary or the manifest's gate record is a count of real records or an exact
    # fraction of them (an attack's trials were min(500, train); 1/holdout at full precision named the holdout)
    # Whole numbers only where they count synthetic things or are the audit's own constants (a value equal to a
    # real split's size by chance, like the verbatim scan's k of 40, is not a leak; a new key is looked at here).
    synthetic_counts = {"version", "policy_version", "synthetic", "rows", "texts", "records", "scanned_cells"}
    synthetic_counts |= {"ocr_images", "unexplained", "replay_unexplained", "generated", "other_record", "copying"}
    synthetic_counts |= {"value"}  # a check's value that is a whole number (0 replays)
    constants_and_lengths = {"k", "rare_docs", "longest"}

    def numbers(node: object, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
        if isinstance(node, dict):
            return [x for k, v in node.items() for x in numbers(v, (*path, str(k)))]
        if isinstance(node, list):
            return [x for v in node for x in numbers(v, path)]
        return [(path, node)] if isinstance(node, int | float) and not isinstance(node, bool) else []

    for path, number in numbers(summary) + numbers(manifest["gate"]):
        if isinstance(number, float):
            assert number == round(number, 3), path
        elif path[:3] != ("pii", "scrubbed", "columns"):  # replaced spans per synthetic text column
            assert path[-1] in synthetic_counts | constants_and_lengths, path
    assert "trials" not in json.dumps(summary) and '"replay"' not in json.dumps(summary)


def test_a_policy_that_keeps_audit_numbers_out_releases_pass_fail_only(cli, finished_run: Path, tmp_path: Path) -> None:
    policy = tmp_path / "quiet.yaml"
    policy.write_text(LENIENT + "publish_audit_statistics: false\n")
    out = tmp_path / "quiet"
    result = cli(
        "release",
        "-s",
        finished_run / "sample" / "synthetic",
        "-a",
        finished_run / "audit",
        "-i",
        INFO,
        "-o",
        out,
        "-p",
        policy,
    )
    assert result.exit_code == 0, result.output
    assert not (out / "audit-summary.json").exists()
    assert "not published" in (out / "datasheet.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert all("value" not in f for f in manifest["gate"]["evaluated"])
    assert not any("Audit statistics" in item for item in manifest["outside_guarantee"])
    assert cli("verify", out).exit_code == 0


def test_a_release_loads_as_a_hugging_face_dataset_with_image_and_class_label_features(
    finished_run: Path, tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets", reason="the 'datasets' package (dev extra) is not installed")
    bundle = finished_run / "release" / "bundle"
    ds = datasets.load_dataset(str(bundle), split="train", cache_dir=str(tmp_path / "hf-cache"))
    records = pd.read_parquet(bundle / "data" / "records.parquet")
    assert len(ds) == len(records)
    assert isinstance(ds.features["scan"], datasets.Image)
    diagnosis = ds.features["diagnosis"]
    assert isinstance(diagnosis, datasets.ClassLabel)
    row = next(i for i in range(len(ds)) if ds[i]["scan"] is not None)
    image = ds[row]["scan"]
    assert image.size == (32, 32)  # decoded from the bytes in hf/train.parquet, wherever the cwd is
    assert diagnosis.int2str(ds[row]["diagnosis"]) == records["diagnosis"].iloc[row]
    card = (bundle / "README.md").read_text()
    assert "Release class:" in card and "| `scan` | image | Image |" in card


def test_privsynth_torch_reads_a_release_and_batches_images_as_tensors(finished_run: Path) -> None:
    from privsynth.torch import SyntheticDataset, loader

    bundle = finished_run / "release" / "bundle"
    data = SyntheticDataset(bundle)
    assert len(data) == len(pd.read_parquet(bundle / "data" / "records.parquet"))
    batch = next(iter(loader(data, batch_size=8)))
    assert batch["scan"].shape == (8, 1, 32, 32) and batch["scan"].dtype == torch.float32
    assert float(batch["scan"].min()) >= 0.0 and float(batch["scan"].max()) <= 1.0
    assert batch["age"].dtype == torch.float32 and isinstance(batch["diagnosis"][0], str)
    pil = SyntheticDataset(finished_run / "sample" / "synthetic", images="pil")
    first = next(item for item in (pil[i] for i in range(len(pil))) if item["scan"] is not None)
    assert first["scan"].size == (32, 32)
    with pytest.raises(ValueError, match="'tensor' or 'pil'"):
        SyntheticDataset(bundle, images="numpy")  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="out of range"):
        data[len(data)]
