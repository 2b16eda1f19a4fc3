"""Best-of-k sampling with a backbone (``text.candidates``): the scores, the contrast and the fit-to-sample path.

Runs on the tiny random llama of ``test_text_backbone`` (same code path as SmolLM2, seconds instead of minutes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from privsynth.generators.text.llm import prompt_ids
from privsynth.generators.text.rerank import (
    CONTRASTS,
    continuation_logprobs,
    contrast_prompts,
    keyword_pick,
    pick_best,
)
from privsynth.synthesizer import Synthesizer
from tests.unit.generators.test_text_backbone import (
    _config,
    _corpus,
    _keyword_corpus,
    _model_and_stack,
    _tiny_backbone,
)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_backbone(tmp_path_factory.mktemp("tiny-llm"))


def _alone(model, stack, prompt: list[int], text: list[int]) -> float:  # type: ignore[no-untyped-def]
    """log p(text | prompt) from one unpadded pass: the vocabulary's logits and the placeholders', as sampled."""
    with torch.no_grad():
        states = model.model(input_ids=torch.as_tensor([prompt + text])).last_hidden_state[0]
        logits = torch.cat([model.lm_head(states), stack.placeholder_logits(states)], dim=-1)
    scores = torch.log_softmax(logits.double(), -1)
    return float(sum(scores[len(prompt) - 1 + j, t] for j, t in enumerate(text)))


def test_a_padded_batch_scores_each_text_as_it_would_score_alone(backbone: Path) -> None:
    model, tokenizer, stack = _model_and_stack(backbone)
    prompts = [prompt_ids(tokenizer, "dx: flu", "note"), prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")]
    texts = [[5, 17, 230, 9], [44], []]
    pairs = [(p, t) for p in prompts for t in texts]
    batch = continuation_logprobs(
        model, stack, [p for p, _ in pairs], [t for _, t in pairs], vocab=model.lm_head.weight.shape[0]
    )
    expected = [_alone(model, stack, p, t) if t else 0.0 for p, t in pairs]
    assert np.allclose(batch.numpy(), expected, atol=1e-4)


def test_the_contrast_is_the_batchs_distinct_prompts_with_their_shares_or_a_draw_of_records() -> None:
    rng = np.random.default_rng(0)
    distinct, shares = contrast_prompts([(1,), (2,), (1,), (1,)], rng)
    assert distinct == [(1,), (2,)] and np.allclose(shares, [0.75, 0.25])
    many = [(i,) for i in range(10)]
    first = contrast_prompts(many, np.random.default_rng(3))
    assert len(first[0]) == CONTRASTS and np.allclose(first[1], 1 / CONTRASTS)
    assert first[0] == contrast_prompts(many, np.random.default_rng(3))[0]  # the sampling stream decides


def test_each_record_keeps_the_candidate_its_own_prompt_explains_best(backbone: Path) -> None:
    # The kept text maximises log p(t | own) - log sum_d w_d p(t | d): written out here one text at a time, so this
    # fails if the batch mixed records' prompts, candidates or the marginal's shares up.
    model, tokenizer, stack = _model_and_stack(backbone)
    prompts = [prompt_ids(tokenizer, f, "note") for f in ("dx: flu", "dx: cold", "dx: flu")]
    gen = torch.Generator().manual_seed(1)
    candidates = [[torch.randint(3, 500, (n,), generator=gen).tolist() for n in (3, 5, 4)] for _ in prompts]
    vocab = model.lm_head.weight.shape[0]
    contrasts, weights = contrast_prompts([tuple(p) for p in prompts], np.random.default_rng(0))
    picked = pick_best(model, stack, prompts, candidates, vocab=vocab, contrasts=contrasts, shares=weights, batch=4)
    shares = {tuple(prompts[0]): 2 / 3, tuple(prompts[1]): 1 / 3}
    assert dict(zip(contrasts, weights, strict=True)) == pytest.approx(shares)
    # a contrast set without the first record's prompt (a sample with more distinct prompts than CONTRASTS)
    other = {tuple(prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")): 0.5, tuple(prompts[1]): 0.5}
    apart = pick_best(
        model, stack, prompts, candidates, vocab=vocab, contrasts=list(other), shares=np.array([0.5, 0.5]), batch=3
    )
    for prompt, texts, choice in zip(prompts, candidates, apart, strict=True):
        marginal = [
            np.logaddexp.reduce([_alone(model, stack, list(p), t) + np.log(w) for p, w in other.items()]) for t in texts
        ]
        pmi = [_alone(model, stack, prompt, t) - m for t, m in zip(texts, marginal, strict=True)]
        assert choice == int(np.argmax(pmi))
    for prompt, texts, choice in zip(prompts, candidates, picked, strict=True):
        marginal = [
            np.logaddexp.reduce([_alone(model, stack, list(p), t) + np.log(w) for p, w in shares.items()])
            for t in texts
        ]
        pmi = [_alone(model, stack, prompt, t) - m for t, m in zip(texts, marginal, strict=True)]
        assert choice == int(np.argmax(pmi))


def test_a_fit_sampled_with_candidates_is_reproducible_per_seed_and_after_save_and_load(
    backbone: Path, tmp_path: Path
) -> None:
    config = _config(backbone)
    synth = Synthesizer(config).fit(_corpus(tmp_path), epsilon=8.0)
    generator = synth.texts_["note"]
    plain = synth.sample(8, seed=4)["note"].tolist()
    generator.config = generator.config.model_copy(update={"candidates": 3})
    best = synth.sample(8, seed=4)
    assert best["note"].tolist() == synth.sample(8, seed=4)["note"].tolist()  # post-processing of the seed only
    assert best["note"].tolist() != plain  # positive control: three draws per record, one kept
    synth.save(tmp_path / "model")
    again = Synthesizer.load(tmp_path / "model")
    assert again.texts_["note"].config.candidates == 3
    assert again.sample(8, seed=4)["note"].tolist() == best["note"].tolist()


def test_each_record_keeps_one_of_its_own_draws_and_a_sample_with_one_prompt_draws_once(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from privsynth.generators.text import finetune

    synth = Synthesizer(_config(backbone)).fit(_corpus(tmp_path), epsilon=8.0)
    generator = synth.texts_["note"]
    generator.config = generator.config.model_copy(update={"candidates": 3, "sample_batch": 7})
    tokenizer = generator.tokenizer_
    words = [tokenizer.encode(w, add_special_tokens=False) for w in ("alpha", "beta", "gamma")]
    rows: list[int] = []

    def fake_generate(model, stack, prompts, **kwargs):  # type: ignore[no-untyped-def]
        rows.append(len(prompts))
        return [words[i % 3] for i in range(len(prompts))]  # draw j of each record says words[j]

    def fake_pick(model, stack, prompts, drawn, **kwargs):  # type: ignore[no-untyped-def]
        assert all(len(d) == 3 for d in drawn) and len(drawn) == len(prompts)
        return [(i + 1) % 3 for i in range(len(prompts))]  # keep draw 1, 2, 0, 1, ... of the batch's records

    monkeypatch.setattr(finetune, "generate", fake_generate)
    monkeypatch.setattr(finetune, "pick_best", fake_pick)
    records = synth.sample(5, seed=1)
    assert rows == [6, 6, 3]  # 7 rows a pass hold 2 records x 3 draws; 5 records: 2 + 2 + 1
    expected = [["beta", "gamma"], ["beta", "gamma"], ["beta"]]
    assert [t.strip() for t in records["note"]] == [w for batch in expected for w in batch]
    rows.clear()
    synth.sample(4, seed=1, conditions={"dx": "flu", "wbc": 5.0})  # every field fixed: one prompt, one draw each
    assert rows == [4]
    # prompts that differ keep k draws even when the contrasts drawn from the sample all hold one prompt (a
    # sample with more distinct prompts than CONTRASTS, one of them frequent)
    rows.clear()
    monkeypatch.setattr(finetune, "contrast_prompts", lambda prompts, rng: ([prompts[0]], np.array([1.0])))
    synth.sample(5, seed=1)
    assert rows == [6, 6, 3]
    # scoring by keywords needs a prior this model was fitted without: refused before anything is sampled
    from privsynth.errors import ConfigError
    from privsynth.text_sampling import apply

    with pytest.raises(ConfigError, match="keyword_column"):
        apply(synth, {"note": {"candidate_score": "keywords"}})


def test_candidates_are_refused_for_the_byte_model() -> None:
    from pydantic import ValidationError

    from privsynth.generators.text.generator import TextConfig

    with pytest.raises(ValidationError, match="candidates is for a pretrained backbone"):
        TextConfig(candidates=2)
    assert TextConfig(backbone="smollm2", candidates=4).candidates == 4


def test_the_keyword_pick_is_the_posterior_of_the_records_category_not_its_count_of_keywords() -> None:
    # token 0 and 3 say category 0, token 1 says category 1, token 2 is shared (0: under the noise)
    prior = torch.tensor([[1.0, -1.0, 0.0, 0.5], [-1.0, 1.0, 0.0, -0.5]])
    candidates = [
        [[0, 1, 3], [0], [2, 2]],  # all of both categories' words: less sure than one word of its own
        [[0, 1, 3], [2, 5, 77], [1, 1, 1]],  # a repeated word counts once, as in the counts; ids past the prior: 0
        [[2], [2], [2, 2]],  # equal scores: the first draw
    ]
    assert keyword_pick(candidates, np.array([0, 1, 0]), prior) == [1, 2, 0]
    # each text's score is its own category's share of a softmax over the categories' summed ratios
    score = [float(torch.log_softmax(prior[:, t].sum(1), 0)[0]) for t in ([0, 1, 3], [0])]
    assert score[1] > score[0]
    # a record without a category keeps its first draw, whatever its candidates say
    assert keyword_pick([[[1], [0]], [[1], [0]]], [-1, 0], prior) == [0, 1]
    # the categories' shares are the posterior's prior: with three categories, token 0 leans to category 1 and
    # token 1 to category 2; for a record of category 0 the text leaning to the commoner rival is the worse one
    three = torch.tensor([[0.0, 0.0], [1.0, -10.0], [-10.0, 0.5]])
    pair = [[[0], [1]]]
    assert keyword_pick(pair, [0], three) == [1]  # equal shares: category 1's pull (e^1) is the stronger
    assert keyword_pick(pair, [0], three, shares=np.array([0.01, 0.01, 0.98])) == [0]  # category 2 is common
    with pytest.raises(ValueError, match="2 category shares for a prior of 3"):
        keyword_pick(pair, [0], three, shares=np.ones(2) / 2)
    with pytest.raises(ValueError, match="record 1 has 1 candidates, the first has 2"):
        keyword_pick([[[0], [1]], [[0]]], [0, 0], three)  # every record draws the same number


def _with_a_known_prior(backbone: Path, root: Path) -> tuple[Synthesizer, list[list[int]]]:
    """A tiny fit with a keyword prior replaced by a known one (flu reads " fever", cold " sneezing"), the three
    words' token ids (" fever", " sneezing", " the"): tests then read the pick, not the tiny fit's noise."""
    config = _config(backbone)
    config = config.model_copy(update={"text": config.text.model_copy(update={"keyword_column": "dx"})})
    synth = Synthesizer(config).fit(_keyword_corpus(root), epsilon=8.0)
    generator = synth.texts_["note"]
    words = [generator.tokenizer_.encode(w, add_special_tokens=False) for w in (" fever", " sneezing", " the")]
    fever, sneezing = words[0], words[1]
    prior = torch.zeros_like(generator.keyword_prior_)
    prior[0, fever], prior[1, fever], prior[0, sneezing], prior[1, sneezing] = 2.0, -2.0, -2.0, 2.0
    generator.keyword_prior_ = prior
    return synth, words


def test_keyword_candidates_keep_the_draw_the_dp_prior_reads_as_the_records_own_category(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Post-processing: the pick reads the fitted prior (a DP output) and the synthetic records' categories only.
    from privsynth.errors import ConfigError
    from privsynth.generators.text import finetune

    synth, (fever, sneezing, plain) = _with_a_known_prior(backbone, tmp_path)
    generator = synth.texts_["note"]
    drawn = [plain, sneezing, fever]  # draw j of each record says drawn[j]

    rows: list[int] = []
    passed: list[dict] = []

    def fake_generate(model, stack, prompts, **kwargs):  # type: ignore[no-untyped-def]
        rows.append(len(prompts))
        passed.append(kwargs)
        return [drawn[i % 3] for i in range(len(prompts))]

    def no_scoring_pass(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("candidate_score keywords must not score by fields")

    monkeypatch.setattr(finetune, "generate", fake_generate)
    monkeypatch.setattr(finetune, "pick_best", no_scoring_pass)
    monkeypatch.setattr(finetune, "contrast_prompts", no_scoring_pass)  # nor draw from the contrast stream
    update = {"candidates": 3, "candidate_score": "keywords", "keyword_strength": 0.0}
    generator.config = type(generator.config).model_validate({**generator.config.model_dump(), **update})
    records = synth.sample(12, seed=1)
    expected = {"flu": "fever", "cold": "sneezing"}
    assert set(records["dx"].dropna()) == {"flu", "cold"}
    for dx, note in zip(records["dx"], records["note"], strict=True):
        assert note.strip() == expected.get(dx, "the")  # a missing diagnosis keeps its first draw
    assert synth.sample(12, seed=1)["note"].tolist() == records["note"].tolist()  # the seed decides
    assert sum(rows) == 2 * 12 * 3  # two samples, 3 draws per record
    # a sample where no record has a category has nothing to pick by: one draw each (record i's is drawn[i % 3])
    rows.clear()
    with monkeypatch.context() as patch:
        patch.setattr(finetune, "keyword_categories", lambda generator, records: np.full(len(records), -1))
        uncategorised = synth.sample(4, seed=1)
    assert sum(rows) == 4 and [t.strip() for t in uncategorised["note"]] == ["the", "sneezing", "fever", "the"]
    # the prior once per word and the repetition penalty reach the draws as set (off by default)
    assert all(not k["bias_once"] and k["repetition_penalty"] == 1.0 for k in passed)
    passed.clear()
    update = {"keyword_once": True, "repetition_penalty": 1.5, "keyword_strength": 1.0}
    generator.config = type(generator.config).model_validate({**generator.config.model_dump(), **update})
    synth.sample(4, seed=1)
    assert passed and all(k["bias_once"] and k["repetition_penalty"] == 1.5 for k in passed)
    assert all(k["bias"] is not None for k in passed)
    # a model fitted without a prior has nothing to read: refused with what to do
    generator.keyword_prior_ = None
    with pytest.raises(ConfigError, match="no keyword prior"):
        synth.sample(4, seed=1)


def test_candidate_score_keywords_needs_a_keyword_column_and_is_allowed_with_one_candidate() -> None:
    from pydantic import ValidationError

    from privsynth.generators.text.generator import TextConfig

    with pytest.raises(ValidationError, match=r"needs text\.keyword_column"):
        TextConfig(backbone="smollm2", candidates=2, candidate_score="keywords")
    # one candidate: nothing to pick, so neither score is used (a config may set it for a later --text candidates=4)
    assert TextConfig(backbone="smollm2", keyword_column="dx", candidate_score="keywords").candidates == 1
    assert TextConfig(backbone="smollm2", keyword_column="dx", candidates=2, candidate_score="keywords").candidates == 2


def test_candidates_max_draws_again_only_for_records_whose_draw_reads_as_another_category(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Post-processing, as the pick: more rounds read the fitted prior and the synthetic records' categories only.
    import logging

    from privsynth.generators.text import finetune

    synth, (fever, sneezing, plain) = _with_a_known_prior(backbone, tmp_path)
    generator = synth.texts_["note"]
    tokenizer = generator.tokenizer_
    calls: list[int] = []
    script = {"first_calls": 6, "later_cold": sneezing}

    def fake_generate(model, stack, prompts, *, bias, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(prompts))
        out = []
        for row, prompt in enumerate(prompts):
            fields = tokenizer.decode(prompt)
            dx = "flu" if "dx: flu" in fields else "cold" if "dx: cold" in fields else None
            # each row's keyword bias is its own record's category's (strength 1): rows stay with their records
            assert float(bias[row, fever[0]]) == {"flu": 2.0, "cold": -2.0, None: 0.0}[dx], fields
            later = len(calls) > script["first_calls"]
            out.append(script["later_cold"] if dx == "cold" and later else fever)
        return out

    monkeypatch.setattr(finetune, "generate", fake_generate)
    update = {"candidates": 2, "candidates_max": 4, "candidate_score": "keywords", "keyword_strength": 1.0}
    generator.config = type(generator.config).model_validate(
        {**generator.config.model_dump(), **update, "sample_batch": 4}
    )
    # rounds of 2 draws, 2 records a batch: the first round of 12 records is 6 calls, then the cold ones again
    records = synth.sample(12, seed=1)
    colds = int((records["dx"] == "cold").sum())
    assert 0 < colds < 12
    expected = {"flu": "fever", "cold": "sneezing"}
    for dx, note in zip(records["dx"], records["note"], strict=True):
        assert note.strip() == expected.get(dx, "fever")  # a missing diagnosis keeps its first draw
    # only the cold records drew again, one round each, in full batches
    assert calls[:6] == [4] * 6 and sum(calls[6:]) == 2 * colds and all(c == 4 for c in calls[6:-1])
    # a later draw that scores higher replaces the kept one even when it too reads as another category
    calls.clear()
    script["later_cold"] = plain
    neutral = synth.sample(12, seed=1)
    assert [n.strip() for n in neutral["note"]] == ["the" if dx == "cold" else "fever" for dx in neutral["dx"]] and sum(
        calls
    ) == 24 + 2 * colds
    # draws that all read as another category stop at candidates_max; 13 records: first-round and re-queued records
    # share a batch, and every batch but the last is full
    calls.clear()
    script["later_cold"] = fever
    with caplog.at_level(logging.INFO, logger=finetune.log.name):
        stuck = synth.sample(13, seed=1)
    stuck_colds = int((stuck["dx"] == "cold").sum())
    assert sum(calls) == 26 + 2 * stuck_colds and all(c == 4 for c in calls[:-1])
    assert [n.strip() for n in stuck["note"]] == ["fever"] * 13
    assert f"{stuck_colds} of 13 records kept a draw that reads as another category" in caplog.text


def test_without_rounds_the_draws_come_in_the_order_and_batches_of_best_of_k(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # candidates_max 0 (off) must sample exactly as best-of-k did: chunks of records in order, k draws each
    from privsynth.generators.text import finetune

    synth, (fever, _, _) = _with_a_known_prior(backbone, tmp_path)
    generator = synth.texts_["note"]
    batches: list[list[tuple[int, ...]]] = []

    def fake_generate(model, stack, prompts, **kwargs):  # type: ignore[no-untyped-def]
        batches.append([tuple(p) for p in prompts])
        return [fever] * len(prompts)

    monkeypatch.setattr(finetune, "generate", fake_generate)
    update = {"candidates": 3, "candidate_score": "keywords", "keyword_strength": 0.0, "sample_batch": 7}
    generator.config = type(generator.config).model_validate({**generator.config.model_dump(), **update})
    records = synth.sample(10, seed=1)
    fields = finetune.render_fields(
        records, generator.codecs_, generator.meanings_, fields_format=generator.fields_format_
    )
    prompts = [
        tuple(finetune.prompt_ids(generator.tokenizer_, f, "note", prompt_format=generator.prompt_format_))
        for f in fields
    ]
    per_call = 7 // 3  # records a call
    expected = [[p for p in prompts[i : i + per_call] for _ in range(3)] for i in range(0, len(prompts), per_call)]
    assert batches == expected


def test_candidates_max_needs_a_category_score_and_whole_rounds() -> None:
    from pydantic import ValidationError

    from privsynth.generators.text.generator import TextConfig
    from privsynth.text_sampling import parse_text_settings

    base = {"backbone": "smollm2", "keyword_column": "dx", "candidate_score": "keywords"}
    assert TextConfig(**base, candidates=2, candidates_max=8).candidates_max == 8
    assert TextConfig(**base, candidates_max=5).candidates_max == 5  # rounds of one draw
    with pytest.raises(ValidationError, match=r"multiple of text\.candidates"):
        TextConfig(**base, candidates=3, candidates_max=4)
    with pytest.raises(ValidationError, match=r"multiple of text\.candidates"):
        TextConfig(**base, candidates=4, candidates_max=2)
    with pytest.raises(ValidationError, match="needs candidate_score keywords or classifier"):
        TextConfig(backbone="smollm2", candidates=2, candidates_max=4)
    assert parse_text_settings(["candidates_max=12"]) == {"candidates_max": 12.0}
