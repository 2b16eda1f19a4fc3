"""What a fit will do, before it runs: each stage's noise and each column's likely outcome, with the fix.

Built by :meth:`privsynth.synthesizer.Synthesizer.plan` from public inputs only (the schema, the config, the
budget and the data team's own estimate of the number of people): it reads no record and spends nothing.

The verdicts are rules of thumb, stated with their numbers so a reader can judge them:

- a category without a declared domain is published only if its noisy count clears the DP threshold (Gaussian
  thresholding); when that threshold is above a fifth of the people, at most four equal categories can survive
  and the rest collapse into ``__other__``;
- a range learned under DP (no declared bounds) comes from a coarse public grid (about 290 geometric bins from
  1e-6 to 1e12, either sign; months from 1900 to 2100 for dates), read by windows of 1, 2, 4... bins
  (:mod:`privsynth.profile.ranges`); when single bins need more than a tenth of the people, the range is seen
  only in wider windows (a decade, 8 months) as long as such a window holds half the people, and is a guess
  otherwise;
- a declared domain's category shares are off by about ``noise / (people / categories)``;
- a DP-SGD stage's averaged gradient carries noise ``sigma / expected batch`` times the clip norm per step; above
  0.1 training learns mostly noise, and under 50 steps a generator barely moves from its start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from privsynth.data.schema import ColumnKind, Schema
from privsynth.privacy.contribution import sensitivity
from privsynth.privacy.ledger import Stage
from privsynth.privacy.noise import sparse_threshold
from privsynth.profile.grids import magnitude_edges, month_edges
from privsynth.profile.profiler import fine_bin_count, plan_queries
from privsynth.profile.ranges import window_threshold
from privsynth.profile.spikes import whole_number_grid

if TYPE_CHECKING:
    from privsynth.config import FitConfig
    from privsynth.privacy.planner import BudgetPlan

OK, WARN, COLLAPSE = "ok", "degraded", "collapses"
#: Thresholds of the verdicts (see the module doc).
COLLAPSE_SHARE = 0.2
RANGE_SHARE = 0.1
#: Windows of COARSE_WIDTH grid bins (see privsynth.profile.ranges) holding COARSE_SHARE of the people are seen.
COARSE_WIDTH = 8
COARSE_SHARE = 0.5
GRADIENT_NOISE_POOR = 0.1
GRADIENT_NOISE_FAIR = 0.03
MIN_STEPS = 50


@dataclass(frozen=True)
class ColumnForecast:
    """One column's expected outcome under the profile's noise."""

    column: str
    kind: str
    metadata: str  # "declared" (public, exact) or "DP" (learned under noise)
    expectation: str
    verdict: str
    fix: str = ""


@dataclass(frozen=True)
class StageForecast:
    """One stage's share of the budget and what its noise means."""

    stage: str
    share: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    expectation: str
    verdict: str
    fix: str = ""


@dataclass
class FitForecast:
    """The whole forecast: what was assumed, every stage, every column."""

    epsilon: float
    delta: float
    people: int
    records_per_person: int
    stages: list[StageForecast] = field(default_factory=list)
    columns: list[ColumnForecast] = field(default_factory=list)

    @property
    def problems(self) -> list[ColumnForecast | StageForecast]:
        """Every stage and column not expected to be fine."""
        items: list[ColumnForecast | StageForecast] = [*self.stages, *self.columns]
        return [x for x in items if x.verdict != OK]

    def __str__(self) -> str:
        lines = [
            f"Plan for about {self.people} people at epsilon {self.epsilon:g}, delta {self.delta:.3g} "
            "(nothing read, nothing spent):"
        ]
        for stage in self.stages:
            lines.append(f"  stage {stage.stage:<10} {stage.verdict:<10} {stage.expectation}")
        for column in self.columns:
            lines.append(f"  column {column.column:<9} {column.verdict:<10} {column.expectation}")
        for item in self.problems:
            name = getattr(item, "column", None) or getattr(item, "stage", "")
            lines.append(f"  to do: {name}: {item.fix}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "people": self.people,
            "records_per_person": self.records_per_person,
            "stages": [vars(s) for s in self.stages],
            "columns": [vars(c) for c in self.columns],
        }


def forecast(schema: Schema, config: FitConfig, budget: BudgetPlan, *, people: int) -> FitForecast:
    """The forecast of a fit calibrated as ``budget`` for about ``people`` units of privacy."""
    m = sensitivity(schema)
    result = FitForecast(budget.target_epsilon, budget.delta, people, m)
    stages = {s.stage: s for s in budget.stages}
    for planned in budget.stages:
        result.stages.append(_stage(planned, people, stages))
    if Stage.PROFILE in stages:
        std = stages[Stage.PROFILE].mechanism.noise_multiplier * m
        queries = plan_queries(schema)
        per_column_delta = (
            queries.extra_delta(budget.delta, config.profile) / len(queries.sparse_columns)
            if queries.sparse_columns
            else 0.0
        )
        for name, spec in schema.columns.items():
            column = _column(name, spec, std, people, m, per_column_delta, config)
            if column is not None:
                result.columns.append(column)
    return result


def _stage(planned: Any, people: int, stages: dict[str, Any]) -> StageForecast:
    mechanism = planned.mechanism
    sigma, rate, steps = mechanism.noise_multiplier, mechanism.sample_rate, mechanism.steps
    common = {"stage": planned.stage, "share": planned.share, "noise_multiplier": sigma, "sample_rate": rate}
    if planned.stage == Stage.PROFILE:
        return StageForecast(
            **common,
            steps=steps,
            expectation=f"{steps} Gaussian histogram queries, noise std {sigma:.3g} x records per person",
            verdict=OK,
        )
    batch = max(rate * people, 1.0)
    ratio = sigma / batch
    # every person is already in every step at rate 1: a larger batch is not a fix there
    larger = "" if rate >= 1.0 else "optim.batch_size (or optim.max_sample_rate, the cap on the share per step)"
    text = f"{steps} DP-SGD steps, expected batch {batch:.0f}, gradient noise {ratio:.3f} x clip norm per step"
    if ratio > GRADIENT_NOISE_POOR:
        return StageForecast(
            **common,
            steps=steps,
            expectation=text + ": mostly noise",
            verdict=COLLAPSE,
            fix="raise epsilon, " + (f"raise this stage's {larger}, " if larger else "") + "or give it a larger share "
            "of the budget",
        )
    if steps < MIN_STEPS or ratio > GRADIENT_NOISE_FAIR:
        return StageForecast(
            **common,
            steps=steps,
            expectation=text + (": few steps" if steps < MIN_STEPS else ": noisy"),
            verdict=WARN,
            fix="raise epsilon or optim.epochs"
            if steps < MIN_STEPS
            else "raise epsilon" + (f" or {larger}" if larger else ", or give it a larger share of the budget"),
        )
    return StageForecast(**common, steps=steps, expectation=text, verdict=OK)


def _column(
    name: str, spec: Any, std: float, people: int, m: int, delta: float, config: FitConfig
) -> ColumnForecast | None:
    kind = spec.kind
    if kind in (ColumnKind.KEY, ColumnKind.IDENTIFIER):
        return None
    if kind is ColumnKind.CATEGORICAL:
        if spec.domain is not None:
            share = std / max(people / len(spec.domain), 1.0)
            verdict = OK if share < 0.1 else WARN
            return ColumnForecast(
                name,
                kind.value,
                "declared",
                f"{len(spec.domain)} declared categories; shares off by about {share:.0%} of an average category",
                verdict,
                "" if verdict == OK else "raise epsilon, or merge rare categories in the codebook",
            )
        threshold = sparse_threshold(noise_std=std, max_contribution=m, delta=delta) if delta > 0 else 0.0
        verdict = COLLAPSE if threshold > COLLAPSE_SHARE * people else WARN if threshold > 0.05 * people else OK
        return ColumnForecast(
            name,
            kind.value,
            "DP",
            f"categories held by fewer than ~{threshold:.0f} people are merged into __other__",
            verdict,
            "" if verdict == OK else "declare its domain in schema.yaml (from a public codebook), or raise epsilon",
        )
    if kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
        declared = spec.bounds is not None if kind is ColumnKind.NUMERICAL else spec.date_range is not None
        if not declared:
            grid = len(month_edges() if kind is ColumnKind.DATETIME else magnitude_edges()) - 1
            fine = window_threshold(std=std, bins=grid, width=1)
            coarse = window_threshold(std=std, bins=grid, width=COARSE_WIDTH)
            what = "date range" if kind is ColumnKind.DATETIME else "bounds"
            if fine <= RANGE_SHARE * people:
                verdict, seen = WARN, f"a grid bin needs ~{fine:.0f} people to be seen"
            elif coarse <= COARSE_SHARE * people:
                verdict = WARN
                seen = (
                    f"single grid bins need ~{fine:.0f} people, so the {what} will likely be seen only in windows "
                    f"of up to {COARSE_WIDTH} bins (~{coarse:.0f} people): up to "
                    f"{'8 months' if kind is ColumnKind.DATETIME else 'a decade'} too wide"
                )
            else:
                verdict = COLLAPSE
                seen = (
                    f"even {COARSE_WIDTH} grid bins together need ~{coarse:.0f} people: the {what} may not be seen "
                    "at all, and then the column is left out of samples"
                )
            return ColumnForecast(
                name,
                kind.value,
                "DP",
                f"{what} learned from a coarse public grid; {seen}",
                verdict,
                f"declare {'date_range' if kind is ColumnKind.DATETIME else 'bounds'} in schema.yaml from a public "
                "codebook" + ("" if verdict == WARN else ", or raise epsilon"),
            )
        bins = fine_bin_count(people, std, config.profile.fine_bins)  # as the profile sizes it: from the people
        verdict = OK if bins > 8 else WARN
        values = None
        if kind is ColumnKind.NUMERICAL and spec.integer and spec.bounds is not None and config.profile.whole_numbers:
            values = whole_number_grid(*spec.bounds, coarse_bins=bins, cap=config.profile.fine_bins)
        shape = (
            f"histogram of {bins} bins"
            if values is None
            else f"one count per whole number ({values}), read in windows of {-(-values // bins)} (spikes kept)"
        )
        return ColumnForecast(
            name,
            kind.value,
            "declared",
            f"declared range, {shape}",
            verdict,
            "" if verdict == OK else "raise epsilon (the noise allows only the coarsest histogram)",
        )
    error = std / max(people, 1)  # booleans, texts, images: a share or a missing rate, off by about this much
    what = {
        ColumnKind.BOOLEAN: "share of true",
        ColumnKind.TEXT: "length and missing-rate histogram",
    }.get(kind, "missing rate")
    learned = "" if kind is ColumnKind.BOOLEAN else "; content learned by DP-SGD (see its stage)"
    verdict = OK if error < 0.05 else WARN
    return ColumnForecast(
        name,
        kind.value,
        "DP",
        f"{what} off by about {error:.1%} of the records{learned}",
        verdict,
        "" if verdict == OK else "raise epsilon",
    )


__all__ = ["FitForecast", "forecast"]
