"""What the keyword prior and the text classifier do to a whole fitted run, without fitting again (issue 19).

A fit with ``text.keyword_column`` spends the text stage's last ``keyword_queries`` steps on the prior instead of
on DP-SGD. Fitting the demo with the backbone takes about two hours on 2 cores, so this benchmark adds the prior
to an already fitted run instead, with privsynth's own code (:func:`privsynth.generators.text.finetune.written_rank`
and ``_keyword_prior``): the fitted model writes its candidate texts, then ``--queries`` steps of that model's own
text mechanism (its ledger's noise multiplier and sample rate, the fit's clip) count the keywords of the model's
training records (its recorded split), noise from OS entropy. With ``--classifier-steps N`` (and ``--queries 0``
to keep the model's own prior, if it has one), N more steps train the DP text classifier
(``text.classifier_steps``, :mod:`privsynth.generators.text.classifier`) the same way. The result is a copy of
the run (``--out``: its corpus and model, the model with what was added) that ``privsynth run`` then samples,
audits and gates.

**Outside the fit's plan.** The queries are extra steps of the text mechanism that the fit did not plan: a real
fit would have run ``--queries`` fewer DP-SGD steps at the same noise, and a fit measured with the prior is the
only true measurement. The copy's ledger records them as a spend of their own (its target raised to what it now
composes to, so its epsilon is above the one the fit was asked for), its config has no ``release`` (the gate still
says what it would do), and the script refuses any run that is not of the invented demo corpus.

    python benchmarks/text_keyword_posthoc.py --run runs/demo-backbone --out runs/demo-backbone-kw
    privsynth run RUNS/demo-backbone-kw.yaml   # the config this script writes next to --out
    python benchmarks/demo_modalities.py --run runs/demo-backbone-kw

Prints the prior's top tokens per category and writes ``OUT.yaml`` (the pipeline config of the copy).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
import yaml
from torch import nn

from privsynth.audit.inputs import split_from_model
from privsynth.data.corpus import read_corpus
from privsynth.generators.dpsgd import DPSGDTrainer, Groups
from privsynth.generators.text import classifier as classifiers
from privsynth.generators.text import finetune
from privsynth.generators.text.generator import TextGenerator
from privsynth.pii.engine import default_scanner
from privsynth.privacy.accounting import Mechanism
from privsynth.privacy.ledger import PrivacyLedger
from privsynth.privacy.randomness import Streams
from privsynth.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo-backbone", help="A finished run folder.")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo-backbone.yaml", help="Its config.")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo-backbone-kw", help="The copy to write.")
    parser.add_argument("--column", default="note", help="The text column.")
    parser.add_argument("--keyword-column", default="diagnosis")
    parser.add_argument("--queries", type=int, default=20, help="Keyword queries (0: keep the model's prior).")
    parser.add_argument("--classifier-steps", type=int, default=0, help="Steps of a DP text classifier (0: none).")
    parser.add_argument("--classifier-lr", type=float, default=0.2)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument(
        "--order", choices=("fewest", "uneven"), default="fewest", help="text.keyword_order: which tokens count first."
    )
    args = parser.parse_args()
    model_dir = args.run / "fit" / "model"
    if not (model_dir / "model.json").is_file():
        parser.error(f"{args.run} has no fitted model: run its config first")
    if args.out.exists():
        parser.error(f"{args.out} exists: remove it or choose another --out")
    if json.loads((args.run / "config.json").read_text(encoding="utf-8")).get("demo") is None:
        parser.error(f"{args.run} is not a run of the demo corpus: this benchmark spends outside a fit's plan")

    if args.queries < 0 or args.classifier_steps < 0 or args.queries + args.classifier_steps == 0:
        parser.error("give --queries or --classifier-steps above 0 (neither below 0)")
    synth = Synthesizer.load(model_dir)
    text: TextGenerator = synth.texts_[args.column]
    if args.queries == 0 and text.keyword_prior_ is None:
        parser.error(f"{model_dir} has no keyword prior to keep: give --queries above 0")
    if args.queries == 0 and text.config.keyword_column != args.keyword_column:
        parser.error(f"{model_dir}'s keyword prior is of '{text.config.keyword_column}', not '{args.keyword_column}'")
    keyword_update = (
        {
            "keyword_queries": args.queries,
            "keyword_tokens": args.tokens,
            "keyword_candidates": args.candidates,
            "keyword_strength": args.strength,
            "keyword_order": args.order,
        }
        if args.queries
        else {}
    )
    config = text.config.model_copy(
        update={
            "keyword_column": args.keyword_column,
            **keyword_update,
            "classifier_steps": args.classifier_steps,
            "classifier_lr": args.classifier_lr,
        }
    )
    text.config = config
    synth.config = synth.config.model_copy(update={"text": config})
    corpus = read_corpus(args.run / "corpus" / "data")
    train, _ = split_from_model(corpus, model_dir)
    domain = finetune.keyword_domain(corpus.schema, args.keyword_column, args.column)
    masked = TextGenerator._masked_texts(train, args.column, default_scanner())  # as the fit masked them
    bodies = [text.tokenizer_(t, add_special_tokens=False)["input_ids"] if t else [] for t in masked]
    spent = next(e for e in synth.ledger_.entries if e.stage == "text").mechanism
    entity = corpus.schema.entity
    groups = Groups.from_labels(
        None if entity is None else train.records[entity].astype(str).to_numpy(),
        len(train.records),
        max_size=corpus.schema.max_records_per_entity if entity else None,
    )
    streams = Streams.private()
    steps = args.queries + args.classifier_steps
    trainer = DPSGDTrainer(  # only its sampler, clips and noise are used: a stand-in network
        nn.Sequential(nn.Linear(1, 1)),
        loss=lambda module, rows: torch.zeros(len(rows)),
        groups=groups,
        mechanism=Mechanism(noise_multiplier=spent.noise_multiplier, sample_rate=spent.sample_rate, steps=steps),
        config=config.optim,
        streams=streams,
        stream=("text", args.column),
        units=groups.count,
    )
    # the queries in the copy's ledger before they are drawn (its target raised to what it composes to)
    extra = Mechanism(noise_multiplier=spent.noise_multiplier, sample_rate=spent.sample_rate, steps=steps)
    fitted_epsilon = synth.ledger_.epsilon
    state = synth.ledger_.state_dict()
    state["target_epsilon"] = max(state["target_epsilon"], synth.ledger_.projected_epsilon([extra]))
    synth.ledger_ = PrivacyLedger.from_state_dict(state)
    synth.ledger_.spend(
        "text",
        extra,
        note=f"keyword prior ({args.queries} steps) and text classifier ({args.classifier_steps} steps) added after "
        f"the fit by benchmarks/text_keyword_posthoc.py ({steps} extra steps of the text mechanism, outside the "
        "fit's plan: a benchmark, not a release)",
    )
    cells = min(config.train_vocab, text.base_vocab_) if config.sample_vocab == "trained" else text.base_vocab_
    if args.classifier_steps:
        trainer.step = steps - args.classifier_steps  # the keyword queries first, as a fit orders them
        text.classifier_ = finetune._text_classifier(
            trainer,
            train.records[args.keyword_column],
            domain,
            [finetune.decoded(text.tokenizer_, body[: config.max_tokens]) for body in bodies],
            steps=args.classifier_steps,
            lr=args.classifier_lr,
        )
        text.classifier_embedder_ = classifiers.embedder_identity()
        trainer.step = 0
        table = text.classifier_
        print(f"classifier: {tuple(table.shape)}, weight norm per category {table.norm(dim=1).tolist()}")
    if not args.queries:
        text.keyword_domain_ = [str(v) for v in domain]
        finish(args, synth, fitted_epsilon, spent, steps)
        return
    text.keyword_prior_ = finetune._keyword_prior(
        trainer,
        train.records[args.keyword_column],
        domain,
        bodies,
        cells=cells,
        width=args.tokens,
        excluded=list(text.tokenizer_.all_special_ids),
        queries=args.queries,
        start=0,
        rank=lambda: finetune.written_rank(text, domain, cells, streams, tabular=synth.generators_.get("tabular")),
    )
    text.keyword_domain_ = [str(v) for v in domain]
    for i, name in enumerate(text.keyword_domain_):
        row = text.keyword_prior_[i]
        top = [text.tokenizer_.decode([int(t)]) for t in row.argsort(descending=True)[:10] if row[t] > 0]
        print(f"{name}: {top}")
    print("tokens with a push:", int((text.keyword_prior_ != 0).any(dim=0).sum()))
    finish(args, synth, fitted_epsilon, spent, steps)


def finish(args: argparse.Namespace, synth: Synthesizer, fitted_epsilon: float, spent: Mechanism, steps: int) -> None:
    """Write the copy of the run (its corpus, the model with what was added, a pipeline config) and say so."""
    print(f"the copy's ledger: epsilon {synth.ledger_.epsilon:.3f}, the fit's {fitted_epsilon:.3f}")
    args.out.mkdir(parents=True)
    shutil.copytree(args.run / "corpus", args.out / "corpus")
    synth.save(args.out / "fit" / "model")
    shutil.copy(args.run / "fit" / "stage.json", args.out / "fit" / "stage.json")
    pipeline = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    pipeline.update(
        {
            "name": args.out.name,
            "runs_dir": str(args.out.parent),
            "description": f"{pipeline.get('description', '')} With a keyword prior or classifier added after the fit "
            "(benchmarks/text_keyword_posthoc.py): outside its ledger, never to be released.",
        }
    )
    pipeline.pop("release", None)
    config_path = args.out.parent / f"{args.out.name}.yaml"
    config_path.write_text(yaml.safe_dump(pipeline, sort_keys=False), encoding="utf-8")
    (args.out / "config.json").write_text((args.run / "config.json").read_text(encoding="utf-8"), encoding="utf-8")
    print(f"wrote {args.out} and {config_path}: privsynth run {config_path}")
    print(
        json.dumps(
            {
                "queries": args.queries,
                "classifier_steps": args.classifier_steps,
                "steps": steps,
                "mechanism": spent.model_dump(),
            }
        )
    )


if __name__ == "__main__":
    main()
