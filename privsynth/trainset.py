"""The records a fit trains on: the holdout split and contribution bounding, drawn once per run.

Both are private draws (from the fit's streams) and both keep neighbouring corpora neighbours: each person goes
to the holdout independently, and bounding picks a person's records among their own. The outcome is kept in the
fit's owner-only work folder, so a resumed fit trains on the same records (and the audit compares with the same
holdout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privsynth.data.corpus import Corpus
from privsynth.errors import ConfigError
from privsynth.generators.dpsgd import Groups, unit_groups
from privsynth.privacy.contribution import bound_contributions
from privsynth.privacy.randomness import Streams
from privsynth.workdir import FitWork


@dataclass(frozen=True)
class HoldoutSplit:
    """Record keys (internal: real keys) kept out for audits, and those the generators were trained on.

    ``train`` lists the records DP-SGD saw: after contribution bounding, so a person's records that bounding
    dropped are in neither list (they are not clean non-members either).
    """

    train: tuple[str, ...]
    holdout: tuple[str, ...]


@dataclass(frozen=True)
class TrainingSet:
    """The bounded training records, the split recorded for the audit, and the units of privacy (all private)."""

    train: Corpus
    split: HoldoutSplit
    groups: Groups


def split_holdout(corpus: Corpus, *, fraction: float, rng: np.random.Generator) -> tuple[Corpus, Corpus, HoldoutSplit]:
    """Put each unit of privacy (a person, or a record) in the holdout independently with probability ``fraction``.

    Independent (Poisson) assignment keeps neighbouring corpora neighbours: removing one person changes no one
    else's side, which a fixed-size ``floor(fraction * n)`` split would not guarantee.
    """
    schema = corpus.schema
    records = corpus.records
    units = records[schema.entity] if schema.entity is not None else records[schema.key]
    unique = units.drop_duplicates().to_numpy()
    held_units = set(unique[rng.random(len(unique)) < fraction].tolist()) if fraction > 0 else set()
    held = units.isin(held_units).to_numpy()
    train, holdout = corpus.with_records(records[~held]), corpus.with_records(records[held])
    keys = HoldoutSplit(
        train=tuple(str(k) for k in train.records[schema.key]),
        holdout=tuple(str(k) for k in holdout.records[schema.key]),
    )
    return train, holdout, keys


def training_set(corpus: Corpus, *, fraction: float, streams: Streams, work: FitWork) -> TrainingSet:
    """Split and bound once per run: drawn from ``streams``, or read back from the work folder when resuming."""
    saved = work.load("split.json")
    if saved is not None:
        bounded = _by_keys(corpus, saved["train"])
        return TrainingSet(bounded, HoldoutSplit(tuple(saved["train"]), tuple(saved["holdout"])), unit_groups(bounded))
    train, _, split = split_holdout(corpus, fraction=fraction, rng=streams.numpy("split", "*", "holdout"))
    bounded = train.with_records(
        bound_contributions(train.records, corpus.schema, rng=streams.numpy("bounding", "*", "choice"))
    )
    used = HoldoutSplit(train=tuple(str(k) for k in bounded.records[corpus.schema.key]), holdout=split.holdout)
    work.save("split.json", {"train": list(used.train), "holdout": list(used.holdout)})
    result = TrainingSet(bounded, used, unit_groups(bounded))
    if result.groups.count < 2:
        raise ConfigError("fewer than 2 people/records left for training; lower --holdout-fraction or add data")
    return result


def _by_keys(corpus: Corpus, keys: list[str]) -> Corpus:
    wanted = set(keys)
    mask = corpus.records[corpus.schema.key].astype(str).isin(wanted).to_numpy()
    if int(mask.sum()) != len(wanted):
        raise ConfigError("the corpus no longer holds every record its work folder names; delete the work folder")
    return corpus.with_records(corpus.records[mask])


__all__ = ["HoldoutSplit", "TrainingSet", "split_holdout", "training_set"]
