"""``synthrl report``: one self-contained HTML page of a sweep's results (or any run directories, or a long CSV).

    synthrl report (--results DIR | --csv FILE) --out report.html [--paper] [--seed N] [--title T]

The page: description and provenance, what is still running or missing, the verdicts on the paper's
claims, the aggregate metrics with 95 % CIs, every table that applies (with --stats columns; beside the
paper's numbers with --paper) and the learning curves. Figures are embedded: the file opens from disk.
"""

from __future__ import annotations

from pathlib import Path

from synthrl.commands.tables import add_source_arguments, add_stats_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="one self-contained HTML page: tables, verdicts, CIs, curves",
                              description=__doc__.splitlines()[0].replace("``", ""))
    add_source_arguments(p)
    p.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write (atomically)")
    p.add_argument("--paper", action="store_true", help="each table beside the paper's published numbers")
    p.add_argument("--title", metavar="T", help="the page's title (default: the sweep's name, or the source's)")
    add_stats_arguments(p)
    p.set_defaults(func=main)


def main(args) -> int:
    from analysis.report import write_report
    from synthrl.errors import UserError
    from synthrl.utils.io import check_output_file

    out = check_output_file(args.out, "--out")  # before reading the results
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {args.out}: expected an .html file name (the page is one HTML file)")
    write_report(out, results=args.results, csv=args.csv, paper=args.paper, seed=args.seed, title=args.title)
    print(f"wrote {out}")
    return 0
