"""Rendering a table: Markdown, LaTeX (paper style, booktabs), long CSV or HTML."""

from __future__ import annotations

import html
import io
import math
from typing import TYPE_CHECKING

import pandas as pd

from analysis import measures as M
from analysis.paper import AVERAGE
from synthrl.errors import UserError

if TYPE_CHECKING:
    from analysis.tables import Table

FORMATS = ("md", "latex", "csv", "html")
PARTIAL_MARK = "†"
SIGNIFICANT_MARK = "*"  # a difference whose 95 % CI excludes 0
ROW_HEADER = {"final": "Average Last Four", "best": "Best Score", "updates-to-90": "Number of Updates",
              "compute": "Computation Time"}


def _fmt_value(measure: str, x: float) -> str:
    if x != x:
        return "—"
    if measure == "updates-to-90":
        return f"{x / 1000:.1f}k"
    if measure == "compute":
        if x < 60:
            return f"{x:.1f} s"
        if x < 3600:
            return f"{x / 60:.1f} min"
        hours, minutes = divmod(int(round(x / 60)), 60)
        return f"{hours}h {minutes:02d}m"
    return f"{x:.1f}"


def _fmt_cell(measure: str, mean: float, std: float, pm: str = " ± ") -> str:
    if mean != mean:
        return "—"
    if std != std:
        return _fmt_value(measure, mean)
    return f"{_fmt_value(measure, mean)}{pm}{_fmt_value(measure, std)}"


def _fmt_diff(measure: str, diff: float) -> str:
    if diff != diff:
        return "—"
    sign = "+" if diff >= 0 else "−"
    return sign + _fmt_value(measure, abs(diff))


def _rows(table: Table) -> list[tuple[str, str]]:
    """(key, label) of the body rows: datasets, then the average row."""
    label = "Average over datasets"
    return [(d, d) for d in table.datasets] + [(AVERAGE, label)]


def _has_stats(table: Table, variant: str) -> bool:
    return bool(table.stats) and variant != table.stats_baseline and variant not in table.no_bold


def _header(table: Table) -> list[str]:
    cols = [ROW_HEADER[table.measure]]
    for v in table.variants:
        cols.append(v)
        if table.paper_number is not None:
            cols += [f"{v} (paper)", "Δ"]
        if _has_stats(table, v):
            cols.append(f"{v} − {table.stats_baseline} [95 % CI]")
    return cols


def _fmt_stats(measure: str, stats: dict | None) -> str:
    """'+5.2 [+1.1, +9.3] p=0.012 *'; the average row: the difference and P(X > baseline)."""
    if stats is None:
        return "—"
    d = stats["diff"]
    text = _fmt_diff(measure, d.value)
    if d.low == d.low:
        text += f" [{_fmt_diff(measure, d.low)}, {_fmt_diff(measure, d.high)}]"
    if stats["p_value"] == stats["p_value"]:
        text += f" p={stats['p_value']:.3f}"
    if "improvement" in stats:
        p = stats["improvement"]
        text += f" P(>)={p.value:.2f}" + (f" [{p.low:.2f}, {p.high:.2f}]" if p.low == p.low else "")
    return text + (" " + SIGNIFICANT_MARK if stats["significant"] else "")


def _body(table: Table, pm: str, bold, mark: str, check: tuple[str, str]) -> list[list[str]]:
    out = []
    for key, label in _rows(table):
        bolds = M.bold_mask(table.row_values(key), table.higher_is_better)
        row = [label]
        for v, b in zip(table.variants, bolds):
            c = table.cell(key, v)
            text = _fmt_cell(table.measure, c["mean"], c["std"], pm) if c else "—"
            if b:
                text = bold(text)
            if c is None or c["partial"]:
                text += mark
            row.append(text)
            if table.paper_number is not None:
                cmp = table.comparison(key, v)
                if cmp is None:
                    row += ["—", "—"]
                else:
                    row.append(_fmt_cell(table.measure, cmp["paper_mean"], cmp["paper_std"], pm))
                    flag = "" if cmp["within_spread"] is None else " " + (check[0] if cmp["within_spread"] else check[1])
                    row.append(_fmt_diff(table.measure, cmp["diff"]) + flag)
            if _has_stats(table, v):
                row.append(_fmt_stats(table.measure, table.stats.get((key, v))))
        out.append(row)
    return out


def _note_lines(table: Table) -> list[str]:
    lines = []
    if table.partial:
        lines.append(f"{PARTIAL_MARK} partial or missing: fewer seeds or evaluations than planned, runs still going, "
                     "or an input not found (see below)")
    if table.paper_number is not None:
        lines.append(f"paper: its table {table.paper_number}; Δ = reproduction − paper; ✓ when |Δ| ≤ the reproduction's std over seeds")
    if table.stats:
        lines.append(f"X − {table.stats_baseline}: difference of the means over seeds with a 95 % bootstrap CI and "
                     f"Welch's t-test p; {SIGNIFICANT_MARK} when the CI excludes 0; average row: the difference of the "
                     f"average rows (seeds resampled within each dataset) and P(X > {table.stats_baseline})")
    return lines + table.notes


def render_markdown(table: Table) -> str:
    header = _header(table)
    body = _body(table, " ± ", lambda s: f"**{s}**", " " + PARTIAL_MARK, ("✓", "✗"))
    lines = [f"**{table.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in body[:-1]:
        lines.append("| " + " | ".join(row) + " |")
    lines.append("| " + " | ".join([f"**{body[-1][0]}**"] + body[-1][1:]) + " |")
    notes = _note_lines(table)
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                "τ": r"$\tau$", "±": r"$\pm$", "†": r"$^\dagger$", "Δ": r"$\Delta$", "✓": r"\checkmark",
                "✗": r"$\times$", "−": "$-$", "—": "--", "≤": r"$\le$", ">": "$>$", "<": "$<$", "×": r"$\times$"}


def tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def render_latex(table: Table) -> str:
    header = [tex(h) for h in _header(table)]
    body = _body(table, " ± ", lambda s: "\x00B" + s + "\x00E", PARTIAL_MARK, ("✓", "✗"))
    bold = lambda s: tex(s).replace("\x00B", r"\textbf{").replace("\x00E", "}")  # noqa: E731
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{tex(table.title)}}}",
             r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    for row in body[:-1]:
        lines.append(" & ".join(bold(c) for c in row) + r" \\")
    lines.append(r"\midrule")
    lines.append(" & ".join(bold(c) for c in body[-1]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = _note_lines(table)
    if notes:
        lines.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(tex(n) for n in notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def render_html(table: Table) -> str:
    header = _header(table)
    body = _body(table, " ± ", lambda s: f"\x00B{s}\x00E", " " + PARTIAL_MARK, ("✓", "✗"))
    esc = lambda s: html.escape(s).replace("\x00B", "<b>").replace("\x00E", "</b>")  # noqa: E731
    lines = ['<table class="synthrl-table">', f"<caption>{html.escape(table.title)}</caption>",
             "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>", "<tbody>"]
    for i, row in enumerate(body):
        tag = ' class="average"' if i == len(body) - 1 else ""
        lines.append(f"<tr{tag}><th>{esc(row[0])}</th>" + "".join(f"<td>{esc(c)}</td>" for c in row[1:]) + "</tr>")
    lines += ["</tbody>", "</table>"]
    notes = _note_lines(table)
    if notes:
        lines.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(lines) + "\n"


def table_frame(table: Table) -> pd.DataFrame:
    """Long form: one row per (dataset, variant) with dataset, variant, mean, std, n_seeds (+ partial,
    and the paper's columns when attached); the average row under dataset 'average'."""
    rows = []
    for key, _ in _rows(table):
        for v in table.variants:
            c = table.cell(key, v)
            row = {"dataset": key, "variant": v,
                   "mean": c["mean"] if c else math.nan, "std": c["std"] if c else math.nan,
                   "n_seeds": int(c["n_seeds"]) if c else 0, "partial": bool(c["partial"]) if c else True}
            if table.paper_number is not None:
                cmp = table.comparison(key, v) or {"paper_mean": math.nan, "paper_std": math.nan, "diff": math.nan,
                                                   "within_spread": None}
                row.update(cmp)
            if table.stats:
                row.update(_stats_columns(table.stats.get((key, v))))
            rows.append(row)
    return pd.DataFrame(rows)


def _stats_columns(stats: dict | None) -> dict:
    nan = math.nan
    if stats is None:
        return {"diff_vs_baseline": nan, "diff_low": nan, "diff_high": nan, "p_value": nan, "ci_excludes_0": None,
                "p_improvement": nan, "p_improvement_low": nan, "p_improvement_high": nan}
    d, p = stats["diff"], stats.get("improvement")
    return {"diff_vs_baseline": d.value, "diff_low": d.low, "diff_high": d.high, "p_value": stats["p_value"],
            "ci_excludes_0": stats["significant"], "p_improvement": p.value if p else nan,
            "p_improvement_low": p.low if p else nan, "p_improvement_high": p.high if p else nan}


def render_csv(table: Table) -> str:
    buf = io.StringIO()
    table_frame(table).to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    return buf.getvalue()


RENDERERS = {"md": render_markdown, "latex": render_latex, "csv": render_csv, "html": render_html}


def render(table: Table, fmt: str = "md") -> str:
    if fmt not in RENDERERS:
        raise UserError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return RENDERERS[fmt](table)


# -- plain grids (the aggregate table, the verdicts) -------------------------------------------------

def render_grid(grid, fmt: str = "md") -> str:
    """A compare.Grid (title, header, rows of strings, notes) in any of the table formats."""
    if fmt == "csv":
        buf = io.StringIO()
        frame = pd.DataFrame(grid.values) if grid.values else pd.DataFrame(grid.rows, columns=grid.header)
        frame.to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
        return buf.getvalue()
    if fmt == "md":
        lines = [f"**{grid.title}**", "", "| " + " | ".join(grid.header) + " |", "|" + "---|" * len(grid.header)]
        lines += ["| " + " | ".join(row) + " |" for row in grid.rows]
        return "\n".join(lines + ([""] + [f"- {n}" for n in grid.notes] if grid.notes else [])) + "\n"
    if fmt == "latex":
        lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{tex(grid.title)}}}",
                 r"\begin{tabular}{l" + "c" * (len(grid.header) - 1) + "}", r"\toprule",
                 " & ".join(tex(h) for h in grid.header) + r" \\", r"\midrule"]
        lines += [" & ".join(tex(c) for c in row) + r" \\" for row in grid.rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        if grid.notes:
            lines.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(tex(n) for n in grid.notes) + "}")
        return "\n".join(lines + [r"\end{table}"]) + "\n"
    if fmt == "html":
        lines = ['<table class="synthrl-table">', f"<caption>{html.escape(grid.title)}</caption>",
                 "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in grid.header) + "</tr></thead>",
                 "<tbody>"]
        lines += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in grid.rows]
        lines += ["</tbody>", "</table>"]
        if grid.notes:
            lines.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in grid.notes) + "</ul>")
        return "\n".join(lines) + "\n"
    raise UserError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
