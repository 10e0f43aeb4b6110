"""``synthrl curves``: learning curves (PNG) from run directories or a long CSV.

    synthrl curves (--results DIR | --csv FILE) [--variants A,B,...] --out DIR
"""

from __future__ import annotations

from synthrl.commands.tables import _names, add_source_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser("curves", help="learning curves (PNG) from run directories or a long CSV",
                              description=__doc__.splitlines()[0].replace("``", ""))
    add_source_arguments(p)
    p.add_argument("--variants", type=_names, metavar="A,B,...", help="which variants, in legend order (default: all)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files")
    p.set_defaults(func=main)


def main(args) -> int:
    from analysis.curves import plot_curves
    from analysis.records import load_records
    from synthrl.utils.io import check_writable_dir

    check_writable_dir(args.out, "--out")  # before reading the results
    records = load_records(results=args.results, csv=args.csv)
    written = plot_curves(records, args.out, args.variants)
    print(f"wrote {len(written)} figures to {args.out}")
    return 0
