"""``synthrl doctor``: check every fast path against its eager reference on this machine's device."""

from __future__ import annotations

HELP = "check the fast paths (CUDA graphs, compile, bf16, token sampler, overlapped evaluation, resume) against eager"


def register(subparsers) -> None:
    p = subparsers.add_parser("doctor", help=HELP, description=HELP + ". Exit 0: all checks pass; 1: one failed.")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--quick", action="store_true",
                   help="what a sweep runs once per node: fewer timed updates, no torch.compile on the CPU")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")
    p.set_defaults(func=main)


def main(args) -> int:
    import sys

    from synthrl.doctor import failed_checks, render_table, run_doctor, write_json
    from synthrl.utils.io import check_output_file, resolve_device

    resolve_device(args.device)  # a bad --device is one line, before any work
    if args.json:
        check_output_file(args.json, "--json")
    print(f"synthrl doctor: checking the fast paths on {args.device}{' (quick)' if args.quick else ''} ...",
          file=sys.stderr, flush=True)
    # the JSON is rewritten after every check, so a doctor stopped part-way still leaves what it found
    keep = (lambda report: write_json(report, args.json)) if args.json else None
    report = run_doctor(args.device, quick=args.quick, log=lambda line: print(line, file=sys.stderr, flush=True),
                        progress=keep)
    print(render_table(report))
    if keep is not None:
        keep(report)
    failing = failed_checks(report)
    if failing:
        print(f"synthrl doctor: failing fast path(s): {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0
