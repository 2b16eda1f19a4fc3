"""A self-contained HTML report of ``audit.json``: verdict, checks, plots (inline SVG), tables, limitations.

No scripts and no network: the page renders offline. Real values appear only when the audit was run with
``--include-examples``, and then the page carries an INTERNAL banner and is written owner-only.

One verdict: a report written by ``privsynth audit`` makes no release decision (its banner is neutral and says
how the checks stand against the reference thresholds); once the gate has judged the audit (``privsynth gate``,
``privsynth run``), the report is written again with the decision under the policy actually applied, its
thresholds, hard and soft checks, and privacy and utility checks kept apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from privsynth.audit.checks import BY_NAME, check_kind, passes


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
    width, left, bar_h = 720, 220, 18
    height = 30 + bar_h * 1.6 * len(rows)
    scale = (width - left - 20) / max(maximum, 1e-9)
    parts = [
        f'<svg role="img" aria-label="{title}" width="{width}" height="{height:.0f}" '
        f'xmlns="http://www.w3.org/2000/svg"><text x="0" y="14" font-weight="700">{title}</text>'
    ]
    for i, (label, value, low, high) in enumerate(rows):
        y = 26 + i * bar_h * 1.6
        parts.append(f'<text x="0" y="{y + 13:.0f}">{label[:32]}</text>')
        parts.append(
            f'<rect x="{left}" y="{y:.0f}" width="{max(value, 0) * scale:.1f}" height="{bar_h}" fill="#4a78c2"/>'
        )
        if low is not None and high is not None:
            parts.append(
                f'<line x1="{left + low * scale:.1f}" x2="{left + high * scale:.1f}" y1="{y + bar_h / 2:.0f}" '
                f'y2="{y + bar_h / 2:.0f}" stroke="#1d1d1f" stroke-width="2"/>'
            )
        parts.append(f'<text x="{left + max(value, 0) * scale + 6:.0f}" y="{y + 13:.0f}">{value:.3f}</text>')
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
            title="Mean k-way marginal TVD vs the real-unseen floor",
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
        tvd_chart=tvd_chart,
        fmt=_fmt,
        pct=_pct,
    )


def write_report(result: dict[str, Any], folder: Path, decision: dict[str, Any] | None = None) -> Path:
    """Write ``report.html`` beside ``audit.json`` (owner-only when INTERNAL), with the gate's decision if made."""
    path = folder / "report.html"
    path.write_text(render_report(result, decision), encoding="utf-8")
    if result.get("internal"):
        path.chmod(0o600)
    return path
