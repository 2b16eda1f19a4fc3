"""Best-of-k sampling with a backbone (``text.candidates``): the scores, the contrast and the fit-to-sample path.

Runs on the tiny random llama of ``test_text_backbone`` (same code path as SmolLM2, seconds instead of minutes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from privsynth.generators.text.llm import prompt_ids
from privsynth.generators.text.rerank import CONTRASTS, continuation_logprobs, contrast_prompts, pick_best
from privsynth.synthesizer import Synthesizer
from tests.unit.generators.test_text_backbone import _config, _corpus, _model_and_stack, _tiny_backbone


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
    picked = pick_best(model, stack, prompts, candidates, vocab=vocab, rng=np.random.default_rng(0), batch=4)
    shares = {tuple(prompts[0]): 2 / 3, tuple(prompts[1]): 1 / 3}
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


def test_candidates_are_refused_for_the_byte_model() -> None:
    from pydantic import ValidationError

    from privsynth.generators.text.generator import TextConfig

    with pytest.raises(ValidationError, match="candidates is for a pretrained backbone"):
        TextConfig(candidates=2)
    assert TextConfig(backbone="smollm2", candidates=4).candidates == 4
