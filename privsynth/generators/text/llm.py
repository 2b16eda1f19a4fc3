"""DP fine-tuning of a public pretrained language model: LoRA adapters on its top layers, under the ledger.

What a record contributes: a prompt rendered from its DP-modelled fields (the tabular generator's DP codecs, and
the schema's column names, both public) in the backbone's chat format, then its text masked as today (its own
identity, dates, values and detected PII become placeholders such as ``<PERSON>``). Only the text's tokens (and
the end token) are learned.

How it stays affordable on two CPU cores (issue 19): the lower layers are frozen, so their output for every
training sequence is computed once per fit and kept in memory (never written to disk; deleted with the fit).
DP-SGD then runs only the top ``adapter_layers`` decoder layers, whose projections carry LoRA adapters (the only
trainable weights, with a small trainable output row per placeholder). The frozen output layer is evaluated over
the backbone's first ``train_vocab`` token ids only (BPE merge order: the most frequent pieces, a property of
the public tokenizer) and chunk by chunk without keeping its logits; a text token outside them is not learned.

Sampling runs the whole backbone with the adapters merged into its weights, with a key-value cache, temperature
and top-p, from the sampling streams (reproducible per seed); the text is decoded and cleaned to valid UTF-8 and
its placeholders are filled from the synthetic record exactly as for the byte-level model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F  # noqa: N812

from privsynth.generators.tabular.codecs import (
    BooleanCodec,
    CategoricalCodec,
    ColumnCodec,
    DatetimeCodec,
    NumericalCodec,
)

#: Projections of a Llama-style decoder layer that get adapters.
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
INSTRUCTION = "Write the {column} text. Its details: {fields}."
#: Prompt formats. 1: the instruction as the user's message, after the backbone's default system message (SmolLM2's
#: is 20 tokens). 2: the instruction as the system message and the fields as the user's: with SmolLM2 and one
#: field, 25 tokens instead of 42, so 17 fewer per training text through every layer (the Amazon reviews average
#: about 97 tokens with format 1). A saved model records its format and is sampled with it.
PROMPT_FORMAT = 2
PROMPT_FORMATS = (1, 2)
SYSTEM = "Write the {column} text from its details."
#: How a record's fields are written in the prompt. 1: a date's bin in days since 1970 ("19504 to 19577"), as
#: models fitted before format 2 read it. 2: as ISO dates ("2023-05-26 to 2023-08-07"), which the backbone can read
#: (the demo's notes, prompted with day numbers, copied them). A saved model records its format.
FIELDS_FORMAT = 2
FIELDS_FORMATS = (1, 2)
#: The fields of an unconditioned prompt (condition dropout in training, the guidance's reference at sampling).
NO_FIELDS = "none"


# ----- prompts --------------------------------------------------------------------------------------------------


def _describe(codec: ColumnCodec, token: int, meanings: Mapping[str, str], fields_format: int) -> str:
    """The words for one DP codec token (a category and its public meaning, a yes/no, a value or date range)."""
    if isinstance(codec, CategoricalCodec):
        if token >= len(codec.labels):
            return "missing"
        label = codec.labels[token]
        return f"{label} ({meanings[label]})" if label in meanings else label
    if isinstance(codec, BooleanCodec):
        return {0: "no", 1: "yes"}.get(token, "missing")
    if isinstance(codec, NumericalCodec):
        if token >= codec.bins:
            return "missing"
        low, high = codec.bin_edges[token], codec.bin_edges[token + 1]
        if isinstance(codec, DatetimeCodec) and fields_format >= 2:
            return f"{codec.show(low)} to {codec.show(high)}"
        if codec.integer or max(abs(low), abs(high)) >= 100:
            return f"{low:.0f} to {high:.0f}"
        return f"{low:.3g} to {high:.3g}"
    return str(token)


def render_fields(
    records: pd.DataFrame,
    codecs: Sequence[ColumnCodec],
    meanings: Mapping[str, Mapping[str, str]] | None = None,
    *,
    fields_format: int = FIELDS_FORMAT,
    missing: Collection[str] = (),
) -> list[str]:
    """Per record, its DP-modelled fields in words (``diagnosis: pneumonia; age: 41 to 50``).

    Each value goes through its codec first, so a prompt says only what the DP model can say (a value's bin, a
    released category or ``__other__``), for real records in training and synthetic ones at sampling alike.
    ``meanings`` (per column, per category: the schema's public ``meanings``) puts words the backbone can read
    next to a category (``score: great (the reviewer loved it)``). ``fields_format`` is :data:`FIELDS_FORMAT` for
    new fits; a saved model passes the format it was trained with. The fields named in ``missing`` read
    ``missing`` whatever their value (guidance's reference, :func:`~.finetune.guidance_references`), also where a
    column cannot be missing: its codec would encode no value as a category or bin.
    """
    if fields_format not in FIELDS_FORMATS:
        raise ValueError(f"unknown fields format {fields_format}")
    meanings = meanings or {}
    columns = [
        (codec, None if codec.name in missing else codec.encode(records[codec.name])[:, 0])
        for codec in codecs
        if codec.name in records
    ]
    out = []
    for i in range(len(records)):
        parts = [
            f"{codec.name}: "
            + (
                "missing"
                if tokens is None
                else _describe(codec, int(tokens[i]), meanings.get(codec.name, {}), fields_format)
            )
            for codec, tokens in columns
        ]
        out.append("; ".join(parts) if parts else "none")
    return out


def schema_meanings(schema: Any, codecs: Sequence[ColumnCodec]) -> dict[str, dict[str, str]]:
    """The schema's public category meanings of the prompt's columns (``{column: {category: words}}``)."""
    out: dict[str, dict[str, str]] = {}
    for codec in codecs:
        spec = schema.columns.get(codec.name)
        if isinstance(codec, CategoricalCodec) and spec is not None and spec.meanings:
            shown = {label: spec.meanings[label] for label in codec.labels if label in spec.meanings}
            if shown:  # only what a prompt can show: the categories the codec names
                out[codec.name] = shown
    return out


def prompt_ids(tokenizer: Any, fields: str, column: str, *, prompt_format: int = PROMPT_FORMAT) -> list[int]:
    """The backbone's chat prompt asking for ``column`` given the record's ``fields`` (ends where the text starts).

    ``prompt_format`` is :data:`PROMPT_FORMAT` for new fits; a saved model passes the format it was trained with.
    """
    if prompt_format == 1:
        message = [{"role": "user", "content": INSTRUCTION.format(column=column, fields=fields)}]
    elif prompt_format == 2:
        message = [
            {"role": "system", "content": SYSTEM.format(column=column)},
            {"role": "user", "content": fields},
        ]
    else:
        raise ValueError(f"unknown prompt format {prompt_format}")
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(message, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]
    plain = "\n".join(m["content"] for m in message) + "\n"
    return [int(i) for i in tokenizer(plain, add_special_tokens=False)["input_ids"]]


def usable_prompt_format(tokenizer: Any, column: str) -> int:
    """:data:`PROMPT_FORMAT`, or 1 where the backbone's chat template refuses a system message (Gemma's does)."""
    from jinja2 import TemplateError  # transformers renders chat templates with jinja2

    try:
        prompt_ids(tokenizer, NO_FIELDS, column, prompt_format=PROMPT_FORMAT)
    except (TemplateError, ValueError):  # what a template's raise_exception or a strict role check raises
        prompt_ids(tokenizer, NO_FIELDS, column, prompt_format=1)  # a template that fails here too says why
        return 1
    return PROMPT_FORMAT


# ----- adapters -------------------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """A frozen linear map (kept as buffers) plus a trainable low-rank update ``up(down(x)) * alpha / rank``."""

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, generator: torch.Generator) -> None:
        super().__init__()
        self.weight: torch.Tensor
        self.bias: torch.Tensor | None
        self.register_buffer("weight", base.weight.detach().clone())
        self.register_buffer("bias", None if base.bias is None else base.bias.detach().clone())
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(base.in_features)
            self.down.weight.uniform_(-bound, bound, generator=generator)
            self.up.weight.zero_()  # the adapted model starts as the backbone
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone projection plus the adapter's."""
        return F.linear(x, self.weight, self.bias) + self.up(self.down(x)) * self.scale

    def delta(self) -> torch.Tensor:
        """The adapter as a weight update ``[out, in]`` (to merge into the backbone for sampling)."""
        return (self.up.weight @ self.down.weight) * self.scale


def _adapt(layer: nn.Module, *, rank: int, alpha: float, targets: Sequence[str], generator: torch.Generator) -> None:
    for parent in (getattr(layer, "self_attn", None), getattr(layer, "mlp", None)):
        if parent is None:
            continue
        for name in targets:
            base = getattr(parent, name, None)
            if isinstance(base, nn.Linear):
                setattr(parent, name, LoRALinear(base, rank=rank, alpha=alpha, generator=generator))


class TopStack(nn.Module):
    """The backbone's top decoder layers with adapters, its final norm, and output rows for placeholders.

    ``forward`` maps the frozen lower layers' output ``[B, T, D]`` (right-padded; causal attention) to the final
    normalised hidden states; :meth:`placeholder_logits` scores the placeholders from them.
    """

    def __init__(
        self,
        model: Any,
        *,
        layers: int,
        rank: int,
        alpha: float,
        targets: Sequence[str],
        placeholder_rows: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        base = model.model
        total = len(base.layers)
        self.first = total - layers
        self.layers = nn.ModuleList(copy.deepcopy(base.layers[self.first :]))
        for layer in self.layers:
            layer.requires_grad_(False)
            attention = getattr(layer, "self_attn", None)
            if attention is not None and hasattr(attention, "attention_dropout"):
                attention.attention_dropout = 0.0  # no draw from torch's global RNG while training
            _adapt(layer, rank=rank, alpha=alpha, targets=targets, generator=generator)
        self.norm = copy.deepcopy(base.norm).requires_grad_(False)
        self.rotary = copy.deepcopy(base.rotary_emb)
        # one row at least (a layer with no output is no layer to Opacus); without placeholders it scores nothing
        self.count = len(placeholder_rows)
        self.placeholders = nn.Linear(placeholder_rows.shape[1], max(self.count, 1), bias=False)
        with torch.no_grad():
            weight = self.placeholders.weight
            weight.copy_(placeholder_rows if self.count else torch.zeros_like(weight))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``[B, T, D]`` of right-padded sequences (positions from 0)."""
        width = hidden.shape[1]
        positions = torch.arange(width).unsqueeze(0).expand(hidden.shape[0], -1)
        embeddings = self.rotary(hidden, position_ids=positions)
        # causal whatever the checkpoint's attention implementation (eager attention applies no mask of its own)
        future = torch.triu(torch.ones(width, width, dtype=torch.bool), diagonal=1)
        mask = torch.zeros(1, 1, width, width, dtype=hidden.dtype).masked_fill(future, torch.finfo(hidden.dtype).min)
        for layer in self.layers:
            out = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=embeddings)
            hidden = out[0] if isinstance(out, tuple) else out
        return self.norm(hidden)

    def placeholder_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of the placeholders ``[..., P]`` (trainable rows, started from their input embeddings)."""
        return self.placeholders(states)[..., : self.count]

    def merge_into(self, model: Any) -> None:
        """Add the adapters to the backbone's own top layers (for sampling with its key-value cache)."""
        with torch.no_grad():
            for mine, theirs in zip(self.layers, model.model.layers[self.first :], strict=True):
                for part in ("self_attn", "mlp"):
                    for name in TARGETS:
                        adapter = getattr(getattr(mine, part, None), name, None)
                        if isinstance(adapter, LoRALinear):
                            getattr(getattr(theirs, part), name).weight.add_(adapter.delta())

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The trainable weights only (what a saved model stores besides the backbone's identity), on the CPU."""
        return {k: v.detach().to("cpu").clone() for k, v in self.named_parameters() if v.requires_grad}


# ----- the frozen lower layers, once per fit ----------------------------------------------------------------------


@torch.no_grad()
def lower_states(
    model: Any,
    sequences: Sequence[Sequence[int]],
    *,
    keep_top: int,
    batch: int = 16,
    progress: Callable[[int, int], None] | None = None,
    bfloat16: bool = False,
) -> list[torch.Tensor]:
    """The output of the backbone's lower layers (all but the top ``keep_top``) per sequence, bfloat16 ``[T, D]``.

    Private: derived from the training texts. Kept in memory for the fit only (host memory, whatever device the
    backbone runs on). ``bfloat16`` runs the layers' matrix products in bfloat16 (torch autocast; norms and
    softmax stay float32): on SmolLM2 the outputs differ from float32's by about 1 % (relative norm), three times
    bfloat16's own rounding of the kept outputs.
    """
    device = next(model.parameters()).device
    precision = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bfloat16)
    base = model.model
    order = np.argsort([len(s) for s in sequences], kind="stable")
    out: list[torch.Tensor | None] = [None] * len(sequences)
    saved_layers, saved_norm = base.config.num_hidden_layers, base.norm
    base.config.num_hidden_layers = len(base.layers) - keep_top
    base.norm = nn.Identity()
    try:
        done = 0
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            width = max(len(sequences[i]) for i in rows)
            ids = torch.zeros(len(rows), width, dtype=torch.long)
            for j, i in enumerate(rows):
                ids[j, : len(sequences[i])] = torch.as_tensor(list(sequences[i]))
            with precision:
                states = base(input_ids=ids.to(device), use_cache=False).last_hidden_state  # causal: right padding
            states = states.to("cpu", torch.bfloat16)
            for j, i in enumerate(rows):
                out[i] = states[j, : len(sequences[i])].clone()
            done += len(rows)
            if progress is not None:
                progress(done, len(sequences))
    finally:
        base.config.num_hidden_layers, base.norm = saved_layers, saved_norm
    return [t for t in out if t is not None]


def bfloat16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products natively (``frozen_precision: auto``)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        available = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
        return bool(available and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


# ----- the loss -------------------------------------------------------------------------------------------------


class _VocabLogSumExp(torch.autograd.Function):
    """``log sum_v exp(states . head_v)`` per row, with its gradient computed in the same pass.

    The gradient with respect to ``states`` is the softmax-weighted mean of the ``head`` rows, so the forward pass
    keeps that mean (``[..., D]``, as small as the states) instead of the logits (``[..., V]``). The backward pass is
    then a product, however often it runs: Opacus' ghost clipping runs two (one for the per-record norms, one for the
    clipped sum), and recomputing the logits in each cost more than the adapted layers themselves (issue 19).
    ``head`` is frozen (no gradient).
    """

    @staticmethod
    def forward(ctx: Any, states: torch.Tensor, head: torch.Tensor, rows: int, differentiable: bool) -> torch.Tensor:
        flat = states.reshape(-1, states.shape[-1])
        lse = flat.new_empty(flat.shape[0])
        mean_row = torch.empty_like(flat) if differentiable else None
        for start in range(0, flat.shape[0], rows):
            logits = flat[start : start + rows] @ head.T
            part = torch.logsumexp(logits, dim=-1)
            lse[start : start + rows] = part
            if mean_row is not None:
                mean_row[start : start + rows] = torch.exp(logits - part.unsqueeze(-1)) @ head
        ctx.save_for_backward(mean_row.reshape(states.shape) if mean_row is not None else None)
        return lse.reshape(states.shape[:-1])

    @staticmethod
    @once_differentiable  # the saved mean has no graph: a second-order gradient must fail, not come out wrong
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        (mean_row,) = ctx.saved_tensors
        return (None if mean_row is None else grad.unsqueeze(-1) * mean_row), None, None, None


def token_nll(
    states: torch.Tensor, head: torch.Tensor, extra: torch.Tensor, targets: torch.Tensor, rows: int = 1024
) -> torch.Tensor:
    """Per-token negative log-likelihood ``[B, T]`` over the frozen ``head`` rows and the placeholder scores.

    ``targets`` below ``len(head)`` are vocabulary rows, from ``len(head)`` on placeholders (``extra``'s columns).
    The vocabulary logits are computed ``rows`` positions at a time and never stored (a batch of 256 texts x 96
    tokens x 16,384 rows would hold 1.6 GB of them); see :class:`_VocabLogSumExp` for the gradient.
    """
    if head.requires_grad:
        raise ValueError("token_nll's head is frozen: pass head.detach()")
    vocab = head.shape[0]
    differentiable = states.requires_grad and torch.is_grad_enabled()  # scoring without gradients skips the mean
    lse_vocab = _VocabLogSumExp.apply(states, head, rows, differentiable)
    picked_vocab = (states * head[targets.clamp(0, vocab - 1)]).sum(dim=-1)
    lse = torch.logaddexp(lse_vocab, torch.logsumexp(extra, dim=-1))
    if extra.shape[-1] == 0:  # no placeholders: every target is a vocabulary row
        return lse - picked_vocab
    picked_extra = extra.gather(-1, (targets - vocab).clamp(0, extra.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)
    return lse - torch.where(targets < vocab, picked_vocab, picked_extra)


def record_losses(
    states: torch.Tensor, head: torch.Tensor, placeholders: Callable[[torch.Tensor], torch.Tensor], want: torch.Tensor
) -> torch.Tensor:
    """Each record's mean next-token loss ``[B]`` over its text positions (``want >= 0``; -1 elsewhere).

    The output layer runs only from the first position where some record of the batch predicts a text token: the
    prompts' shared positions (a quarter of a review batch's) carry no weight for anyone, so each record's loss is
    the same as over every position, and still its own (one loss per record for per-record clipping).
    """
    scored = (want >= 0).any(dim=0).nonzero()
    first = int(scored[0]) if len(scored) else 0
    states, want = states[:, first:], want[:, first:]
    nll = token_nll(states, head, placeholders(states), want.clamp_min(0))
    mask = (want >= 0).float()
    return (nll * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


# ----- sampling -------------------------------------------------------------------------------------------------


#: Nucleus sampling looks within this many most likely tokens: sorting all 49,152 scores of every row at every
#: step cost about as much as the model itself on CPU.
TOP_K = 1024


def _sample_top_p(logits: torch.Tensor, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """One token per row: nucleus sampling (mass ``top_p``) among the :data:`TOP_K` most likely tokens."""
    values, index = torch.topk(logits, min(TOP_K, logits.shape[-1]), dim=-1)  # sorted, descending
    probs = torch.softmax(values, dim=-1)
    if top_p < 1.0:
        drop = probs.cumsum(dim=-1) - probs > top_p  # keep the smallest set reaching top_p
        probs = probs.masked_fill(drop, 0.0)
    choice = torch.multinomial(probs, 1, generator=generator)
    return index.gather(-1, choice)[:, 0]


def scored_rows(
    model: Any, vocab: int, trained: int | None, stop: Sequence[int]
) -> tuple[int, list[int], torch.Tensor]:
    """The output rows sampling scores: the first ``trained`` ids (all ``vocab`` without it), then late stops.

    The late stops are the ``stop`` ids at or above ``trained``: an end token the loss did not train must stay
    drawable, or a text never ends. Returns (rows below ``trained``, those late stop ids, the head's rows in that
    order).
    """
    rows = vocab if trained is None else max(1, min(trained, vocab))
    late = sorted({int(t) for t in stop if rows <= t < vocab})
    weight = model.lm_head.weight
    head = weight[:rows] if not late else torch.cat([weight[:rows], weight[torch.as_tensor(late)]])
    return rows, late, head


def with_untrained(logits: torch.Tensor, rows: int, late_at: torch.Tensor, vocab: int) -> torch.Tensor:
    """Scores over ``[rows scored | late stops | placeholders]`` spread to ids (placeholder ``j`` at ``vocab + j``).

    The ids from ``rows`` to ``vocab`` get minus infinity, except the late stops (at ``rows + late_at``).
    """
    middle = torch.full((logits.shape[0], vocab - rows), float("-inf"), dtype=logits.dtype, device=logits.device)
    after = rows + len(late_at)
    if len(late_at):
        middle[:, late_at] = logits[:, rows:after]
    return torch.cat([logits[:, :rows], middle, logits[:, after:]], dim=-1)


@torch.no_grad()
def generate(
    model: Any,
    stack: TopStack,
    prompts: Sequence[Sequence[int]],
    *,
    vocab: int,
    max_new: int,
    stop: Sequence[int],
    banned: Sequence[int],
    temperature: float,
    top_p: float,
    generator: torch.Generator,
    unconditional: Sequence[Sequence[int]] | None = None,
    guidance: float = 1.0,
    no_repeat_ngram: int = 0,
    placeholder_limit: int = 0,
    trained: int | None = None,
    bias: torch.Tensor | None = None,
    repetition_penalty: float = 1.0,
    bias_once: bool = False,
) -> list[list[int]]:
    """New token ids per prompt (left-padded batch, key-value cache); placeholder ids are ``vocab + j``.

    With ``trained`` (below ``vocab``), only ids below it, the placeholders and the ``stop`` ids are drawn: the
    output rows a fit's loss trained (``text.train_vocab``), and the end of a text wherever the backbone numbers
    it. The other ids keep scores the fine-tune never saw; one drawn takes the text where the model never learned
    to go.

    With ``no_repeat_ngram`` ``k`` (2 or more; 0 is off), a token that would complete a ``k``-token run the text
    already holds is never drawn (as ``no_repeat_ngram_size`` in Hugging Face's generation): a fine-tune that loops
    ("-year-year-year...") must move on. Only the text's own tokens count, not its prompt's.

    No text ends at its first token: an empty text is never drawn.

    With ``placeholder_limit`` ``k`` (0 is off), a text holds each placeholder at most ``k`` times: once it has
    written ``<VAL:age>`` ``k`` times, that placeholder is never drawn again in it. A fine-tune whose placeholder
    rows learnt under noise loops on them ("61 61 61", a date or a name over and over once filled).

    With ``guidance`` above 1 and ``unconditional`` prompts, one per text (classifier-free guidance, Ho & Salimans
    2022; for language models Sanchez et al. 2023), every text is also run after its unconditional prompt, and each
    token is drawn from ``log p_u + guidance * (log p_c - log p_u)``: what its prompt says beyond the unconditional
    one changes in the model's next token is amplified (a prompt without fields, or the same prompt with some
    fields missing). It reads only the fitted model (post-processing) and costs a second row per text.

    ``bias`` (``[texts, vocab + placeholders]``, finite, columns are token ids) is added to each text's scores at
    every step, after guidance and before the temperature: a prior over tokens per text (log-odds), e.g. words its
    record's category makes likelier. It steers every token drawn, so it may only be derived from the fitted model,
    from declared-public schema metadata, or from a mechanism spent in this fit's ledger (sensitivity per unit of
    privacy after contribution bounding, noise from the fit's OS-entropy streams, categories from the DP profile
    or the schema, never from the raw records).

    With ``repetition_penalty`` ``r`` above 1, the score of a word the text already holds is lowered by ``log r``
    before the temperature (``r`` times less likely at temperature 1, ``r ** (1 / T)`` at ``T``; placeholders are
    left to ``placeholder_limit``): a fine-tune under noise, pushed by ``bias`` towards a few words, writes "type type
    type" or "after after after", which real notes never do. With ``bias_once``, a word's positive ``bias`` counts
    only until the text holds it (a negative one stays): the prior asks for a word once, not at every step after
    (the keyword pick counts distinct tokens too).
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    n = len(prompts)
    guided = unconditional is not None and guidance != 1.0
    contrast = list(unconditional) if guided and unconditional is not None else []
    if guided and len(contrast) != n:
        raise ValueError(f"{len(contrast)} unconditional prompts for {n} texts: give one per text")
    if bias is not None:
        if tuple(bias.shape) != (n, vocab + stack.count):
            raise ValueError(f"bias of shape {tuple(bias.shape)} for {n} texts: give [texts, {vocab + stack.count}]")
        if not bool(torch.isfinite(bias).all()):
            raise ValueError("bias holds an infinite or NaN score: give finite log-odds (ban tokens with banned)")
        bias = bias.to(device)
    rows = [*prompts, *contrast]
    width = max(len(p) for p in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, p in enumerate(rows):
        ids[i, width - len(p) :] = torch.as_tensor(list(p))
        mask[i, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    cache = DynamicCache(config=model.config)
    base = model.model
    out = base(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    hidden = out.last_hidden_state[:, -1]
    done = torch.zeros(n, dtype=torch.bool, device=device)
    produced: list[list[int]] = [[] for _ in range(n)]
    banned_t = torch.as_tensor([b for b in banned if b < vocab], dtype=torch.long, device=device)
    stop_t = torch.as_tensor(list(stop), dtype=torch.long, device=device)
    rows_scored, late, head = scored_rows(model, vocab, trained, stop)
    late_at = torch.as_tensor([t - rows_scored for t in late], dtype=torch.long, device=device)
    next_position = positions[:, -1] + 1
    if no_repeat_ngram == 1:
        raise ValueError("no_repeat_ngram 1 would forbid every token a second time: use 0 (off) or 2 and above")
    if not repetition_penalty >= 1.0:
        raise ValueError(f"repetition_penalty {repetition_penalty}: give 1 (off) or more")
    penalty = math.log(repetition_penalty)
    # per text, the tokens it holds (below vocab: words; placeholders have their own limit)
    held = torch.zeros(n, vocab, dtype=torch.bool, device=device) if penalty or bias_once else None
    if bias is not None and bias_once:
        bias = bias.clone()  # its positive part spent per text as the text writes each word
    # per text: each (k - 1)-token run it holds, and the tokens that followed it
    followers: list[dict[tuple[int, ...], set[int]]] = [{} for _ in range(n)]
    written = torch.zeros(n, stack.count, dtype=torch.long, device=device)  # per text, each placeholder's uses
    for step in range(max_new):
        logits = torch.cat([hidden @ head.T, stack.placeholder_logits(hidden)], dim=-1)
        if guided:
            scores = torch.log_softmax(logits, dim=-1)
            logits = scores[n:] + guidance * (scores[:n] - scores[n:])
        if rows_scored < vocab:  # back to ids: the untrained ids never drawn, placeholder j at vocab + j
            logits = with_untrained(logits, rows_scored, late_at, vocab)
        if bias is not None:
            logits = logits + bias
        if penalty and held is not None:
            logits[:, :vocab] -= penalty * held
        logits = logits / temperature
        if len(banned_t):
            logits[:, banned_t] = float("-inf")
        if step == 0 and len(stop_t):
            logits[:, stop_t] = float("-inf")  # a text has at least one token: never an empty note
        live = np.flatnonzero(~done.cpu().numpy()).tolist()
        if no_repeat_ngram:
            for i in live:
                text = produced[i]
                if len(text) >= no_repeat_ngram - 1:
                    repeats = followers[i].get(tuple(text[len(text) - no_repeat_ngram + 1 :]))
                    if repeats:
                        logits[i, list(repeats)] = float("-inf")
        if placeholder_limit:
            logits[:, vocab:] = logits[:, vocab:].masked_fill(written >= placeholder_limit, float("-inf"))
        token = _sample_top_p(logits, top_p, generator)
        placeholder = token >= vocab
        if bool(placeholder.any()):
            writers = torch.nonzero(placeholder & ~done).flatten()
            written[writers, token[writers] - vocab] += 1
        if held is not None:  # the words each unfinished text just wrote
            texts = torch.as_tensor(live, dtype=torch.long, device=device)
            texts = texts[token[texts] < vocab]
            words = token[texts]
            held[texts, words] = True
            if bias is not None and bias_once:  # asked for and written: no longer asked for (never made likelier)
                bias[texts, words] = bias[texts, words].clamp_max(0.0)
        chosen = token.tolist()
        for i in live:
            produced[i].append(int(chosen[i]))
            if no_repeat_ngram and len(produced[i]) >= no_repeat_ngram:
                gram = produced[i][-no_repeat_ngram:]
                followers[i].setdefault(tuple(gram[:-1]), set()).add(gram[-1])
        done |= torch.isin(token, stop_t)
        if bool(done.all()):
            break
        fed = torch.cat([token, token]) if guided else token  # the unconditional row continues the same text
        mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=torch.long, device=device)], dim=1)
        out = base(
            input_ids=fed.unsqueeze(1),
            attention_mask=mask,
            position_ids=next_position.unsqueeze(1),
            cache=cache,
            use_cache=True,
        )
        hidden = out.last_hidden_state[:, -1]
        next_position = next_position + 1
    return produced


__all__ = [
    "FIELDS_FORMAT",
    "FIELDS_FORMATS",
    "NO_FIELDS",
    "PROMPT_FORMAT",
    "PROMPT_FORMATS",
    "TARGETS",
    "LoRALinear",
    "TopStack",
    "bfloat16_supported",
    "generate",
    "lower_states",
    "prompt_ids",
    "record_losses",
    "render_fields",
    "schema_meanings",
    "scored_rows",
    "token_nll",
    "usable_prompt_format",
    "with_untrained",
]
