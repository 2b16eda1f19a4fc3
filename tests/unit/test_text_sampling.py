"""Sampling-time text settings (``privsynth sample --text SETTING=VALUE``): parsed, validated, recorded, not stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from privsynth.data.corpus import read_corpus
from privsynth.data.layout import load_provenance
from privsynth.errors import ConfigError
from privsynth.sampling import Shard, _ShardWriter, write_synthetic
from privsynth.synthesizer import Synthesizer
from privsynth.text_sampling import parse_text_settings
from privsynth.variation import parse_rebalance
from tests.unit.generators.test_text_backbone import _config, _corpus, _tiny_backbone


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synthesizer, Path]:
    root = tmp_path_factory.mktemp("text-sampling")
    synth = Synthesizer(_config(_tiny_backbone(root / "llm"))).fit(_corpus(root), epsilon=8.0)
    return synth, synth.save(root / "model")


def test_settings_are_parsed_and_bad_ones_say_how_to_write_them() -> None:
    assert parse_text_settings(["candidates=4", "text.temperature=0.5"]) == {"candidates": 4.0, "temperature": 0.5}
    with pytest.raises(
        ConfigError, match="SETTING one of temperature, top_p, candidates, candidates_max, candidate_score, guidance"
    ):
        parse_text_settings(["lora_rank=4"])  # shapes the fitted model: not a sampling setting
    with pytest.raises(ConfigError, match="SETTING=VALUE"):
        parse_text_settings(["candidates"])
    with pytest.raises(ConfigError, match="'many' is not a number"):
        parse_text_settings(["candidates=many"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_text_settings(["candidates=2", "candidates=3"])
    assert parse_text_settings(["sample_vocab=all"]) == {"sample_vocab": "all"}  # a word, not a number
    assert parse_text_settings(["candidate_score=keywords"]) == {"candidate_score": "keywords"}
    assert parse_text_settings(["keyword_once=true", "repetition_penalty=1.5"]) == {
        "keyword_once": "true",
        "repetition_penalty": 1.5,
    }


def test_a_sample_draws_from_every_id_unless_told_to_keep_to_the_trained_ones(
    fitted: tuple[Synthesizer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from privsynth.generators.text import finetune

    synth, _ = fitted
    generator = synth.texts_["note"]
    asked: list[int | None] = []
    real = finetune.generate

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(kwargs["trained"])
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune, "generate", spy)
    before = generator.config
    generator.config = before.model_copy(update={"train_vocab": 300})
    try:
        assert generator.config.sample_vocab == "all"  # the default
        write_synthetic(synth, tmp_path / "all", n=4, seed=2)
        assert set(asked) == {None}
        asked.clear()
        out = write_synthetic(synth, tmp_path / "trained", n=4, seed=2, text={"sample_vocab": "trained"})
        assert set(asked) == {300}
        assert load_provenance(out)["text_sampling"]["note"]["sample_vocab"] == "trained"
        with pytest.raises(ConfigError, match=r"sample_vocab: Input should be 'all' or 'trained'"):
            write_synthetic(synth, tmp_path / "bad", n=4, seed=2, text={"sample_vocab": "some"})
    finally:
        generator.config = before


def test_a_sample_uses_its_settings_records_them_and_leaves_the_model_as_it_was(
    fitted: tuple[Synthesizer, Path], tmp_path: Path
) -> None:
    synth, _ = fitted
    generator = synth.texts_["note"]
    before = generator.config
    out = write_synthetic(synth, tmp_path / "best", n=6, seed=2, text={"candidates": 3})
    assert generator.config is before  # the model keeps its fit's settings after the sample
    drawn = load_provenance(out)["text_sampling"]["note"]
    assert drawn["candidates"] == 3 and drawn["temperature"] == before.temperature
    generator.config = before.model_copy(update={"candidates": 3})
    try:
        expected = synth.sample(6, seed=2)["note"].tolist()
    finally:
        generator.config = before
    assert read_corpus(out).records["note"].fillna("").tolist() == [t or "" for t in expected]
    plain = write_synthetic(synth, tmp_path / "plain", n=6, seed=2)
    assert load_provenance(plain)["text_sampling"]["note"]["candidates"] == 1
    with pytest.raises(ConfigError, match=r"text column 'note' \(fitted with .*\): candidates: .*less than or equal"):
        write_synthetic(synth, tmp_path / "bad", n=6, seed=2, text={"candidates": 40})
    with pytest.raises(ConfigError, match=r"needs text\.condition_dropout above 0"):
        write_synthetic(synth, tmp_path / "bad", n=6, seed=2, text={"guidance": 2.0})
    with pytest.raises(ConfigError, match=r"no_repeat_ngram 1 would forbid every token a second time"):
        write_synthetic(synth, tmp_path / "bad", n=6, seed=2, text={"no_repeat_ngram": 1.0})
    guarded = write_synthetic(synth, tmp_path / "guarded", n=6, seed=2, text={"no_repeat_ngram": 3.0})
    assert load_provenance(guarded)["text_sampling"]["note"]["no_repeat_ngram"] == 3
    penalised = write_synthetic(synth, tmp_path / "penalised", n=6, seed=2, text={"repetition_penalty": 1.5})
    assert load_provenance(penalised)["text_sampling"]["note"]["repetition_penalty"] == 1.5
    with pytest.raises(ConfigError, match=r"keyword_once applies to the DP keyword prior: it needs"):
        write_synthetic(synth, tmp_path / "bad", n=6, seed=2, text=parse_text_settings(["keyword_once=true"]))
    # guidance on named fields needs no condition dropout; '--text guidance_fields=dx' arrives as a word
    settings = parse_text_settings(["guidance=1.5", "guidance_fields=dx"])
    assert settings == {"guidance": 1.5, "guidance_fields": "dx"}
    guided = write_synthetic(synth, tmp_path / "guided", n=6, seed=2, text=settings)
    recorded = load_provenance(guided)["text_sampling"]["note"]
    assert recorded["guidance"] == 1.5 and recorded["guidance_fields"] == ["dx"]
    with pytest.raises(ConfigError, match=r"guidance_fields 'nope' is not in this model's prompts"):
        write_synthetic(synth, tmp_path / "bad", n=6, seed=2, text={"guidance": 1.5, "guidance_fields": "nope"})
    with pytest.raises(ConfigError, match=r"keyword_strength weighs a keyword prior, and this model has none"):
        write_synthetic(synth, tmp_path / "bad", n=6, seed=2, text=parse_text_settings(["keyword_strength=1.5"]))
    # the weight in force (what a cluster worker re-applies) and no weight at all are no change
    for quiet in (before.keyword_strength, 0.0):
        write_synthetic(synth, tmp_path / f"quiet-{quiet}", n=2, seed=2, text={"keyword_strength": quiet})
    assert generator.config is before and not (tmp_path / "bad").exists()


def test_a_workers_cached_model_takes_each_runs_settings_whatever_the_last_run_set(
    fitted: tuple[Synthesizer, Path], tmp_path: Path
) -> None:
    # Ray workers load the model folder once and keep it; a run must not inherit the previous run's settings.
    synth, folder = fitted
    schema = synth.synthetic_schema.with_table("records.parquet")
    shard = Shard(index=0, first=0, count=5, seed=11)

    def texts(name: str, settings: dict[str, dict[str, float]]) -> list[str]:
        out = tmp_path / name
        for sub in ("records.parquet", "internal/surrogates.parquet"):
            (out / sub).mkdir(parents=True)
        _ShardWriter(folder, out, schema, None, 7, settings)(shard)
        return read_corpus_part(out)

    fresh = Synthesizer.load(folder, internal=False).sample(5, seed=11)["note"].fillna("").tolist()
    cold = texts("cold", {"note": {"temperature": 0.2, "top_p": 0.5, "candidates": 2, "guidance": 1.0}})
    fit = {"note": {k: getattr(synth.texts_["note"].config, k) for k in ("temperature", "top_p", "candidates")}}
    again = texts("again", {"note": {**fit["note"], "guidance": 1.0}})
    assert again == fresh and cold != fresh


def read_corpus_part(folder: Path) -> list[str]:
    import pandas as pd

    return pd.read_parquet(folder / "records.parquet" / "part-00000.parquet")["note"].fillna("").tolist()


def test_settings_for_a_model_without_text_columns_are_refused() -> None:
    from types import SimpleNamespace

    from privsynth.text_sampling import text_sampling

    tabular_only = SimpleNamespace(texts_={})
    with (
        pytest.raises(ConfigError, match="this model has no text column"),
        text_sampling(tabular_only, {"temperature": 0.5}),  # type: ignore[arg-type]
    ):
        pass
    with text_sampling(tabular_only, None) as used:  # type: ignore[arg-type]
        assert used == {}


def test_sampling_reports_the_texts_drawn_and_draws_the_same_records_with_or_without_progress(
    fitted: tuple[Synthesizer, Path], tmp_path: Path
) -> None:
    # the backbone writes a few notes a second on 2 cores: a sample of thousands must not sit silent for minutes
    synth, _ = fitted
    seen: list[tuple[str, int, int]] = []
    out = write_synthetic(synth, tmp_path / "told", n=5, seed=3, progress=lambda *call: seen.append(call))
    text = [call for call in seen if call[0] == "sampling text 'note'"]
    assert text and text[-1] == ("sampling text 'note'", 5, 5)
    assert [done for _, done, _ in text] == sorted(done for _, done, _ in text)
    quiet = write_synthetic(synth, tmp_path / "quiet", n=5, seed=3)
    assert read_corpus(out).records.equals(read_corpus(quiet).records)
    bars = synth.sample(5, seed=3, progress=lambda *call: None)["note"].tolist()
    assert bars == synth.sample(5, seed=3)["note"].tolist()


def test_sharded_local_sampling_reports_the_records_written_after_each_shard(
    fitted: tuple[Synthesizer, Path], tmp_path: Path
) -> None:
    synth, _ = fitted
    seen: list[tuple[str, int, int]] = []
    write_synthetic(synth, tmp_path / "parts", n=7, seed=1, shard_records=3, progress=lambda *call: seen.append(call))
    assert [call for call in seen if call[0] == "sampling shards"] == [
        ("sampling shards", 3, 7),
        ("sampling shards", 6, 7),
        ("sampling shards", 7, 7),
    ]


def test_sampled_texts_never_outrun_the_schemas_max_length_so_the_sample_validates(
    fitted: tuple[Synthesizer, Path], tmp_path: Path
) -> None:
    # the demo's backbone run looped on placeholders ("Stanley FernandezStanley Fernandez...") and wrote a 1,183
    # character note under max_length 1000: its own audit refused the synthetic corpus
    synth, _ = fitted
    before = synth.schema_
    full = synth.sample(8, seed=5)["note"].fillna("")
    assert int(full.str.len().max()) > 12
    spec = before.columns["note"].model_copy(update={"max_length": 12})
    synth.schema_ = before.model_copy(update={"columns": {**before.columns, "note": spec}})
    try:
        notes = synth.sample(8, seed=5)["note"].fillna("")
        out = write_synthetic(synth, tmp_path / "short", n=8, seed=5)
    finally:
        synth.schema_ = before
    assert (notes.str.len() <= 12).all()
    # the cut keeps words: a text with any is not cut to nothing (a fit may draw an empty text, e.g. one placeholder
    # filled with an empty value; the fit is random, so which texts are empty is not fixed)
    assert ((notes.str.len() > 0) | (full.str.strip() == "")).all()
    written = read_corpus(out)  # validates against the sample's own schema: an oversized note is refused
    assert written.schema.columns["note"].max_length == 12


def test_a_sample_scrubs_foreign_identifiers_unless_told_not_to(
    fitted: tuple[Synthesizer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from privsynth.generators.text import generator as text_generator

    synth, _ = fitted
    seen: list[int] = []
    real = text_generator.scrub_texts

    replaced: list[int] = []

    def spy(texts, fields, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(len(texts))
        # the records' modelled fields explain a span; a text column would explain any span found in it
        assert "note" not in fields.columns and {"wbc", "dx"} <= set(fields.columns)
        out, count = real(texts, fields, *args, **kwargs)
        replaced.append(count + 2)  # as if the model had written two foreign names more in each call
        return out, count + 2

    monkeypatch.setattr(text_generator, "scrub_texts", spy)
    assert synth.texts_["note"].config.scrub  # on by default
    on = write_synthetic(synth, tmp_path / "on", n=5, seed=2)
    assert seen == [5] and load_provenance(on)["text_sampling"]["note"]["scrub"] is True
    # the count of replaced spans travels with the sample (the PII scan reads texts after the scrub)
    assert load_provenance(on)["text_scrubbed"] == {"note": replaced[0]}
    seen.clear()
    replaced.clear()
    sharded = write_synthetic(synth, tmp_path / "sharded", n=5, seed=2, shard_records=2)  # 3 shards, summed
    assert seen == [2, 2, 1] and load_provenance(sharded)["text_scrubbed"] == {"note": sum(replaced)}
    seen.clear()
    replaced.clear()
    shown = write_synthetic(  # the shards drawn one after another with progress: the same sum
        synth, tmp_path / "shown", n=5, seed=2, shard_records=2, progress=lambda *_: None
    )
    assert seen == [2, 2, 1] and load_provenance(shown)["text_scrubbed"] == {"note": sum(replaced)}
    replaced.clear()
    varied = write_synthetic(synth, tmp_path / "varied", n=6, seed=2, variation=parse_rebalance("dx"))  # by cells
    assert load_provenance(varied)["text_scrubbed"] == {"note": sum(replaced)} and replaced
    seen.clear()
    off = write_synthetic(synth, tmp_path / "off", n=5, seed=2, text={"scrub": "false"})
    assert seen == [] and load_provenance(off)["text_sampling"]["note"]["scrub"] is False
    assert load_provenance(off)["text_scrubbed"] == {}
    assert parse_text_settings(["scrub=off"]) == {"scrub": "off"}


def test_lengths_from_the_profile_cut_each_text_with_the_models_dp_histogram_only_when_asked(
    fitted: tuple[Synthesizer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from privsynth.generators.text import generator as text_generator

    synth, _ = fitted
    calls: list[tuple[int, object, float]] = []
    real = text_generator.fit_lengths

    def spy(texts, profile, rng, *, noise_std):  # type: ignore[no-untyped-def]
        calls.append((len(texts), profile, noise_std))
        return real(texts, profile, rng, noise_std=noise_std)

    monkeypatch.setattr(text_generator, "fit_lengths", spy)
    assert synth.texts_["note"].config.lengths == "model"  # the default: texts end where the model ends them
    plain = write_synthetic(synth, tmp_path / "plain", n=6, seed=3)
    assert calls == [] and load_provenance(plain)["text_sampling"]["note"]["lengths"] == "model"
    cut = write_synthetic(synth, tmp_path / "cut", n=6, seed=3, text={"lengths": "profile"})
    # the model's own DP profile of the column (post-processing), nothing read from the corpus
    noise = synth.profile_.noise_multiplier * synth.profile_.max_records_per_entity  # the histogram's own, public
    assert calls == [(6, synth.profile_.columns["note"], noise)] and noise > 0
    assert load_provenance(cut)["text_sampling"]["note"]["lengths"] == "profile"
    longest = synth.profile_.columns["note"].length_edges[-1]
    assert all(len(t) <= longest for t in read_corpus(cut).records["note"].dropna())
    with pytest.raises(ConfigError, match="lengths"):
        write_synthetic(synth, tmp_path / "bad", n=2, seed=3, text={"lengths": "short"})
