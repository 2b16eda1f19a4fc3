"""The DP text classifier is steps of the text stage's own mechanism: bounded per person, noised, counted once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from privsynth.generators.dpsgd import Groups
from privsynth.generators.text import classifier as classifiers
from privsynth.synthesizer import Synthesizer
from tests.unit.generators.test_text_backbone import _config, _keyword_corpus, _tiny_backbone
from tests.unit.generators.test_text_keywords import _trainer
from tests.unit.generators.test_text_keywords import _without_noise as _exact_sums


def _unit_rows(n: int, dims: int, seed: int) -> torch.Tensor:
    rows = torch.randn(n, dims, generator=torch.Generator().manual_seed(seed))
    return rows / rows.norm(dim=1, keepdim=True)


def test_one_person_moves_a_steps_sum_by_at_most_the_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    # the neighbouring-dataset invariant: removing one unit (person 0, two records with the same text and label:
    # the worst case) changes a step's sum by at most C in L2, whatever the others hold
    features = _unit_rows(5, 6, 0)
    features[1] = features[0]
    categories = np.array([0, 0, 1, 2, 1])
    with_person = _trainer(Groups.from_labels(np.array([0, 0, 1, 2, 3]), 5), sigma=1.0, clip=1.0, steps=1)
    without = _trainer(Groups.from_labels(np.array([1, 2, 3]), 3), sigma=1.0, clip=1.0, steps=1)
    a, b = _exact_sums(with_person, monkeypatch), _exact_sums(without, monkeypatch)
    classifiers.train(with_person, features, categories, classes=3, steps=1, lr=0.1)
    classifiers.train(without, features[2:], categories[2:], classes=3, steps=1, lr=0.1)
    assert a[0].dtype == torch.float64 and float((a[0] - b[0]).norm()) <= 1.0
    # and it is not a loose bound: each of the pair's gradients (norm 2/3 sqrt 3 at the start) is clipped to C / 2
    # and the two point the same way, so together they move the sum by C
    assert float((a[0] - b[0]).norm()) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_each_records_part_is_within_its_clip_at_any_weights_and_a_persons_parts_within_c(seed: int) -> None:
    # at random weights (large, so the errors are near their largest norm) and people of 3, 1 and 2 records: every
    # record's clipped gradient has norm at most its clip C / k, exactly, so a person's parts add up to at most C
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([_unit_rows(6, 5, seed).double(), torch.ones(6, 1, dtype=torch.float64)], dim=1)
    weights = 10 * torch.randn(4, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 4, (6,), generator=gen)
    people = Groups.from_labels(np.array([0, 0, 0, 1, 2, 2]), 6)
    trainer = _trainer(people, sigma=1.0, clip=0.7)
    clips = trainer.record_clips(np.arange(6))
    parts = [classifiers.clipped_sum(weights, x[i : i + 1], labels[i : i + 1], clips[i : i + 1]) for i in range(6)]
    assert all(float(part.norm()) <= clip for part, clip in zip(parts, clips, strict=True))
    whole = classifiers.clipped_sum(weights, x, labels, clips)
    without_first = classifiers.clipped_sum(weights, x[3:], labels[3:], clips[3:])
    assert float((whole - without_first).norm()) <= 0.7
    assert torch.allclose(whole, sum(parts), atol=1e-12)  # the sum of the parts, nothing else


def test_a_record_without_a_category_or_a_text_adds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    features = _unit_rows(4, 6, 1)
    features[3] = 0.0  # a missing text embeds as zeros
    full = _trainer(Groups.from_labels(None, 4), sigma=1.0, steps=1)
    part = _trainer(Groups.from_labels(None, 1), sigma=1.0, steps=1)
    a, b = _exact_sums(full, monkeypatch), _exact_sums(part, monkeypatch)
    classifiers.train(full, features, np.array([1, -1, -1, 0]), classes=2, steps=1, lr=0.1)
    classifiers.train(part, features[:1], np.array([1]), classes=2, steps=1, lr=0.1)
    assert torch.allclose(a[0], b[0], atol=1e-7)


def test_the_steps_are_counted_and_each_noises_the_batchs_clipped_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    # each step noises exactly the clipped sum of its Poisson batch, with N(0, (sigma C)^2) per coordinate
    trainer = _trainer(Groups.from_labels(None, 50), sigma=2.0, clip=1.5, rate=0.5, steps=30)
    trainer.step = 10
    inputs: list[torch.Tensor] = []
    noises: list[torch.Tensor] = []
    batches: list[np.ndarray] = []
    original_noised, original_batch, original_sum = trainer.noised, trainer.poisson_batch, classifiers.clipped_sum

    def noised(total: torch.Tensor) -> torch.Tensor:
        out = original_noised(total)
        inputs.append(total.clone())
        noises.append(out - total)
        return out

    def batch() -> np.ndarray:
        batches.append(original_batch())
        return batches[-1]

    sums: list[torch.Tensor] = []

    def spied_sum(*args, **kwargs):  # type: ignore[no-untyped-def]
        sums.append(original_sum(*args, **kwargs))
        return sums[-1]

    monkeypatch.setattr(trainer, "noised", noised)
    monkeypatch.setattr(trainer, "poisson_batch", batch)
    monkeypatch.setattr(classifiers, "clipped_sum", spied_sum)
    classifiers.train(trainer, _unit_rows(50, 64, 2), np.arange(50) % 3, classes=3, steps=20, lr=0.1)
    assert trainer.step == 30 and len(inputs) == len(batches) == 20
    assert all(torch.equal(i, s) for i, s in zip(inputs, sums, strict=True))  # the batch's sum, as computed
    assert all(float(i.abs().sum()) > 0 for i, b in zip(inputs, batches, strict=True) if len(b))
    assert float(torch.cat([n.flatten() for n in noises]).std()) == pytest.approx(3.0, rel=0.05)


def test_the_noise_is_fresh_for_every_fit_even_with_the_same_records() -> None:
    features, categories = _unit_rows(40, 8, 3), np.arange(40) % 2
    # the trainer's own noise stream (checkpointed, secure_mode as set) is the one that moves
    trainer = _trainer(Groups.from_labels(None, 40), sigma=1.0)
    before = trainer.noise.get_state().clone()
    classifiers.train(trainer, features, categories, classes=2, steps=1, lr=0.1)
    assert not torch.equal(trainer.noise.get_state(), before)
    one = classifiers.train(
        _trainer(Groups.from_labels(None, 40), sigma=1.0), features, categories, classes=2, steps=3, lr=0.1
    )
    two = classifiers.train(
        _trainer(Groups.from_labels(None, 40), sigma=1.0), features, categories, classes=2, steps=3, lr=0.1
    )
    assert not torch.equal(one, two)


def test_it_learns_what_tells_the_categories_apart_and_the_pick_keeps_the_records_own() -> None:
    n = 400
    categories = np.arange(n) % 2
    features = _unit_rows(n, 8, 4) * 0.3
    features[:, 0] += torch.as_tensor(np.where(categories == 0, 0.9, -0.9), dtype=torch.float32)
    features = features / features.norm(dim=1, keepdim=True)
    trainer = _trainer(Groups.from_labels(None, n), sigma=1.0, rate=0.25, steps=20)
    table = classifiers.train(trainer, features, categories, classes=2, steps=20, lr=0.2)
    assert float((classifiers.log_posteriors(table, features).argmax(1).numpy() == categories).mean()) > 0.95
    candidates = torch.stack([features[1], features[0], features[0], features[1]])  # record 0: [1, 0], record 1
    assert classifiers.classifier_pick(candidates, [0, 1], table, k=2) == [1, 1]
    # the readings candidates_max decides by: record 0's first candidate reads as category 1, its second as its own
    readings = classifiers.classifier_readings(candidates, table, k=2)
    assert readings.shape == (2, 2, 2) and np.allclose(np.exp(readings).sum(axis=2), 1.0)
    assert readings.argmax(axis=2).tolist() == [[1, 0], [0, 1]]


def test_features_beyond_the_bound_and_categories_outside_the_domain_are_refused() -> None:
    trainer = _trainer(Groups.from_labels(None, 2), sigma=1.0)
    with pytest.raises(ValueError, match="norm at most 1"):
        classifiers.train(trainer, torch.ones(2, 4), np.array([0, 1]), classes=2, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="outside the classifier's categories"):
        classifiers.train(trainer, _unit_rows(2, 4, 5), np.array([0, 2]), classes=2, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="one category per text"):
        classifiers.train(trainer, _unit_rows(2, 4, 5), np.array([0]), classes=2, steps=1, lr=0.1)
    assert trainer.step == 0  # refused before any step
    with pytest.raises(ValueError, match="3 candidates for 2 records of 2"):
        classifiers.classifier_pick(_unit_rows(3, 4, 5), [0, 1], torch.zeros(2, 5), k=2)
    with pytest.raises(ValueError, match="not a whole number of records of 2"):
        classifiers.classifier_readings(_unit_rows(3, 4, 5), torch.zeros(2, 5), k=2)


def test_a_resumed_fit_reuses_its_checkpointed_classifier_and_refuses_to_train_it_again_mid_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from privsynth.errors import IntegrityError
    from privsynth.generators.text.finetune import _text_classifier

    monkeypatch.setattr(classifiers, "embed", lambda texts, **kw: _unit_rows(len(texts), 8, 6))
    values = np.array(["flu", "cold"] * 20, dtype=object)
    texts = ["a note"] * 40
    fresh = _trainer(Groups.from_labels(None, 40), sigma=1.0)  # 10 steps: 7 before, then 3 for the classifier
    fresh.step = 7
    at_seven = fresh.state_dict()  # the checkpoint a fit writes before the classifier (after the keyword counts)
    table = _text_classifier(fresh, values, ["flu", "cold"], texts, steps=3, lr=0.1)
    # interrupted during the classifier: a resume from that checkpoint replays the same batches and noise, so it
    # learns nothing new (the same weights), where fresh draws would be a second, unaccounted measurement
    replay = _trainer(Groups.from_labels(None, 40), sigma=1.0)
    replay.load_state_dict(at_seven)
    assert torch.equal(_text_classifier(replay, values, ["flu", "cold"], texts, steps=3, lr=0.1), table)
    assert fresh.step == 10 and classifiers.OUTPUT in fresh.outputs
    resumed = _trainer(Groups.from_labels(None, 40), sigma=1.0)
    resumed.load_state_dict(fresh.state_dict())  # as load_checkpoint does
    assert torch.equal(_text_classifier(resumed, values, ["flu", "cold"], texts, steps=3, lr=0.1), table)
    assert resumed.step == 10
    lost = _trainer(Groups.from_labels(None, 40), sigma=1.0)
    lost.step = 9
    with pytest.raises(IntegrityError, match="without its classifier"):
        _text_classifier(lost, values, ["flu", "cold"], texts, steps=3, lr=0.1)
    other = _trainer(Groups.from_labels(None, 40), sigma=1.0)
    other.step, other.outputs[classifiers.OUTPUT] = 10, torch.zeros(3, 9)
    with pytest.raises(IntegrityError, match="does not match this fit's categories"):
        _text_classifier(other, values, ["flu", "cold"], texts, steps=3, lr=0.1)


def test_the_settings_need_a_keyword_column_and_fit_within_half_the_stage() -> None:
    from pydantic import ValidationError

    from privsynth.generators.text.generator import TextConfig

    with pytest.raises(ValidationError, match="classifier_steps trains a DP classifier"):
        TextConfig(backbone="smollm2", classifier_steps=5)
    with pytest.raises(ValidationError, match="candidate_score classifier"):
        TextConfig(backbone="smollm2", candidates=2, candidate_score="classifier")
    assert TextConfig(backbone="smollm2", keyword_column="dx", classifier_steps=5).classifier_lr == 0.2


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_backbone(tmp_path_factory.mktemp("tiny-llm"))


def test_a_fit_trains_the_classifier_on_the_stages_last_steps_and_sampling_keeps_what_it_reads_as_own(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from privsynth.errors import ConfigError
    from privsynth.generators.text import finetune

    config = _config(backbone)
    text = config.text.model_copy(update={"keyword_column": "dx", "keyword_queries": 1, "classifier_steps": 3})
    embedded: list[list[str]] = []
    original_embed = classifiers.embed

    def spying(texts, **kw):  # type: ignore[no-untyped-def]
        embedded.append(list(texts))
        return original_embed(texts, **kw)

    monkeypatch.setattr(classifiers, "embed", spying)
    steps_at: list[int] = []
    original_train = classifiers.train

    def counting(trainer, *args, **kw):  # type: ignore[no-untyped-def]
        steps_at.append(trainer.step)
        out = original_train(trainer, *args, **kw)
        steps_at.append(trainer.step)
        return out

    monkeypatch.setattr(classifiers, "train", counting)
    corpus = _keyword_corpus(tmp_path)
    told: list[tuple[str, int, int]] = []
    synth = Synthesizer(config.model_copy(update={"text": text})).fit(
        corpus, epsilon=8.0, progress=lambda *c: told.append(c)
    )
    generator = synth.texts_["note"]
    # the embeddings of the private texts report tenths, whatever their number (an exact private count)
    from privsynth.cli.output import progress_count, training_label

    embedding = [(stage, done, total) for stage, done, total in told if stage.startswith("text embeddings ")]
    assert [(done, total) for _, done, total in embedding] == [(10 * i, 100) for i in range(1, 11)]
    assert progress_count(embedding[0][0], 30, 100) == "30 %" and "DP-SGD" not in training_label(embedding[0][0])
    steps = [e for e in synth.ledger_.entries if e.stage == "text"][-1].mechanism.steps
    assert steps_at == [steps - 3, steps]  # the stage's last 3 steps, after DP-SGD's and the keyword query
    # trained on the masked texts: no training record's name reaches the embedder
    assert len(embedded) == 1 and not any(name in t for name in corpus.records["name"] for t in embedded[0])
    entry = [e for e in synth.ledger_.entries if e.stage == "text"][-1]
    assert "1 steps before its last 3 sum keyword counts" in entry.note
    assert "last 3 steps train a logistic regression of 'dx'" in entry.note
    assert generator.classifier_ is not None and tuple(generator.classifier_.shape) == (2, 385)
    assert any("all-MiniLM-L6-v2" in str(p.get("name")) and p.get("sha256") for p in generator.public_data())

    # sampling: a known classifier, so the test reads the pick, not the tiny fit's noise
    tokenizer = generator.tokenizer_
    fever, sneezing = (tokenizer.encode(w, add_special_tokens=False) for w in (" fever", " sneezing"))
    vectors = original_embed(["fever", "sneezing"])
    table = torch.zeros(2, 385)
    table[0, :384], table[1, :384] = 10 * (vectors[0] - vectors[1]), 10 * (vectors[1] - vectors[0])
    generator.classifier_ = table  # category order: the schema's domain, flu then cold
    assert generator.keyword_domain_ == ["flu", "cold"]

    def fake_generate(model, stack, prompts, **kwargs):  # type: ignore[no-untyped-def]
        return [(sneezing, fever)[i % 2] for i in range(len(prompts))]

    monkeypatch.setattr(finetune, "generate", fake_generate)
    update = {"candidates": 2, "candidate_score": "classifier", "keyword_strength": 0.0}
    generator.config = type(generator.config).model_validate({**generator.config.model_dump(), **update})
    records = synth.sample(10, seed=1)
    expected = {"flu": "fever", "cold": "sneezing"}
    for dx, note in zip(records["dx"], records["note"], strict=True):
        assert note.strip() == expected.get(dx, "sneezing")  # a missing diagnosis keeps its first draw
    # in rounds (candidates_max): a cold record whose draws all read as flu draws up to 3 times, a flu record once
    rows: list[int] = []

    def fever_only(model, stack, prompts, **kwargs):  # type: ignore[no-untyped-def]
        rows.append(len(prompts))
        return [fever] * len(prompts)

    monkeypatch.setattr(finetune, "generate", fever_only)
    rounds = {"candidates": 1, "candidates_max": 3}
    generator.config = type(generator.config).model_validate({**generator.config.model_dump(), **rounds})
    records = synth.sample(10, seed=1)
    assert sum(rows) == 10 + 2 * int((records["dx"] == "cold").sum())
    # no record with a category: nothing to read, so nothing is embedded and each record draws once
    rows.clear()
    embedded.clear()
    with monkeypatch.context() as patch:
        patch.setattr(finetune, "classifier_categories", lambda generator, records: np.full(len(records), -1))
        synth.sample(4, seed=1)
    assert embedded == [] and sum(rows) == 4

    # saved and loaded with the model; a model without one is refused with what to do
    synth.save(tmp_path / "model")
    loaded = Synthesizer.load(tmp_path / "model").texts_["note"]
    assert torch.equal(loaded.classifier_, table) and loaded.classifier_embedder_ == generator.classifier_embedder_
    # a classifier whose categories are not the saved domain's is a damaged folder (the manifest catches a changed
    # file first; this is the check behind it), refused on load
    import json

    from safetensors.torch import load_file

    from privsynth.errors import IntegrityError

    tensors = load_file(str(tmp_path / "model" / "text-note" / "text.safetensors"))
    meta = json.loads((tmp_path / "model" / "text-note" / "text.json").read_text())
    tensors[finetune.CLASSIFIER] = torch.zeros(3, 385)
    with pytest.raises(IntegrityError, match="classifier and its categories do not match"):
        finetune.load_backbone(loaded, meta, tensors)
    generator.classifier_ = None
    with pytest.raises(ConfigError, match="no DP classifier"):
        synth.sample(4, seed=1)


def test_more_steps_than_half_the_stage_are_refused_when_the_fit_is_planned() -> None:
    from privsynth.errors import ConfigError
    from privsynth.generators.text.generator import TextConfig, TextGenerator

    config = TextConfig(backbone="smollm2", keyword_column="dx", keyword_queries=3, classifier_steps=2)
    five = config.model_copy(update={"optim": config.optim.model_copy(update={"epochs": 0.5})})
    assert TextGenerator(five.model_copy(update={"keyword_column": None, "classifier_steps": 0})).plan(1000).steps == 5
    with pytest.raises(ConfigError, match=r"may take at most half the text stage's 5 steps \(2\)"):
        TextGenerator(five).plan(1000)
    fine = five.model_copy(update={"keyword_queries": 1, "classifier_steps": 1})
    assert TextGenerator(fine).plan(1000).steps == 5
