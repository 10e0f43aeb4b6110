"""The registry: which algorithms and pre-training data kinds exist.

An algorithm is one module exposing ``ALGORITHM = Algorithm(...)``; a module of pre-training kinds
exposes ``PRETRAIN_KINDS = (PretrainKind(...), ...)``. Listing the module below is all it takes for
``synthrl run NAME``, sweep files (``algorithm: NAME``), the planner, the Tune trainables and the
tables' variant names ("IQL+MDP") to know it. Nothing else names an algorithm.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Callable

from synthrl.config_fields import field_default, field_with_role
from synthrl.errors import UserError

ALGORITHM_MODULES = ("synthrl.cql", "synthrl.dt", "synthrl.iql")   # THE registry line per algorithm
PRETRAIN_MODULES = ("synthrl.synthetic.kinds",)                    # modules holding PRETRAIN_KINDS

FORWARD_DYNAMICS = "forward-dynamics"   # (s, a) -> s' regression on a synthetic MDP (CQL, IQL: spec cql.md)
TOKENS = "tokens"                       # next-token / mapping prediction on synthetic tokens (DT)


@dataclass(frozen=True)
class Algorithm:
    name: str                  # "cql" -> `synthrl run cql`, sweep `algorithm: cql`, params.json "algorithm"
    label: str                 # "CQL" -> table variants "CQL", "CQL+MDP"
    config: type               # its config dataclass (fields with config_fields.setting metadata)
    make_runner: Callable      # make_runner(config, store, progress=True, fast_path_check=True) -> Runner
    run_params: Callable       # run_params(config) -> dict for params.json
    pretrain_kinds: tuple      # names of the PretrainKinds (of pretrain_family) it accepts
    help: str
    pretrain_family: str = FORWARD_DYNAMICS
    # optional: stage 1 of a sweep, build_pretrain(config, store, progress=False) -> Path | None;
    # None: stage 1 builds the artifact the way the runner does (make_runner builds what it misses)
    build_pretrain: Callable | None = None
    # optional: the pre-training updates behind a trial (its JSON config) for params.json / the curves
    pretrain_updates: Callable[[dict], int] | None = None
    # optional: pretrain_key(config, env: synthrl.envs.specs.EnvSpec) -> str | None: THE content key of the
    # artifact the run of ``config`` pre-trains (the one its runner stores it under and puts in params.json),
    # for a dataset of ``env``; the sweep planner groups trials by it. None: the planner keys the artifact by
    # the trial's pre-training settings (and the env for the forward-dynamics family)
    pretrain_key: Callable | None = None
    # optional: more `synthrl run` sub-commands, name -> (help, add_arguments(parser), main(args) -> int)
    commands: dict = field(default_factory=dict)
    # optional: the `synthrl run NAME --fast-path-check` help (what the check compares)
    fast_path_help: str = "before the first update, check the fast path against eager (on a mismatch: train eagerly)"
    # optional: plan costs, {"gpu": {...}, "cpu": {...}} rates as in synthrl.sweep.plan.RATES
    rates: dict | None = None

    def trial_pretrain_updates(self, config: dict) -> int:
        """Pre-training updates behind a trial: the algorithm's rule, else its field of role pretrain_updates
        (0 when the trial's pre-training kind is its config's default, i.e. none)."""
        if self.pretrain_updates is not None:
            return int(self.pretrain_updates(config))
        kind, updates = field_with_role(self.config, "pretrain_kind"), field_with_role(self.config, "pretrain_updates")
        if kind is None or updates is None or config.get(kind, field_default(self.config, kind)) == \
                field_default(self.config, kind):
            return 0
        return int(config.get(updates, field_default(self.config, updates)))


@dataclass(frozen=True)
class PretrainKind:
    name: str                  # "mdp": CQLConfig.pretrain "mdp", a sweep's `pretrain: {kind: mdp}`
    label: str                 # "MDP" -> the variant "CQL+MDP"
    family: str                # FORWARD_DYNAMICS or TOKENS: which algorithms can use it
    config: type | None = None   # its settings' dataclass, when it has its own
    build: Callable | None = None   # the data builder (family-specific signature, see synthrl/synthetic/kinds.py)
    help: str = ""


@functools.cache
def algorithms() -> dict[str, Algorithm]:
    """Every registered algorithm, by name (in ALGORITHM_MODULES order)."""
    out: dict[str, Algorithm] = {}
    for module_name in ALGORITHM_MODULES:
        algo = importlib.import_module(module_name).ALGORITHM
        if algo.name in out:
            raise RuntimeError(f"{module_name}: algorithm {algo.name!r} is registered twice")
        out[algo.name] = algo
    return out


def algorithm(name: str, where: str = "algorithm") -> Algorithm:
    """The algorithm called ``name``; a UserError naming ``where`` and the registered names otherwise."""
    found = algorithms().get(name)
    if found is None:
        raise UserError(f"{where}: expected one of {', '.join(algorithms())}, got {name!r}")
    return found


@functools.cache
def _all_kinds() -> tuple[PretrainKind, ...]:
    return tuple(k for module_name in PRETRAIN_MODULES for k in importlib.import_module(module_name).PRETRAIN_KINDS)


def pretrain_kinds(family: str | None = None) -> dict[str, PretrainKind]:
    """The registered pre-training kinds of ``family`` (all when None; a name in two families: the first)."""
    out: dict[str, PretrainKind] = {}
    for kind in _all_kinds():
        if family is None or kind.family == family:
            out.setdefault(kind.name, kind)
    return out


def pretrain_kind(algo: Algorithm, name: str) -> PretrainKind | None:
    return pretrain_kinds(algo.pretrain_family).get(name)


def variant_label(algorithm_name: str, kind: str | None) -> str:
    """The table column of a plain run: 'CQL', 'CQL+MDP', 'DT+Synthetic' (the kind's label, else its name)."""
    algo = algorithms().get(algorithm_name)
    if algo is None:
        base = algorithm_name.upper()
        kinds = pretrain_kinds()
    else:
        base = algo.label
        kinds = pretrain_kinds(algo.pretrain_family)
    if kind in (None, "", "none"):
        return base
    found = kinds.get(kind) or pretrain_kinds().get(kind)
    return f"{base}+{found.label if found else kind}"


def reset_cache() -> None:
    """Forget what was read (tests that register a module of their own)."""
    algorithms.cache_clear()
    _all_kinds.cache_clear()

