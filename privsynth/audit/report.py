"""A self-contained HTML report of ``audit.json``: verdict, checks, plots (inline SVG), tables, limitations.

No scripts and no network: the page renders offline. Real values appear only when the audit was run with
``--include-examples``, and then the page carries an INTERNAL banner and is written owner-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape


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


def render_report(result: dict[str, Any]) -> str:
    """The HTML page for an audit result."""
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
            tvd_rows.append((f"{k}-way real unseen", v["holdout_floor"] or 0.0, None, None))
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
    checks = result.get("checks", [])
    template = env.get_template("report.html.j2")
    return template.render(
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


def write_report(result: dict[str, Any], folder: Path) -> Path:
    """Write ``report.html`` beside ``audit.json`` (owner-only when INTERNAL)."""
    path = folder / "report.html"
    path.write_text(render_report(result), encoding="utf-8")
    if result.get("internal"):
        path.chmod(0o600)
    return path
