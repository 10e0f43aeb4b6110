"""The ``synthrl`` command: one verb per module in ``synthrl/commands/``.

Each verb module defines ``register(subparsers)``, which adds its parser and sets ``func`` (a
callable taking the parsed namespace and returning an exit code). Verb modules import heavy
libraries (torch, Ray) inside ``func``, so ``synthrl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from synthrl.errors import UserError

VERBS = ["synth", "data", "run", "sweep", "tables", "curves", "verdict", "report", "doctor"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad option as one line (no usage dump) and exits 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(text: str, lowest: int, expected: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1; '1e6' is accepted for large update counts."""
    return _int_at_least(text, 1, "a positive integer")


def nonneg_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def temperature(text: str) -> float:
    """A softmax temperature: a positive float or 'inf'."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'inf', got {text!r}") from None
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a positive number or 'inf', got {text!r}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


# verbs whose options come from the registry, which imports every algorithm module (and so torch): built in
# full only when the command line names them, so `synthrl --help` and the other verbs start fast
REGISTRY_VERBS = {"run"}


def named_verb(argv: list[str]) -> str | None:
    """The verb a command line names (its first word that is not an option), None for `synthrl --help`."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> ArgumentParser:
    """The whole parser; given the command line, the registry's verbs are built only if it names them."""
    parser = ArgumentParser(prog="synthrl", description=__doc__.splitlines()[0] if __doc__ else None)
    from synthrl import __version__

    parser.add_argument("--version", action="version", version=f"synthrl {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=ArgumentParser)
    sub.required = True
    wanted = None if argv is None else named_verb(argv)
    for verb in VERBS:
        module = importlib.import_module(f"synthrl.commands.{verb}")
        if verb in REGISTRY_VERBS and argv is not None and wanted != verb:
            sub.add_parser(verb, help=module.HELP)   # listed in `synthrl --help`; its options when it is run
        else:
            module.register(sub)
    return parser


BROKEN_PIPE = 141   # 128 + SIGPIPE: what a shell reports for a command whose reader went away


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except UserError as e:
        print(f"synthrl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", "rerun with --resume to continue from the last checkpoint")
        print(f"synthrl: interrupted; {hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `synthrl ... | head`: the reader closed stdout; stop quietly
        _silence_stdout()
        return BROKEN_PIPE
    return int(code or 0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush at exit cannot raise BrokenPipeError again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):   # no real file descriptor behind sys.stdout (captured in-process)
        pass


if __name__ == "__main__":
    sys.exit(main())
