"""``synthrl tables``: the paper's tables from a sweep's results (or any run directories) or a long CSV.

    synthrl tables (--results DIR | --csv FILE) (--table N | --variants A,B,... | both)
                   [--measure final|best|updates-to-90|compute] [--baseline NAME]
                   [--format md|latex|csv|html] [--paper] [--out FILE]
                   [--stats] [--aggregate] [--seed N]

--stats adds, beside each column, its difference from the baseline's (95 % bootstrap CI over seeds,
Welch's p, * when the CI excludes 0); --aggregate prints rliable's aggregate table instead (IQM, mean,
median, optimality gap, P(X > baseline), stratified bootstrap CIs). --seed makes every bootstrap
reproducible (default fixed: 0).
"""

from __future__ import annotations

import sys


def _names(text: str) -> list[str]:
    import argparse

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated variant names, got {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a variant name repeats in {text!r}")
    return names


def add_source_arguments(parser):
    """--results DIR | --csv FILE: where the evaluation records come from (tables and curves alike); returns
    the mutually exclusive group."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", metavar="DIR", help="a sweep's results directory, or any folder of run directories")
    src.add_argument("--csv", metavar="FILE",
                     help="a long CSV: algorithm, variant, dataset, seed, update, normalized_score, ...")
    return src  # verdict adds --paper to the same choice


def register(subparsers) -> None:
    from synthrl.cli import positive_int

    p = subparsers.add_parser("tables", help="the paper's tables from run directories or a long CSV",
                              description=__doc__.splitlines()[0].replace("``", ""))
    add_source_arguments(p)
    p.add_argument("--table", type=positive_int, metavar="N",
                   help="columns from sweeps/tableN.yaml (18-25: the best-score twins of 1-8); with --variants: "
                        "which of the paper's tables --paper compares with")
    p.add_argument("--variants", type=_names, metavar="A,B,...",
                   help="the columns, in order (one without runs yet: a † column and a note)")
    p.add_argument("--measure", choices=["final", "best", "updates-to-90", "compute"],
                   help="default: the table's own measure (final without --table)")
    p.add_argument("--baseline", metavar="NAME", help="updates-to-90's reference variant (default: the first column)")
    p.add_argument("--format", choices=["md", "latex", "csv", "html"], default="md")
    p.add_argument("--paper", action="store_true",
                   help="beside the paper's published numbers (--table N's, or the paper table whose columns "
                        "hold the --variants)")
    p.add_argument("--out", metavar="FILE", help="write here (atomically) instead of standard output")
    p.add_argument("--sweeps-dir", metavar="DIR", help="where the sweep files are (default: the repository's sweeps/)")
    add_stats_arguments(p)
    p.add_argument("--stats", action="store_true",
                   help="each column's difference from the baseline (--baseline, default the first column): 95 %% "
                        "bootstrap CI over seeds, Welch's p, * when the CI excludes 0")
    p.add_argument("--aggregate", action="store_true",
                   help="the aggregate table per variant instead: IQM, mean, median, optimality gap and P(X > baseline) "
                        "over datasets x seeds, with 95 %% stratified bootstrap CIs (--measure final or best)")
    p.set_defaults(func=main)


def add_stats_arguments(parser) -> None:
    """--seed N: the bootstrap's seed (tables, verdict, report)."""
    from synthrl.cli import nonneg_int

    parser.add_argument("--seed", type=nonneg_int, default=0, metavar="N",
                        help="seed of every bootstrap: the same seed gives the same intervals (default: %(default)s)")


def main(args) -> int:
    from analysis import tables as T
    from analysis.compare import aggregate_grid, attach_stats
    from analysis.render import render_grid
    from analysis.records import load_records
    from synthrl.errors import UserError
    from synthrl.utils.io import atomic_write_text, check_output_file

    if args.out:
        check_output_file(args.out, "--out")  # before reading the results
    if args.table is None and args.variants is None:
        raise UserError("give --table N (the columns of sweeps/tableN.yaml) or --variants A,B,... (or both)")
    if args.table is not None and args.table not in T.TABLE_MEASURE:
        raise UserError(f"--table {args.table}: not one of the paper's result tables "
                        f"({', '.join(str(n) for n in sorted(T.TABLE_MEASURE))})")
    explicit: dict[str, str] = {}
    if args.table is not None:
        measure = args.measure or T.TABLE_MEASURE[args.table]
        if args.variants is None:
            variants, explicit = T.sweep_variants(args.table, args.sweeps_dir)
        else:
            variants, explicit = args.variants, T.sweep_paper_columns(args.table, args.sweeps_dir)
    else:
        variants = args.variants
        measure = args.measure or "final"
    if args.baseline and args.baseline not in variants:
        variants = [args.baseline] + variants  # the reference must be in the table to be read
    paper_number, paper_note = None, None
    if args.paper and args.table is not None:
        paper_number = T.paper_number_for(args.table, measure)
        if paper_number is None or str(paper_number) not in T.paper_tables():
            raise UserError(f"--paper: the paper has no {measure} table for table {args.table}")
    elif args.paper:
        paper_number, paper_note = T.paper_table_for(variants, measure)
    records = load_records(results=args.results, csv=args.csv)
    datasets = None
    shown = paper_number or args.table
    if shown is not None and str(shown) in T.paper_tables():
        # tables 12 (and 14) cover the medium-expert datasets only: so does the reproduction
        covered = [d for d in T.paper_table(shown)["cells"] if d != T.AVERAGE]
        if len(covered) < len(T.PAPER_DATASETS):
            datasets = [d for d in records.datasets if d in covered] or None
    # a column without runs yet is a † column with a note, as for --table (unless no column has runs)
    table = T.build_table(records, variants, measure, baseline=args.baseline, datasets=datasets,
                          strict_variants=False)
    if paper_number is not None:
        T.attach_paper(table, paper_number, explicit)
        if paper_note:
            table.notes.append(paper_note)
    if args.aggregate:
        text = render_grid(aggregate_grid(table, args.baseline, args.seed), args.format)
    else:
        if args.stats:
            attach_stats(table, args.baseline, args.seed)
        text = T.render(table, args.format)
    if args.out:
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()  # the table before the notes on a terminal showing both streams
    if table.partial or table.notes:
        # the notes are in the table too; repeat them where a user watching a running sweep sees them
        print(f"synthrl tables: {len(table.notes)} note(s)" + (" (partial results)" if table.partial else "")
              + "".join(f"\n  {n}" for n in table.notes), file=sys.stderr)
    return 0
