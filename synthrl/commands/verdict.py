"""``synthrl verdict``: the paper's claims (analysis/claims.yaml) judged on a reproduction's results.

    synthrl verdict (--results DIR | --csv FILE | --paper) [--claims FILE] [--seed N]
                    [--format md|csv|html] [--out FILE]

Per claim: held / not held / inconclusive (a 95 % stratified bootstrap CI of P(X > Y) or of the
average difference straddles no effect), with the numbers; "not run" where the results lack a variant
or dataset the claim names. --paper judges the paper's own published means instead: they carry no
per-seed data, so each claim says "paper only: no per-seed data" beside the paper's difference.
A claim that does not hold is a result, not an error: the exit status is 0; bad input exits 2.
"""

from __future__ import annotations

import sys

from synthrl.commands.tables import add_source_arguments, add_stats_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser("verdict", help="the paper's claims judged on results: held / not held / inconclusive",
                              description=__doc__.splitlines()[0].replace("``", ""))
    source = add_source_arguments(p)
    source.add_argument("--paper", action="store_true",
                        help="judge the paper's published means (analysis/paper_numbers.json): no per-seed data")
    p.add_argument("--claims", metavar="FILE", help="the claims file (default: analysis/claims.yaml)")
    add_stats_arguments(p)
    p.add_argument("--format", choices=["md", "csv", "html"], default="md")
    p.add_argument("--out", metavar="FILE", help="write here (atomically) instead of standard output")
    p.set_defaults(func=main)


def main(args) -> int:
    from analysis.claims import judge, judge_paper, load_claims, render_verdicts, summary
    from analysis.records import load_records
    from synthrl.utils.io import atomic_write_text, check_output_file

    if args.out:
        check_output_file(args.out, "--out")  # before reading the results
    claims = load_claims(args.claims)
    if args.paper:
        verdicts = judge_paper(claims)
    else:
        verdicts = judge(load_records(results=args.results, csv=args.csv), claims, seed=args.seed)
    text = render_verdicts(verdicts, args.format)
    if args.out:
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    print(f"synthrl verdict: {summary(verdicts)}", file=sys.stderr)
    return 0
