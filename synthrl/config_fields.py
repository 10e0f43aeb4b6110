"""One declaration per setting: config dataclass fields carry their help, bounds and choices.

    updates: int = field(default=1_000_000, metadata=setting("fine-tuning updates", min=1))

From that one field come the ``--updates`` CLI option (help + shown default), the sweep-file check
(``FILE: finetune.updates: expected an integer >= 1, got 'ten'``), params.json (``result_params``)
and the content hash of artifacts (``content_key``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import re
import types
import typing
from typing import Any

from synthrl.errors import UserError


def setting(help: str, *, min=None, max=None, choices=None, cli: bool = True, execution_only: bool = False,
            flag: str | None = None, above=None, below=None, allow_inf: bool = False,
            metavar: str | None = None, parse=None, required: bool = False, sweep: str | None = None,
            when: dict | None = None, role: str | None = None) -> dict:
    """Metadata of one config field.

    min/max are inclusive bounds, above/below exclusive ones; choices a closed set of values.
    cli=False: not a ``synthrl run`` option. execution_only=True: does not change results (device,
    accel, ...): left out of result_params, so of the content hash and of --resume's parameter check.
    flag: the option name when it is not ``--field-name``. allow_inf: a float may be 'inf'.
    parse: text -> value for the CLI (e.g. seed ranges '0-19'). required: the CLI option is required.
    sweep: the field's key in a sweep variant when it is a named key there ("pretrain.updates",
    "finetune.eval_every"); other fields are reachable through the block's ``config:`` mapping.
    when: {other_field: values}: the field matters only when other_field is one of values (else it is
    left out of result_params, so e.g. an unused --states does not split an artifact).
    role: what the field is to generic code that names no field (the sweep planner): one of ROLES.
    """
    if role is not None and role not in ROLES:
        raise ValueError(f"setting role {role!r}: expected one of {', '.join(ROLES)}")
    return {"help": help, "min": min, "max": max, "choices": tuple(choices) if choices is not None else None,
            "cli": cli, "execution_only": execution_only, "flag": flag, "above": above, "below": below,
            "allow_inf": allow_inf, "metavar": metavar, "parse": parse, "required": required, "sweep": sweep,
            "when": when, "role": role}


# What a field is to the sweep planner (the schema and planner look fields up by role, never by name).
ROLES = {
    "updates": "the fine-tuning updates of a run (a sweep needs one such field)",
    "extra_updates": "more fine-tuning updates, added to `updates` (a trial config carries it only when not 0)",
    "eval_every": "updates between evaluations (none: one evaluation at the end)",
    "pretrain": "the nested config of the pre-training (its fields are a sweep variant's pretrain block)",
    "pretrain_kind": "the pre-training kind: its choices, its default meaning no pre-training",
    "pretrain_updates": "the pre-training updates (the plan's cost, the bound of checkpoints)",
    "checkpoints": "the pre-training steps saved (fine-tuning starts from one of them: role pretrain_step)",
    "pretrain_step": "which saved pre-training step fine-tuning starts from",
    "corpus": "a file the user supplies, filled from a sweep's `corpus:` where it applies (its `when`)",
    "cost_scale": "a step's CPU time scales with the product of these fields (the batch; DT's pre-training: "
                  "batch x sequence length), measured at the rate's `batch` / `tokens`",
}
VARIANT_ONLY_ROLES = ("extra_updates", "pretrain_step")   # a variant's own choice, not a sweep-wide default


def declared_as(cls, name: str) -> dataclasses.Field:
    """A new field declared as ``cls.name`` is (default, bounds, help, sweep key, role): another config
    shares the setting without declaring it again (IQL's data and pre-training settings are CQL's)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    defaults = {k: getattr(f, k) for k in ("default", "default_factory") if getattr(f, k) is not dataclasses.MISSING}
    return dataclasses.field(**defaults, metadata=f.metadata)


# -- types ------------------------------------------------------------------------------------------
def config_fields(cls) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


@functools.cache
def _type_hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)   # resolving them compiles every annotation: once per class (a plan validates thousands)


def field_type(cls, name: str):
    """The resolved annotation of ``cls.name`` (the modules use ``from __future__ import annotations``)."""
    return _type_hints(cls)[name]


def _split_optional(tp) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def nested_config(cls, name: str):
    """The dataclass a field holds (DTConfig.pretrain -> DTPretrainConfig), or None. Resolved afresh: the
    module's name may be rebound to another dataclass (tests swap DTPretrainConfig for a variant of it)."""
    tp, _ = _split_optional(typing.get_type_hints(cls)[name])
    return tp if dataclasses.is_dataclass(tp) else None


def meta(f: dataclasses.Field) -> dict:
    return {**setting(""), **dict(f.metadata)} if f.metadata else setting("", cli=False)


def field_with_role(cls, role: str) -> str | None:
    """The name of the field of ``cls`` that has ``role`` (None when it has none)."""
    return next((f.name for f in config_fields(cls) if f.metadata and meta(f)["role"] == role), None)


def fields_with_role(cls, role: str) -> list[str]:
    return [f.name for f in config_fields(cls) if f.metadata and meta(f)["role"] == role]


def default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


# -- checking one value -----------------------------------------------------------------------------
def _bounds_text(m: dict) -> str:
    lo = (">=", m["min"]) if m["min"] is not None else (">", m["above"]) if m["above"] is not None else None
    hi = ("<=", m["max"]) if m["max"] is not None else ("<", m["below"]) if m["below"] is not None else None
    if lo and hi:
        return f" in {'[' if lo[0] == '>=' else '('}{lo[1]:g}, {hi[1]:g}{']' if hi[0] == '<=' else ')'}"
    if lo:
        return f" {lo[0]} {lo[1]:g}"
    if hi:
        return f" {hi[0]} {hi[1]:g}"
    return ""


def expected_text(tp, m: dict) -> str:
    """What a value of this field must be, in words ('an integer >= 1', 'one of auto, on, off')."""
    tp, optional = _split_optional(tp)
    if m["choices"] is not None:
        text = f"one of {', '.join(str(c) for c in m['choices'])}"
    elif tp is bool:
        text = "true or false"
    elif tp is int:
        text = f"an integer{_bounds_text(m)}"
    elif tp is float:
        text = f"a {'finite ' if not m['allow_inf'] and _bounds_text(m) == '' else ''}number{_bounds_text(m)}"
        text += " or inf" if m["allow_inf"] else ""
    elif tp is str:
        text = "a non-empty string"
    elif typing.get_origin(tp) in (list, tuple):
        item = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        text = f"a non-empty list of {_plural(expected_text(item, {**m, 'choices': None}))}"
    else:
        text = f"a {getattr(tp, '__name__', tp)}"
    return text + " (or null)" if optional else text


def _plural(text: str) -> str:
    return re.sub(r"^an? (integer|number|non-empty string)", lambda g: g.group(1) + "s", text)


def _to_number(value):
    """YAML reads 1e6 as a string and 1_000_000 as an int: accept numeric strings."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def check_value(tp, m: dict, value, where: str):
    """``value`` as the field's type, or UserError 'WHERE: expected ..., got ...'."""
    base, optional = _split_optional(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"{where}: expected {expected_text(tp, m)}, got None")

    def bad():
        return UserError(f"{where}: expected {expected_text(tp, m)}, got {value!r}")

    if dataclasses.is_dataclass(base):
        if isinstance(value, base):
            return validate_config(value, where)
        return config_from_mapping(base, value, where)
    if typing.get_origin(base) in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not value:
            raise bad()
        args = typing.get_args(base)
        items = [check_value(args[min(i, len(args) - 1)] if args and args[-1] is not Ellipsis else args[0],
                             {**m, "choices": None}, v, f"{where}[{i}]") for i, v in enumerate(value)]
        if typing.get_origin(base) is tuple and args and args[-1] is not Ellipsis and len(items) != len(args):
            raise bad()
        return items if typing.get_origin(base) is list else tuple(items)
    if base is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if base is int:
        v = _to_number(value)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not _in_bounds(v, m):
            raise bad()
        if m["choices"] is not None and v not in m["choices"]:
            raise bad()
        return v
    if base is float:
        v = _to_number(value)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise bad()
        v = float(v)
        if (math.isinf(v) and not m["allow_inf"]) or (not math.isinf(v) and not _in_bounds(v, m)):
            raise bad()
        if math.isinf(v) and v < 0:
            raise bad()
        return v
    if base is str:
        if not isinstance(value, str) or not value.strip():
            raise bad()
        if m["choices"] is not None and value not in m["choices"]:
            raise bad()
        return value
    return value


def _in_bounds(v, m: dict) -> bool:
    return ((m["min"] is None or v >= m["min"]) and (m["max"] is None or v <= m["max"])
            and (m["above"] is None or v > m["above"]) and (m["below"] is None or v < m["below"]))


# -- whole configs ----------------------------------------------------------------------------------
def validate_config(obj, where: str):
    """Check every field of ``obj`` against its metadata (values coerced in place); returns ``obj``."""
    cls = type(obj)
    for f in config_fields(cls):
        if not f.metadata:
            continue
        value = check_value(field_type(cls, f.name), meta(f), getattr(obj, f.name), _join(where, f.name))
        object.__setattr__(obj, f.name, value)
    return obj


def config_from_mapping(cls, mapping, where: str):
    """Build ``cls`` from a mapping (sweep file, params.json): unknown keys, missing required fields and
    bad values are a UserError naming WHERE.key."""
    if not isinstance(mapping, dict):
        raise UserError(f"{where}: expected a mapping, got {mapping!r}")
    known = {f.name: f for f in config_fields(cls)}
    for key in mapping:
        if key not in known:
            raise UserError(f"{_join(where, str(key))}: unknown field; expected one of {', '.join(sorted(known))}")
    for name, f in known.items():
        if default_of(f) is dataclasses.MISSING and name not in mapping:
            raise UserError(f"{_join(where, name)}: missing; this key is required")
    values = {k: check_value(field_type(cls, k), meta(known[k]), v, _join(where, k)) if known[k].metadata else v
              for k, v in mapping.items()}
    obj = cls(**values)
    return obj.validate() if hasattr(obj, "validate") else validate_config(obj, where)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def to_jsonable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in config_fields(type(value))}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def result_params(obj) -> dict:
    """The fields of ``obj`` that change results (JSON types): not execution_only, and only the ones
    that apply (``when``). params.json's "config" and the content hash of artifacts use this."""
    out = {}
    for f in config_fields(type(obj)):
        m = meta(f)
        if m["execution_only"]:
            continue
        if m["when"] and any(getattr(obj, k) not in tuple(v) for k, v in m["when"].items()):
            continue
        value = getattr(obj, f.name)
        out[f.name] = result_params(value) if dataclasses.is_dataclass(value) else to_jsonable(value)
    return out


def execution_only_fields(cls) -> tuple[str, ...]:
    """Field names that do not change results (what --resume's parameter check ignores)."""
    return tuple(f.name for f in config_fields(cls) if meta(f)["execution_only"])


def content_key(kind: str, params: dict, format_version: int = 1) -> str:
    """THE content hash of an artifact of ``kind`` (the store's directory name under artifacts/KIND/)."""
    from synthrl.utils.io import params_key

    del kind  # the kind is the store's folder above the key; the key covers the parameters
    return params_key(params, format_version)


# -- the CLI ----------------------------------------------------------------------------------------
def show_default(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(show_default(v) for v in value)
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    if value is None:
        return "none"
    return str(value)


def flag_of(f: dataclasses.Field) -> str:
    return meta(f)["flag"] or "--" + f.name.replace("_", "-")


def _parser_for(tp, m: dict, flag: str):
    """argparse ``type=``: text -> checked value (argparse prints 'argument --x: expected ...')."""

    def parse(text: str):
        try:
            value = m["parse"](text) if m["parse"] else text
            if isinstance(value, str) and value.lower() == "none" and _split_optional(tp)[1]:
                value = None
            return check_value(tp, m, value, flag)
        except (UserError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{flag}: ")) from None

    parse.__name__ = flag.lstrip("-")
    return parse


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def _metavar(tp) -> str:
    if typing.get_origin(tp) in (list, tuple):
        item = _METAVARS.get(typing.get_args(tp)[0], "V")
        return f"{item},{item}"
    return _METAVARS.get(tp, "VALUE")


def add_config_arguments(parser: argparse.ArgumentParser, cls, exclude=(), defaults: dict | None = None) -> None:
    """One ``--kebab-case`` option per CLI field of ``cls``, with its help and '(default: X)'."""
    defaults = defaults or {}
    for f in config_fields(cls):
        m = meta(f)
        if not f.metadata or not m["cli"] or f.name in exclude or nested_config(cls, f.name) is not None:
            continue
        tp = field_type(cls, f.name)
        default = defaults.get(f.name, default_of(f))
        flag = flag_of(f)
        kw: dict[str, Any] = {"dest": f.name, "help": m["help"]}
        if m["required"] or default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = default
            kw["help"] = f"{m['help']} (default: {show_default(default)})"
        if _split_optional(tp)[0] is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _parser_for(tp, m, flag)
            if m["choices"] is not None:
                kw["metavar"] = m["metavar"] or "{" + ",".join(str(c) for c in m["choices"]) + "}"
            else:
                kw["metavar"] = m["metavar"] or _metavar(_split_optional(tp)[0])
        parser.add_argument(flag, **kw)


def config_from_args(cls, args: argparse.Namespace, **overrides):
    """``cls`` from the parsed options add_config_arguments added (plus ``overrides``), validated."""
    names = {f.name for f in config_fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values.update(overrides)
    obj = cls(**values)
    return obj.validate() if hasattr(obj, "validate") else validate_config(obj, "")


def add_run_options(parser: argparse.ArgumentParser, fast_path_help: str, out_help: str | None = None) -> None:
    """The options of every ``synthrl run`` command that are not config fields (where, resume, progress)."""
    parser.add_argument("--out", required=True, metavar="DIR",
                        help=out_help or "run directory (params.json, metrics.csv, checkpoint/, DONE)")
    parser.add_argument("--fast-path-check", choices=("on", "off"), default="on",
                        help=f"{fast_path_help} (default: on)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def field_default(cls, name: str):
    """The default ``cls`` declares for field ``name``."""
    return default_of(next(f for f in config_fields(cls) if f.name == name))
