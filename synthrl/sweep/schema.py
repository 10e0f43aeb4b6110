"""The sweep file: typed dataclasses for the YAML format, validated at the edge.

Every error names the file, the key path and what was expected, e.g.
``sweeps/table6.yaml: variants[2].pretrain.states: expected an integer >= 1, got 'ten'``.
The format is documented in ``sweeps/README.md``. No Ray, no torch here.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from synthrl.errors import UserError

ALGORITHMS = ("cql", "dt")
ENVS = ("halfcheetah", "hopper", "walker2d", "ant")
D4RL_DATASETS = tuple(f"{env}-{kind}-v2" for env in ENVS for kind in ("medium", "medium-replay", "medium-expert"))
CQL_PRETRAIN_KINDS = ("mdp", "iid", "identity", "mapping")
DT_PRETRAIN_KINDS = ("mc", "iid", "identity", "mapping", "text")
MAKE_POLICIES_HINT = "random or a path to a saved policy"
# paper defaults (spec/cql.md, spec/dt.md)
DEFAULT_UPDATES = {"cql": 1_000_000, "dt": 100_000}
DT_DEFAULT_CHECKPOINTS = (1, 1000, 8000, 10000, 20000, 40000, 60000, 80000)
DT_DEFAULT_PRETRAIN_STEP = 20_000
RESERVED_NAMES = ("artifacts", "_tune", "datasets")


# -- typed sweep ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MakeSpec:
    """A dataset the sweep generates itself with ``synthrl data make``."""

    env: str
    policy: str = "random"
    steps: int = 10_000
    seed: int = 0


@dataclass(frozen=True)
class DatasetSpec:
    name: str                      # what tables show (a D4RL name or the file's stem)
    env: str                       # halfcheetah | hopper | walker2d | ant
    path: str | None = None        # a user file (None: a D4RL name resolved by synthrl.data, or a made one)
    make: MakeSpec | None = None   # generated at launch into the artifact store

    @property
    def is_d4rl(self) -> bool:
        return self.path is None and self.make is None


@dataclass(frozen=True)
class CQLPretrainSpec:
    kind: str                      # mdp | iid | identity | mapping
    updates: int = 100_000
    states: int = 100
    actions: int = 100
    policy_temperature: float = 1.0
    transition_temperature: float = 1.0
    random_start: bool = False
    config: dict = field(default_factory=dict)   # further CQLConfig pre-training fields (trajectories, length, ...)


@dataclass(frozen=True)
class DTPretrainSpec:
    data: str                      # mc | iid | identity | mapping | text
    states: int = 100
    order: int = 1
    temperature: float = 1.0
    data_seed: int = 666
    steps: int = 80_000
    checkpoints: tuple[int, ...] = ()   # saved steps; default: the spec's list cut to `steps`, plus `steps`
    corpus: str | None = None      # text only: the user's language corpus
    config: dict = field(default_factory=dict)   # further DTPretrainConfig fields (batch_size, seq_len, ...)


@dataclass(frozen=True)
class FinetuneSpec:
    """Fine-tuning settings: sweep-wide defaults, overridden per variant."""

    updates: int | None = None
    extra_updates: int = 0
    eval_every: int = 5_000
    eval_episodes: int = 10
    finetune_ratio: float = 1.0
    pretrain_step: int | None = None   # DT: which pre-training checkpoint to fine-tune from (default 20k)
    config: dict = field(default_factory=dict)   # further algorithm-config fields, passed through


@dataclass(frozen=True)
class Variant:
    name: str
    pretrain: CQLPretrainSpec | DTPretrainSpec | None
    finetune: FinetuneSpec

    @property
    def slug(self) -> str:
        return slugify(self.name)


@dataclass(frozen=True)
class Resources:
    gpu_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    pretrain_gpus: int = 1
    pretrain_cpus: float = 1.0
    max_failures: int = 3


@dataclass(frozen=True)
class SearchParam:
    type: str                       # uniform | loguniform | randint | choice
    low: float | None = None
    high: float | None = None
    values: tuple | None = None


@dataclass(frozen=True)
class SearchSpec:
    """Optuna search (issue 8 builds the Tune objects in trainables/search.py)."""

    space: dict[str, SearchParam]
    metric: str = "normalized_score"
    mode: str = "max"
    num_samples: int = 10
    max_concurrent: int = 2
    asha: dict | None = None        # {grace_period, reduction_factor, max_t}


@dataclass(frozen=True)
class Sweep:
    name: str
    algorithm: str
    datasets: tuple[DatasetSpec, ...]
    seeds: tuple[int, ...]
    seeds_per_trial: int
    variants: tuple[Variant, ...]
    finetune: FinetuneSpec
    resources: Resources
    corpus: str | None = None
    search: SearchSpec | None = None
    description: str = ""
    source: str = "<sweep>"          # the file it came from (for messages)

    def seed_groups(self) -> list[tuple[int, ...]]:
        n = self.seeds_per_trial
        return [tuple(self.seeds[i:i + n]) for i in range(0, len(self.seeds), n)]

    def variant_needs(self, variant: Variant) -> str | None:
        """What the user must still supply before ``variant`` can run (None when nothing)."""
        p = variant.pretrain
        if isinstance(p, DTPretrainSpec) and p.data == "text" and not (p.corpus or self.corpus):
            return "a language corpus (set `corpus: PATH` in the sweep file or pass --set corpus=PATH)"
        return None

    def to_dict(self) -> dict:
        return asdict(self)


def slugify(text: str) -> str:
    """A variant or dataset name as a directory name: keeps letters, digits and ._+=-."""
    slug = re.sub(r"[^A-Za-z0-9._+=-]+", "_", text).strip("_")
    return slug or "_"


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


# -- the parts -----------------------------------------------------------------------------------
def _env_from_name(name: str) -> str | None:
    stem = Path(name).name.lower()
    for env in ENVS:
        if stem.startswith(env):
            return env
    return None


def _dataset(c: _Check, value: Any, path: str) -> DatasetSpec:
    if isinstance(value, str):
        if value in D4RL_DATASETS:
            return DatasetSpec(name=value, env=_env_from_name(value))
        if value.endswith((".hdf5", ".h5")) or "/" in value:
            env = _env_from_name(value)
            if env is None:
                raise c.fail(path, "a file whose name starts with the environment (hopper..., halfcheetah..., "
                                   "walker2d..., ant...), or the mapping form {name, path, env}", value)
            return DatasetSpec(name=Path(value).stem, env=env, path=value)
        raise c.fail(path, f"one of the 12 D4RL datasets ({', '.join(D4RL_DATASETS)}) or a path to an .hdf5 file",
                     value)
    m = c.mapping(value, path, {"name", "path", "env", "make"})
    if "make" in m:
        mk = c.mapping(m["make"], _join(path, "make"), {"env", "policy", "steps", "seed"}, {"env"})
        make = MakeSpec(
            env=c.string(mk["env"], _join(path, "make.env"), ENVS),
            policy=c.string(mk.get("policy", "random"), _join(path, "make.policy")),
            steps=c.integer(mk.get("steps", 10_000), _join(path, "make.steps"), 1),
            seed=c.integer(mk.get("seed", 0), _join(path, "make.seed"), 0),
        )
        if "path" in m:
            raise UserError(f"{c.source}: {_join(path, 'path')}: a made dataset lives in the artifact store; "
                            "expected either path or make, not both")
        if "env" in m and m["env"] != make.env:
            raise c.fail(_join(path, "env"), f"the same env as make.env ({make.env})", m["env"])
        name = c.string(m.get("name", f"{make.env}-{make.policy}-{make.steps}-s{make.seed}"), _join(path, "name"))
        return DatasetSpec(name=name, env=make.env, make=make)
    if "path" not in m:
        name = c.string(m.get("name"), _join(path, "name"))
        if name not in D4RL_DATASETS:
            raise c.fail(_join(path, "name"), f"one of the 12 D4RL datasets ({', '.join(D4RL_DATASETS)}) "
                                              "when neither path nor make is given", name)
        return DatasetSpec(name=name, env=_env_from_name(name))
    file = c.string(m["path"], _join(path, "path"))
    env = m.get("env", _env_from_name(file))
    if env is None:
        raise UserError(f"{c.source}: {_join(path, 'env')}: missing; expected one of {', '.join(ENVS)} "
                        f"(the file name {Path(file).name!r} does not say)")
    env = c.string(env, _join(path, "env"), ENVS)
    return DatasetSpec(name=c.string(m.get("name", Path(file).stem), _join(path, "name")), env=env, path=file)


def _cql_pretrain(c: _Check, value: Any, path: str) -> CQLPretrainSpec:
    m = c.mapping(value, path, {"kind", "updates", "states", "actions", "policy_temperature",
                                "transition_temperature", "random_start", "config"}, {"kind"})
    d = CQLPretrainSpec(kind=c.string(m["kind"], _join(path, "kind"), CQL_PRETRAIN_KINDS))
    return CQLPretrainSpec(
        kind=d.kind,
        updates=c.integer(m.get("updates", d.updates), _join(path, "updates"), 1),
        states=c.integer(m.get("states", d.states), _join(path, "states"), 1),
        actions=c.integer(m.get("actions", d.actions), _join(path, "actions"), 1),
        policy_temperature=c.number(m.get("policy_temperature", d.policy_temperature),
                                    _join(path, "policy_temperature"), 0, None, True, allow_inf=True),
        transition_temperature=c.number(m.get("transition_temperature", d.transition_temperature),
                                        _join(path, "transition_temperature"), 0, None, True, allow_inf=True),
        random_start=c.boolean(m.get("random_start", d.random_start), _join(path, "random_start")),
        config=_passthrough(c, m.get("config", {}), _join(path, "config")),
    )


def _dt_pretrain(c: _Check, value: Any, path: str) -> DTPretrainSpec:
    m = c.mapping(value, path, {"data", "states", "order", "temperature", "data_seed", "steps", "checkpoints",
                                "corpus", "config"}, {"data"})
    data = c.string(m["data"], _join(path, "data"), DT_PRETRAIN_KINDS)
    d = DTPretrainSpec(data=data)
    steps = c.integer(m.get("steps", d.steps), _join(path, "steps"), 1)
    checkpoints = tuple(sorted({x for x in DT_DEFAULT_CHECKPOINTS if x <= steps} | {steps}))
    if "checkpoints" in m:
        raw = m["checkpoints"]
        if not isinstance(raw, list) or not raw:
            raise c.fail(_join(path, "checkpoints"), "a non-empty list of step numbers", raw)
        checkpoints = tuple(sorted({c.integer(v, _join(_join(path, "checkpoints"), i), 1) for i, v in enumerate(raw)}))
        if checkpoints[-1] > steps:
            raise c.fail(_join(path, "checkpoints"), f"steps <= pretrain steps ({steps})", checkpoints[-1])
    corpus = m.get("corpus")
    if corpus is not None:
        corpus = c.string(corpus, _join(path, "corpus"))
        if data != "text":
            raise c.fail(_join(path, "corpus"), "no corpus unless data is text", corpus)
    return DTPretrainSpec(
        data=data,
        states=c.integer(m.get("states", d.states), _join(path, "states"), 1),
        order=c.integer(m.get("order", d.order), _join(path, "order"), 1),
        temperature=c.number(m.get("temperature", d.temperature), _join(path, "temperature"), 0, None, True,
                             allow_inf=True),
        data_seed=c.integer(m.get("data_seed", d.data_seed), _join(path, "data_seed"), 0),
        steps=steps,
        checkpoints=checkpoints,
        corpus=corpus,
        config=_passthrough(c, m.get("config", {}), _join(path, "config")),
    )


def _passthrough(c: _Check, value: Any, path: str) -> dict:
    """Further fields of the algorithm's own config dataclass; checked against it when the trial is built."""
    cfg = c.mapping(value, path, set(value) if isinstance(value, dict) else set())
    for key, v in cfg.items():
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", key):
            raise c.fail(_join(path, key), "an algorithm config field name (snake_case)", key)
        if not isinstance(v, (int, float, str, bool, type(None), list)):
            raise c.fail(_join(path, key), "a scalar or a list", v)
    return dict(cfg)


FINETUNE_KEYS = {"updates", "extra_updates", "eval_every", "eval_episodes", "finetune_ratio", "pretrain_step",
                 "config"}


def _finetune(c: _Check, value: Any, path: str, base: FinetuneSpec, algorithm: str) -> FinetuneSpec:
    m = c.mapping(value if value is not None else {}, path, FINETUNE_KEYS)
    out = base
    if "updates" in m:
        out = replace(out, updates=c.integer(m["updates"], _join(path, "updates"), 1))
    if "extra_updates" in m:
        out = replace(out, extra_updates=c.integer(m["extra_updates"], _join(path, "extra_updates"), 0))
    if "eval_every" in m:
        out = replace(out, eval_every=c.integer(m["eval_every"], _join(path, "eval_every"), 1))
    if "eval_episodes" in m:
        out = replace(out, eval_episodes=c.integer(m["eval_episodes"], _join(path, "eval_episodes"), 1))
    if "finetune_ratio" in m:
        out = replace(out, finetune_ratio=c.number(m["finetune_ratio"], _join(path, "finetune_ratio"), 0, 1, True))
    if "pretrain_step" in m:
        if algorithm != "dt":
            raise UserError(f"{c.source}: {_join(path, 'pretrain_step')}: only DT sweeps pick a pre-training "
                            "checkpoint; expected no pretrain_step for cql (use pretrain.updates)")
        out = replace(out, pretrain_step=c.integer(m["pretrain_step"], _join(path, "pretrain_step"), 1))
    if "config" in m:
        out = replace(out, config={**base.config, **_passthrough(c, m["config"], _join(path, "config"))})
    return out


def _variant(c: _Check, value: Any, path: str, algorithm: str, base: FinetuneSpec) -> Variant:
    m = c.mapping(value, path, {"name", "pretrain", "finetune"}, {"name"})
    name = c.string(m["name"], _join(path, "name"))
    raw = m.get("pretrain", "none")
    if raw is None or raw == "none":
        pretrain = None
    elif algorithm == "cql":
        pretrain = _cql_pretrain(c, raw, _join(path, "pretrain"))
    else:
        pretrain = _dt_pretrain(c, raw, _join(path, "pretrain"))
    finetune = _finetune(c, m.get("finetune"), _join(path, "finetune"), base, algorithm)
    if finetune.pretrain_step is not None and not isinstance(pretrain, DTPretrainSpec):
        raise UserError(f"{c.source}: {_join(path, 'finetune.pretrain_step')}: a variant without pre-training "
                        "has no checkpoint to pick; expected no pretrain_step")
    if isinstance(pretrain, DTPretrainSpec):
        if finetune.pretrain_step is None:   # the spec's 20k checkpoint, or the last one of a shorter run
            default = DT_DEFAULT_PRETRAIN_STEP
            finetune = replace(finetune, pretrain_step=default if default in pretrain.checkpoints
                               else pretrain.checkpoints[-1])
        if finetune.pretrain_step not in pretrain.checkpoints:
            raise c.fail(_join(path, "finetune.pretrain_step"),
                         f"one of the pre-training checkpoints {list(pretrain.checkpoints)}", finetune.pretrain_step)
    if finetune.eval_every > finetune.updates + finetune.extra_updates:
        raise c.fail(_join(path, "finetune.eval_every"),
                     f"at most the fine-tuning updates ({finetune.updates + finetune.extra_updates})",
                     finetune.eval_every)
    return Variant(name=name, pretrain=pretrain, finetune=finetune)


def _search(c: _Check, value: Any, path: str) -> SearchSpec:
    m = c.mapping(value, path, {"space", "metric", "mode", "num_samples", "max_concurrent", "asha"}, {"space"})
    space_raw = c.mapping(m["space"], _join(path, "space"), set(m["space"]) if isinstance(m["space"], dict) else set())
    if not space_raw:
        raise c.fail(_join(path, "space"), "at least one parameter")
    space: dict[str, SearchParam] = {}
    for key, spec in space_raw.items():
        p = _join(path, f"space.{key}")
        if key not in FINETUNE_KEYS - {"config"} and not re.fullmatch(r"[a-z_][a-z0-9_]*", key):
            raise c.fail(p, "a fine-tuning parameter name", key)
        s = c.mapping(spec, p, {"type", "low", "high", "values"}, {"type"})
        kind = c.string(s["type"], _join(p, "type"), ("uniform", "loguniform", "randint", "choice"))
        if kind == "choice":
            values = s.get("values")
            if not isinstance(values, list) or not values:
                raise c.fail(_join(p, "values"), "a non-empty list", values)
            space[key] = SearchParam(type=kind, values=tuple(values))
            continue
        if "low" not in s or "high" not in s:
            raise UserError(f"{c.source}: {p}: missing low/high; a {kind} parameter needs both")
        low = c.number(s["low"], _join(p, "low"), 0 if kind == "loguniform" else None, None, kind == "loguniform")
        high = c.number(s["high"], _join(p, "high"))
        if not high > low:
            raise c.fail(_join(p, "high"), f"a value > low ({low:g})", high)
        space[key] = SearchParam(type=kind, low=low, high=high)
    asha = None
    if m.get("asha") is not None:
        a = c.mapping(m["asha"], _join(path, "asha"), {"grace_period", "reduction_factor", "max_t"})
        asha = {
            "grace_period": c.integer(a.get("grace_period", 1), _join(path, "asha.grace_period"), 1),
            "reduction_factor": c.number(a.get("reduction_factor", 2), _join(path, "asha.reduction_factor"), 1, None,
                                         True),
        }
        if "max_t" in a:
            asha["max_t"] = c.integer(a["max_t"], _join(path, "asha.max_t"), 1)
    return SearchSpec(
        space=space,
        metric=c.string(m.get("metric", "normalized_score"), _join(path, "metric")),
        mode=c.string(m.get("mode", "max"), _join(path, "mode"), ("max", "min")),
        num_samples=c.integer(m.get("num_samples", 10), _join(path, "num_samples"), 1),
        max_concurrent=c.integer(m.get("max_concurrent", 2), _join(path, "max_concurrent"), 1),
        asha=asha,
    )


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


TOP_KEYS = {"name", "description", "algorithm", "datasets", "seeds", "seeds_per_trial", "variants", "finetune",
            "resources", "corpus", "search"}


def sweep_from_dict(data: Any, source: str = "<sweep>", overrides: dict[str, Any] | None = None) -> Sweep:
    """Validate a parsed sweep file (plus ``--set key=value`` overrides) into a :class:`Sweep`."""
    c = _Check(source)
    if not isinstance(data, dict):
        raise c.fail("", "a YAML mapping at the top level", type(data).__name__)
    data = dict(data)
    for key, value in (overrides or {}).items():
        _apply_override(c, data, key, value)
    m = c.mapping(data, "", TOP_KEYS, {"name", "algorithm", "datasets", "variants"})
    name = c.string(m["name"], "name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name in RESERVED_NAMES:
        raise c.fail("name", "a name of letters, digits, '.', '_' or '-' (it names a directory; "
                             f"not one of {', '.join(RESERVED_NAMES)})", name)
    algorithm = c.string(m["algorithm"], "algorithm", ALGORITHMS)

    raw_datasets = m["datasets"]
    if not isinstance(raw_datasets, list) or not raw_datasets:
        raise c.fail("datasets", "a non-empty list", raw_datasets)
    datasets = tuple(_dataset(c, v, f"datasets[{i}]") for i, v in enumerate(raw_datasets))
    names = [d.name for d in datasets]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise c.fail(f"datasets[{i}]", "distinct dataset names", n)

    seeds = _seeds(c, m.get("seeds", "0-19"), "seeds")
    seeds_per_trial = c.integer(m.get("seeds_per_trial", len(seeds)), "seeds_per_trial", 1)
    if seeds_per_trial > len(seeds):
        raise c.fail("seeds_per_trial", f"at most the number of seeds ({len(seeds)})", seeds_per_trial)

    ft_raw = c.mapping(m.get("finetune") or {}, "finetune", FINETUNE_KEYS - {"extra_updates", "pretrain_step"})
    base = _finetune(c, ft_raw, "finetune", FinetuneSpec(updates=DEFAULT_UPDATES[algorithm]), algorithm)

    raw_variants = m["variants"]
    if not isinstance(raw_variants, list) or not raw_variants:
        raise c.fail("variants", "a non-empty list", raw_variants)
    variants = tuple(_variant(c, v, f"variants[{i}]", algorithm, base) for i, v in enumerate(raw_variants))
    seen: dict[str, int] = {}
    for i, v in enumerate(variants):
        if v.slug in seen:
            raise c.fail(f"variants[{i}].name", f"a name distinct from variants[{seen[v.slug]}] "
                                                f"({variants[seen[v.slug]].name!r}) after slugging", v.name)
        seen[v.slug] = i

    r = c.mapping(m.get("resources") or {}, "resources",
                  {"gpu_per_trial", "cpus_per_trial", "pretrain_gpus", "pretrain_cpus", "max_failures"})
    gpu = c.number(r.get("gpu_per_trial", 0.0), "resources.gpu_per_trial", 0)
    if gpu > 1 and not float(gpu).is_integer():
        raise c.fail("resources.gpu_per_trial", "a fraction in [0, 1] or a whole number of GPUs", gpu)
    resources = Resources(
        gpu_per_trial=gpu,
        cpus_per_trial=c.number(r.get("cpus_per_trial", 1), "resources.cpus_per_trial", 0, None, True),
        pretrain_gpus=c.integer(r.get("pretrain_gpus", 1), "resources.pretrain_gpus", 0),
        pretrain_cpus=c.number(r.get("pretrain_cpus", 1), "resources.pretrain_cpus", 0, None, True),
        max_failures=c.integer(r.get("max_failures", 3), "resources.max_failures", 0),
    )
    corpus = m.get("corpus")
    if corpus is not None:
        corpus = c.string(corpus, "corpus")
    search = _search(c, m["search"], "search") if m.get("search") is not None else None
    description = m.get("description", "")
    if not isinstance(description, str):
        raise c.fail("description", "a string", description)
    return Sweep(name=name, algorithm=algorithm, datasets=datasets, seeds=seeds, seeds_per_trial=seeds_per_trial,
                 variants=variants, finetune=base, resources=resources, corpus=corpus, search=search,
                 description=description, source=source)


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


def load_sweeps(path: str | Path, overrides: dict[str, Any] | None = None) -> list[Sweep]:
    """Read and validate a sweep file: one YAML document per sweep (a file may hold several, e.g. the
    quick start's CQL and DT parts). Every problem names the file and the key."""
    documents = read_documents(path)
    sweeps = [sweep_from_dict(doc, document_source(path, i, len(documents)), overrides)
              for i, doc in enumerate(documents)]
    names = [s.name for s in sweeps]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise UserError(f"{path} (document {i + 1}): name: expected a name distinct from the other documents'"
                            f", got {n!r}")
    return sweeps


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> Sweep:
    """Read a single-sweep file."""
    sweeps = load_sweeps(path, overrides)
    if len(sweeps) != 1:
        raise UserError(f"{path}: holds {len(sweeps)} sweeps; expected one here")
    return sweeps[0]
