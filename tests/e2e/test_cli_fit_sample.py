"""privsynth fit / sample through the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import yaml

from privsynth.cli.output import ExitCode

SMALL = Path(__file__).resolve().parents[2] / "configs" / "small.yaml"


def test_fit_then_sample(cli, demo_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "l.sqlite"
    model = tmp_path / "model"
    # epsilon 8: at 150 records the profile's share of a smaller budget is noise (a column can come out as
    # 'always missing'), which this test is not about
    result = cli("fit", demo_dir, "-e", "8", "-o", model, "-c", SMALL, "--ledger-store", store)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".model.work").exists()  # the resumable work folder is gone once the model is written
    assert "left out of samples" not in result.stderr  # every modality of the demo corpus has a generator
    # piped (no terminal): timestamped lines with step counts and an estimate of the time left, not silence
    assert re.search(
        r"\d\d:\d\d:\d\d privsynth fit: DP-SGD tabular, step \d+/\d+, \d+ s, about \d+ s left", result.stderr
    )
    meta = json.loads((model / "model.json").read_text())
    assert meta["generators"] == ["tabular", "text:note", "image:scan"]
    assert 0.97 * 8 <= json.loads((model / "ledger.json").read_text())["epsilon"] <= 8
    synthetic = tmp_path / "synthetic"
    result = cli("sample", model, "--n", "50", "-o", synthetic, "--where", "sex=F", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert cli("validate", synthetic).exit_code == 0
    # the notes are drawn record by record: piped, sampling says how many so far, not "DP-SGD" (it trains nothing)
    assert re.search(r"\d\d:\d\d:\d\d privsynth sample: sampling text 'note', 50/50 records, \d+ s", result.stderr)
    frame = pd.read_csv(synthetic / "records.csv")
    assert len(frame) == 50 and (frame["sex"] == "F").all()
    assert frame["scan"].dropna().str.startswith("images/scan/").all()  # PNG files, by relative path
    provenance = json.loads((synthetic / "synthetic.json").read_text())
    assert provenance["conditions"] == {"sex": "F"} and provenance["records"] == 50
    assert (synthetic / "internal" / "surrogates.parquet").stat().st_mode & 0o777 == 0o600
    # controlled variation (post-processing): an exact category mix, and every combination of two columns
    varied = tmp_path / "rebalanced"
    result = cli("sample", model, "--n", "40", "-o", varied, "--rebalance", "sex=F:1,M:3")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(varied / "records.parquet")
    assert (frame["sex"] == "F").sum() == 10 and (frame["sex"] == "M").sum() == 30
    assert frame["sex"].iloc[:12].nunique() == 2  # cells are shuffled together, not written one after another
    variation = json.loads((varied / "synthetic.json").read_text())["variation"]
    assert variation["shares"] == {"F": 0.25, "M": 0.75}
    assert [(c["asked"], c["achieved"]) for c in variation["cells"]] == [(10, 10), (30, 30)]
    assert "Asked and achieved" in result.stdout
    grid = tmp_path / "grid"
    result = cli("sample", model, "-o", grid, "--grid", "sex,diagnosis", "--per-cell", "2")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(grid / "records.parquet")
    sizes = frame.groupby(["sex", "diagnosis"]).size()
    assert len(sizes) == 2 * frame["diagnosis"].nunique() and sizes.eq(2).all() and frame["diagnosis"].nunique() >= 4
    assert cli("validate", grid).exit_code == 0 and frame["record_id"].is_unique
    bad = cli("sample", model, "--n", "5", "-o", tmp_path / "bad", "--rebalance", "sex=X:1")
    assert bad.exit_code == ExitCode.BAD_INPUT and "not among the model's categories" in bad.stderr
    assert cli("sample", model, "-o", tmp_path / "bad2").exit_code == ExitCode.BAD_INPUT  # no --n, no --grid
    clash = cli("sample", model, "--n", "5", "-o", tmp_path / "bad3", "--rebalance", "sex", "--where", "sex=F")
    assert clash.exit_code == ExitCode.BAD_INPUT and "also sets" in clash.stderr
    both = cli("sample", model, "--n", "5", "-o", tmp_path / "bad4", "--rebalance", "sex", "--grid", "sex")
    assert both.exit_code == ExitCode.BAD_INPUT and "not both" in both.stderr
    # how texts are drawn is chosen per sample (post-processing) and recorded
    cooler = tmp_path / "cooler"
    result = cli("sample", model, "--n", "5", "-o", cooler, "--text", "temperature=0.4")
    assert result.exit_code == 0, result.output
    assert json.loads((cooler / "synthetic.json").read_text())["text_sampling"]["note"]["temperature"] == 0.4
    byte = cli("sample", model, "--n", "5", "-o", tmp_path / "bad5", "--text", "candidates=2")
    assert byte.exit_code == ExitCode.BAD_INPUT and "candidates is for a pretrained backbone" in byte.stderr
    nucleus = cli("sample", model, "--n", "5", "-o", tmp_path / "bad6", "--text", "top_p=0.5")
    assert nucleus.exit_code == ExitCode.BAD_INPUT and "top_p is for a backbone" in nucleus.stderr


def test_two_fits_draw_different_noise_and_two_samples_of_one_seed_are_identical(
    cli, demo_dir: Path, tmp_path: Path
) -> None:
    # Before: fit's --seed defaulted to 0 and seeded the profile noise, DP-SGD noise and Poisson masks, so two fits
    # of one corpus were identical and anyone could replay (and subtract) the noise.
    from safetensors.numpy import load_file

    models = [tmp_path / "a", tmp_path / "b"]
    for model in models:
        result = cli("fit", demo_dir, "-e", "2", "-o", model, "-c", SMALL)
        assert result.exit_code == 0, result.output
    profiles = [json.loads((m / "profile.json").read_text())["columns"] for m in models]
    assert profiles[0]["age"]["fine_counts"] != profiles[1]["age"]["fine_counts"]
    weights = [load_file(str(m / "tabular" / "tabular.safetensors")) for m in models]
    assert any(weights[0][k].shape != weights[1][k].shape or (weights[0][k] != weights[1][k]).any() for k in weights[0])
    ledger = json.loads((models[0] / "ledger.json").read_text())
    assert ledger["rng"] == "os-entropy" and "operating system" in ledger["rng_note"]
    assert "seed" not in json.loads((models[0] / "model.json").read_text())
    samples = []
    for name in ("s1", "s2"):
        assert cli("sample", models[0], "--n", "30", "-o", tmp_path / name, "--seed", "7").exit_code == 0
        samples.append(pd.read_parquet(tmp_path / name / "records.parquet"))
    pd.testing.assert_frame_equal(samples[0], samples[1])  # sampling is post-processing: its seed reproduces it
    refused = cli("fit", demo_dir, "-e", "2", "-o", tmp_path / "c", "-c", SMALL, "--seed", "0")
    assert refused.exit_code == ExitCode.BAD_INPUT and "sample" in refused.stderr
    assert not (tmp_path / "c").exists()


def test_fit_and_sample_errors_exit_2(cli, demo_dir: Path, tmp_path: Path) -> None:
    assert cli("fit", demo_dir, "-e", "0", "-o", tmp_path / "m").exit_code == ExitCode.BAD_INPUT
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("tabular: {hidden: -3}\n")
    result = cli("fit", demo_dir, "-e", "1", "-o", tmp_path / "m", "-c", bad_config)
    assert result.exit_code == ExitCode.BAD_INPUT and "tabular.hidden" in result.stderr
    assert not (tmp_path / "m").exists()
    assert cli("sample", tmp_path / "nope", "--n", "5", "-o", tmp_path / "s").exit_code == ExitCode.BAD_INPUT
    model = tmp_path / "model"
    assert cli("fit", demo_dir, "-e", "1", "-o", model, "-c", SMALL, "--ledger-store", tmp_path / "l").exit_code == 0
    result = cli("sample", model, "--n", "5", "-o", tmp_path / "s", "--where", "nope=1")
    assert result.exit_code == ExitCode.BAD_INPUT and "unknown column" in result.stderr
    result = cli("sample", model, "--n", "5", "-o", tmp_path / "s", "--where", "diagnosis")
    assert result.exit_code == ExitCode.BAD_INPUT and "COLUMN=VALUE" in result.stderr
    assert not (tmp_path / "s").exists()


def test_pretrain_text_on_public_text_then_fine_tune_with_dp(cli, demo_dir: Path, tmp_path: Path) -> None:
    public = tmp_path / "public.txt"
    public.write_text(
        "The patient was seen in clinic today and is doing well.\n\n"
        "Follow-up was arranged in two weeks with the primary care team.\n\n"
        "Short.\n",
        encoding="utf-8",
    )
    checkpoint = tmp_path / "public-ckpt"
    result = cli("pretrain-text", public, "-o", checkpoint, "-c", SMALL, "--steps", "3")
    assert result.exit_code == 0, result.output
    meta = json.loads((checkpoint / "text.json").read_text())
    assert meta["public_pretraining"] and meta["documents"] == 2  # the 6-character paragraph is dropped
    assert len(meta["sources"][0]["sha256"]) == 64
    config = tmp_path / "fit.yaml"
    text = yaml.safe_load(SMALL.read_text())
    text["text"]["pretrained"] = str(checkpoint)
    config.write_text(yaml.safe_dump(text), encoding="utf-8")
    model = tmp_path / "model"
    result = cli("fit", demo_dir, "-e", "2", "-o", model, "-c", config, "--ledger-store", tmp_path / "l.sqlite")
    assert result.exit_code == 0, result.output
    mismatched = yaml.safe_load(config.read_text())
    mismatched["text"]["dim"] = 32
    config.write_text(yaml.safe_dump(mismatched), encoding="utf-8")
    result = cli("fit", demo_dir, "-e", "2", "-o", tmp_path / "m2", "-c", config, "--ledger-store", tmp_path / "l2")
    assert result.exit_code == ExitCode.BAD_INPUT and "text.dim" in result.stderr
    assert cli("pretrain-text", tmp_path / "nope.txt", "-o", tmp_path / "x").exit_code == ExitCode.BAD_INPUT


def test_text_learns_a_public_corpus_of_the_same_kind_first(cli, demo_dir: Path, tmp_path: Path) -> None:
    """text.public_corpus: texts of a public corpus, after their own records' fields, then DP-SGD on the private one."""
    from privsynth.data.demo import write_demo_corpus

    public = write_demo_corpus(tmp_path / "public", n=40, seed=99)  # other invented people
    config = yaml.safe_load(SMALL.read_text())
    config["text"].update({"public_corpus": str(public), "public_steps": 3})
    path = tmp_path / "public.yaml"
    path.write_text(yaml.safe_dump(config))
    model = tmp_path / "model"
    result = cli("fit", demo_dir, "-e", "2", "-o", model, "-c", path, "--ledger-store", tmp_path / "l")
    assert result.exit_code == 0, result.output
    meta = json.loads((model / "text-note" / "text.json").read_text())
    assert meta["public_corpus"]["records"] == 40 and meta["public_corpus"]["steps"] == 3
    assert meta["public_corpus"]["fingerprint"].startswith("sha256:")
    assert cli("sample", model, "--n", "5", "-o", tmp_path / "s").exit_code == 0
    provenance = json.loads((tmp_path / "s" / "synthetic.json").read_text())
    assert provenance["public_data"] == [{"generator": "text:note", "kind": "public corpus", **meta["public_corpus"]}]

    config["text"]["public_corpus"] = str(demo_dir)  # the private corpus itself is not public
    path.write_text(yaml.safe_dump(config))
    result = cli("fit", demo_dir, "-e", "2", "-o", tmp_path / "m2", "-c", path, "--ledger-store", tmp_path / "l2")
    assert result.exit_code == ExitCode.BAD_INPUT and "not public" in result.stderr
    assert not (tmp_path / "m2").exists()


def test_a_public_corpus_without_the_text_or_its_fields_is_refused(cli, demo_dir: Path, tmp_path: Path) -> None:
    from privsynth.data.corpus import Corpus, read_corpus, write_corpus
    from privsynth.data.demo import write_demo_corpus

    public = read_corpus(write_demo_corpus(tmp_path / "public", n=20, seed=98))
    columns = {k: v for k, v in public.schema.columns.items() if k != "diagnosis"}
    lacking = Corpus(
        records=public.records.drop(columns=["diagnosis"]),
        schema=public.schema.model_copy(update={"columns": columns}),
        root=public.root,
    )
    folder = write_corpus(lacking, tmp_path / "lacking")
    config = yaml.safe_load(SMALL.read_text())
    config["text"].update({"public_corpus": str(folder), "public_steps": 2})
    path = tmp_path / "lacking.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("fit", demo_dir, "-e", "2", "-o", tmp_path / "m", "-c", path, "--ledger-store", tmp_path / "l")
    assert result.exit_code == ExitCode.BAD_INPUT and "lacks column(s) diagnosis" in result.stderr
    assert not (tmp_path / "m").exists()
