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
from synthrl.config_fields import check_value, field_default, field_type, meta, nested_config, to_jsonable
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
class CQLPretrainSpec:
    """A CQL variant's pretrain block, checked against CQLConfig's fields (their defaults filled in)."""

    kind: str                      # -> CQLConfig.pretrain (a field with sweep="pretrain.kind")
    updates: int
    states: int
    actions: int
    policy_temperature: float
    transition_temperature: float
    random_start: bool
    config: dict = field(default_factory=dict)   # further CQLConfig fields (trajectories, length, ...)


@dataclass(frozen=True)
class DTPretrainSpec:
    """A DT variant's pretrain block, checked against DTPretrainConfig's fields (their defaults filled in)."""

    data: str
    states: int
    order: int
    temperature: float
    data_seed: int
    steps: int
    checkpoints: tuple[int, ...]   # default: the spec's list cut to `steps`, plus `steps`
    corpus: str | None = None      # text only: the user's language corpus
    config: dict = field(default_factory=dict)   # further DTPretrainConfig fields (batch_size, seq_len, ...)


@dataclass(frozen=True)
class FinetuneSpec:
    """Fine-tuning settings (fields of the algorithm's config): sweep-wide defaults, overridden per variant."""

    updates: int
    extra_updates: int
    eval_every: int
    eval_episodes: int
    finetune_ratio: float
    pretrain_step: int | None = None   # DT: which pre-training checkpoint to fine-tune from
    config: dict = field(default_factory=dict)   # further algorithm-config fields, checked by their metadata


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
    """Whose fields a variant's pretrain block holds: the nested pre-training config, or the flat config."""
    cls = config_class(algorithm)
    return nested_config(cls, "pretrain") or cls


def _setting(c: _Check, cls, name: str, value: Any, path: str):
    """``value`` checked by the metadata of ``cls.name`` (the one declaration of that setting)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return check_value(field_type(cls, name), meta(f), value, f"{c.source}: {path}")


def _named_keys(cls, block: str) -> dict[str, str]:
    """Sweep key -> field name, for the fields of ``cls`` that are named keys of ``block`` (metadata sweep)."""
    keys = {}
    for f in dataclasses.fields(cls):
        where = meta(f)["sweep"]
        if where and where.split(".", 1)[0] == block:
            keys[where.split(".", 1)[1]] = f.name
    return keys


def _block(c: _Check, cls, m: dict, path: str, block: str) -> dict:
    """The named keys of ``block`` (given, or the fields' defaults), checked; keyed by sweep key."""
    out = {}
    for key, name in _named_keys(cls, block).items():
        value = m[key] if key in m else field_default(cls, name)
        out[key] = _setting(c, cls, name, value, _join(path, key)) if key in m else value
    return out


def _config_fields(c: _Check, cls, value: Any, path: str) -> dict:
    """A block's ``config:``: further fields of ``cls``, each checked by its metadata."""
    cfg = c.mapping(value, path, {f.name for f in dataclasses.fields(cls)} if isinstance(value, dict) else set())
    names = {f.name: f for f in dataclasses.fields(cls)}
    return {k: (to_jsonable(_setting(c, cls, k, v, _join(path, k))) if names[k].metadata
                and nested_config(cls, k) is None else v) for k, v in cfg.items()}   # JSON types: trial configs


def _pretrain(c: _Check, algorithm: str, value: Any, path: str) -> CQLPretrainSpec | DTPretrainSpec:
    cls = pretrain_class(algorithm)
    keys = _named_keys(cls, "pretrain")
    kind_key = next(iter(keys))   # the block's first key names the kind (CQL: kind, DT: data)
    m = c.mapping(value, path, set(keys) | {"config"}, {kind_key})
    kinds = tuple(k for k in meta(next(f for f in dataclasses.fields(cls) if f.name == keys[kind_key]))["choices"]
                  if k != "none")   # `pretrain: none` is said for the whole variant
    c.string(m[kind_key], _join(path, kind_key), kinds)
    values = _block(c, cls, m, path, "pretrain")
    values["config"] = _config_fields(c, cls, m.get("config", {}), _join(path, "config"))
    if cls is config_class(algorithm):   # pre-training settings are fields of the algorithm's own config
        return CQLPretrainSpec(**values)
    steps = values["steps"]
    if "checkpoints" in m:
        cps = tuple(sorted(set(values["checkpoints"])))
        if cps[-1] > steps:
            raise c.fail(_join(path, "checkpoints"), f"steps <= pretrain steps ({steps})", cps[-1])
    else:   # the spec's set, cut to `steps`, plus `steps` (DTPretrainConfig's own rule)
        cps = cls(steps=steps).checkpoints
    values["checkpoints"] = tuple(cps)
    if values["corpus"] is not None and values["data"] != "text":
        raise c.fail(_join(path, "corpus"), "no corpus unless data is text", values["corpus"])
    return DTPretrainSpec(**values)


FINETUNE_KEYS = {"updates", "extra_updates", "eval_every", "eval_episodes", "finetune_ratio", "pretrain_step",
                 "config"}


def base_finetune(algorithm: str) -> FinetuneSpec:
    """The fine-tuning defaults: the algorithm config's (updates 1M for CQL, 100k for DT, ...)."""
    cls = config_class(algorithm)
    values = {key: field_default(cls, name) for key, name in _named_keys(cls, "finetune").items()}
    values["pretrain_step"] = None   # chosen per variant from its pre-training's checkpoints
    return FinetuneSpec(**values)


def _finetune(c: _Check, value: Any, path: str, base: FinetuneSpec, algorithm: str) -> FinetuneSpec:
    cls = config_class(algorithm)
    m = c.mapping(value if value is not None else {}, path, FINETUNE_KEYS)
    keys = _named_keys(cls, "finetune")
    out = base
    for key in m:
        if key == "config":
            continue
        if key not in keys:   # e.g. pretrain_step, which only DT's config has
            raise UserError(f"{c.source}: {_join(path, key)}: {algorithm} has no such setting (only "
                            f"{', '.join(sorted(keys))}); expected no {key} for {algorithm}")
        out = replace(out, **{key: _setting(c, cls, keys[key], m[key], _join(path, key))})
    if "config" in m:
        out = replace(out, config={**base.config, **_config_fields(c, cls, m["config"], _join(path, "config"))})
    return out


def _variant(c: _Check, value: Any, path: str, algorithm: str, base: FinetuneSpec) -> Variant:
    m = c.mapping(value, path, {"name", "pretrain", "finetune"}, {"name"})
    name = c.string(m["name"], _join(path, "name"))
    raw = m.get("pretrain", "none")
    if raw is None or raw == "none":
        pretrain = None
    else:
        pretrain = _pretrain(c, algorithm, raw, _join(path, "pretrain"))
    finetune = _finetune(c, m.get("finetune"), _join(path, "finetune"), base, algorithm)
    if finetune.pretrain_step is not None and not isinstance(pretrain, DTPretrainSpec):
        raise UserError(f"{c.source}: {_join(path, 'finetune.pretrain_step')}: a variant without pre-training "
                        "has no checkpoint to pick; expected no pretrain_step")
    if isinstance(pretrain, DTPretrainSpec):
        if finetune.pretrain_step is None:   # the spec's 20k checkpoint, or the last one of a shorter run
            default = field_default(config_class(algorithm), "pretrain_step")
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

    ft_raw = c.mapping(m.get("finetune") or {}, "finetune", FINETUNE_KEYS - {"extra_updates", "pretrain_step"})
    base = _finetune(c, ft_raw, "finetune", base_finetune(algorithm), algorithm)

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
