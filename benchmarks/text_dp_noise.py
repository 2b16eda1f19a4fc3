"""How much of a backbone fine-tune survives DP noise: held-out loss after a few Adam steps, with and without noise.

Diagnostic for issue 19 (the demo's backbone notes). The same adapters as a fit (``text`` settings of the model
given by ``--model``: LoRA on the top layers, frozen lower layers' states once, the loss over the first 16,384
token ids and the placeholders) are trained on ``--notes`` masked demo notes WITHOUT clipping, for ``--steps``
Adam steps of ``--batch`` notes. Each ``--sigma`` adds to every gradient the Gaussian noise a DP step of
``--people`` units would carry relative to one note's gradient: ``sigma x G x m / people`` per coordinate, with
``G`` the median gradient norm of one note at the start and ``m`` the records per person the clip is shared by (a
fit clips each record to ``C / k`` with ``k`` its own person's records and adds noise ``sigma x C``, so ``m`` = 1,
the default, stands for a person with one record, nine in ten of the demo's; until fits clipped every record to
``C / m`` with ``m`` the schema's ``max_records_per_entity``, 2 for the demo, screens defaulted to ``m`` = 2, and
screens committed with ``"per_person"`` absent had ``m`` = 1). The held-out loss per text token is measured on the next
``--test`` notes. ``--fitted`` also scores the adapters of fitted models on the same notes (a fit's own training
notes may be among them).

The prompts and text settings come from a fitted model (``--model``, default ``RUN/fit/model``), or, without one,
from a run config (``--config configs/demo-backbone.yaml``): its ``fit.text`` settings, and prompts rendered with
codecs built on the corpus's exact (non-private) profile, so a screen needs no 50-minute fit first (the corpus is
``RUN/corpus/data``: ``privsynth demo-corpus runs/demo-backbone/corpus/data --n 2500 --seed 0``).

With ``--sample N`` each row also writes one note for each of ``N`` further records (their prompts only, from
their fields; adapters merged into the backbone, the fit's temperature and top-p) and scores how well the notes
follow their records: a TF-IDF + logistic regression classifier of ``--label`` trained on the ``--notes`` real
notes predicts it from each written note (``note_accuracy``), against the same classifier on the ``N`` records'
real notes (``real_accuracy``), after filling the notes' placeholders from their records as sampling does
(identities left empty); ``note_ratio`` is the first over the second, the measure of the demo's
``benchmarks/demo_modalities.py`` (target 0.9), here with real records' fields as prompts.

Outside any privacy guarantee: the adapters here are trained on real notes without clipping or a ledger (the
noise only stands for a DP step's), and ``--sample`` prints and writes example notes filled with real records'
fields. What it prints and writes is for the data owner only, like the work folder, never for a release.

``--field-accuracy`` also scores each row's adapters as a classifier of ``--label``: each test note is scored
after the prompt of every category (its other fields kept) and the likeliest category is the guess. It tells
whether the steps taught the fields at all, which the held-out loss cannot: the fields decide a few tokens of a
note, the template the rest.

``--keyword-sigma Z ...`` screens a DP keyword prior at sampling: per category of ``--label``, how many of the
``--notes`` training notes hold each token (each note's first ``--keyword-tokens`` distinct ids below the loss's
vocabulary, the end token left out, each counted 1 / k for a person of k notes among them, so one person moves the
counts by at most sqrt(L) in L2; categories from the schema's domain), plus Gaussian noise ``Z x sqrt(L)`` per count
(``Z`` 0: exact counts); each written note's scores get ``--keyword-strength`` times the log-ratio of its own
category's share of a token to that category's share of all tokens, for tokens whose noisy total clears four noise
deviations and 5 counts (``text.generate``'s ``bias``). ``--keyword-candidates written`` counts only the tokens the
same adapters wrote in the row without the prior, each note adding the ``L`` of them the fewest written notes hold
(an order from the model's output alone, so the sensitivity is unchanged); ``rarest`` counts every token of the
backbone's vocabulary, trained or not, each note adding its ``L`` largest ids (a BPE tokenizer numbers its pieces in
merge order, so a larger id is a rarer piece of its public training text: an order that reads no record).
``keyword_epsilon`` is what one such histogram costs alone at the config's delta 1e-5 (a Gaussian mechanism; a fit
would compose it with the text stage's DP-SGD). With ``--fitted`` and ``--sample``, the fitted models' adapters are
sampled and scored the same way.

Variants to screen (each row one combination): ``--rank`` (LoRA rank), ``--targets`` (which projections get
adapters, comma-separated), ``--layers``, ``--frozen-placeholders``, ``--optimizer sgd --momentum 0.9`` instead of
Adam, ``--lr`` values; the sampling settings ``--temperature``, ``--no-repeat-ngram``, ``--placeholder-limit``,
``--sample-vocab`` (``trained``: only the token ids the loss trains) and ``--candidates`` (best-of-k), one row per
combination, on the same adapters; ``--placeholders text`` writes placeholders as bracketed words instead of added
tokens.

    python benchmarks/text_dp_noise.py --run runs/demo-backbone --sigma 0 0.2 1.13
    python benchmarks/text_dp_noise.py --sigma 1.13 --rank 1 8 --targets q_proj,v_proj --out /tmp/attn.json
    python benchmarks/text_dp_noise.py --config configs/demo-backbone.yaml --sigma 1.13 --sample 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import print_table, write_json
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from privsynth.data.corpus import read_corpus
from privsynth.generators.tabular.generator import TabularGenerator
from privsynth.generators.text import backbone as backbones
from privsynth.generators.text.finetune import _CONTROL, _prepared, _stops
from privsynth.generators.text.generator import TextGenerator
from privsynth.generators.text.llm import (
    FIELDS_FORMAT,
    TARGETS,
    TopStack,
    generate,
    lower_states,
    prompt_ids,
    record_losses,
    render_fields,
    schema_meanings,
    usable_prompt_format,
)
from privsynth.generators.text.rerank import contrast_prompts, pick_best
from privsynth.generators.text.tokens import Vocabulary
from privsynth.pii.engine import PiiScanner
from privsynth.pii.placeholders import fill_placeholders
from privsynth.pipeline import load_pipeline
from privsynth.profile.profiler import exact_profile
from privsynth.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[1]
NO_IDENTITY = pd.Series(dtype=object)
COLUMNS = [
    "adapters",
    "optimizer",
    "rank",
    "weights",
    "gradient_norm",
    "lr",
    "sigma",
    "held_out_loss",
    "field_accuracy",
    "temperature",
    "no_repeat_ngram",
    "placeholder_limit",
    "sample_vocab",
    "candidates",
    "keyword_sigma",
    "keyword_queries",
    "keyword_strength",
    "keyword_epsilon",
    "keyword_tokens_kept",
    "note_ratio",
    "seconds",
]


def _surfaces(tokenizer: Any, names: tuple[str, ...], vocab: int) -> dict[str, str]:
    """Per placeholder, a bracketed spelling in word pieces the loss trains (ids below ``vocab``): ``[val:age]``.

    The first of: lower case, lower case with spaces for ``_:|``, letters apart, whose pieces are all below
    ``vocab`` and that no other placeholder took.
    """
    out: dict[str, str] = {}
    for name in names:
        low = name.lower()
        spaced = low.replace("_", " ").replace(":", " ").replace("|", " ")
        for candidate in (f"[{low}]", f"[{spaced}]", "[" + " ".join(spaced.replace(" ", "")) + "]"):
            ids = tokenizer(" " + candidate, add_special_tokens=False)["input_ids"]
            if max(ids) < vocab and candidate not in out.values():
                out[name] = candidate
                break
        else:
            raise SystemExit(f"no bracketed spelling of placeholder {name} in the first {vocab} token ids")
    return out


def _as_text(text: str, surfaces: dict[str, str]) -> str:
    """Placeholders in their bracketed spelling: word pieces the backbone has read, not added tokens."""
    for name, surface in surfaces.items():
        text = text.replace(f"<{name}>", surface)
    return text


def _as_tokens(text: str, surfaces: dict[str, str]) -> str:
    """:func:`_as_text` undone, for filling (longest spelling first: none is then cut by a shorter one)."""
    for name, surface in sorted(surfaces.items(), key=lambda item: -len(item[1])):
        text = text.replace(surface, f"<{name}>")
    return text


def _unfitted(path: Path, corpus: Any) -> SimpleNamespace:
    """What a fitted text model gives the screen, from a run config: its text settings, prompts' codecs and words.

    The codecs are built as the tabular generator builds them, from the corpus's exact profile instead of its DP
    one (this benchmark is owner-only; the bins differ a little from a fit's).
    """
    fit = load_pipeline(path).fit_config()
    tabular = TabularGenerator(fit.tabular)
    tabular._prepare(corpus, exact_profile(corpus))
    codecs = tabular.codecs_
    meanings = schema_meanings(corpus.schema, codecs)
    return SimpleNamespace(codecs_=codecs, meanings_=meanings, fields_format_=FIELDS_FORMAT, config=fit.text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo-backbone", help="A privsynth run folder.")
    parser.add_argument("--model", type=Path, default=None, help="Fitted model for prompts (default RUN/fit/model).")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="Run config whose fit.text settings to screen, without a fitted model (prompts from an exact profile).",
    )
    parser.add_argument("--column", default="note")
    parser.add_argument("--notes", type=int, default=300)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--people", type=int, default=240, help="Units of privacy per DP step the noise stands for.")
    parser.add_argument(
        "--per-person",
        type=int,
        default=None,
        help="Records per person the clip is shared by (default 1: a fit clips a record to C over its own person's "
        "records, and most people have one; 2 for a person of two records, or the fits before that rule).",
    )
    parser.add_argument("--lr", type=float, nargs="+", default=[0.002])
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.0, 0.2, 1.13])
    parser.add_argument("--rank", type=int, nargs="+", default=None, help="LoRA ranks (default: the model's).")
    parser.add_argument("--targets", default=",".join(TARGETS), help="Projections with adapters, comma-separated.")
    parser.add_argument("--layers", type=int, default=None, help="Top layers with adapters (default: the model's).")
    parser.add_argument(
        "--frozen-placeholders",
        action="store_true",
        help="Keep the placeholders' output rows at their start (their input embeddings): fewer noisy weights.",
    )
    parser.add_argument(
        "--placeholders",
        choices=("tokens", "text"),
        default="tokens",
        help="How a note's placeholders reach the backbone: added tokens with their own output rows (as a fit), or "
        "written as bracketed words ('[val:age]'), ordinary word pieces the backbone has read.",
    )
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD's momentum (with --optimizer sgd).")
    parser.add_argument("--sample", type=int, default=0, help="Notes to write per row and score (0: none).")
    parser.add_argument(
        "--sample-vocab",
        choices=("all", "trained"),
        nargs="+",
        default=["all"],
        help="Ids --sample may draw: all the backbone's or only those the loss trains; a row per combination of "
        "sampling settings.",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=None,
        help="With --sample: sampling temperatures, one row each (default: the model's).",
    )
    parser.add_argument(
        "--no-repeat-ngram",
        type=int,
        nargs="+",
        default=[0],
        help="With --sample: text.no_repeat_ngram values (0: off); a row per combination of sampling settings.",
    )
    parser.add_argument(
        "--placeholder-limit",
        type=int,
        nargs="+",
        default=[0],
        help="With --sample: text.placeholder_limit values (0: no limit); a row per combination of sampling settings.",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        nargs="+",
        default=[1],
        help="With --sample: text.candidates values (best-of-k, kept by pointwise mutual information with the "
        "record's prompt; 1: one draw); a row per combination of sampling settings.",
    )
    parser.add_argument("--label", default="diagnosis", help="Column the written notes are scored on.")
    parser.add_argument(
        "--keyword-sigma",
        type=float,
        nargs="*",
        default=[],
        help="With --sample: noise multipliers of a DP keyword prior per --label category (0: exact counts); a row "
        "per value and --keyword-strength, next to rows without the prior.",
    )
    parser.add_argument("--keyword-strength", type=float, nargs="+", default=[1.0], help="Scale of the prior's bias.")
    parser.add_argument("--keyword-tokens", type=int, default=32, help="Distinct tokens a note adds to the counts.")
    parser.add_argument(
        "--keyword-queries",
        type=int,
        nargs="+",
        default=[],
        help="With --sample: rows with the prior as a fit measures it (text.keyword_column): this many steps of the "
        "fitted model's text mechanism, each note's --keyword-tokens rarest pieces; one row per value and strength.",
    )
    parser.add_argument(
        "--keyword-candidates",
        choices=("all", "written", "rarest"),
        default="all",
        help="'written': count only the tokens the same adapters wrote without the prior, each note's rarest first; "
        "'rarest': every backbone token, each note's largest ids (the tokenizer's rarest pieces) first.",
    )
    parser.add_argument(
        "--field-accuracy",
        action="store_true",
        help="Also score the adapters as a classifier of --label: for each test note, the category whose prompt "
        "makes it likeliest (what the fields taught; a note can only follow its fields as far as this goes).",
    )
    parser.add_argument("--fitted", type=Path, nargs="*", default=[], help="Model folders whose adapters to score.")
    parser.add_argument(
        "--only-fitted", action="store_true", help="Train no adapters here: score (and sample) the --fitted ones only."
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--system",
        default=None,
        help="Screen another system message for prompt format 2 ({column} is the text column's name), e.g. "
        "'Write the clinical {column} of a patient visit from its details.'",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.system is not None:
        import privsynth.generators.text.llm as llm

        llm.SYSTEM = args.system  # read by prompt_ids at every call
    torch.set_num_threads(args.threads)
    if args.fitted and args.layers is not None:
        parser.error("--fitted scores models over their own frozen layers: leave --layers out")
    if args.config is not None and args.model is not None:
        parser.error("--config screens a config's settings without a fitted model: give --config or --model")
    targets_used = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown = sorted(set(targets_used) - set(TARGETS))
    if unknown:
        parser.error(f"--targets {unknown} are not among {list(TARGETS)}")

    if not (args.run / "corpus" / "data").exists():
        parser.error(
            f"no corpus in {args.run / 'corpus' / 'data'}: run the config, or write it with privsynth demo-corpus"
        )
    corpus = read_corpus(args.run / "corpus" / "data")
    fitted = (
        _unfitted(args.config, corpus)
        if args.config is not None
        else Synthesizer.load(args.model or args.run / "fit" / "model").texts_[args.column]
    )
    described = corpus.with_records(corpus.records.head(args.notes + args.test + args.sample))
    corpus = corpus.with_records(corpus.records.head(args.notes + args.test))
    masked = TextGenerator._masked_texts(corpus, args.column, PiiScanner())
    fields = render_fields(described.records, fitted.codecs_, fitted.meanings_, fields_format=fitted.fields_format_)
    config = fitted.config
    layers = args.layers or config.adapter_layers
    model, tokenizer, base, rows = _prepared(
        backbones.locate(config.backbone), Vocabulary.for_schema(corpus.schema).placeholders
    )
    if args.config is not None:  # as a fit chooses it
        fitted.prompt_format_ = usable_prompt_format(tokenizer, args.column)
    surfaces = {}
    if args.placeholders == "text":  # "<PERSON>" written "[person]": ordinary word pieces, no added token
        surfaces = _surfaces(tokenizer, Vocabulary.for_schema(corpus.schema).placeholders, config.train_vocab)
        masked = [None if t is None else _as_text(t, surfaces) for t in masked]
        print("placeholders as text:", surfaces)
    sequences, starts, bodies = [], [], []
    for text, rendered in zip(masked, fields[: len(masked)], strict=True):
        prompt = prompt_ids(tokenizer, rendered, args.column, prompt_format=fitted.prompt_format_)
        body = tokenizer(text or "", add_special_tokens=False)["input_ids"]
        kept = body[: config.max_tokens]
        bodies.append([*kept, *([tokenizer.eos_token_id] if len(kept) == len(body) else [])])
        sequences.append([*prompt, *bodies[-1]])
        starts.append(len(prompt))
    # --field-accuracy: each test note again after the prompt of each category of --label (its other fields kept)
    categories = sorted(corpus.records[args.label].dropna().astype(str).unique()) if args.field_accuracy else []
    swapped: dict[str, list[int]] = {}
    for category in categories:
        records = corpus.records.iloc[args.notes :].copy()
        records[args.label] = category
        rendered = render_fields(records, fitted.codecs_, fitted.meanings_, fields_format=fitted.fields_format_)
        swapped[category] = []
        for i, text in enumerate(rendered):
            prompt = prompt_ids(tokenizer, text, args.column, prompt_format=fitted.prompt_format_)
            swapped[category].append(len(sequences))
            sequences.append([*prompt, *bodies[args.notes + i]])
            starts.append(len(prompt))
    vocab = min(config.train_vocab, base)
    want = np.full((len(sequences), max(map(len, sequences))), -1, dtype=np.int64)
    for i, (seq, start) in enumerate(zip(sequences, starts, strict=True)):
        nxt = np.asarray(seq[start:], dtype=np.int64)
        want[i, start - 1 : start - 1 + len(nxt)] = np.where(
            nxt < vocab, nxt, np.where(nxt >= base, nxt - base + vocab, -1)
        )
    targets = torch.as_tensor(want)
    clock = time.time()
    # --only-fitted trains nothing here: the training notes' states are never read (only the prior counts them)
    needed = range(args.notes if args.only_fitted else 0, len(sequences))
    states = dict(
        zip(needed, lower_states(model, [sequences[i] for i in needed], keep_top=layers, bfloat16=True), strict=True)
    )
    print(f"frozen states of {len(states)} notes: {time.time() - clock:.0f} s", flush=True)
    head = model.lm_head.weight[:vocab].detach()

    def loss(index: list[int], stack: Any) -> torch.Tensor:
        width = max(len(sequences[i]) for i in index)
        hidden = torch.zeros(len(index), width, model.config.hidden_size)
        for j, i in enumerate(index):
            hidden[j, : len(states[i])] = states[i].float()
        return record_losses(stack(hidden), head, stack.placeholder_logits, targets[index, :width])

    train, test = list(range(args.notes)), list(range(args.notes, args.notes + args.test))
    # a fit clips each record to C / k (k: its own person's records) and adds noise sigma x C
    per_person = args.per_person or 1

    def fresh(rank: int) -> TopStack:
        stack = TopStack(
            model,
            layers=layers,
            rank=rank,
            alpha=config.lora_alpha,
            targets=targets_used,
            placeholder_rows=rows,
            generator=torch.Generator().manual_seed(0),
        )
        stack.placeholders.requires_grad_(not args.frozen_placeholders)
        return stack

    def gradient_norm(stack: TopStack) -> float:
        """Median norm of one note's gradient over 8 training notes: the scale DP clipping and noise act on."""
        params = [p for p in stack.parameters() if p.requires_grad]
        norms = []
        for i in train[:8]:
            stack.zero_grad()
            loss([i], stack).mean().backward()
            norms.append(float(torch.sqrt(sum((p.grad**2).sum() for p in params))))
        return float(np.median(norms))

    def field_accuracy(stack: TopStack) -> float:
        """The model as a classifier of --label: the category whose prompt makes each test note likeliest."""
        with torch.no_grad():
            scores = torch.stack([loss(swapped[c], stack) for c in categories], dim=1)  # [test notes, categories]
        guessed = np.asarray(categories)[scores.argmin(dim=1).numpy()]
        truth = corpus.records[args.label].iloc[args.notes :].astype(str).to_numpy()
        return float((guessed == truth).mean())

    written = described.records.iloc[args.notes + args.test :]
    prompts = [
        prompt_ids(tokenizer, f, args.column, prompt_format=fitted.prompt_format_) for f in fields[len(masked) :]
    ]
    stops = _stops(tokenizer)
    placeholder_ids = set(range(base, base + len(rows)))
    banned = [i for i in tokenizer.all_special_ids if i not in stops and i not in placeholder_ids]
    if args.placeholders == "text":  # the added tokens are never trained: never drawn
        banned = sorted(set(banned) | placeholder_ids)
    real_notes = corpus.records[args.column].iloc[: args.notes].fillna("").astype(str)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    classifier = LogisticRegression(max_iter=2000).fit(
        vectorizer.fit_transform(real_notes), corpus.records[args.label].iloc[: args.notes].astype(str)
    )
    labels = written[args.label].astype(str).to_numpy()

    def accuracy(notes: list[str]) -> float:
        return float((classifier.predict(vectorizer.transform(notes)) == labels).mean())

    real_accuracy = accuracy(written[args.column].fillna("").astype(str).tolist()) if args.sample else float("nan")

    train_labels = corpus.records[args.label].iloc[: args.notes].astype(str).to_numpy()
    # the categories a fit could use without reading the records: the schema's declared domain
    label_names = list(corpus.schema.columns[args.label].domain or sorted(set(train_labels)))
    entity = corpus.schema.entity
    people = corpus.records[entity].iloc[: args.notes] if entity else pd.Series(range(args.notes))
    share_of_person = 1.0 / people.map(people.value_counts()).to_numpy()  # 1 / k: a person moves counts by sqrt(L)

    def keyword_prior(
        z: float, strength: float, written_ids: list[set[int]] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Per written note, ``strength`` x its category's DP log share ratio of each token (see the docstring).

        ``written_ids`` (``--keyword-candidates written``): the token ids of the notes the same adapters wrote
        without the prior. Only those are counted, and each training note adds the ``L`` of them that the fewest
        written notes hold: an order taken from the model's output alone (post-processing of the DP adapters),
        so which cells a note touches depends on that note only and the sensitivity stays sqrt(L).
        """
        from privsynth.privacy.accounting import gaussian_epsilon

        width = args.keyword_tokens
        rarest = args.keyword_candidates == "rarest"
        cells = base if rarest else vocab  # rarest: every backbone token, trained or not (the head writes them all)
        counts = np.zeros((len(label_names), cells))
        stop = tokenizer.eos_token_id
        specials = set(tokenizer.all_special_ids) | {stop}
        held = np.zeros(cells)  # how many of the written notes hold each token
        for ids in written_ids or []:
            held[[t for t in ids if t < cells and t != stop]] += 1
        for body, label, weight in zip(bodies[: args.notes], train_labels, share_of_person, strict=True):
            distinct = list(dict.fromkeys(t for t in body if t < cells and t not in specials))
            if rarest:  # the tokenizer's ids follow its merges: a larger id, a rarer piece of public text
                distinct = sorted(distinct, reverse=True)
            elif written_ids is not None:
                # sorted is stable: ties keep the note's order
                distinct = sorted((t for t in distinct if held[t] > 0), key=lambda t: held[t])
            distinct = distinct[:width]
            if label in label_names:
                counts[label_names.index(label), distinct] += weight
        scale = z * np.sqrt(width)
        # fresh OS entropy, as a fit's noise (a seeded draw could be replayed); rows differ run to run
        noisy = np.clip(counts + np.random.default_rng().normal(0.0, scale, counts.shape), 0.0, None)
        total = noisy.sum(axis=0)
        kept = total > max(4.0 * scale * np.sqrt(len(label_names)), 5.0)
        smooth = max(scale, 1.0)
        share = (noisy[:, kept] + smooth) / (total[kept] + len(label_names) * smooth)
        overall = (noisy[:, kept] + smooth).sum(axis=1) / (total[kept] + len(label_names) * smooth).sum()
        ratio = np.zeros_like(counts)
        ratio[:, kept] = np.log(share / overall[:, None])
        rows_of = {name: i for i, name in enumerate(label_names)}
        bias = torch.zeros(len(labels), base + len(rows))
        for i, label in enumerate(labels):
            if label in rows_of:
                bias[i, :cells] = torch.as_tensor(strength * ratio[rows_of[label]], dtype=torch.float32)
        top = {  # the tokens each category's prior favours most (kept ones with a positive log-ratio)
            name: [tokenizer.decode([int(t)]) for t in np.argsort(-ratio[i])[:8] if ratio[i, t] > 0]
            for i, name in enumerate(label_names)
        }
        return bias, {
            "keyword_sigma": z,
            "keyword_strength": strength,
            "keyword_tokens_kept": int(kept.sum()),
            "keyword_candidates": int((held > 0).sum()) if written_ids is not None else args.keyword_candidates,
            "keyword_epsilon": gaussian_epsilon(z, delta=1e-5) if z > 0 else float("inf"),
            "keyword_top": top,
        }

    def sampled(
        stack: TopStack,
        temperature: float,
        no_repeat_ngram: int,
        placeholder_limit: int,
        sample_vocab: str,
        candidates: int,
        bias: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Write one note per ``written`` record with ``stack`` merged into the backbone (restored after)."""
        top = model.model.layers[len(model.model.layers) - layers :]
        kept = {k: v.clone() for k, v in top.state_dict().items()}
        stack.eval()
        stack.merge_into(model)
        clock = time.time()
        try:
            notes, written_ids = [], []
            trained = vocab if sample_vocab == "trained" else None
            contrasts, shares = contrast_prompts([tuple(p) for p in prompts], np.random.default_rng(3))
            batch = max(1, config.sample_batch // candidates)
            for start in range(0, len(prompts), batch):
                chunk = prompts[start : start + batch]
                produced = generate(
                    model,
                    stack,
                    [p for p in chunk for _ in range(candidates)],
                    vocab=base,
                    max_new=config.max_tokens,
                    stop=stops,
                    banned=banned,
                    temperature=temperature,
                    top_p=config.top_p,
                    generator=torch.Generator().manual_seed(2),
                    no_repeat_ngram=no_repeat_ngram,
                    placeholder_limit=placeholder_limit,
                    trained=trained,
                    bias=None if bias is None else bias[start : start + len(chunk)].repeat_interleave(candidates, 0),
                )
                if candidates > 1:  # best-of-k as a fit's sampling does it (text.candidates)
                    drawn = [produced[i * candidates : (i + 1) * candidates] for i in range(len(chunk))]
                    best = pick_best(
                        model,
                        stack,
                        chunk,
                        drawn,
                        vocab=base,
                        contrasts=contrasts,
                        shares=shares,
                        trained=trained,
                        stop=stops,
                    )
                    produced = [texts_of[b] for texts_of, b in zip(drawn, best, strict=True)]
                for ids in produced:
                    kept_ids = [t for t in ids if t not in stops]
                    written_ids.append(set(kept_ids))
                    text = _CONTROL.sub("", tokenizer.decode(kept_ids, skip_special_tokens=False)).strip()
                    if args.placeholders == "text":
                        text = _as_tokens(text, surfaces)
                    # the fit's sampling fills placeholders from the record: <CAT:diagnosis> -> its diagnosis. The
                    # records here are real, so no identity: identity placeholders are left empty
                    notes.append(fill_placeholders(text, written.iloc[len(notes)], NO_IDENTITY, NO_IDENTITY))
        finally:
            top.load_state_dict(kept)
            stack.train()
        score = accuracy(notes)
        return {
            "note_accuracy": score,
            "real_accuracy": real_accuracy,
            "note_ratio": score / real_accuracy if real_accuracy else float("nan"),
            "sample_seconds": round(time.time() - clock),
            "examples": notes[:3],
            "written_ids": written_ids,
        }

    priors: list[Any] = [None, *((z, a) for z in args.keyword_sigma for a in args.keyword_strength)]
    priors += [("queries", m, a) for m in args.keyword_queries for a in args.keyword_strength]

    def fit_prior(
        queries: int, strength: float, written_ids: list[set[int]] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The prior as a fit measures it (:mod:`privsynth.generators.text.keywords`), over the training notes.

        ``queries`` steps of the fitted model's own text mechanism (its ledger's sigma and sample rate), each
        note's ``--keyword-tokens`` rarest pieces (``--keyword-candidates written``: the ones the fewest notes the
        adapters wrote without the prior hold, among those they wrote), noise from OS entropy.
        """
        import json

        from torch import nn

        from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig
        from privsynth.generators.text import keywords as kw
        from privsynth.privacy.accounting import Mechanism
        from privsynth.privacy.randomness import Streams

        ledger = json.loads(((args.model or args.run / "fit" / "model") / "ledger.json").read_text("utf-8"))
        spent = next(e["mechanism"] for e in ledger["entries"] if e["stage"] == "text")
        width = args.keyword_tokens
        rank = None
        if written_ids is not None:
            held = np.zeros(base)
            for ids in written_ids:
                held[[t for t in ids if t < base]] += 1
            rank = np.where(held > 0, held, np.inf)
        groups = Groups.from_labels(people.astype(str).to_numpy(), args.notes)
        trainer = DPSGDTrainer(
            nn.Sequential(nn.Linear(1, 1)),
            loss=lambda module, rows: torch.zeros(len(rows)),
            groups=groups,
            mechanism=Mechanism(**{**spent, "steps": max(spent["steps"], queries)}),
            config=OptimConfig(max_sample_rate=1.0),
            streams=Streams.private(),
            stream=("text", args.column),
            units=groups.count,
        )
        sums = kw.noisy_keyword_sums(
            trainer,
            kw.category_indices(train_labels, label_names),
            kw.keyword_sets(
                bodies[: args.notes], cells=base, width=width, excluded=tokenizer.all_special_ids, rank=rank
            ),
            classes=len(label_names),
            cells=base,
            width=width,
            queries=queries,
        )
        clip, sigma, rate = trainer.config.max_grad_norm, spent["noise_multiplier"], spent["sample_rate"]
        ratio = kw.log_ratios(sums, noise=sigma * clip * np.sqrt(queries), unit=rate * queries * clip / np.sqrt(width))
        rows_of = {name: i for i, name in enumerate(label_names)}
        bias = torch.zeros(len(labels), base + len(rows))
        for i, label in enumerate(labels):
            if label in rows_of:
                bias[i, :base] = strength * ratio[rows_of[label]]
        top = {
            name: [tokenizer.decode([int(t)]) for t in torch.argsort(-ratio[i])[:8] if ratio[i, t] > 0]
            for i, name in enumerate(label_names)
        }
        return bias, {
            "keyword_queries": queries,
            "keyword_candidates": args.keyword_candidates,
            "keyword_strength": strength,
            "keyword_mechanism": spent,
            "keyword_tokens_kept": int((ratio != 0).any(dim=0).sum()),
            "keyword_top": top,
        }

    def sample_rows(stack: TopStack, trained: dict[str, Any]) -> None:
        """One result row per sampling setting (or one row without --sample), printed as it comes."""
        decodings = [
            (t, k, limit, ids, best_of, prior)
            for t in args.temperature or [config.temperature]
            for k in args.no_repeat_ngram
            for limit in args.placeholder_limit
            for ids in args.sample_vocab
            for best_of in args.candidates
            for prior in priors
        ]
        biases: dict[Any, tuple[torch.Tensor, dict[str, Any]]] = {}
        written_ids = None  # the ids of this stack's notes without the prior (the first row of each decoding)
        for temperature, no_repeat, limit, ids, best_of, prior in (
            decodings if args.sample else [(None, 0, 0, "all", 1, None)]
        ):
            if prior is not None and prior not in biases:
                restrict = written_ids if args.keyword_candidates == "written" else None
                biases[prior] = (
                    fit_prior(*prior[1:], restrict) if prior[0] == "queries" else keyword_prior(*prior, restrict)
                )
            bias, described_prior = biases[prior] if prior is not None else (None, {})
            drawn = (
                {
                    "temperature": temperature,
                    "no_repeat_ngram": no_repeat,
                    "placeholder_limit": limit,
                    "sample_vocab": ids,
                    "candidates": best_of,
                    **described_prior,
                    **sampled(stack, temperature, no_repeat, limit, ids, best_of, bias),
                }
                if temperature is not None
                else {}
            )
            if prior is None and drawn:
                written_ids = drawn.pop("written_ids")
                biases.clear()  # a new decoding: its priors restricted to what it writes
            drawn.pop("written_ids", None)
            results.append({**trained, **drawn})
            print_table(results[-1:], COLUMNS)
            for example in results[-1].get("examples", []):
                print("  example:", " ".join(example.split())[:200])

    ranks = args.rank or [config.lora_rank]
    with torch.no_grad():
        start_loss = float(loss(test, fresh(ranks[0])).mean())
    start_fields = field_accuracy(fresh(ranks[0])) if categories else None
    results: list[dict[str, Any]] = []
    for rank in [] if args.only_fitted else ranks:
        g = gradient_norm(fresh(rank))  # per variant: fewer weights, a smaller gradient, less noise for one clip
        for lr, sigma in ((lr, s) for lr in args.lr for s in args.sigma):
            stack = fresh(rank)
            params = [p for p in stack.parameters() if p.requires_grad]
            optimizer = (
                torch.optim.SGD(params, lr=lr, momentum=args.momentum)
                if args.optimizer == "sgd"
                else torch.optim.Adam(params, lr=lr)
            )
            picks, noise = np.random.default_rng(0), torch.Generator().manual_seed(1)
            clock = time.time()
            for _ in range(args.steps):
                optimizer.zero_grad()
                loss(picks.choice(train, args.batch, replace=False).tolist(), stack).mean().backward()
                with torch.no_grad():
                    for p in params:
                        p.grad.add_(torch.randn(p.shape, generator=noise) * sigma * g * per_person / args.people)
                optimizer.step()
            with torch.no_grad():
                after = float(loss(test, stack).mean())
            trained = {
                "adapters": "trained here",
                "optimizer": args.optimizer if args.optimizer == "adam" else f"sgd m={args.momentum}",
                "rank": rank,
                "targets": args.targets,
                "layers": layers,
                "placeholders": "frozen" if args.frozen_placeholders else "trained",
                "weights": sum(p.numel() for p in params),
                "gradient_norm": round(g, 3),
                "lr": lr,
                "sigma": sigma,
                "per_person": per_person,
                "held_out_loss": after,
                **({"field_accuracy": field_accuracy(stack)} if categories else {}),
                "seconds": round(time.time() - clock),
                "placeholders_as": args.placeholders,
            }
            sample_rows(stack, trained)
    for folder in args.fitted:
        fitted_stack = Synthesizer.load(folder).texts_[args.column].stack_
        with torch.no_grad():
            scored = float(loss(test, fitted_stack).mean())
        sample_rows(fitted_stack, {"adapters": str(folder), "held_out_loss": scored})
    print(
        f"\nheld-out loss per text token before any step: {start_loss:.3f}; G (gradient_norm) is the median norm "
        "of one note's gradient at the start (8 notes)"
        + (f"; field accuracy before any step {start_fields:.3f}" if start_fields is not None else "")
    )
    print_table(results, COLUMNS)
    write_json(
        "text_dp_noise",
        {"args": vars(args), "start_loss": start_loss, "start_field_accuracy": start_fields, "rows": results},
        args.out,
    )


if __name__ == "__main__":
    main()
