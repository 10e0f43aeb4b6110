"""The generic checks of a YAML sweep file: every error is 'FILE: key.path: expected ..., got ...'.

Also the file's documents and ``--set KEY=VALUE`` overrides. No Ray, no torch here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from synthrl.errors import UserError

# -- validation helpers --------------------------------------------------------------------------
class _Check:
    """Validation context: every error is 'FILE: key.path: expected ..., got ...'."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, expected: str, got: Any = ...) -> UserError:
        got_text = "" if got is ... else f", got {got!r}"
        where = f"{path}: " if path else ""
        return UserError(f"{self.source}: {where}expected {expected}{got_text}")

    def mapping(self, value: Any, path: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, "a mapping", value)
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                raise UserError(
                    f"{self.source}: {_join(path, str(key))}: unknown key; expected one of {', '.join(sorted(allowed))}"
                )
        for key in sorted(required):
            if key not in value:
                raise UserError(f"{self.source}: {_join(path, key)}: missing; this key is required")
        return value

    def integer(self, value: Any, path: str, minimum: int | None = None) -> int:
        # YAML reads 1e6 as a string and 1_000_000 as an int; accept integral floats and '1e6'
        if isinstance(value, str) and re.fullmatch(r"\d+(\.\d*)?[eE]\+?\d+", value.strip()):
            value = float(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            bound = f" >= {minimum}" if minimum is not None else ""
            raise self.fail(path, f"an integer{bound}", value)
        return value

    def number(self, value: Any, path: str, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, allow_inf: bool = False) -> float:
        if isinstance(value, str) and value.strip().lower() in ("inf", "infinity") and allow_inf:
            return math.inf
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise self.fail(path, f"a number{_range_text(lo, hi, lo_open)}", value)
        value = float(value)
        if math.isinf(value) and not allow_inf:
            raise self.fail(path, f"a finite number{_range_text(lo, hi, lo_open)}", value)
        if lo is not None and (value < lo or (lo_open and value == lo)):
            raise self.fail(path, f"a number{_range_text(lo, hi, lo_open)}", value)
        if hi is not None and value > hi:
            raise self.fail(path, f"a number{_range_text(lo, hi, lo_open)}", value)
        return value

    def string(self, value: Any, path: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            expected = f"one of {', '.join(choices)}" if choices else "a non-empty string"
            raise self.fail(path, expected, value)
        if choices is not None and value not in choices:
            raise self.fail(path, f"one of {', '.join(choices)}", value)
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, "true or false", value)
        return value


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _range_text(lo, hi, lo_open) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" <= {hi:g}"
    return ""


def _seeds(c: _Check, value: Any, path: str) -> tuple[int, ...]:
    if isinstance(value, str):
        from synthrl.utils.io import parse_seeds

        try:
            seeds = parse_seeds(value)
        except UserError:
            raise c.fail(path, "a range like 0-19, a list like 0,3,7 or a YAML list of integers", value) from None
    elif isinstance(value, list) and value:
        seeds = [c.integer(v, _join(path, i), 0) for i, v in enumerate(value)]
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        seeds = [value]
    else:
        raise c.fail(path, "a range like 0-19, a list like 0,3,7 or a YAML list of integers", value)
    if any(s < 0 for s in seeds):
        raise c.fail(path, "seeds >= 0", value)
    if len(set(seeds)) != len(seeds):
        raise c.fail(path, "distinct seeds", value)
    return tuple(seeds)


def _apply_override(c: _Check, data: dict, key: str, value: Any) -> None:
    """``--set a.b=VALUE``: set a top-level or nested mapping key before validation."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise UserError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a mapping in {c.source}")
        else:
            child = node[part] = dict(child)
        node = child
    node[parts[-1]] = value


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """``['corpus=/data/wiki.txt', 'finetune.updates=2000']`` -> typed values (YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*", key):
            raise UserError(f"--set {item!r}: expected KEY=VALUE with a dotted key like corpus=PATH or "
                            "finetune.updates=2000")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            out[key] = text
    return out


def read_documents(path: str | Path) -> list[Any]:
    """The YAML documents of a sweep file (one per sweep; ``---`` separates several)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such sweep file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{where} ({problem})") from None
    if not documents:
        raise UserError(f"{path}: empty; expected a sweep (name, algorithm, datasets, variants, ...)")
    return documents


def document_source(path: str | Path, index: int, count: int) -> str:
    return str(path) if count == 1 else f"{path} (document {index + 1})"
