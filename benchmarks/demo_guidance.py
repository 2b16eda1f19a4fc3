"""Guidance references for the demo's backbone notes, screened on one fitted model (issue 19).

Draws one note per synthetic record for each variant, from the same fitted model, the same records and the same
token stream, and scores each set with the note classifier of ``benchmarks/demo_modalities.py`` (TF-IDF + logistic
regression trained on the real training notes, accuracy against each synthetic record's own diagnosis). Variants
are ``REFERENCE:WEIGHT``:

- ``plain:1``: no guidance;
- ``missing:W``: guidance against the record's own prompt with ``--field`` reading ``missing``, what
  ``text.guidance_fields`` does;
- ``dropped:W``: against the record's own prompt without ``--field``;
- ``first:W``: against the prompt the field's codec writes for no value (a column that cannot be missing gets its
  first category: for the demo's diagnosis, ``healthy``);
- ``none:W``: against one prompt without fields (what ``text.guidance`` does without ``guidance_fields``).

No length cut and no scrub (they act after drawing, the same for every variant); placeholders are filled from the
records, identities left empty. The records are the first ``--n`` of a synthetic corpus of the model (``--records``,
default the run's sample). Outside any privacy guarantee only in that it prints notes (all synthetic); the
classifier reads the real training notes, as in ``demo_modalities.py``.

    python benchmarks/demo_guidance.py --run runs/demo-backbone --records S --n 200 --variants plain:1 missing:1.5

Prints one table and writes benchmarks/results/demo_guidance.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import pandas as pd
import torch
from _common import print_table, write_json
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from privsynth.audit.inputs import split_from_model
from privsynth.data.corpus import read_corpus
from privsynth.generators.text.finetune import _CONTROL, _stops
from privsynth.generators.text.llm import NO_FIELDS, generate, prompt_ids, render_fields
from privsynth.pii.placeholders import fill_placeholders
from privsynth.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ("plain", "missing", "dropped", "first", "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo-backbone")
    parser.add_argument("--records", type=Path, default=None, help="Synthetic corpus whose records prompt the notes.")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--field", default="diagnosis")
    parser.add_argument("--variants", nargs="+", default=["plain:1", "missing:1.5"])
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    variants = [(ref, float(weight)) for ref, _, weight in (v.partition(":") for v in args.variants)]
    if any(ref not in REFERENCES for ref, _ in variants):
        parser.error(f"--variants: REFERENCE:WEIGHT with REFERENCE one of {', '.join(REFERENCES)}")

    real = read_corpus(args.run / "corpus" / "data")
    train, _ = split_from_model(real, args.run / "fit" / "model")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    classifier = LogisticRegression(max_iter=2000).fit(
        vectorizer.fit_transform(train.records["note"].fillna("")), train.records["diagnosis"]
    )
    records = read_corpus(args.records or args.run / "sample" / "synthetic").records.iloc[: args.n]
    records = records.reset_index(drop=True)
    generator = Synthesizer.load(args.run / "fit" / "model").texts_["note"]
    tokenizer, base = generator.tokenizer_, generator.base_vocab_
    stops = _stops(tokenizer)
    placeholders = set(range(base, base + len(generator.vocab_.placeholders)))
    banned = [i for i in tokenizer.all_special_ids if i not in stops and i not in placeholders]

    def prompts(fields: list[str]) -> list[list[int]]:
        return [prompt_ids(tokenizer, f, generator.column_, prompt_format=generator.prompt_format_) for f in fields]

    def rendered(frame: pd.DataFrame, missing: tuple[str, ...] = ()) -> list[str]:
        codecs, meanings = generator.codecs_, generator.meanings_
        return render_fields(frame, codecs, meanings, fields_format=generator.fields_format_, missing=missing)

    own = prompts(rendered(records))
    references: dict[str, list[list[int]] | None] = {
        "plain": None,
        "missing": prompts(rendered(records, missing=(args.field,))),
        "dropped": prompts([re.sub(rf"{re.escape(args.field)}: [^;]*(; )?", "", f) for f in rendered(records)]),
        "first": prompts(rendered(records.assign(**{args.field: None}))),
        "none": [prompt_ids(tokenizer, NO_FIELDS, generator.column_, prompt_format=generator.prompt_format_)]
        * len(records),
    }
    config, empty = generator.config, pd.Series(dtype=object)
    rows, examples = [], {}
    for reference, weight in variants:
        stream, clock, notes = torch.Generator().manual_seed(args.seed), time.time(), []
        for start in range(0, len(own), 64):
            refs = references[reference]
            produced = generate(
                generator.model_,
                generator.stack_,
                own[start : start + 64],
                vocab=base,
                max_new=config.max_tokens,
                stop=stops,
                banned=banned,
                temperature=config.temperature,
                top_p=config.top_p,
                generator=stream,
                unconditional=None if refs is None else refs[start : start + 64],
                guidance=weight if refs is not None else 1.0,
                no_repeat_ngram=config.no_repeat_ngram,
                placeholder_limit=config.placeholder_limit,
            )
            for ids in produced:
                text = _CONTROL.sub("", tokenizer.decode([t for t in ids if t not in stops])).strip()
                notes.append(fill_placeholders(text, records.iloc[len(notes)], empty, empty))
        accuracy = float((classifier.predict(vectorizer.transform(notes)) == records["diagnosis"]).mean())
        rows.append(
            {"reference": reference, "weight": weight, "accuracy": accuracy, "seconds": round(time.time() - clock)}
        )
        examples[f"{reference}:{weight:g}"] = notes[:3]
        print_table(rows[-1:], ["reference", "weight", "accuracy", "seconds"])
    print()
    print_table(rows, ["reference", "weight", "accuracy", "seconds"])
    write_json("demo_guidance", {"args": vars(args), "rows": rows, "examples": examples}, args.out)


if __name__ == "__main__":
    main()
