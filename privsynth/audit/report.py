"""A self-contained HTML report of ``audit.json``: verdict, checks, plots (inline SVG), tables, limitations.

No scripts and no network: the page renders offline. Real values appear only when the audit was run with
``--include-examples``, and then the page carries an INTERNAL banner and is written owner-only.

One verdict: a report written by ``privsynth audit`` makes no release decision (its banner is neutral and says
how the checks stand against the reference thresholds); once the gate has judged the audit (``privsynth gate``,
``privsynth run``), the report is written again with the decision under the policy actually applied, its
thresholds, hard and soft checks, and privacy and utility checks kept apart.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from privsynth.audit.checks import BY_NAME, check_kind, passes
from privsynth.data.atomic import shared_mode, write_text_atomic


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f} %"


def _bars(
    rows: list[tuple[str, float, float | None, float | None]], *, title: str, reference: float | None, maximum: float
) -> str:
    """Horizontal bars with optional intervals and a reference line, as inline SVG."""
    width, left, bar_h, value_col = 760, 220, 18, 60
    height = 30 + bar_h * 1.6 * len(rows)
    scale = (width - left - value_col - 10) / max(maximum, 1e-9)
    parts = [
        f'<svg role="img" aria-label="{title}" width="{width}" height="{height:.0f}" '
        f'xmlns="http://www.w3.org/2000/svg"><text x="0" y="14" font-weight="700">{title}</text>'
    ]
    for i, (label, value, low, high) in enumerate(rows):
        y = 26 + i * bar_h * 1.6
        parts.append(f'<text x="0" y="{y + 13:.0f}">{label[:32]}</text>')
        colour = "#9a9a9a" if "real" in label else "#4a78c2"  # real baselines grey, synthetic blue (as the figures)
        parts.append(
            f'<rect x="{left}" y="{y:.0f}" width="{max(value, 0) * scale:.1f}" height="{bar_h}" fill="{colour}"/>'
        )
        if low is not None and high is not None:
            parts.append(
                f'<line x1="{left + low * scale:.1f}" x2="{left + high * scale:.1f}" y1="{y + bar_h / 2:.0f}" '
                f'y2="{y + bar_h / 2:.0f}" stroke="#1d1d1f" stroke-width="2"/>'
            )
        parts.append(f'<text x="{width - value_col + 6}" y="{y + 13:.0f}">{value:.3f}</text>')
    if reference is not None:
        x = left + reference * scale
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="20" y2="{height:.0f}" stroke="#b3261e" stroke-dasharray="4 3"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def check_rows(result: dict[str, Any], decision: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The checks to show: under the gate's policy when there is a decision, else at the reference thresholds.

    Each row: name, kind (privacy/utility), value, direction, threshold, severity (hard/soft, or '' without a
    policy), status (ok, fail, n/a, or 'not in policy') and description.
    """
    by_policy = {f["check"]: f for f in (decision or {}).get("evaluated", [])}
    rows = []
    for check in result.get("checks", []):
        name = check["name"]
        row = {**check, "kind": check_kind(name) if name in BY_NAME else "utility", "severity": ""}
        if decision is not None:
            finding = by_policy.get(name)
            if finding is None:
                row.update(threshold=None, status="not in policy")
            else:
                value = finding.get("value")
                ok = value is not None and passes(value, BY_NAME[name].direction, finding["threshold"])
                row.update(
                    threshold=finding["threshold"],
                    severity=finding["severity"],
                    status="n/a" if value is None else "ok" if ok else "fail",
                )
        rows.append(row)
    return rows


REAL, SYNTHETIC = "#9aa0a6", "#4a78c2"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _distribution_svg(figure: dict[str, Any]) -> str:
    """Real (grey) and synthetic (blue) shares per bin of one column, as paired horizontal bars."""
    labels, real, synthetic = figure["labels"], figure["real"], figure["synthetic"]
    keep = [i for i, (r, s) in enumerate(zip(real, synthetic, strict=True)) if r > 0 or s > 0] or [0]
    width, left, row = 360, 130, 14
    height = 26 + row * len(keep)
    top = max(max(real), max(synthetic), 1e-9)
    scale = (width - left - 10) / top
    parts = [
        f'<svg class="column-plot" role="img" aria-label="{_esc(figure["column"])}: real vs synthetic" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="0" y="12" font-weight="700">{_esc(figure["column"])}</text>'
    ]
    for j, i in enumerate(keep):
        y = 20 + j * row
        parts.append(f'<text x="0" y="{y + 10}">{_esc(str(labels[i])[:22])}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{real[i] * scale:.1f}" height="6" fill="{REAL}"/>')
        parts.append(f'<rect x="{left}" y="{y + 6}" width="{synthetic[i] * scale:.1f}" height="6" fill="{SYNTHETIC}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _heatmap_svg(matrix: list[list[float]], columns: list[str], title: str, *, signed: bool = False) -> str:
    """A square heatmap (Cramér's V in [0, 1], or a difference in [-1, 1] when ``signed``)."""
    cell, left, top = 18, 110, 110
    size = len(columns)
    width, height = left + cell * size + 70, top + cell * size + 10  # room for the last rotated label
    parts = [
        f'<svg class="heatmap" role="img" aria-label="{_esc(title)}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><text x="0" y="12" font-weight="700">{_esc(title)}</text>'
    ]
    for i, name in enumerate(columns):
        parts.append(f'<text x="{left - 4}" y="{top + i * cell + 13}" text-anchor="end">{_esc(name[:16])}</text>')
        x = left + i * cell + 12
        parts.append(f'<text x="{x}" y="{top - 4}" transform="rotate(-60 {x} {top - 4})">{_esc(name[:16])}</text>')
        for j in range(size):
            v = float(matrix[i][j])
            if signed:
                shade = int(255 * (1 - min(abs(v), 1.0)))
                color = f"rgb(255,{shade},{shade})" if v > 0 else f"rgb({shade},{shade},255)"
            else:
                shade = int(255 * (1 - min(max(v, 0.0), 1.0)))
                color = f"rgb({shade},{shade},255)"
            parts.append(
                f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell - 1}" height="{cell - 1}" '
                f'fill="{color}"><title>{_esc(name)} / {_esc(columns[j])}: {v:.2f}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _histogram_svg(edges: list[float], synthetic: list[float], holdout: list[float], title: str) -> str:
    """Synthetic (blue) and holdout (grey) shares per bin, as paired columns."""
    width, height, left, bottom = 360, 150, 30, 20
    bins = len(synthetic)
    step = (width - left - 10) / max(bins, 1)
    top = max(max(synthetic, default=0), max(holdout, default=0), 1e-9)
    scale = (height - bottom - 24) / top
    parts = [
        f'<svg class="histogram" role="img" aria-label="{_esc(title)}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><text x="0" y="12" font-weight="700">{_esc(title)}</text>'
    ]
    for k in range(bins):
        x = left + k * step
        for offset, value, color in ((0.0, holdout[k], REAL), (step / 2, synthetic[k], SYNTHETIC)):
            h = value * scale
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{height - bottom - h:.1f}" width="{step / 2 - 1:.1f}" height="{h:.1f}" '
                f'fill="{color}"/>'
            )
    parts.append(f'<text x="{left}" y="{height - 4}">{edges[0]:.3g}</text>')
    parts.append(f'<text x="{width - 10}" y="{height - 4}" text-anchor="end">{edges[-1]:.3g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _figures(result: dict[str, Any], spaces: list[dict[str, Any]]) -> dict[str, Any]:
    """SVG strings and tables for the report's figure sections (empty when the audit has no figures)."""
    figures = result.get("figures") or {}
    out: dict[str, Any] = {
        "distributions": [_distribution_svg(f) for f in figures.get("distributions", [])],
        "heatmaps": [],
        "histograms": [],
        "validity": figures.get("validity", []),
        "examples": figures.get("examples", {}),
    }
    assoc = figures.get("associations")
    if assoc and len(assoc.get("columns", [])) >= 2:
        cols, real, syn = assoc["columns"], assoc["real"], assoc["synthetic"]
        diff = [[s - r for r, s in zip(rr, ss, strict=True)] for rr, ss in zip(real, syn, strict=True)]
        out["heatmaps"] = [
            _heatmap_svg(real, cols, "Real (train): Cramér's V"),
            _heatmap_svg(syn, cols, "Synthetic: Cramér's V"),
            _heatmap_svg(diff, cols, "Synthetic minus real", signed=True),
        ]
    for space in spaces:
        h = space.get("histograms") or {}
        if h.get("dcr_edges"):
            out["histograms"].append(
                _histogram_svg(h["dcr_edges"], h["dcr_synthetic"], h["dcr_holdout"], f"DCR to train: {space['space']}")
            )
        if h.get("nndr_edges"):
            out["histograms"].append(
                _histogram_svg(h["nndr_edges"], h["nndr_synthetic"], h["nndr_holdout"], f"NNDR: {space['space']}")
            )
    return out


def render_report(result: dict[str, Any], decision: dict[str, Any] | None = None) -> str:
    """The HTML page for an audit result, with the gate's ``decision`` (a ``GateDecision`` as JSON) when made."""
    env = Environment(
        loader=PackageLoader("privsynth.audit", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    memo = result.get("memorization", {})
    spaces = []
    for key in ("tabular", "record"):
        if key in memo:
            spaces.append(memo[key])
    for entry in memo.get("text", {}).values():
        spaces.append(entry["embedding"])
    for per in memo.get("image", {}).values():
        spaces.extend(per.values())
    dcr_chart = _bars(
        [(s["space"], s["dcr_share"], s["dcr_low"], s["dcr_high"]) for s in spaces],
        title="DCR share by feature space (dashed: ideal 0.5)",
        reference=0.5,
        maximum=1.0,
    )
    tvd = result.get("fidelity", {}).get("tvd", {})
    tvd_rows: list[tuple[str, float, float | None, float | None]] = []
    for k, v in tvd.items():
        if v.get("synthetic") is not None:
            tvd_rows.append((f"{k}-way synthetic", v["synthetic"], None, None))
            if v.get("holdout_floor") is not None:  # a floor is shown only when it was measured
                tvd_rows.append((f"{k}-way real unseen", v["holdout_floor"], None, None))
    tvd_chart = (
        _bars(
            tvd_rows,
            title="Mean k-way marginal TVD vs the real-unseen floor (grey)",
            reference=None,
            maximum=max([r[1] for r in tvd_rows] + [0.05]),
        )
        if tvd_rows
        else ""
    )
    checks = check_rows(result, decision)
    template = env.get_template("report.html.j2")
    return template.render(
        decision=decision,
        privacy_checks=[c for c in checks if c["kind"] == "privacy"],
        utility_checks=[c for c in checks if c["kind"] == "utility"],
        internal=bool(result.get("internal")),
        created=result.get("created"),
        version=result.get("privsynth_version"),
        unit=result.get("unit_of_privacy"),
        claimed={"epsilon": result.get("claimed", {}).get("epsilon"), "delta": result.get("claimed", {}).get("delta")},
        inputs=result.get("inputs", {}),
        pii=result.get("pii", {}),
        mia=result.get("attacks", {}).get("membership_inference"),
        attacks=result.get("attacks"),
        checks=checks,
        failed=[c for c in checks if c["status"] == "fail"],
        spaces=spaces,
        text_memo=memo.get("text", {}),
        fidelity=result.get("fidelity", {}),
        preflight=result.get("preflight", {}),
        limitations=result.get("limitations", []),
        examples=result.get("examples", []),
        dcr_chart=dcr_chart,
        figures=_figures(result, spaces),
        variation=result.get("variation"),
        tvd_chart=tvd_chart,
        fmt=_fmt,
        pct=_pct,
    )


def write_report(result: dict[str, Any], folder: Path, decision: dict[str, Any] | None = None) -> Path:
    """Write ``report.html`` beside ``audit.json`` (owner-only when INTERNAL), with the gate's decision if made."""
    mode = 0o600 if result.get("internal") else shared_mode()
    return write_text_atomic(folder / "report.html", render_report(result, decision), mode=mode)
