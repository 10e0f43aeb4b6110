"""The sweep file: typed dataclasses for the YAML format, validated at the edge.

Every error names the file, the key path and what was expected, e.g.
``sweeps/table6.yaml: variants[2].pretrain.states: expected an integer >= 1, got 'ten'``.
The format is documented in ``sweeps/README.md``. No Ray, no torch here.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from synthrl import registry
from synthrl.config_fields import (VARIANT_ONLY_ROLES, check_value, field_default, field_type, field_with_role, meta,
                                   nested_config, to_jsonable)
from synthrl.data.official import LEVELS
from synthrl.envs.specs import ENVS as ENV_SPECS
from synthrl.errors import UserError
from synthrl.sweep.checks import (_apply_override, _Check, _join, _seeds, document_source,  # noqa: F401
                                  parse_set_options, read_documents)

ENVS = tuple(ENV_SPECS)   # the one list of environments: synthrl/envs/specs.py
D4RL_DATASETS = tuple(f"{env}-{level}-v2" for env in ENVS for level in LEVELS)
MAKE_POLICIES_HINT = "random or a path to a saved policy"
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
class PretrainBlock:
    """A variant's pretrain block as fields of the algorithm's pre-training config (``pretrain_class``)."""

    kind: str        # the value of the field of role pretrain_kind (CQL: pretrain "mdp", DT: data "mc")
    values: dict     # field name -> value: the block's named keys (metadata ``sweep``), their defaults filled in
    config: dict = field(default_factory=dict)   # its `config:`: further fields of that class (JSON types)


@dataclass(frozen=True)
class FinetuneBlock:
    """Fine-tuning settings as fields of the algorithm's config: sweep-wide defaults, overridden per variant."""

    values: dict     # field name -> value: the config's `finetune.*` keys (metadata ``sweep``), defaults filled in
    config: dict = field(default_factory=dict)   # its `config:`: further fields of the config (JSON types)
    total_updates: int = 0        # the field of role updates plus the one of role extra_updates
    eval_every: int | None = None  # the field of role eval_every (None: the config has none)


@dataclass(frozen=True)
class Variant:
    name: str
    pretrain: PretrainBlock | None
    finetune: FinetuneBlock

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
    finetune: FinetuneBlock
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
        if p is None:
            return None
        cls = pretrain_class(self.algorithm)
        corpus = field_with_role(cls, "corpus")
        if corpus is not None and applies(cls, corpus, p.values) and not (p.values.get(corpus) or self.corpus):
            return "a language corpus (set `corpus: PATH` in the sweep file or pass --set corpus=PATH)"
        return None

    def to_dict(self) -> dict:
        return asdict(self)


def slugify(text: str) -> str:
    """A variant or dataset name as a directory name: keeps letters, digits and ._+=-."""
    slug = re.sub(r"[^A-Za-z0-9._+=-]+", "_", text).strip("_")
    return slug or "_"


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


def config_class(algorithm: str):
    """The config dataclass whose fields a sweep's finetune/pretrain blocks are: the registered algorithm's."""
    return registry.algorithm(algorithm).config


def pretrain_class(algorithm: str):
    """Whose fields a variant's pretrain block holds: the nested config of role pretrain, or the flat config."""
    cls = config_class(algorithm)
    nested = field_with_role(cls, "pretrain")
    return nested_config(cls, nested) if nested is not None else cls


def _field(cls, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def _setting(c: _Check, cls, name: str, value: Any, path: str):
    """``value`` checked by the metadata of ``cls.name`` (the one declaration of that setting)."""
    return check_value(field_type(cls, name), meta(_field(cls, name)), value, f"{c.source}: {path}")


def named_keys(cls, block: str) -> dict[str, str]:
    """Sweep key -> field name, for the fields of ``cls`` that are named keys of ``block`` (metadata sweep)."""
    keys = {}
    for f in dataclasses.fields(cls):
        where = meta(f)["sweep"]
        if where and where.split(".", 1)[0] == block:
            keys[where.split(".", 1)[1]] = f.name
    return keys


def applies(cls, name: str, values: dict) -> bool:
    """Whether field ``name`` matters given the other fields' ``values`` (its metadata's ``when``)."""
    when = meta(_field(cls, name))["when"] or {}
    return all(values.get(k, field_default(cls, k)) in tuple(v) for k, v in when.items())


def _config_fields(c: _Check, cls, value: Any, path: str) -> dict:
    """A block's ``config:``: further fields of ``cls``, each checked by its metadata."""
    cfg = c.mapping(value, path, {f.name for f in dataclasses.fields(cls)} if isinstance(value, dict) else set())
    names = {f.name: f for f in dataclasses.fields(cls)}
    return {k: (to_jsonable(_setting(c, cls, k, v, _join(path, k))) if names[k].metadata
                and nested_config(cls, k) is None else v) for k, v in cfg.items()}   # JSON types: trial configs


def _pretrain(c: _Check, algorithm: str, value: Any, path: str) -> PretrainBlock:
    cls = pretrain_class(algorithm)
    keys = named_keys(cls, "pretrain")
    kind_name = field_with_role(cls, "pretrain_kind")
    if kind_name is None:
        raise c.fail(path, f"none ({algorithm} has no pre-training)", value)
    kind_key = next(k for k, name in keys.items() if name == kind_name)
    m = c.mapping(value, path, set(keys) | {"config"}, {kind_key})
    flat = cls is config_class(algorithm)   # a flat config's default kind ('none') is said for the whole variant
    kinds = tuple(k for k in meta(_field(cls, kind_name))["choices"]
                  if not (flat and k == field_default(cls, kind_name)))
    c.string(m[kind_key], _join(path, kind_key), kinds)
    values = {name: _setting(c, cls, name, m[key], _join(path, key)) if key in m else field_default(cls, name)
              for key, name in keys.items()}
    corpus = field_with_role(cls, "corpus")
    if corpus is not None and values[corpus] is not None and not applies(cls, corpus, values):
        unless = " and ".join(f"{_sweep_key(keys, k)} is {' or '.join(map(str, v))}"
                              for k, v in meta(_field(cls, corpus))["when"].items())
        key = _sweep_key(keys, corpus)
        raise c.fail(_join(path, key), f"no {key} unless {unless}", values[corpus])
    steps, cps = field_with_role(cls, "pretrain_updates"), field_with_role(cls, "checkpoints")
    if cps is not None and steps is not None:
        if cps in [keys[k] for k in m if k in keys]:
            values[cps] = tuple(sorted(set(values[cps])))
            if values[cps][-1] > values[steps]:
                raise c.fail(_join(path, _sweep_key(keys, cps)), f"steps <= pretrain steps ({values[steps]})",
                             values[cps][-1])
        else:   # the class's own rule for its default checkpoints, given the block's other settings
            values[cps] = tuple(getattr(cls(**{k: v for k, v in values.items() if k != cps}), cps))
    return PretrainBlock(kind=m[kind_key], values=values,
                         config=_config_fields(c, cls, m.get("config", {}), _join(path, "config")))


def _sweep_key(keys: dict[str, str], name: str) -> str:
    return next((k for k, n in keys.items() if n == name), name)


def finetune_keys(algorithm: str, sweep_wide: bool = False) -> set[str]:
    """The keys of a `finetune:` block: the config's named fine-tuning keys and `config` (sweep-wide: not the
    variant-only ones, e.g. DT's pretrain_step, which a variant picks from its pre-training's checkpoints)."""
    cls = config_class(algorithm)
    return {key for key, name in named_keys(cls, "finetune").items()
            if not (sweep_wide and meta(_field(cls, name))["role"] in VARIANT_ONLY_ROLES)} | {"config"}


def _finetune_block(cls, values: dict, config: dict) -> FinetuneBlock:
    """The block with the two numbers the planner needs, read through the fields' roles."""
    updates, extra, every = (field_with_role(cls, r) for r in ("updates", "extra_updates", "eval_every"))
    if updates is None:
        raise UserError(f"{cls.__name__}: no field has role 'updates' (config_fields.setting): a sweep needs "
                        "to know how long a trial runs")
    total = int(values.get(updates, field_default(cls, updates))) + (
        int(values.get(extra, field_default(cls, extra))) if extra is not None else 0)
    return FinetuneBlock(values=values, config=config, total_updates=total,
                         eval_every=None if every is None else int(values.get(every, field_default(cls, every))))


def base_finetune(algorithm: str) -> FinetuneBlock:
    """The fine-tuning defaults: the algorithm config's (updates 1M for CQL, 100k for DT, ...)."""
    cls = config_class(algorithm)
    keys = finetune_keys(algorithm, sweep_wide=True)
    return _finetune_block(cls, {name: field_default(cls, name) for key, name in named_keys(cls, "finetune").items()
                                 if key in keys}, {})


def _finetune(c: _Check, value: Any, path: str, base: FinetuneBlock, algorithm: str,
              sweep_wide: bool = False) -> FinetuneBlock:
    cls = config_class(algorithm)
    m = c.mapping(value if value is not None else {}, path, finetune_keys(algorithm, sweep_wide))
    keys = named_keys(cls, "finetune")
    values = dict(base.values)
    for key in m:
        if key != "config":
            values[keys[key]] = _setting(c, cls, keys[key], m[key], _join(path, key))
    config = dict(base.config)
    if "config" in m:
        config.update(_config_fields(c, cls, m["config"], _join(path, "config")))
    return _finetune_block(cls, values, config)


def _variant(c: _Check, value: Any, path: str, algorithm: str, base: FinetuneBlock) -> Variant:
    m = c.mapping(value, path, {"name", "pretrain", "finetune"}, {"name"})
    name = c.string(m["name"], _join(path, "name"))
    raw = m.get("pretrain", "none")
    pretrain = None if raw is None or raw == "none" else _pretrain(c, algorithm, raw, _join(path, "pretrain"))
    finetune = _finetune(c, m.get("finetune"), _join(path, "finetune"), base, algorithm)
    cls, pre_cls = config_class(algorithm), pretrain_class(algorithm)
    step, keys = field_with_role(cls, "pretrain_step"), named_keys(cls, "finetune")
    cps = field_with_role(pre_cls, "checkpoints")
    if step is not None:
        where = _join(path, f"finetune.{_sweep_key(keys, step)}")
        if step in finetune.values and pretrain is None:
            raise UserError(f"{c.source}: {where}: a variant without pre-training has no checkpoint to pick; "
                            f"expected no {_sweep_key(keys, step)}")
        if pretrain is not None and cps is not None:
            saved = pretrain.values[cps]
            if step not in finetune.values:   # the config's default step, or the last one of a shorter run
                default = field_default(cls, step)
                finetune = replace(finetune, values={**finetune.values, step: default if default in saved
                                                     else saved[-1]})
            if finetune.values[step] not in saved:
                raise c.fail(where, f"one of the pre-training checkpoints {list(saved)}", finetune.values[step])
    if finetune.eval_every is not None and finetune.eval_every > finetune.total_updates:
        every = _sweep_key(keys, field_with_role(cls, "eval_every"))
        raise c.fail(_join(path, f"finetune.{every}"), f"at most the fine-tuning updates ({finetune.total_updates})",
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
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", key):
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
    algorithm = c.string(m["algorithm"], "algorithm", tuple(registry.algorithms()))

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

    base = _finetune(c, m.get("finetune") or {}, "finetune", base_finetune(algorithm), algorithm, sweep_wide=True)

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
