"""Verdicts (analysis/claims.py) as Markdown, CSV or an HTML <table> fragment (for the report page).

Works on any objects with Verdict's fields; it imports nothing from claims.py, which re-exports
``render_verdicts``.
"""

from __future__ import annotations

import csv
import html
import io
import math

VERDICT_FORMATS = ("md", "csv", "html")
CSV_COLUMNS = ["claim", "family", "table", "section", "x", "y", "direction", "margin", "measure", "scope", "status",
               "p_improvement", "p_low", "p_high", "difference", "diff_low", "diff_high", "datasets", "seeds_x",
               "seeds_y", "note", "quote"]


def status_class(status: str) -> str:
    """'held' -> 'verdict-held', 'paper only: no per-seed data' -> 'verdict-paper-only'."""
    return "verdict-" + status.split(":")[0].strip().replace(" ", "-")


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if value == value and not math.isinf(value) else ""


def _estimate(est, digits: int) -> str:
    """'0.82 [0.71, 0.90]', '5.9' without an interval, '–' without a value."""
    if not est.value == est.value:
        return "–"
    if est.low == est.low and est.high == est.high:
        return f"{est.value:.{digits}f} [{est.low:.{digits}f}, {est.high:.{digits}f}]"
    return f"{est.value:.{digits}f}"


def _scope(claim) -> str:
    return ", ".join(claim.scope) if claim.scope else "average"


def _datasets(verdict) -> str:
    return str(len(verdict.datasets)) if len(verdict.datasets) != 1 else verdict.datasets[0]


def _seeds(verdict) -> str:
    return f"{verdict.seeds[0]} / {verdict.seeds[1]}" if any(verdict.seeds) else "–"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(verdicts) -> str:
    header = ["claim", "table", "section", "statement", "status", "P(X > Y) [95 % CI]", "X − Y [95 % CI]",
              "datasets", "seeds X / Y", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in verdicts:
        c = v.claim
        row = [c.id, str(c.table), c.section, c.statement, f"**{v.status}**", _estimate(v.p_improvement, 2),
               _estimate(v.difference, 1), _datasets(v), _seeds(v), v.note]
        lines.append("| " + " | ".join(_md_cell(x) for x in row) + " |")
    return "\n".join(lines) + "\n"


def render_csv(verdicts) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for v in verdicts:
        c, p, d = v.claim, v.p_improvement, v.difference
        writer.writerow([c.id, c.family, c.table, c.section, c.x, c.y, c.direction, f"{c.margin:g}", c.measure,
                         ";".join(c.scope) if c.scope else "average", v.status,
                         _number(p.value, 4), _number(p.low, 4), _number(p.high, 4),
                         _number(d.value, 3), _number(d.low, 3), _number(d.high, 3),
                         ";".join(v.datasets), v.seeds[0], v.seeds[1], v.note, c.quote])
    return out.getvalue()


def render_html(verdicts) -> str:
    """A <table class="verdicts"> fragment: one row per claim, class verdict-held / verdict-not-held /
    verdict-inconclusive / verdict-not-run / verdict-paper-only; every text escaped."""
    e = html.escape
    header = ["claim", "table", "section", "statement", "status", "P(X &gt; Y) [95 % CI]", "X − Y [95 % CI]",
              "datasets", "seeds X / Y", "note"]
    rows = ['<table class="verdicts">', "<thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead>",
            "<tbody>"]
    for v in verdicts:
        c = v.claim
        cls = status_class(v.status)
        cells = [f'<td title="{e(c.quote)}">{e(c.id)}</td>', f"<td>{c.table}</td>", f"<td>{e(c.section)}</td>",
                 f"<td>{e(c.statement)}</td>", f'<td class="status">{e(v.status)}</td>',
                 f"<td>{e(_estimate(v.p_improvement, 2))}</td>", f"<td>{e(_estimate(v.difference, 1))}</td>",
                 f'<td title="{e(", ".join(v.datasets))}">{e(_datasets(v))}</td>', f"<td>{e(_seeds(v))}</td>",
                 f"<td>{e(v.note)}</td>"]
        rows.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    rows += ["</tbody>", "</table>"]
    return "\n".join(rows) + "\n"


RENDERERS = {"md": render_markdown, "csv": render_csv, "html": render_html}


def render_verdicts(verdicts, fmt: str = "md") -> str:
    if fmt not in RENDERERS:
        raise ValueError(f"format: expected one of {', '.join(VERDICT_FORMATS)}, got {fmt!r}")
    return RENDERERS[fmt](verdicts)
