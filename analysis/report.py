"""One self-contained HTML page for a sweep's results (``synthrl report``, and ``sweep run`` at its end).

The page holds, in this order: what is still running and what the results lack (the tables' partial
notes), where the numbers come from (provenance.py), the verdicts on the paper's claims, the aggregate
metrics with their 95 % CIs (table and figure) and the performance profile, every table that applies
(with --stats columns, and beside the paper's numbers with ``paper``), and the learning curves.

Self-contained: CSS inline, figures as base64 PNG data URIs, no script, no link outside the page; it
opens from disk after the cluster is gone. Every name from the records is HTML-escaped. No Ray, no torch.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from analysis import claims as C
from analysis import paper as P
from analysis import stats as S
from analysis.compare import aggregate_grid, attach_stats
from analysis.curves import curve_figures, dataset_grid
from analysis.provenance import Provenance, collect_provenance
from analysis.records import Records, load_records
from analysis.render import render_grid, render_html
from analysis.report_figures import aggregate_png, profile_png
from analysis.tables import Table, attach_paper, build_table
from synthrl.errors import UserError
from synthrl.utils.io import atomic_write_text

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
main{max-width:1240px;margin:0 auto;padding:24px 28px 60px;background:#fff;box-shadow:0 0 12px #0001}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:34px 0 10px;border-bottom:2px solid #e3e6ea;padding-bottom:4px}
h3{font-size:16px;margin:22px 0 6px}
.lead{color:#4a5263;margin:0 0 12px} .muted{color:#6b7280;font-size:13px}
nav{font-size:14px;margin:10px 0 4px} nav a{margin-right:14px;color:#2457b5;text-decoration:none}
.status{border-left:5px solid #2f9e44;background:#eef8f0;padding:10px 14px;margin:14px 0}
.status.partial{border-color:#e8590c;background:#fff4e6}
.status ul{margin:6px 0 0 18px;padding:0} .status li{margin:1px 0}
.scroll{overflow-x:auto;margin:6px 0 4px;border:1px solid #e3e6ea;border-radius:4px}
table.synthrl-table,table.kv{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
table.synthrl-table caption{caption-side:top;text-align:left;font-weight:600;padding:6px 8px;font-size:14px}
table.synthrl-table th,table.synthrl-table td{padding:4px 8px;border-bottom:1px solid #eceef1;white-space:nowrap;text-align:right}
table.synthrl-table thead th{background:#f1f3f5;position:sticky;top:0;text-align:center;white-space:normal;min-width:70px}
table.synthrl-table td:first-child{text-align:left;font-weight:500}
table.synthrl-table tbody th{text-align:left;font-weight:500;background:#fafbfc;position:sticky;left:0}
table.synthrl-table tbody tr:nth-child(even) td{background:#fafbfc}
table.synthrl-table tr.average th,table.synthrl-table tr.average td{border-top:2px solid #adb5bd;font-weight:600}
table.synthrl-table + ul,.notes{font-size:13px;color:#4a5263;margin:4px 0 12px 18px;padding:0}
table.kv th{text-align:left;padding:2px 14px 2px 0;vertical-align:top;font-weight:600;white-space:nowrap}
table.kv td{padding:2px 0}
.figure{margin:8px 0 18px} .figure img{max-width:100%;height:auto;border:1px solid #eceef1}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:10px}
.grid img{width:100%;height:auto;border:1px solid #eceef1}
table.verdicts{border-collapse:collapse;font-size:13px}
table.verdicts th{background:#f1f3f5;padding:4px 8px;text-align:left;position:sticky;top:0}
table.verdicts td{padding:4px 8px;border-bottom:1px solid #eceef1;vertical-align:top}
table.verdicts td:nth-child(4){white-space:nowrap} table.verdicts td:nth-child(6),table.verdicts td:nth-child(7){white-space:nowrap}
table.verdicts .status{font-weight:700;white-space:nowrap}
tr.verdict-held .status{color:#2b8a3e} tr.verdict-not-held .status{color:#c92a2a}
tr.verdict-inconclusive .status{color:#a15c07} tr.verdict-paper-only .status{color:#5c677d}
code{background:#f1f3f5;padding:0 3px;border-radius:3px;font-size:13px}
"""


@dataclass
class Section:
    anchor: str
    title: str
    body: list[str] = field(default_factory=list)


def esc(text) -> str:
    return html.escape(str(text))


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def _notes(lines: list[str]) -> str:
    return '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in lines) + "</ul>" if lines else ""


# -- which tables --------------------------------------------------------------------------------------

def _held_variants(records: Records) -> list[str]:
    """Variants with evaluations, then those launched without any yet (from params.json)."""
    declared = [str(v) for v in records.expected["variant"].unique()]
    return list(dict.fromkeys(records.variants + declared))


def sweep_tables() -> list[tuple[int, list[str], dict[str, str]]]:
    """(number, columns, paper columns) of each sweeps/tableN.yaml of a paper final-score table."""
    out = []
    for path in sorted(P.SWEEPS_DIR.glob("table*.yaml")):
        match = re.fullmatch(r"table(\d+)\.yaml", path.name)
        if match and P.TABLE_MEASURE.get(int(match.group(1))) == "final":
            variants, explicit = P.sweep_variants(int(match.group(1)))
            out.append((int(match.group(1)), variants, explicit))
    return sorted(out)


@dataclass
class ReportTables:
    tables: list[Table]
    partial_notes: list[str]  # what the tables say the results lack (coverage, short runs), once each
    notes: list[str]          # about the choice of tables (no paper table to compare with)


def choose_tables(records: Records, paper: bool, seed: int) -> ReportTables:
    """The paper tables whose columns the records hold (final score, then its best-score twin), and one table of
    all variants when some variant is in none of them; with --stats columns, beside the paper with ``paper``."""
    held = _held_variants(records)
    with_evals = set(records.variants)
    tables, notes, covered, partial_notes = [], [], set(), []
    for number, variants, explicit in sweep_tables():
        if not set(variants) <= set(held) or not set(variants) & with_evals:
            continue
        covered |= set(variants)
        # tables 1-8 have best-score twins (18-25) in the paper; 26-29 report the final score only
        for measure in [m for m in ("final", "best") if P.paper_number_for(number, m) is not None]:
            table = build_table(records, variants, measure, strict_variants=False)
            partial_notes += table.notes  # before the paper's notes are added
            table.title = f"Table {P.paper_number_for(number, measure)} ({measure}): " + table.title
            if paper:
                attach_paper(table, P.paper_number_for(number, measure), explicit)
            tables.append(table)
    rest = [v for v in held if v not in covered]
    if rest and set(rest) & with_evals:
        for measure in ("final", "best"):
            table = build_table(records, held, measure, strict_variants=False)
            partial_notes += table.notes
            table.title = f"All variants ({measure}): " + table.title
            if paper:
                try:
                    number, note = P.paper_table_for(held, measure)
                except UserError as e:
                    notes.append(f"{measure}: {e}".replace("--paper: ", "").replace("; name the table to compare "
                                                                                    "with (--table N)", ""))
                else:
                    attach_paper(table, number, P.sweep_paper_columns(number))
                    table.notes.append(note)
            tables.append(table)
    for table in tables:
        if len([v for v in table.variants if v not in table.no_bold]) > 1:
            attach_stats(table, None, seed)
    return ReportTables(tables, list(dict.fromkeys(partial_notes)), notes)


# -- sections --------------------------------------------------------------------------------------------

def _status_section(records: Records, chosen: ReportTables, running: list[str] | None) -> Section:
    section = Section("status", "Status")
    partial = any(t.partial for t in chosen.tables) or bool(running) or not records.frame["done"].all()
    notes = chosen.partial_notes
    word = "Partial results" if partial else "Complete"
    section.body.append(f'<div class="status{" partial" if partial else ""}"><b>{word}</b>: '
                        f"{len(records.frame)} evaluations of {len(records.variants)} variant(s) on "
                        f"{len(records.datasets)} dataset(s).")
    if running:
        section.body.append(f"<br><b>Still running or pending ({len(running)})</b>:<ul>"
                            + "".join(f"<li>{esc(r)}</li>" for r in running) + "</ul>")
    if notes:
        section.body.append("<br><b>What the results lack or leave out</b>:" + _notes(notes))
    section.body.append("</div>")
    return section


def _provenance_section(prov: Provenance) -> Section:
    rows = [("results", f"{prov.source} ({prov.kind}" + (f", {prov.runs} run directories)" if prov.runs else ")"))]
    labels = {"name": "sweep", "source": "sweep file", "algorithm": "algorithm", "created": "launched",
              "resumed": "resumed"}
    rows += [(label, prov.sweep[key]) for key, label in labels.items() if prov.sweep.get(key)]
    for key, values in prov.run_fields.items():
        text = ", ".join(value if len(values) == 1 else f"{value} ({n} runs)" for value, n in values.items())
        rows.append((f"runs: {key}", text))
    for node in prov.nodes:
        rows.append((f"node {node['node']}", " ".join(str(x) for x in (node["device"], node["device_name"],
                                                                        f"torch {node['torch']}" if node["torch"] else "",
                                                                        node["note"]) if x)))
    rows.append(("report built with", ", ".join(f"{k} {v}" for k, v in prov.builder.items())))
    if prov.kind == "long CSV":
        rows.append(("note", "a long CSV carries no run records: devices and versions of the runs are unknown"))
    body = '<table class="kv">' + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows) + "</table>"
    return Section("provenance", "Provenance", [body])


def _verdict_section(records: Records, seed: int) -> Section:
    verdicts = C.judge(records, C.load_claims(), seed=seed)
    shown = [v for v in verdicts if v.status != C.NOT_RUN]
    section = Section("verdicts", "Verdicts on the paper's claims")
    if shown:
        counts = {status: sum(v.status == status for v in shown) for status in C.STATUSES}
        tally = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        section.body.append(f"<p><b>These results test {len(shown)} of the paper's {len(verdicts)} claims: "
                            f"{esc(tally)}.</b> Held / not held: the 95 % CI of P(X &gt; Y) or of the average "
                            "difference excludes the no-effect value; inconclusive: it straddles it. Hover a claim "
                            "for the paper's words.</p>")
        section.body.append('<div class="scroll">' + C.render_verdicts(shown, "html") + "</div>")
    else:
        section.body.append("<p>None of the paper's claims compares variants these results hold.</p>")
    not_run = len(verdicts) - len(shown)
    if not_run:
        section.body.append(f'<p class="muted">{not_run} of the paper\'s {len(verdicts)} claims compare variants '
                            "these results do not hold (not run; <code>synthrl verdict</code> lists them).</p>")
    return section


def _aggregate_section(tables: list[Table], seed: int) -> Section:
    section = Section("aggregate", "Aggregate metrics (95 % stratified bootstrap CIs)")
    for table in tables:
        if table.measure != "final":
            continue
        grid = aggregate_grid(table, None, seed)
        name = table.title.split(":")[0]
        grid.title = f"{name}: {grid.title}"
        section.body.append('<div class="scroll">' + render_grid(grid, "html") + "</div>")
        section.body.append('<div class="figure">' + img(aggregate_png(grid.values, grid.title), grid.title) + "</div>")
        scores = {v: S.seed_scores(table.per_seed, v, table.datasets) for v in table.variants}
        title = f"{name}: performance profile (final score)"
        section.body.append('<div class="figure">' + img(profile_png(scores, seed, title), title) + "</div>")
    return section


def _tables_section(chosen: ReportTables) -> Section:
    section = Section("tables", "Tables")
    for table in chosen.tables:
        section.body.append('<div class="scroll">' + render_html(table) + "</div>")
    section.body.append(_notes(chosen.notes))
    return section


def _curves_section(records: Records) -> Section:
    section = Section("curves", "Learning curves (mean ± std over seeds)")
    figures = curve_figures(records, per_dataset=False)  # averages and ablations; datasets as small multiples
    section.body.append('<div class="grid">' + "".join(img(f.png, f.name) for f in figures) + "</div>")
    for value, what in (("normalized_score", "score"), ("train_loss", "training loss")):
        if len(records.datasets) < 2:
            break  # one dataset: its curves are the averages above
        figure = dataset_grid(records, value, columns=min(4, len(records.datasets)))
        if figure is not None:
            section.body.append(f"<h3>Per dataset: {what}</h3>")
            section.body.append('<div class="figure">' + img(figure.png, figure.name) + "</div>")
    return section


def build_report(records: Records, *, title: str, description: str, provenance: Provenance, paper: bool = False,
                 seed: int = S.DEFAULT_SEED, running: list[str] | None = None) -> str:
    """The page (one HTML string). ``running``: the trials still running or pending, as the caller words them."""
    has_evals = len(records.frame) > 0
    chosen = choose_tables(records, paper, seed) if has_evals else ReportTables([], [], [])
    sections = [_status_section(records, chosen, running), _provenance_section(provenance)]
    if has_evals:
        sections += [_verdict_section(records, seed), _aggregate_section(chosen.tables, seed),
                     _tables_section(chosen), _curves_section(records)]
    built = datetime.now(timezone.utc).isoformat(timespec="seconds")
    head = [f"<h1>{esc(title)}</h1>"]
    if description:
        head.append(f'<p class="lead">{esc(description)}</p>')
    head.append(f'<p class="muted">built {esc(built)} by synthrl report from {esc(provenance.source)}'
                + ("" if has_evals else " — no evaluations yet") + "</p>")
    head.append("<nav>" + "".join(f'<a href="#{s.anchor}">{esc(s.title.split(" (")[0])}</a>' for s in sections)
                + "</nav>")
    body = "".join(f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{"".join(s.body)}</section>' for s in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
            f"<body><main>{''.join(head)}{body}</main></body></html>\n")


def write_report(out: str | Path, *, results: str | Path | None = None, csv: str | Path | None = None,
                 paper: bool = False, seed: int = S.DEFAULT_SEED, title: str | None = None,
                 running: list[str] | None = None) -> Path:
    """Read the records, build the page, write it atomically; returns the path (`synthrl report` and the sweeps)."""
    records = load_records(results=results, csv=csv)
    provenance = collect_provenance(results=results, csv=csv)
    page = build_report(records, title=title or provenance.name, description=provenance.description,
                        provenance=provenance, paper=paper, seed=seed, running=running)
    return atomic_write_text(out, page)
