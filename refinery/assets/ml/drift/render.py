"""The drift report as a person reads it: a markdown summary of the drifted features, text bars
and an SVG chart of the reference vs current distributions (embedded as a data URI, so the
Dagster UI shows it in the materialization's metadata). Reads the report dict
(`drift.report.build_drift_report`); computes nothing.
"""

from __future__ import annotations

import base64
from typing import Any


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _bar(share: float, width: int = 10) -> str:
    eighths = round(max(0.0, min(share, 1.0)) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[rest - 1] if rest else "")


def markdown_summary(report: dict[str, Any], top: int = 10) -> str:
    """A Markdown table of the worst features, plus reference-vs-current bars for the top few."""
    lines = [
        (
            f"**Verdict: {report['verdict']}** — {report['n_drifted']} of {report['n_features']} "
            f"features drifted (share {report['drift_share']:.2f})"
        ),
        "",
    ]
    lines += [f"- {reason}" for reason in report.get("reasons", [])]
    if not report["features"]:
        return "\n".join(lines)
    lines += [
        "",
        "| feature | kind | drifted | PSI | JS | W1/σ | KS | missing ref → cur | why |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report["features"][:top]:
        lines.append(
            f"| {f['feature']} | {f['kind']} | {'**yes**' if f['drifted'] else 'no'} "
            f"| {_fmt(f['psi'])} | {_fmt(f['jensen_shannon'])} | {_fmt(f['wasserstein_norm'])} "
            f"| {_fmt(f['ks_statistic'])} | {_fmt(f['missing_rate_reference'])} → "
            f"{_fmt(f['missing_rate_current'])} | {'; '.join(f['reasons']) or '–'} |"
        )
    return "\n".join(lines)


def distribution_bars_markdown(report: dict[str, Any], top: int = 3) -> str:
    """Reference vs current shares per bin as unicode bars: readable even where images are not."""
    blocks = []
    for f in report["features"][:top]:
        if not f["bin_labels"]:
            continue
        scale = max([*f["frequencies_reference"], *f["frequencies_current"], 1e-9])
        blocks += [f"**{f['feature']}**", "", "| bin | reference | current |", "|---|---|---|"]
        for label, ref, cur in zip(
            f["bin_labels"], f["frequencies_reference"], f["frequencies_current"], strict=False
        ):
            blocks.append(
                f"| {label} | `{_bar(ref / scale):<10}` {ref:.3f} "
                f"| `{_bar(cur / scale):<10}` {cur:.3f} |"
            )
        blocks.append("")
    return "\n".join(blocks)


def _escape_xml(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def distribution_chart_svg(report: dict[str, Any], top: int = 3) -> str:
    """Grouped bar chart (reference grey, current orange) of the worst `top` features, as SVG."""
    panels = [f for f in report["features"][:top] if f["bin_labels"]]
    panel_w, panel_h, pad = 320, 170, 30
    width = max(1, len(panels)) * (panel_w + pad) + pad
    height = panel_h + 80
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="11">'
        ),
        f'<rect width="{width}" height="{height}" fill="white"/>',
        (
            f'<rect x="{pad}" y="8" width="10" height="10" fill="#9e9e9e"/>'
            f'<text x="{pad + 14}" y="17">reference</text>'
            f'<rect x="{pad + 90}" y="8" width="10" height="10" fill="#ef6c00"/>'
            f'<text x="{pad + 104}" y="17">current</text>'
        ),
    ]
    for index, f in enumerate(panels):
        x0 = pad + index * (panel_w + pad)
        y0 = 40
        top_value = max([*f["frequencies_reference"], *f["frequencies_current"], 1e-9])
        n_bins = len(f["bin_labels"])
        slot = panel_w / n_bins
        bar_w = max(slot / 2 - 1, 1)
        title = f"{f['feature']} ({'drift' if f['drifted'] else 'ok'})"
        parts.append(f'<text x="{x0}" y="{y0 - 6}" font-weight="bold">{_escape_xml(title)}</text>')
        parts.append(
            f'<line x1="{x0}" y1="{y0 + panel_h}" x2="{x0 + panel_w}" y2="{y0 + panel_h}" '
            'stroke="#444"/>'
        )
        for b, (label, ref, cur) in enumerate(
            zip(f["bin_labels"], f["frequencies_reference"], f["frequencies_current"], strict=False)
        ):
            for offset, value, colour in ((0, ref, "#9e9e9e"), (bar_w, cur, "#ef6c00")):
                h = panel_h * value / top_value
                parts.append(
                    f'<rect x="{x0 + b * slot + offset:.1f}" y="{y0 + panel_h - h:.1f}" '
                    f'width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}">'
                    f"<title>{_escape_xml(label)}: {value:.3f}</title></rect>"
                )
            if n_bins <= 12:
                parts.append(
                    f'<text x="{x0 + b * slot + slot / 2:.1f}" y="{y0 + panel_h + 12}" '
                    f'font-size="8" text-anchor="middle">{_escape_xml(label[:10])}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)


def svg_markdown_image(svg: str, alt: str = "reference vs current") -> str:
    """Markdown image, SVG as a data: URI (the Dagster UI's Markdown allows data: image sources)."""
    encoded = base64.b64encode(svg.encode()).decode()
    return f"![{alt}](data:image/svg+xml;base64,{encoded})"
