"""``synthrl run ALGO``: train one run group (a seed ensemble) into a run directory, without Ray.

Each algorithm module (``synthrl.cql.cli``, ``synthrl.dt.cli``) defines ``COMMANDS``: a dict of
sub-command name -> (help, add_arguments(parser), main(args) -> int).
"""

from __future__ import annotations

import importlib

ALGORITHM_CLIS = ["synthrl.cql.cli", "synthrl.dt.cli"]


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="train and evaluate one run (a seed ensemble) into a run directory")
    algos = parser.add_subparsers(dest="algorithm", metavar="ALGO", parser_class=type(parser))
    algos.required = True
    for name in ALGORITHM_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        for command, (help_text, add_arguments, main) in module.COMMANDS.items():
            p = algos.add_parser(command, help=help_text, description=help_text)
            add_arguments(p)
            p.set_defaults(func=main)
