"""The text generator's pretrained-backbone path: fit, sample, save and load (see :mod:`.llm` for the parts).

Privacy: the backbone and its tokenizer are public and fitted on nothing private. What reaches DP-SGD from a
record is its prompt (its DP-codec fields) and its masked text; the only weights trained are the adapters and the
placeholders' output rows, with per-person clipping, Poisson sampling over people and noise recorded in the ledger
before it is drawn (``spend_once`` then ``DPSGDTrainer``, as for every DP-SGD stage). The lower layers' outputs
on the training texts are private and live in memory for the fit only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import torch

from privsynth.errors import ConfigError, IntegrityError
from privsynth.generators.dpsgd import DPSGDTrainer, spend_once
from privsynth.generators.record_loss import RecordLoss
from privsynth.generators.tabular.codecs import ColumnCodec, codec_from_dict
from privsynth.generators.text import backbone as backbones
from privsynth.generators.text import classifier as classifiers
from privsynth.generators.text import keywords
from privsynth.generators.text.llm import (
    FIELDS_FORMAT,
    FIELDS_FORMATS,
    NO_FIELDS,
    PROMPT_FORMATS,
    TARGETS,
    TopStack,
    bfloat16_supported,
    generate,
    lower_states,
    prompt_ids,
    record_losses,
    render_fields,
    schema_meanings,
    usable_prompt_format,
)
from privsynth.generators.text.rerank import best_draw, contrast_prompts, keyword_readings, own_readings, pick_best
from privsynth.generators.text.tokens import Vocabulary
from privsynth.pii.placeholders import fill_placeholders
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.ledger import Stage
from privsynth.privacy.randomness import Streams
from privsynth.runtime import resolve_device

if TYPE_CHECKING:
    from privsynth.data.corpus import Corpus
    from privsynth.generators.base import FitContext
    from privsynth.generators.text.generator import TextGenerator

log = logging.getLogger(__name__)

WEIGHTS = "text.safetensors"
#: The keyword prior's tensor among the saved weights (:mod:`.keywords`).
KEYWORD_PRIOR = "keyword.prior"
#: The DP text classifier's weights among the saved weights (:mod:`.classifier`).
CLASSIFIER = "classifier.weights"
#: Dropped from decoded text: C0 controls other than tab and newline, DEL, and U+FFFD (a token that ended inside
#: a multi-byte character decodes to it). What remains is valid, printable UTF-8.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufffd]")
META = "text.json"


def _prepared(located: backbones.Backbone, placeholders: tuple[str, ...]) -> tuple[Any, Any, int, torch.Tensor]:
    """Backbone model and tokenizer with one added special token per placeholder.

    Each placeholder's input embedding is the mean embedding of its name's word pieces (``<VAL:wbc>``: "val wbc"):
    public and the same on every machine. Returns (model, tokenizer, base vocabulary size, those rows).
    """
    model, tokenizer = backbones.load(located)
    embeddings = model.get_input_embeddings().weight
    base = int(embeddings.shape[0])
    if len(tokenizer) != base:
        raise ConfigError(
            f"text.backbone {located.name}: the tokenizer has {len(tokenizer)} tokens but the model {base} rows"
        )
    names = [f"<{name}>" for name in placeholders]
    rows = []
    for name in placeholders:
        words = name.replace(":", " ").replace("|", " ").replace("_", " ").lower()
        ids = tokenizer(" " + words, add_special_tokens=False)["input_ids"] or [0]
        rows.append(embeddings[ids].mean(0))
    tokenizer.add_special_tokens({"additional_special_tokens": names}, replace_extra_special_tokens=False)
    added = tokenizer.convert_tokens_to_ids(names)
    if list(added) != list(range(base, base + len(names))):
        raise ConfigError(f"text.backbone {located.name}: placeholder tokens did not get ids after the vocabulary")
    model.resize_token_embeddings(base + len(names), mean_resizing=False)
    stacked = torch.stack(rows) if rows else torch.zeros(0, embeddings.shape[1])
    with torch.no_grad():
        model.get_input_embeddings().weight[base:] = stacked
    return model, tokenizer, base, stacked


def _stack(model: Any, config: Any, placeholder_rows: torch.Tensor, generator: torch.Generator) -> TopStack:
    """The adapted top layers for ``config`` (``text`` settings), adapters initialised from ``generator``."""
    return TopStack(
        model,
        layers=config.adapter_layers,
        rank=config.lora_rank,
        alpha=config.lora_alpha,
        targets=TARGETS,
        placeholder_rows=placeholder_rows,
        generator=generator,
    )


def _stops(tokenizer: Any) -> list[int]:
    stops = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|endoftext|>"):
        index = tokenizer.convert_tokens_to_ids(token)
        if isinstance(index, int) and index != tokenizer.unk_token_id:
            stops.add(index)
    return sorted(i for i in stops if i is not None)


def fit_backbone(
    generator: TextGenerator,
    corpus: Corpus,
    column: str,
    codecs: list[ColumnCodec],
    context: FitContext,
    masked: list[str | None],
) -> None:
    """DP fine-tuning of ``generator.config.backbone`` on the masked texts of ``column`` (see the module doc)."""
    config = generator.config
    if config.public_corpus is not None or config.pretrained is not None:
        raise ConfigError("text.public_corpus and text.pretrained are for text.backbone: byte; remove them")
    located = backbones.locate(config.backbone)
    vocab = Vocabulary.for_schema(corpus.schema)
    domain = keyword_domain(corpus.schema, config.keyword_column, column) if config.keyword_column else None
    model, tokenizer, base, placeholder_rows = _prepared(located, vocab.placeholders)
    device = resolve_device(config.device)
    model.to(device)
    layers = len(model.model.layers)
    if config.adapter_layers >= layers:
        raise ConfigError(f"text.adapter_layers must be below the backbone's {layers} layers")
    train_vocab = min(config.train_vocab, base)
    stop = _stops(tokenizer)[0] if tokenizer.eos_token_id is None else tokenizer.eos_token_id
    meanings = schema_meanings(corpus.schema, codecs)  # public: the schema's words, not the records'
    fields = render_fields(corpus.records, codecs, meanings, fields_format=FIELDS_FORMAT)
    # Condition dropout: each record's prompt omits its fields with probability condition_dropout, so the model also
    # learns unconditioned text (guidance's reference at sampling). The draws come from a private stream, are
    # independent and identically distributed and independent of the data (removing a record shifts the later
    # records' draws, which have the same distribution), and are never stored. A resumed fit draws again: each
    # step's mechanism is the same either way.
    dropped = context.streams.numpy("text", column, "condition-dropout").random(len(fields))
    fields = [NO_FIELDS if drop < config.condition_dropout else f for f, drop in zip(fields, dropped, strict=True)]
    prompt_format = usable_prompt_format(tokenizer, column)
    sequences: list[list[int]] = []
    starts: list[int] = []
    bodies: list[list[int]] = []  # each masked text's tokens, whole: the keyword prior's input
    for text, described in zip(masked, fields, strict=True):
        prompt = prompt_ids(tokenizer, described, column, prompt_format=prompt_format)
        body = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        bodies.append(body)
        kept = list(body[: config.max_tokens])
        sequences.append([*prompt, *kept, *([stop] if len(kept) == len(body) else [])])
        starts.append(len(prompt))
    # targets: the next token, from the first text token on; rows of the loss' vocabulary or placeholders after it
    targets = np.full((len(sequences), max(len(s) for s in sequences)), -1, dtype=np.int64)
    for i, (seq, start) in enumerate(zip(sequences, starts, strict=True)):
        nxt = np.asarray(seq[start:], dtype=np.int64)
        mapped = np.where(nxt < train_vocab, nxt, np.where(nxt >= base, nxt - base + train_vocab, -1))
        targets[i, start - 1 : start - 1 + len(mapped)] = mapped

    streams, checkpoint, ledger, groups, units = (
        context.streams,
        context.checkpoint,
        context.ledger,
        context.groups,
        context.units,
    )
    shape = generator.plan(units)
    mechanism = Mechanism(noise_multiplier=context.noise_multiplier, sample_rate=shape.sample_rate, steps=shape.steps)
    note = f"DP-SGD LoRA fine-tuning of {located.name} on text column '{column}'"
    queries = classifying = 0
    if domain is not None:  # plan() refused fewer than 2 steps before anything was fitted
        queries = min(config.keyword_queries, shape.steps // 2)
        classifying = config.classifier_steps  # plan() refused more than half the steps for the two
        # the declared categories' digest: a resume whose schema lists them otherwise is a new run, not this one
        digest = hashlib.sha256(json.dumps([str(v) for v in domain]).encode()).hexdigest()[:12]
        where = f"the {queries} steps before its last {classifying}" if classifying else f"its last {queries} steps"
        note += (
            f"; {where} sum keyword counts per '{config.keyword_column}' category "
            f"({len(domain)} declared, sha256 {digest})"
        )
        if classifying:
            note += (
                f"; its last {classifying} steps train a logistic regression of '{config.keyword_column}' on the "
                f"texts' {classifiers.EMBEDDER['name']} embeddings"
            )
    resuming = spend_once(
        ledger,
        Stage.TEXT,
        mechanism,
        note=note,
        checkpoint=checkpoint,
        streams=streams,
        secure_mode=config.optim.secure_mode,
    )
    cache_progress = context.report(f"backbone states for '{column}' (frozen layers, once)")
    precision = config.frozen_precision
    states = lower_states(
        model,
        sequences,
        keep_top=config.adapter_layers,
        progress=None if cache_progress is None else in_tenths(cache_progress),
        bfloat16=precision == "bfloat16" or (precision == "auto" and bfloat16_supported(device)),
    )
    stack = _stack(model, config, placeholder_rows, streams.torch("text", column, "adapter-init"))
    head = model.lm_head.weight[:train_vocab].detach()
    lengths = torch.as_tensor([len(s) for s in sequences])
    targets_t = torch.as_tensor(targets)

    def loss(
        module: torch.nn.Module, cached: list[torch.Tensor], sizes: torch.Tensor, want: torch.Tensor
    ) -> torch.Tensor:
        width = int(sizes.max())
        hidden = torch.zeros(len(cached), width, cached[0].shape[-1])
        for j, state in enumerate(cached):
            hidden[j, : len(state)] = state.float()
        return record_losses(module(hidden.to(device)), head, stack.placeholder_logits, want[:, :width].to(device))

    trainer = DPSGDTrainer(
        stack,
        loss=RecordLoss(loss, (states, lengths, targets_t)),  # named records: a cluster worker holds its shard
        groups=groups,
        mechanism=mechanism,
        config=config.optim,
        streams=streams,
        stream=("text", column),
        units=units,
        ema=config.ema,
        device=device,
    )
    if resuming and checkpoint is not None:
        trainer.load_checkpoint(checkpoint)
    progress = context.report(f"text '{column}' (LoRA on {located.name.split(' ')[0]})")
    trainer.run(
        until=mechanism.steps - queries - classifying,  # the keyword counts and the classifier take the last steps
        on_step=None if progress is None else lambda step, value: progress(step, mechanism.steps, value),
        checkpoint=checkpoint,
        engine=context.engine,
    )
    stack.load_state_dict(trainer.averaged_state())
    states.clear()  # the private activations go with the fit
    stack.eval()
    stack.merge_into(model)
    generator.model_, generator.tokenizer_, generator.stack_ = model, tokenizer, stack
    generator.base_vocab_ = base
    generator.backbone_ = located.describe()
    generator.located_ = located
    generator.vocab_ = vocab
    generator.column_ = column
    generator.codecs_ = codecs
    generator.prompt_format_ = prompt_format
    generator.fields_format_ = FIELDS_FORMAT
    generator.meanings_ = meanings
    generator.condition_dropout_ = config.condition_dropout
    generator.public_ = None
    generator.keyword_prior_, generator.keyword_domain_ = None, []
    if domain is not None:
        assert config.keyword_column is not None  # domain is only built for one
        # the tokens sampling may draw: every backbone token, or the trained ones (placeholders, above the
        # backbone's vocabulary, are never keywords)
        cells = train_vocab if config.sample_vocab == "trained" else base
        told = context.report(f"keyword prior for '{column}' (texts the fitted model writes)")
        generator.keyword_prior_ = _keyword_prior(
            trainer,
            corpus.records[config.keyword_column],
            domain,
            bodies,
            cells=cells,
            width=config.keyword_tokens,
            excluded=list(tokenizer.all_special_ids),
            queries=queries,
            start=mechanism.steps - queries - classifying,
            rank=lambda: written_rank(
                generator,
                domain,
                cells,
                streams,
                tabular=context.upstream.get("tabular"),
                progress=None if told is None else lambda done, total: told(done, total, float("nan")),
            ),
        )
        generator.keyword_domain_ = [str(value) for value in domain]
        if checkpoint is not None:
            trainer.save_checkpoint(checkpoint)  # the counts with their last step: a resume reuses them
    generator.classifier_, generator.classifier_embedder_ = None, None
    if classifying:
        assert domain is not None and config.keyword_column is not None  # classifier_steps needs keyword_column
        reported = context.report(f"text embeddings of '{column}' for the DP classifier of '{config.keyword_column}'")
        generator.classifier_ = _text_classifier(
            trainer,
            corpus.records[config.keyword_column],
            domain,
            # each text as the backbone trained on it (masked, cut), written as sampling writes a candidate
            [decoded(tokenizer, body[: config.max_tokens]) for body in bodies],
            steps=classifying,
            lr=config.classifier_lr,
            progress=None if reported is None else in_tenths(reported),
        )
        generator.classifier_embedder_ = classifiers.embedder_identity()
        if checkpoint is not None:
            trainer.save_checkpoint(checkpoint)  # the weights with the stage's last step: a resume reuses them
    bodies.clear()


def in_tenths(report: Callable[[int, int, float], None]) -> Callable[[int, int], None]:
    """``progress(done, total)`` over private records, told as 10 %, 20 %... 100 %, each tenth once, in order.

    The number of training texts is an exact private count: a log line must not carry it, nor a percentage that
    follows it (a first line at ``100 x batch / n`` percent would give ``n`` away). Whatever ``n``, the lines are
    the same ten values.
    """
    told = [0]

    def progress(done: int, total: int) -> None:
        reached = 10 * done // max(total, 1)
        while told[0] < min(reached, 10):
            told[0] += 1
            report(10 * told[0], 100, float("nan"))

    return progress


def decoded(tokenizer: Any, ids: list[int]) -> str:
    """A text's tokens as a string with its placeholders (before they are filled), control characters dropped."""
    return _CONTROL.sub("", tokenizer.decode(ids, skip_special_tokens=False)).strip()


def _text_classifier(
    trainer: DPSGDTrainer,
    values: pd.Series,
    domain: list[Any],
    texts: list[str],
    *,
    steps: int,
    lr: float,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """The DP classifier's weights (:mod:`.classifier`), trained on the stage's last ``steps`` steps, counted once.

    A resumed run whose checkpoint holds the weights reuses them (training again would be a second measurement the
    ledger does not hold).
    """
    table = trainer.outputs.get(classifiers.OUTPUT)
    if table is None:
        if trainer.step != trainer.mechanism.steps - steps:
            raise IntegrityError(
                "this text fit resumes from a checkpoint without its classifier: start the fit again in a new work "
                "folder (its spend is already in the ledger)"
            )
        features = classifiers.embed(texts, progress=progress)
        table = classifiers.train(
            trainer,
            features,
            keywords.category_indices(values, domain),
            classes=len(domain),
            steps=steps,
            lr=lr,
        )
        trainer.outputs[classifiers.OUTPUT] = table
    if table.shape[0] != len(domain):
        raise IntegrityError("the checkpoint's classifier does not match this fit's categories")
    return table


def written_rank(
    generator: TextGenerator,
    domain: list[Any],
    cells: int,
    streams: Streams,
    *,
    tabular: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Per token id below ``cells``: its rank in the ``text.keyword_candidates`` texts the fitted model writes.

    The rank is :func:`.keywords.candidate_order`'s, in ``text.keyword_order``. The prompts give each category of
    the domain in turn: with the fitted ``tabular`` generator, its synthetic records drawn with that category fixed
    (DP output, post-processing); without one, the category alone, every other field ``missing``. The model is the
    stage's DP output, so the order is post-processing; its draws come from the fit's private streams. A token the
    model never writes is never counted (``inf``): the prior can only reweigh what the model writes.
    """
    config = generator.config
    wanted = config.keyword_candidates
    name = config.keyword_column
    names = [codec.name for codec in generator.codecs_]
    values = [domain[i % len(domain)] for i in range(wanted)]
    if config.keyword_order == "uneven" and (name not in names or wanted < len(domain)):
        # public settings only: the prompts would not tell the categories apart, so the order would be noise
        reason = (
            f"the text is not conditioned on '{name}'"
            if name not in names
            else "keyword_candidates is below the number of categories"
        )
        log.warning(
            "text.keyword_order 'uneven' compares the candidate texts of each category, but %s; use "
            "keyword_order 'fewest' or raise keyword_candidates",
            reason,
        )
    if tabular is not None and name in names:
        drawn = {  # each category's records from streams of their own
            value: tabular.sample_frame(
                values.count(value),
                conditions={name: value},
                streams=streams.child("text", generator.column_, f"keyword-prompts-{i}"),
            )
            for i, value in enumerate(dict.fromkeys(values))
        }
        records = pd.concat(drawn.values(), ignore_index=True)
        # each category's prompts together, in the domain's order (the values above cycle through it)
        category = [i for i, value in enumerate(drawn) for _ in range(values.count(value))]
        missing: list[str] = []
    else:
        category = [i % len(domain) for i in range(wanted)]
        records = pd.DataFrame({c: [None] * wanted for c in names})
        records[name] = values
        missing = [c for c in names if c != name]
    if len(records) != len(category):
        raise IntegrityError("the keyword prompts' records do not match their categories")
    shown = render_fields(
        records, generator.codecs_, generator.meanings_, fields_format=generator.fields_format_, missing=missing
    )
    tokenizer, base = generator.tokenizer_, generator.base_vocab_
    prompts = [prompt_ids(tokenizer, f, generator.column_, prompt_format=generator.prompt_format_) for f in shown]
    stops = _stops(tokenizer)
    placeholder_ids = set(range(base, base + len(generator.vocab_.placeholders)))
    device = next(generator.model_.parameters()).device
    rng = streams.torch("text", generator.column_, "keyword-candidates", device=device)
    held = np.zeros((len(domain), cells))
    batch = max(1, min(config.sample_batch, 64))
    for start in range(0, len(prompts), batch):
        produced = generate(
            generator.model_,
            generator.stack_,
            prompts[start : start + batch],
            vocab=base,
            max_new=config.max_tokens,
            stop=stops,
            banned=[i for i in tokenizer.all_special_ids if i not in stops and i not in placeholder_ids],
            temperature=config.temperature,
            top_p=config.top_p,
            generator=rng,
            no_repeat_ngram=config.no_repeat_ngram,
            repetition_penalty=config.repetition_penalty,
            placeholder_limit=config.placeholder_limit,
            trained=min(config.train_vocab, base) if config.sample_vocab == "trained" else None,
        )
        for offset, ids in enumerate(produced):
            distinct = np.unique(np.asarray([t for t in ids if t < cells], dtype=np.int64))
            held[category[start + offset], distinct] += 1
        if progress is not None:  # texts the model wrote: a public setting, no count of records
            progress(min(start + batch, len(prompts)), len(prompts))
    texts = np.bincount(category, minlength=len(domain))
    return keywords.candidate_order(held, texts, config.keyword_order)


def keyword_domain(schema: Any, name: str, column: str) -> list[Any]:
    """The categories of ``text.keyword_column`` ``name``: its declared domain (public), or a clear refusal."""
    spec = schema.columns.get(name)
    if spec is None or name == column:
        known = ", ".join(c for c in schema.columns if c != column) or "none"
        raise ConfigError(
            f"text.keyword_column '{name}' is not a column of this corpus besides the text (known: {known})"
        )
    domain = list(getattr(spec, "domain", None) or [])
    if not domain:
        raise ConfigError(
            f"text.keyword_column '{name}' has no declared domain in the schema: the prior's categories must be "
            f"public, not read from the records; add 'domain: [...]' to '{name}' in the schema"
        )
    return domain


def _keyword_prior(
    trainer: DPSGDTrainer,
    values: pd.Series,
    domain: list[Any],
    bodies: list[list[int]],
    *,
    cells: int,
    width: int,
    excluded: list[int],
    queries: int,
    start: int | None = None,
    rank: Callable[[], np.ndarray] | None = None,
) -> torch.Tensor:
    """The keyword prior's log share ratios ``[categories, cells]`` (:mod:`.keywords`), its steps counted once.

    A run spends ``queries`` steps from step ``start`` (default: the stage's last ``queries``) on it, each text
    adding its tokens in the order ``rank()`` gives (public or DP; default: the rarest pieces); a resumed run whose
    checkpoint holds the noisy sums reuses them (drawing them again would be a second measurement the ledger does
    not hold).
    """
    sums = trainer.outputs.get(keywords.OUTPUT)
    if sums is None:
        if trainer.step != (trainer.mechanism.steps - queries if start is None else start):
            raise IntegrityError(
                "this text fit resumes from a checkpoint without its keyword counts: start the fit again in a new "
                "work folder (its spend is already in the ledger)"
            )
        order = None if rank is None else rank()
        sums = keywords.noisy_keyword_sums(
            trainer,
            keywords.category_indices(values, domain),
            keywords.keyword_sets(bodies, cells=cells, width=width, excluded=excluded, rank=order),
            classes=len(domain),
            cells=cells,
            width=width,
            queries=queries,
        )
        trainer.outputs[keywords.OUTPUT] = sums
    if tuple(sums.shape) != (len(domain), cells):
        raise IntegrityError("the checkpoint's keyword counts do not match this fit's categories and vocabulary")
    clip, sigma = trainer.config.max_grad_norm, trainer.mechanism.noise_multiplier
    return keywords.log_ratios(
        sums,
        noise=sigma * clip * math.sqrt(queries),
        unit=trainer.mechanism.sample_rate * queries * clip / math.sqrt(width),
    )


def sample_backbone(
    generator: TextGenerator,
    records: pd.DataFrame,
    identities: pd.DataFrame,
    others: pd.DataFrame,
    streams: Streams,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """One text per synthetic record: prompt from its fields, tokens drawn with temperature and top-p.

    With ``text.candidates`` above 1, each record draws that many and keeps the one its fields explain best, or with
    ``text.candidate_score: keywords`` the one the DP keyword prior reads as its own category most surely
    (:mod:`.rerank`), or with ``classifier`` the one the DP classifier does, from its embedding
    (:mod:`.classifier`). ``progress(done, total)`` is told after each batch of records.
    """
    config = generator.config
    tokenizer, base = generator.tokenizer_, generator.base_vocab_
    device = next(generator.model_.parameters()).device
    rng = streams.torch("sample", f"text:{generator.column_}", "tokens", device=device)
    stops = _stops(tokenizer)
    placeholder_ids = set(range(base, base + len(generator.vocab_.placeholders)))
    banned = [i for i in tokenizer.all_special_ids if i not in stops and i not in placeholder_ids]
    fields = render_fields(records, generator.codecs_, generator.meanings_, fields_format=generator.fields_format_)
    prompt_format = generator.prompt_format_
    prompts = [prompt_ids(tokenizer, f, generator.column_, prompt_format=prompt_format) for f in fields]
    unconditional: list[list[int]] | None = None  # per record
    if config.guidance != 1.0:
        unconditional = guidance_references(generator, records, prompt_format)
    # 'trained': only the output rows the fit's loss trained (and the placeholders) are drawn
    trained = min(config.train_vocab, base) if config.sample_vocab == "trained" else None
    prior = keyword_bias(generator, records)  # per record, or None
    k = config.candidates
    # the most draws a record may take (candidates_max: in rounds of k, until a draw reads as its own category)
    limit = max(k, config.candidates_max)
    by_keywords = limit > 1 and config.candidate_score == "keywords"
    by_classifier = limit > 1 and config.candidate_score == "classifier"
    categories = keyword_categories(generator, records) if by_keywords else None
    embedder = None
    if by_classifier:
        categories = classifier_categories(generator, records)
        from privsynth.text_embedding import MiniLMEmbedder

        embedder = MiniLMEmbedder()
    if categories is not None and not (categories >= 0).any():
        # no record has a category of the prior (all missing): every one would keep its first draw
        log.info(
            "text.candidates %d by %s: no record of this sample has a category; one draw each",
            k,
            config.candidate_score,
        )
        k = limit = 1
        categories = None  # nothing to read: no embedding or scoring of the draws
    class_shares = None
    if categories is not None:  # the categories' shares among the synthetic records (add-one): the pick's prior
        counts = np.bincount(categories[categories >= 0], minlength=len(generator.keyword_domain_))
        class_shares = (counts + 1.0) / (counts.sum() + len(counts))
    if k > 1 and categories is None:
        keyed = [tuple(p) for p in prompts]
        contrasts, shares = contrast_prompts(keyed, streams.numpy("sample", f"text:{generator.column_}", "contrast"))
        # the sample's prompts decide, not the contrasts drawn from them (a draw of records may hold one prompt)
        if len(set(keyed)) == 1:  # no fields, or conditions fixing them all: nothing to read back from a text
            log.info("text.candidates %d: every record of this sample has the same prompt; one draw each", k)
            k = limit = 1
    # draws come in rounds of k per record; with candidates_max, a record whose kept draw does not read as its own
    # category goes back in the queue for another round (after every record's first), so the batches stay full
    rows = max(1, min(config.sample_batch, 64))
    batch = max(1, rows // k)
    queue = deque(range(len(prompts)))
    # per record in the queue: its best draw so far, that draw's score and whether it reads as the record's category
    kept: dict[int, tuple[list[int], float, bool]] = {}
    missed = 0  # records whose kept draw still reads as another category
    drawn = np.zeros(len(prompts), dtype=np.int64)
    finished: list[str | None] = [None] * len(prompts)
    done = 0
    if progress is not None:
        progress(0, len(prompts))  # the clock of the estimate starts with the first batch, not after it
    while queue:
        take = [queue.popleft() for _ in range(min(batch, len(queue)))]
        produced = generate(
            generator.model_,
            generator.stack_,
            [prompts[i] for i in take for _ in range(k)],
            vocab=base,
            max_new=config.max_tokens,
            stop=stops,
            banned=banned,
            temperature=config.temperature,
            top_p=config.top_p,
            generator=rng,
            unconditional=None if unconditional is None else [unconditional[i] for i in take for _ in range(k)],
            guidance=config.guidance,
            no_repeat_ngram=config.no_repeat_ngram,
            repetition_penalty=config.repetition_penalty,
            placeholder_limit=config.placeholder_limit,
            trained=trained,
            bias=None if prior is None else prior(take).repeat_interleave(k, dim=0),
            bias_once=config.keyword_once,
        )
        candidates = [produced[j * k : (j + 1) * k] for j in range(len(take))]
        drawn[take] += k
        final: list[tuple[int, list[int]]] = []
        if categories is not None:
            if by_classifier:
                assert generator.classifier_ is not None  # classifier_categories refused a model without
                # each candidate as the classifier was trained on a text: placeholders unfilled (post-processing)
                features = classifiers.embed(
                    [decoded(tokenizer, [t for t in ids if t not in stops]) for ids in produced], embedder=embedder
                )
                readings = classifiers.classifier_readings(features, generator.classifier_, k=k)
            else:
                table = cast(torch.Tensor, generator.keyword_prior_)  # keyword_categories refused a model without
                readings = keyword_readings(candidates, table, shares=class_shares)
            score, own = own_readings(readings, categories[take])
            for j, i in enumerate(take):
                # in rounds, a draw that reads as its own category beats one that does not, whatever their scores
                b = best_draw(score[j], own[j] if limit > k else None)
                draw = (candidates[j][b], float(score[j, b]), bool(own[j, b]))
                # a later round's draw replaces the kept one only if it ranks higher (equals: the earlier stays)
                if i not in kept or (draw[2], draw[1]) > (kept[i][2], kept[i][1]):
                    kept[i] = draw
                if kept[i][2] or drawn[i] + k > limit:
                    ids, _, reads_own = kept.pop(i)
                    missed += not reads_own
                    final.append((i, ids))
                else:
                    queue.append(i)
        elif k > 1:
            best = pick_best(
                generator.model_,
                generator.stack_,
                [prompts[i] for i in take],
                candidates,
                vocab=base,
                contrasts=contrasts,
                shares=shares,
                batch=rows,
                trained=trained,
                stop=stops,
            )
            final = [(i, texts_of[b]) for i, texts_of, b in zip(take, candidates, best, strict=True)]
        else:
            final = [(i, texts_of[0]) for i, texts_of in zip(take, candidates, strict=True)]
        for i, ids in final:
            text = decoded(tokenizer, [t for t in ids if t not in stops])
            finished[i] = fill_placeholders(text, records.iloc[i], identities.iloc[i], others.iloc[i])
        done += len(final)
        if progress is not None:
            progress(done, len(prompts))
    if limit > k:
        log.info(
            "text.candidates %d, up to %d until a draw reads as its record's category: %.2f draws a record on "
            "average; %d of %d records kept a draw that reads as another category",
            k,
            limit,
            drawn.mean() if len(drawn) else 0.0,
            missed,
            len(drawn),
        )
    texts = [t for t in finished if t is not None]
    if len(texts) != len(prompts):  # every record leaves the queue with its text; a bug otherwise
        raise RuntimeError(f"text sampling finished {len(texts)} of {len(prompts)} records")
    return texts


def keyword_categories(generator: TextGenerator, records: pd.DataFrame) -> np.ndarray:
    """Each synthetic record's category of the keyword prior (``-1``: missing or outside the domain).

    Refuses a model without a prior and records without its column.
    """
    missing = (
        "no keyword prior (it was fitted without text.keyword_column), so candidate_score keywords has nothing to "
        "read: use candidate_score fields"
    )
    return _categories(generator, records, generator.keyword_prior_ is not None, missing, "keyword prior is per")


def classifier_categories(generator: TextGenerator, records: pd.DataFrame) -> np.ndarray:
    """Each synthetic record's category of the DP classifier (``-1``: missing or outside the domain).

    Refuses a model without a classifier and records without its column.
    """
    missing = (
        "no DP classifier (it was fitted without text.classifier_steps), so candidate_score classifier has nothing "
        "to read: use candidate_score keywords or fields, or fit with text.classifier_steps (e.g. 20)"
    )
    return _categories(generator, records, generator.classifier_ is not None, missing, "classifier is of")


def _categories(generator: TextGenerator, records: pd.DataFrame, fitted: bool, missing: str, per: str) -> np.ndarray:
    name = generator.config.keyword_column
    if not fitted or name is None:
        raise ConfigError(f"text '{generator.column_}': this model has {missing}")
    if name not in records.columns:
        raise ConfigError(f"text '{generator.column_}': its {per} '{name}', which these synthetic records lack")
    return keywords.category_indices(records[name], generator.keyword_domain_)


def keyword_bias(generator: TextGenerator, records: pd.DataFrame) -> Callable[[Sequence[int]], torch.Tensor] | None:
    """``rows(indices)``: the keyword prior's token-score bias of these records, one row each (None: no prior).

    Each record gets ``text.keyword_strength`` times its own category's log share ratios (its value of the
    prior's column in the synthetic record); a record whose value is missing or outside the domain gets none.
    """
    prior, strength = generator.keyword_prior_, generator.config.keyword_strength
    if prior is None or strength == 0:
        return None
    categories = keyword_categories(generator, records)
    width = generator.base_vocab_ + len(generator.vocab_.placeholders)
    device = next(generator.model_.parameters()).device

    def rows(indices: Sequence[int]) -> torch.Tensor:
        bias = torch.zeros(len(indices), width)
        for i, category in enumerate(categories[list(indices)]):
            if category >= 0:
                bias[i, : prior.shape[1]] = strength * prior[category]
        return bias.to(device)

    return rows


def check_guidance_fields(generator: TextGenerator) -> None:
    """Refuse ``text.guidance_fields`` that are not among the fields this model's prompts show."""
    prompted = [codec.name for codec in generator.codecs_]
    unknown = [f for f in generator.config.guidance_fields if f not in prompted]
    if unknown:
        raise ConfigError(
            f"text '{generator.column_}': text.guidance_fields {', '.join(repr(f) for f in unknown)} "
            f"{'is' if len(unknown) == 1 else 'are'} not in this model's prompts; its fields: "
            f"{', '.join(prompted) or 'none'}"
        )


def guidance_references(generator: TextGenerator, records: pd.DataFrame, prompt_format: int) -> list[list[int]]:
    """Per record, what guidance contrasts its text with: its prompt with ``guidance_fields`` missing, or no fields.

    With ``text.guidance_fields``, each record's contrast is its own prompt where those fields read ``missing``, so
    the guided draw amplifies what those fields change in the text (its other fields are in both prompts). Without,
    one prompt without fields, which only a model fitted with ``text.condition_dropout`` has learnt.
    """
    config = generator.config
    tokenizer = generator.tokenizer_
    if config.guidance_fields:
        check_guidance_fields(generator)
        fields = render_fields(
            records,
            generator.codecs_,
            generator.meanings_,
            fields_format=generator.fields_format_,
            missing=config.guidance_fields,
        )
        return [prompt_ids(tokenizer, f, generator.column_, prompt_format=prompt_format) for f in fields]
    if not generator.condition_dropout_:
        raise ConfigError(
            f"text.guidance {config.guidance} needs a model fitted with text.condition_dropout above 0 (this one "
            "learnt no unconditioned text to contrast with) or text.guidance_fields (e.g. --text "
            "guidance_fields=diagnosis): set one, or text.guidance: 1"
        )
    return [prompt_ids(tokenizer, NO_FIELDS, generator.column_, prompt_format=prompt_format)] * len(records)


def save_backbone(generator: TextGenerator, folder: Any) -> None:
    """The adapters and placeholder rows as safetensors; the backbone's identity, vocabulary and codecs as JSON."""
    tensors = generator.stack_.adapter_state()
    fields = {
        "column": generator.column_,
        "placeholders": list(generator.vocab_.placeholders),
        "codecs": [c.to_dict() for c in generator.codecs_],
        "subcolumns": generator.subcolumns_,
        "backbone": generator.backbone_,
        "base_vocab": generator.base_vocab_,
        "prompt_format": generator.prompt_format_,
        "fields_format": generator.fields_format_,
        "meanings": generator.meanings_,
        "condition_dropout": generator.condition_dropout_,
        "keyword_domain": generator.keyword_domain_,
    }
    if generator.keyword_prior_ is not None:  # a DP output (post-processing of the stage's noisy sums)
        tensors = {**tensors, KEYWORD_PRIOR: generator.keyword_prior_.contiguous()}
    if generator.classifier_ is not None:  # a DP output (Adam's moves on the stage's noisy sums)
        tensors = {**tensors, CLASSIFIER: generator.classifier_.contiguous()}
        fields["classifier_embedder"] = generator.classifier_embedder_
    generator._write(folder, weights=WEIGHTS, tensors=tensors, meta=META, fields=fields)


def load_backbone(generator: TextGenerator, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Rebuild a fitted backbone text generator: the same backbone file (by SHA-256), adapters merged in."""
    located = backbones.locate(generator.config.backbone)
    wanted = meta["backbone"]
    if located.sha256 != wanted.get("sha256"):
        raise IntegrityError(
            f"this model was fine-tuned from {wanted.get('name')} (SHA-256 {wanted.get('sha256')}), but "
            f"{generator.config.backbone} here is {located.sha256}: install the same backbone file"
        )
    vocab = Vocabulary(tuple(meta["placeholders"]))
    tensors = dict(tensors)
    prior = tensors.pop(KEYWORD_PRIOR, None)
    table = tensors.pop(CLASSIFIER, None)
    domain = [str(value) for value in meta.get("keyword_domain", [])]  # models before the prior have none
    if (prior is None) != (not domain) or (prior is not None and prior.shape[0] != len(domain)):
        raise IntegrityError("the saved keyword prior and its categories do not match: the model folder is damaged")
    if table is not None and (table.shape[0] != len(domain) or not meta.get("classifier_embedder")):
        raise IntegrityError("the saved text classifier and its categories do not match: the model folder is damaged")
    model, tokenizer, base, rows = _prepared(located, vocab.placeholders)
    config = generator.config
    stack = _stack(model, config, rows, torch.Generator().manual_seed(0))  # the saved adapters replace the init
    device = resolve_device(config.device)
    model.to(device)
    stack.to(device)
    missing = [k for k, p in stack.named_parameters() if p.requires_grad and k not in tensors]
    if missing:
        raise IntegrityError(f"the saved text adapters lack {missing[:3]}: the model folder is incomplete")
    stack.load_state_dict({k: v.to(device) for k, v in tensors.items()}, strict=False)
    stack.eval()
    stack.merge_into(model)
    generator.model_, generator.tokenizer_, generator.stack_ = model, tokenizer, stack
    generator.base_vocab_ = base
    generator.backbone_ = wanted
    generator.located_ = located
    generator.vocab_ = vocab
    generator.column_ = meta["column"]
    generator.codecs_ = [codec_from_dict(c) for c in meta["codecs"]]
    generator.subcolumns_ = [list(s) for s in meta["subcolumns"]]
    # models saved before prompt formats and condition dropout: the user-message prompt, no unconditioned texts
    generator.prompt_format_ = int(meta.get("prompt_format", 1))
    if generator.prompt_format_ not in PROMPT_FORMATS:
        raise IntegrityError(
            f"this model's prompt format {generator.prompt_format_} is unknown to this privsynth "
            f"(it knows {sorted(PROMPT_FORMATS)}): load it with the privsynth version that fitted it"
        )
    # models saved before fields format 2 were prompted with dates as day numbers: sample them as they learned
    generator.fields_format_ = int(meta.get("fields_format", 1))
    if generator.fields_format_ not in FIELDS_FORMATS:
        raise IntegrityError(
            f"this model's fields format {generator.fields_format_} is unknown to this privsynth "
            f"(it knows {sorted(FIELDS_FORMATS)}): load it with the privsynth version that fitted it"
        )
    generator.condition_dropout_ = float(meta.get("condition_dropout", 0.0))
    generator.meanings_ = {column: dict(words) for column, words in meta.get("meanings", {}).items()}
    generator.keyword_prior_, generator.keyword_domain_ = prior, domain
    generator.classifier_ = table
    generator.classifier_embedder_ = meta.get("classifier_embedder") if table is not None else None
    generator.public_ = None


__all__ = [
    "classifier_categories",
    "decoded",
    "fit_backbone",
    "keyword_bias",
    "keyword_categories",
    "keyword_domain",
    "load_backbone",
    "sample_backbone",
    "save_backbone",
]
