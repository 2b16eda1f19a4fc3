"""Utility metrics on real training data: TSTR, discriminator AUC, cross-modal consistency, SDMetrics scores.

Every model here is trained on real records (train) or on synthetic ones and always *evaluated* on real
records never used in fitting the generator (holdout), so the numbers compare like with like.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline

from privsynth.audit.discretize import TABULAR, _numbers
from privsynth.data.schema import ColumnKind, Schema


def choose_target(schema: Schema, train: pd.DataFrame) -> str | None:
    """The categorical column with the most classes (at most 20), a natural prediction target."""
    best, best_k = None, 1
    for name, spec in schema.columns.items():
        if spec.kind is ColumnKind.CATEGORICAL and name in train.columns:
            k = train[name].nunique()
            if best_k < k <= 20:
                best, best_k = name, k
    return best


class FeatureFrame:
    """Tabular features for sklearn: numbers as floats, categories as train-fitted codes."""

    def __init__(self, train: pd.DataFrame, schema: Schema, exclude: Sequence[str] = ()) -> None:
        self.columns = [
            n for n, c in schema.columns.items() if c.kind in TABULAR and n in train.columns and n not in exclude
        ]
        self.kinds = {n: schema.columns[n].kind for n in self.columns}
        self.levels = {
            n: {v: i for i, v in enumerate(train[n].dropna().astype(str).unique())}
            for n in self.columns
            if self.kinds[n] in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
        }

    @property
    def categorical_mask(self) -> list[bool]:
        """Which features are categorical."""
        return [n in self.levels for n in self.columns]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Feature matrix (missing values as NaN)."""
        parts = []
        for name in self.columns:
            column = frame[name] if name in frame.columns else pd.Series([None] * len(frame))
            if name in self.levels:
                mapping = self.levels[name]
                parts.append(
                    np.array([mapping.get(str(v), np.nan) if pd.notna(v) else np.nan for v in column], dtype=np.float64)
                )
            else:
                parts.append(_numbers(column, self.kinds[name]))
        return np.column_stack(parts) if parts else np.zeros((len(frame), 0))


def _classifier(features: FeatureFrame) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        categorical_features=features.categorical_mask or None, random_state=0, max_iter=150
    )


@dataclass(frozen=True)
class Tstr:
    """Train-on-synthetic test-on-real against train-on-real, for one target column."""

    target: str
    metric: str
    synthetic: float
    real: float

    @property
    def ratio(self) -> float:
        """Synthetic score relative to the real-data score."""
        return self.synthetic / self.real if self.real else 0.0


def _score(model: HistGradientBoostingClassifier, x: np.ndarray, y: np.ndarray) -> tuple[str, float]:
    classes = list(model.classes_)
    if len(classes) == 2:
        positive = model.predict_proba(x)[:, 1]
        if len(set(y)) < 2:
            return "auc", 0.5
        return "auc", float(roc_auc_score(y == classes[1], positive))
    return "accuracy", float((model.predict(x) == y).mean())


def tstr(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, target: str) -> Tstr:
    """Fit on synthetic (and on real train), score on the real holdout: AUC for binary targets, else accuracy."""
    features = FeatureFrame(train, schema, exclude=[target])
    y_real = train[target].astype(str).to_numpy()
    y_syn = synthetic[target].astype(str).to_numpy() if target in synthetic.columns else np.array([])
    y_hold = holdout[target].astype(str).to_numpy()
    x_hold = features.transform(holdout)
    real_model = _classifier(features).fit(features.transform(train), y_real)
    metric, real_score = _score(real_model, x_hold, y_hold)
    if len(set(y_syn)) < 2:
        return Tstr(target=target, metric=metric, synthetic=0.5 if metric == "auc" else 0.0, real=real_score)
    syn_model = _classifier(features).fit(features.transform(synthetic), y_syn)
    _, syn_score = _score(syn_model, x_hold, y_hold)
    return Tstr(target=target, metric=metric, synthetic=syn_score, real=real_score)


def discriminator_auc(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, *, seed: int = 0) -> float:
    """AUC of a classifier telling real from synthetic rows on held-out halves (0.5: indistinguishable)."""
    rng = np.random.default_rng(seed)
    size = min(len(real), len(synthetic))
    real = real.iloc[rng.choice(len(real), size=size, replace=False)]
    synthetic = synthetic.iloc[rng.choice(len(synthetic), size=size, replace=False)]
    features = FeatureFrame(real, schema)
    x = np.vstack([features.transform(real), features.transform(synthetic)])
    y = np.concatenate([np.ones(size), np.zeros(size)])
    order = rng.permutation(len(y))
    half = len(y) // 2
    fit_rows, test_rows = order[:half], order[half:]
    model = _classifier(features).fit(x[fit_rows], y[fit_rows])
    return float(roc_auc_score(y[test_rows], model.predict_proba(x[test_rows])[:, 1]))


@dataclass(frozen=True)
class Consistency:
    """Does a record's text/image agree with its own tabular field as often on synthetic as on real records?"""

    source: str
    target: str
    real_accuracy: float
    synthetic_accuracy: float

    @property
    def ratio(self) -> float:
        """Synthetic agreement relative to real agreement."""
        return self.synthetic_accuracy / self.real_accuracy if self.real_accuracy else 0.0


def text_consistency(
    train_text: Sequence[str],
    train_y: Sequence[str],
    holdout_text: Sequence[str],
    holdout_y: Sequence[str],
    synthetic_text: Sequence[str],
    synthetic_y: Sequence[str],
    *,
    source: str,
    target: str,
) -> Consistency:
    """TF-IDF + logistic regression trained on real notes predicts the field; accuracy on holdout vs synthetic."""
    model = make_pipeline(TfidfVectorizer(min_df=2, ngram_range=(1, 2)), LogisticRegression(max_iter=1000))
    model.fit(list(train_text), list(train_y))
    real = float((model.predict(list(holdout_text)) == np.asarray(holdout_y)).mean())
    syn = float((model.predict(list(synthetic_text)) == np.asarray(synthetic_y)).mean()) if len(synthetic_y) else 0.0
    return Consistency(source=source, target=target, real_accuracy=real, synthetic_accuracy=syn)


def vector_consistency(
    train_x: np.ndarray,
    train_y: Sequence[str],
    holdout_x: np.ndarray,
    holdout_y: Sequence[str],
    synthetic_x: np.ndarray,
    synthetic_y: Sequence[str],
    *,
    source: str,
    target: str,
) -> Consistency:
    """Logistic regression on image features trained on real records; accuracy on holdout vs synthetic."""
    model = LogisticRegression(max_iter=2000, C=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        model.fit(train_x, list(train_y))
    real = float((model.predict(holdout_x) == np.asarray(holdout_y)).mean())
    syn = float((model.predict(synthetic_x) == np.asarray(synthetic_y)).mean()) if len(synthetic_y) else 0.0
    return Consistency(source=source, target=target, real_accuracy=real, synthetic_accuracy=syn)


def sdmetrics_quality(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, *, rows: int = 3000
) -> dict[str, float] | None:
    """SDMetrics' Column Shapes and Column Pair Trends scores, when the optional ``sdmetrics`` is installed.

    ``Column Pair Trends`` is SDMetrics' property on the pairs its quality report counts, with each pair scored by
    SDMetrics' own metric and numbers and dates cut into 10 bins of the *real* column with open outer bins, as
    SDMetrics' maintainers specify the property (sdv-dev/SDMetrics#368). The quality report of sdmetrics 0.32 cuts
    each table on its own range instead, so a synthetic column a little narrower or wider than the real one shifts
    every bin and reads as lost relations; its figure is kept beside it as ``Column Pair Trends (own bins)``.
    """
    try:
        from sdmetrics.reports import QualityReport
    except ImportError:
        return None
    columns = [n for n, c in schema.columns.items() if c.kind in TABULAR and n in synthetic.columns]
    columns_meta: dict[str, dict[str, str]] = {}
    for name in columns:
        kind = schema.columns[name].kind
        sdtype = {"numerical": "numerical", "datetime": "datetime", "boolean": "boolean"}.get(kind.value, "categorical")
        columns_meta[name] = {"sdtype": sdtype}
    real_s = real[columns].head(rows).copy()
    syn_s = synthetic[columns].head(rows).copy()
    for name in columns:
        if schema.columns[name].kind is ColumnKind.NUMERICAL:
            real_s[name] = real_s[name].astype(float)
            syn_s[name] = syn_s[name].astype(float)
        elif schema.columns[name].kind is ColumnKind.BOOLEAN:
            real_s[name] = real_s[name].astype(object)
            syn_s[name] = syn_s[name].astype(object)
    report = QualityReport()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sdmetrics' own deprecation and pandas notices
            report.generate({"t": real_s}, {"t": syn_s}, {"tables": {"t": {"columns": columns_meta}}}, verbose=False)
            pairs = _pair_trends_on_real_bins(report.get_details("Column Pair Trends"), real_s, syn_s, columns_meta)
    except Exception as exc:  # noqa: BLE001 - an optional third-party score must never break the audit
        return {"error": float("nan"), "failed": 1.0} | {"message_" + type(exc).__name__: 1.0}
    props = {str(r["Property"]): float(r["Score"]) for _, r in report.get_properties().iterrows()}
    out = {"Column Shapes": props["Column Shapes"], "Column Pair Trends": pairs}
    return out | {
        "Column Pair Trends (own bins)": props["Column Pair Trends"],
        "overall": (props["Column Shapes"] + pairs) / 2,  # the report's overall: the mean of its two properties
    }


def _pair_trends_on_real_bins(
    details: pd.DataFrame, real: pd.DataFrame, synthetic: pd.DataFrame, meta: dict[str, dict[str, str]]
) -> float:
    """The mean score of the pairs the quality report counts, contingency pairs re-scored on the real bins."""
    from sdmetrics.column_pairs import ContingencySimilarity

    continuous = {n for n, m in meta.items() if m["sdtype"] in ("numerical", "datetime")}

    def numeric(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        for name in continuous & set(out.columns):
            if meta[name]["sdtype"] == "datetime":
                days = pd.to_datetime(out[name], errors="coerce")
                out[name] = (days - pd.Timestamp("1970-01-01")).dt.total_seconds()
        return out

    real_n, syn_n = numeric(real), numeric(synthetic)
    counted = details
    if "Meets Threshold?" in details.columns:
        counted = details[details["Meets Threshold?"].astype("boolean").fillna(False)]
    scores: list[float] = []
    for _, row in counted.iterrows():
        a, b = str(row["Column 1"]), str(row["Column 2"])
        if row["Metric"] != "ContingencySimilarity":
            scores.append(float(row["Score"]))  # correlations read no bins
            continue
        binned = [c for c in (a, b) if c in continuous]
        scores.append(
            float(
                ContingencySimilarity.compute(
                    real_n[[a, b]], syn_n[[a, b]], continuous_column_names=binned or None, num_discrete_bins=10
                )
            )
        )
    return float(np.mean(scores)) if scores else float("nan")
