"""What the audit report draws: per-column distributions, pairwise associations, validity, synthetic examples.

Computed once by the audit and kept in ``audit.json`` under ``figures`` (never in a release's
``audit-summary.json``). The real side is aggregate (shares per train-quantile bin or top category, Cramér's V
between binned columns, shares of values outside a range), computed on real records outside the DP guarantee like
every audit number: the report is for the people who decide the release, not part of it. No real value appears:
bins are labelled by rank (a quantile of a small cohort can be one person's value), categories by name only when
their domain is declared public. The examples (images, texts) are synthetic only.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

from privsynth.audit.discretize import Discretizer, _numbers
from privsynth.data.corpus import Corpus
from privsynth.data.images import load_image
from privsynth.data.schema import ColumnKind, ColumnSpec

#: Most columns in the association heatmaps (the first ones of the schema).
MAX_HEATMAP_COLUMNS = 14
#: Synthetic images per class and classes shown; synthetic texts shown per text column.
IMAGES_PER_CLASS, MAX_CLASSES, TEXTS_SHOWN = 6, 8, 4


def _labels(disc: Discretizer, name: str, spec: ColumnSpec) -> list[str]:
    """Bin labels that carry no real value: quantile ranks, and category names only from a declared domain.

    The bins themselves are the real training records' quantiles and most frequent categories; in a small cohort
    a quantile can be one person's exact value and a frequent-enough category one person's, so neither is shown.
    """
    kind = disc.kinds_[name]
    if kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
        bins = len(disc.edges_[name]) + 1
        return [f"quantile bin {i + 1}/{bins}" for i in range(bins)] + ["missing"]
    if kind is ColumnKind.CATEGORICAL:
        declared = set(spec.domain or ())
        levels = [v if v in declared else f"category #{i + 1}" for i, v in enumerate(disc.levels_[name])]
        return [*levels, "other", "missing"]
    return ["false", "true", "missing"]


def _shares(codes: np.ndarray, size: int) -> list[float]:
    return (np.bincount(codes, minlength=size)[:size] / max(len(codes), 1)).tolist()


def cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Cramér's V of two code vectors (0: independent, 1: one determines the other).

    >>> round(cramers_v(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])), 3)
    1.0
    """
    table = pd.crosstab(a, b).to_numpy(dtype=float)
    if table.shape[0] < 2 or table.shape[1] < 2:
        return 0.0
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / np.where(expected > 0, expected, 1)).sum())
    return float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))


def _validity(train: Corpus, synthetic: Corpus) -> list[dict[str, Any]]:
    """Per column: missing rates, and synthetic values outside the declared range or the real range."""
    rows = []
    for name, spec in train.schema.columns.items():
        if name not in synthetic.records.columns or spec.kind in (ColumnKind.KEY, ColumnKind.IDENTIFIER):
            continue
        real, syn = train.records[name], synthetic.records[name]
        row: dict[str, Any] = {
            "column": name,
            "kind": spec.kind.value,
            "missing_real": float(real.isna().mean()),
            "missing_synthetic": float(syn.isna().mean()),
        }
        if spec.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
            r, s = _numbers(real, spec.kind), _numbers(syn, spec.kind)
            r, s = r[~np.isnan(r)], s[~np.isnan(s)]
            if r.size and s.size:
                row["outside_real_range"] = float(((s < r.min()) | (s > r.max())).mean())
            declared = spec.bounds if spec.kind is ColumnKind.NUMERICAL else spec.date_range
            if declared is not None and s.size:
                low, high = (float(_numbers(pd.Series([v]), spec.kind)[0]) for v in declared)
                row["outside_declared"] = float(
                    ((s < low) | (s > high + (1 if spec.kind is ColumnKind.DATETIME else 0))).mean()
                )
        elif spec.kind is ColumnKind.CATEGORICAL and spec.domain is not None:
            present = syn.dropna().astype(str)
            row["outside_declared"] = (
                float((~present.isin([*spec.domain, "__other__"])).mean()) if len(present) else 0.0
            )
        rows.append(row)
    return rows


def _thumbnail(synthetic: Corpus, value: Any) -> str:
    image = load_image(synthetic.root, value)
    image.thumbnail((64, 64))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _examples(synthetic: Corpus, target: str | None, seed: int) -> dict[str, Any]:
    """A few synthetic images per class of ``target`` and a few synthetic texts (synthetic only)."""
    rng = np.random.default_rng(seed)
    records = synthetic.records
    images: dict[str, list[dict[str, Any]]] = {}
    for column in synthetic.schema.names(ColumnKind.IMAGE):
        if column not in records.columns:
            continue
        present = records[records[column].notna()]
        groups = present.groupby(present[target].astype(str)) if target in present.columns else [("all", present)]
        shown = []
        for label, group in list(groups)[:MAX_CLASSES]:
            picked = group.iloc[rng.permutation(len(group))[:IMAGES_PER_CLASS]]
            shown.append({"label": str(label), "images": [_thumbnail(synthetic, v) for v in picked[column]]})
        images[column] = shown
    texts = {}
    for column in synthetic.schema.names(ColumnKind.TEXT):
        if column in records.columns:
            present = records[column].dropna().astype(str)
            texts[column] = [t[:400] for t in present.iloc[rng.permutation(len(present))[:TEXTS_SHOWN]]]
    return {"images": images, "texts": texts, "image_classes": target}


def figure_data(train: Corpus, synthetic: Corpus, *, target: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Everything the report draws besides the checks (see the module docstring)."""
    disc = Discretizer().fit(train.records, train.schema)
    columns = [c for c in disc.columns if c in synthetic.records.columns]
    real_codes, syn_codes = disc.transform(train.records), disc.transform(synthetic.records)
    distributions = [
        {
            "column": name,
            "labels": _labels(disc, name, train.schema.columns[name]),
            "real": _shares(real_codes[name].to_numpy(), disc.cardinality(name)),
            "synthetic": _shares(syn_codes[name].to_numpy(), disc.cardinality(name)),
        }
        for name in columns
    ]
    shown = columns[:MAX_HEATMAP_COLUMNS]

    def matrix(codes: pd.DataFrame) -> list[list[float]]:
        return [[1.0 if a == b else cramers_v(codes[a].to_numpy(), codes[b].to_numpy()) for b in shown] for a in shown]

    return {
        "distributions": distributions,
        "associations": {"columns": shown, "real": matrix(real_codes), "synthetic": matrix(syn_codes)},
        "validity": _validity(train, synthetic),
        "examples": _examples(synthetic, target, seed),
    }


__all__ = ["cramers_v", "figure_data"]
