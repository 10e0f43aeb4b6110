"""Expand a sweep into the pre-training artifacts to build and the fine-tuning trials to run.

One trial per (variant, dataset, seed group): a seed ensemble trained in one process. Pre-training
is shared: CQL pre-trains once per (pre-training spec, environment) since the synthetic MDP is
mapped to the environment's dimensions; DT once per pre-training spec (every dataset and seed
fine-tunes from the same checkpoints; the checkpoint step is a fine-tuning choice). No Ray here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

from synthrl import registry
from synthrl.config_fields import (content_key, field_default, field_with_role, fields_with_role, nested_config,
                                   to_jsonable)
from synthrl.envs.specs import ENVS as ENV_SPECS
from synthrl.errors import UserError
from synthrl.sweep.datasets import (build_made_dataset, dataset_file, make_params,  # noqa: F401 (callers' names)
                                    missing_datasets, missing_datasets_message, policy_content)
from synthrl.sweep.schema import (DatasetSpec, Sweep, Variant, applies, config_class, named_keys, pretrain_class,
                                  slugify)
from synthrl.utils.io import canonical_json, params_key

# Throughputs behind the cost estimates, per trial process: each algorithm's registry entry carries them
# (Algorithm.rates: "gpu" = speed goals on one H100, "cpu" = measured on one core of the 2-core development
# machine, with `batch` / `tokens`: the batch the CPU rate was measured at; CPU time scales with it).
# An algorithm without rates is costed at these (CQL's CPU rates: a guess, said so in the plan).
DEFAULT_RATES = {"gpu": {"seed_updates_per_s": 20_000.0, "eval_s_per_seed_round": 0.15, "pretrain_updates_per_s": 3000.0},
                 "cpu": {"seed_updates_per_s": 4.5, "batch": 256, "eval_s_per_seed_round": 0.55,
                         "pretrain_updates_per_s": 32.0}}
def rates(algorithm: str, where: str) -> dict:
    """The cost rates ("gpu" or "cpu") of a registered algorithm."""
    return (registry.algorithm(algorithm).rates or DEFAULT_RATES)[where]


def rate_source(algorithm: str, where: str) -> str:
    """Where the plan's rates come from, in words (printed beside the estimates)."""
    algo = registry.algorithm(algorithm)
    if algo.rates is None:
        return f"at default rates ({algo.label} registers none: a guess)"
    if where == "gpu":
        return f"at the H100 speed goals of the {algo.label} issue (goals: not measured on a GPU yet)"
    r = algo.rates["cpu"]
    pre = (f"{1000 / r['pretrain_updates_per_s']:.0f} ms per step of {r['tokens']} tokens" if "tokens" in r
           else f"{r['pretrain_updates_per_s']:g} updates/s")
    return (f"at the rates measured on one core of the 2-core development machine (benchmarks/RESULTS.md: "
            f"{algo.label} {r['seed_updates_per_s']:g} seed-updates/s at batch {r['batch']}, evaluation "
            f"{r['eval_s_per_seed_round']:.2f} s per seed and round, pre-training {pre})")


@dataclass(frozen=True)
class ArtifactJob:
    """One pre-training run, shared by every trial whose ``artifact`` names it."""

    artifact_id: str         # the first 12 characters of the artifact's content key (the store's, the runner's)
    algorithm: str
    pretrain: dict           # the variant's pre-training settings: field name -> value (its named keys)
    env: str | None          # CQL: the environment(s) whose dims the synthetic data is mapped to ("a,b": same dims)
    config: dict             # a representative trial config (what build_pretrain_artifact receives)
    variants: tuple[str, ...]
    needs: str | None        # what the user must supply first (DT+Wiki corpus), or None
    gpu_hours: float
    pretrain_updates: int = 0   # the field of role pretrain_updates (the cost)

    def describe(self) -> str:
        """The pre-training block in one line: its kind, then its settings (and the env whose dims it maps to)."""
        cls = pretrain_class(self.algorithm)
        hidden = {field_with_role(cls, "pretrain_kind"), field_with_role(cls, "checkpoints")}
        shown = [f"{key}={_k(v) if isinstance(v, int) and not isinstance(v, bool) else _short(v)}"
                 for key, name in named_keys(cls, "pretrain").items()
                 if name not in hidden and (v := self.pretrain.get(name)) is not None
                 and applies(cls, name, self.pretrain)]
        kind = self.pretrain[field_with_role(cls, "pretrain_kind")]
        return " ".join([str(kind)] + shown) + (f", {self.env} dims" if self.env else "")


@dataclass(frozen=True)
class Trial:
    trial_id: str            # "<variant>/<dataset>/<seed group>", also the run directory below runs/
    variant: str
    dataset: DatasetSpec
    seeds: tuple[int, ...]
    group: str               # "s0-19"
    artifact: str | None     # ArtifactJob.artifact_id this trial fine-tunes from
    needs: str | None
    config: dict             # algorithm config fields (JSON types; dataset filled in at launch)
    total_updates: int
    gpu_hours: float

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Trial":
        ds = dict(d["dataset"])
        if ds.get("make") is not None:
            from synthrl.sweep.schema import MakeSpec

            ds["make"] = MakeSpec(**ds["make"])
        return Trial(**{**d, "dataset": DatasetSpec(**ds), "seeds": tuple(d["seeds"])})


@dataclass(frozen=True)
class Plan:
    sweep: Sweep
    artifacts: tuple[ArtifactJob, ...]
    trials: tuple[Trial, ...]
    notices: tuple[str, ...]

    @property
    def gpu_hours(self) -> float:
        return sum(a.gpu_hours for a in self.artifacts) + sum(t.gpu_hours for t in self.trials)

    def runnable_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.needs is None]

    def artifact(self, artifact_id: str) -> ArtifactJob:
        return next(a for a in self.artifacts if a.artifact_id == artifact_id)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_short(x) for x in v)
    return str(v)


def _k(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def seed_group_name(seeds: tuple[int, ...]) -> str:
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"s{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"s{seeds[0]}"
    return "s" + "_".join(str(s) for s in seeds)


def trial_config(sweep: Sweep, variant: Variant, dataset: DatasetSpec, seeds: tuple[int, ...]) -> dict:
    """The algorithm-config fields of one trial (JSON types), named as the algorithm's config dataclass."""
    cls, pre_cls = config_class(sweep.algorithm), pretrain_class(sweep.algorithm)
    extra = field_with_role(cls, "extra_updates")
    ft = variant.finetune
    config: dict[str, Any] = {"dataset": dataset.name, "seeds": list(seeds)}
    config.update({name: to_jsonable(v) for name, v in ft.values.items() if not (name == extra and not v)})
    nested = field_with_role(cls, "pretrain")   # DT: a pre-training config of its own; CQL: fields of its config
    p = variant.pretrain
    if p is None:
        kind = nested or field_with_role(cls, "pretrain_kind")
        if kind is not None:
            config[kind] = field_default(cls, kind)   # the default: no pre-training (None, 'none')
    elif nested is None:
        config.update({name: to_jsonable(v) for name, v in p.values.items()}, **p.config)
    else:
        config[nested] = {**_nested_pretrain(sweep, p), **p.config}
    config.update(ft.config)
    return config


def _nested_pretrain(sweep: Sweep, p) -> dict:
    """A nested pre-training block's fields (None left out), the sweep's corpus filled in where one applies."""
    cls = pretrain_class(sweep.algorithm)
    pre = {name: to_jsonable(v) for name, v in p.values.items() if v is not None}
    corpus = field_with_role(cls, "corpus")
    if corpus is not None and applies(cls, corpus, pre):
        pre[corpus] = p.values.get(corpus) or sweep.corpus
    return pre


def artifact_key(sweep: Sweep, dataset: DatasetSpec, config: dict) -> str:
    """The content key of the pre-training artifact of a trial of ``config`` on ``dataset``: the one its runner
    computes and stores it under (Algorithm.pretrain_key). Until that can be computed (an algorithm without the
    hook; a corpus file not there yet, whose content is part of the key) the trial's pre-training settings key it."""
    algo = registry.algorithm(sweep.algorithm)
    if algo.pretrain_key is not None:
        path = dataset_file(dataset)
        try:
            key = algo.pretrain_key(build_config(sweep.algorithm, config, str(path) if path else dataset.name, "cpu"),
                                    ENV_SPECS[dataset.env])
        except UserError:
            key = None
        if key is not None:
            return key
    nested = field_with_role(config_class(sweep.algorithm), "pretrain")
    settings = config[nested] if nested else {k: v for k, v in config.items() if k not in ("dataset", "seeds")}
    ident = {"algorithm": sweep.algorithm, "pretrain": settings}
    if algo.pretrain_family == registry.FORWARD_DYNAMICS:
        ident["env"] = dataset.env   # the synthetic MDP is mapped to the env's dims
    return content_key(sweep.algorithm, ident)


def _trial_gpu_hours(algorithm: str, seeds: int, updates: int, eval_every: int) -> float:
    return _trial_hours(rates(algorithm, "gpu"), seeds, updates, eval_every)


def _trial_hours(r: dict, seeds: int, updates: int, eval_every: int, batch_scale: float = 1.0) -> float:
    evals = max(1, updates // eval_every)
    seconds = seeds * updates * batch_scale / r["seed_updates_per_s"] + evals * seeds * r["eval_s_per_seed_round"]
    return seconds / 3600


def trial_cpu_hours(algorithm: str, trial: "Trial") -> float:
    """One trial on one CPU core at the measured CPU rates, scaled to its batch size."""
    r = rates(algorithm, "cpu")
    scale = _cost_scale(config_class(algorithm), trial.config, r["batch"])
    every = _eval_every(algorithm, trial.config, trial.total_updates)
    return _trial_hours(r, len(trial.seeds), trial.total_updates, every, scale / r["batch"])


def _cost_scale(cls, values: dict, fallback: float) -> float:
    """The product of ``cls``'s fields of role cost_scale (given in ``values``, else their defaults)."""
    names = fields_with_role(cls, "cost_scale")
    return math.prod(values.get(n, field_default(cls, n)) for n in names) if names else fallback


def _eval_every(algorithm: str, config: dict, total_updates: int) -> int:
    """A trial's updates between evaluations (its field of role eval_every; none: one evaluation at the end)."""
    every = field_with_role(config_class(algorithm), "eval_every")
    return int(config.get(every, total_updates)) if every else max(1, total_updates)


def artifact_cpu_hours(artifact: "ArtifactJob") -> float:
    """One pre-training job on one CPU core at the measured CPU rates (DT: scaled to its tokens per step)."""
    r, steps = rates(artifact.algorithm, "cpu"), artifact.pretrain_updates
    if "tokens" not in r:   # a rate per update
        return steps / r["pretrain_updates_per_s"] / 3600
    nested = field_with_role(config_class(artifact.algorithm), "pretrain")
    pre = (artifact.config.get(nested) or {}) if nested else artifact.config
    tokens = _cost_scale(pretrain_class(artifact.algorithm), pre, r["tokens"])
    return steps * tokens / r["tokens"] / r["pretrain_updates_per_s"] / 3600


@dataclass(frozen=True)
class Machine:
    """Where a sweep would run, for the wall-clock estimate: this machine or a cluster's totals."""

    label: str        # "this machine", "the cluster at HEAD:6379"
    cpus: float
    gpus: float


def wall_clock_estimate(plan: "Plan", machine: Machine) -> str:
    """Rough wall-clock on ``machine``: stage 1 then stage 2, as many jobs at once as the resources allow.
    GPU trials when it has GPUs and the sweep asks for them (goal rates), else CPU (measured rates)."""
    res = plan.sweep.resources
    trials = plan.runnable_trials()
    artifacts = [a for a in plan.artifacts if a.needs is None]
    cpu_slots = max(1, int(machine.cpus // max(res.cpus_per_trial, 1e-9)))
    if machine.gpus > 0 and res.gpu_per_trial > 0:
        slots = min(cpu_slots, max(1, int(machine.gpus / res.gpu_per_trial + 1e-6)))
        pre_slots = max(1, int(machine.gpus // max(1, res.pretrain_gpus)))
        hours = (sum(a.gpu_hours / max(1, res.pretrain_gpus) for a in artifacts) / min(pre_slots, max(1, len(artifacts)))
                 + sum(t.gpu_hours for t in trials) / min(slots, max(1, len(trials))))
        how = f"on {machine.gpus:g} GPU(s), {min(slots, len(trials) or 1)} trial(s) at once, at the goal rates"
    else:
        pre_slots = max(1, int(machine.cpus // max(res.pretrain_cpus, 1e-9)))
        hours = (sum(artifact_cpu_hours(a) for a in artifacts) / min(pre_slots, max(1, len(artifacts)))
                 + sum(trial_cpu_hours(plan.sweep.algorithm, t) for t in trials) / min(cpu_slots, max(1, len(trials))))
        gpu_note = "no GPU" if machine.gpus <= 0 else "the sweep asks for no GPU"
        how = f"on CPU ({gpu_note}), {min(cpu_slots, len(trials) or 1)} trial(s) at once, at the measured CPU rates"
    if res.cpus_per_trial > machine.cpus:
        how += f" (but each trial asks for {res.cpus_per_trial:g} CPUs: `sweep run` would refuse it there)"
    return f"{machine.label} ({machine.cpus:g} CPUs, {machine.gpus:g} GPUs): about {_hours(hours)} wall-clock {how}"


def _hours(hours: float) -> str:
    if hours >= 48:
        return f"{hours / 24:.1f} days"
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{max(1, round(hours * 60))} min"


def make_plan(sweep: Sweep) -> Plan:
    """Expand ``sweep`` into artifacts and trials (deterministic order: variant, dataset, seed group)."""
    artifacts: dict[str, ArtifactJob] = {}
    trials: list[Trial] = []
    notices: list[str] = []
    for variant in sweep.variants:
        needs = sweep.variant_needs(variant)
        if needs:
            notices.append(f"variant {variant.name!r} needs {needs}; it is planned but will be refused at launch "
                           "until then (the other variants still run)")
        for dataset in sweep.datasets:
            artifact_id = None
            if variant.pretrain is not None:
                config = trial_config(sweep, variant, dataset, sweep.seed_groups()[0])
                artifact_id = artifact_key(sweep, dataset, config)[:12]
                if artifact_id not in artifacts:
                    pre_cls = pretrain_class(sweep.algorithm)
                    steps_name = field_with_role(pre_cls, "pretrain_updates")
                    steps = int(variant.pretrain.values.get(steps_name, 0)) if steps_name else 0
                    hours = steps / rates(sweep.algorithm, "gpu")["pretrain_updates_per_s"] / 3600
                    forward = registry.algorithm(sweep.algorithm).pretrain_family == registry.FORWARD_DYNAMICS
                    artifacts[artifact_id] = ArtifactJob(
                        artifact_id=artifact_id, algorithm=sweep.algorithm, pretrain=dict(variant.pretrain.values),
                        env=dataset.env if forward else None, config=config, variants=(variant.name,), needs=needs,
                        gpu_hours=hours * max(1, sweep.resources.pretrain_gpus), pretrain_updates=steps)
                else:   # another variant, or an environment of the same dims, sharing the artifact
                    a = artifacts[artifact_id]
                    envs = a.env.split(",") if a.env else []
                    artifacts[artifact_id] = dataclasses.replace(
                        a, variants=a.variants + (variant.name,) * (variant.name not in a.variants),
                        env=",".join(envs + [dataset.env] * (dataset.env not in envs)) if a.env else None)
            for seeds in sweep.seed_groups():
                group = seed_group_name(seeds)
                total = variant.finetune.total_updates
                config = trial_config(sweep, variant, dataset, seeds)
                trials.append(Trial(
                    trial_id=f"{variant.slug}/{slugify(dataset.name)}/{group}",
                    variant=variant.name, dataset=dataset, seeds=seeds, group=group, artifact=artifact_id,
                    needs=needs, config=config, total_updates=total,
                    gpu_hours=_trial_gpu_hours(sweep.algorithm, len(seeds), total,
                                               _eval_every(sweep.algorithm, config, total)),
                ))
    return Plan(sweep=sweep, artifacts=tuple(artifacts.values()), trials=tuple(trials), notices=tuple(notices))


# -- algorithm configs -----------------------------------------------------------------------------
def build_config(algorithm: str, config: dict, dataset_path: str, device: str):
    """Turn a trial's JSON config into the algorithm's typed config (its registered dataclass), validated."""
    Config = config_class(algorithm)
    nested = field_with_role(Config, "pretrain")   # DT's pretrain: a config of its own
    cfg = dict(config, dataset=dataset_path, device=device)
    names = {f.name for f in dataclasses.fields(Config)}
    if nested is not None and isinstance(cfg.get(nested), dict):
        pretrain_cls, pre = nested_config(Config, nested), dict(cfg[nested])
        pre_names = {f.name for f in dataclasses.fields(pretrain_cls)}
        if "device" in pre_names:
            pre["device"] = device
        unknown = sorted(set(pre) - pre_names)
        if unknown:
            raise UserError(f"{nested}: {', '.join(unknown)}: not a field of {pretrain_cls.__name__}")
        _match_sequence_types(pretrain_cls, pre)
        cfg[nested] = pretrain_cls(**pre)
    _match_sequence_types(Config, cfg)
    unknown = sorted(set(cfg) - names)
    if unknown:
        raise UserError(f"{', '.join(unknown)}: not a field of {Config.__name__} (check the sweep's finetune.config)")
    obj = Config(**cfg)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


def _match_sequence_types(cls, values: dict) -> None:
    """JSON gives lists; a field whose default is a tuple gets a tuple (configs compare and hash alike)."""
    for f in dataclasses.fields(cls):
        if f.name in values and isinstance(values[f.name], list):
            default = f.default if f.default is not dataclasses.MISSING else None
            if isinstance(default, tuple):
                values[f.name] = tuple(values[f.name])


def plan_summary(plan: Plan, show_trials: bool = False, machine: Machine | None = None) -> str:
    """What ``synthrl sweep plan`` prints: trials, artifacts, resources, missing dataset files, the cost
    on GPUs (goal rates) and on CPUs (measured rates) and, given ``machine``, the wall-clock there; runs nothing."""
    s = plan.sweep
    res = s.resources
    lines = [
        f"sweep {s.name} ({s.algorithm}) from {s.source}",
        f"  {len(s.datasets)} datasets x {len(s.variants)} variants x {len(s.seed_groups())} seed groups "
        f"({len(s.seeds)} seeds, {s.seeds_per_trial} per trial) = {len(plan.trials)} trials",
        "",
        "variants:",
    ]
    width = max(len(v.name) for v in s.variants)
    for v in s.variants:
        arts = sorted({t.artifact for t in plan.trials if t.variant == v.name and t.artifact})
        pre = "no pre-training" if v.pretrain is None else f"pre-training {', '.join(arts)}"
        needs = "  [NEEDS " + s.variant_needs(v).split(" (")[0] + "]" if s.variant_needs(v) else ""
        lines.append(f"  {v.name:<{width}}  {_finetune_text(s.algorithm, v)}; {pre}{needs}")
    lines += ["", f"pre-training artifacts (stage 1, {res.pretrain_gpus} GPU each): {len(plan.artifacts)}"]
    for a in plan.artifacts:
        needs = "  [NEEDS corpus]" if a.needs else ""
        lines.append(f"  {a.artifact_id}  {a.describe()}  ~{a.gpu_hours:.2f} GPU-h{needs}")
    lines += ["", "datasets:"]
    for d in s.datasets:
        where = (f"made at launch: {d.make.env} {d.make.policy} {d.make.steps} steps seed {d.make.seed}" if d.make
                 else str(dataset_file(d)))
        absent = "  [MISSING]" if d.make is None and not dataset_file(d).is_file() else ""
        lines.append(f"  {d.name} ({d.env}): {where}{absent}")
    missing = missing_datasets_message(s)
    if missing:
        lines.append(f"missing: {missing.split(': ', 1)[1]} (`sweep run` refuses until they exist)")
    gpu = f"{res.gpu_per_trial:g} GPU" if res.gpu_per_trial else "no GPU"
    lines += ["", f"resources: each trial {gpu} + {res.cpus_per_trial:g} CPU; pre-training {res.pretrain_gpus} GPU + "
                  f"{res.pretrain_cpus:g} CPU; up to {res.max_failures} retries per trial"]
    if s.search is not None:
        lines.append(f"search: Optuna over {', '.join(s.search.space)} ({s.search.num_samples} samples per trial "
                     f"slot, {s.search.max_concurrent} at once, metric {s.search.metric} {s.search.mode})")
    ft_hours = sum(t.gpu_hours for t in plan.trials)
    pt_hours = sum(a.gpu_hours for a in plan.artifacts)
    ft_cpu = sum(trial_cpu_hours(s.algorithm, t) for t in plan.trials)
    pt_cpu = sum(artifact_cpu_hours(a) for a in plan.artifacts)
    lines.append(f"estimated GPU-hours: {plan.gpu_hours:.1f} (pre-training {pt_hours:.1f} + fine-tuning "
                 f"{ft_hours:.1f}) {rate_source(s.algorithm, 'gpu')}")
    lines.append(f"estimated CPU-core-hours: {pt_cpu + ft_cpu:.1f} (pre-training {pt_cpu:.1f} + fine-tuning "
                 f"{ft_cpu:.1f}) {rate_source(s.algorithm, 'cpu')}")
    if machine is not None:
        lines.append(f"on {wall_clock_estimate(plan, machine)}")
    if show_trials:
        lines += ["", "trials:"]
        for t in plan.trials:
            art = f" <- {t.artifact}" if t.artifact else ""
            lines.append(f"  {t.trial_id}  seeds {','.join(map(str, t.seeds))}  {_k(t.total_updates)} updates{art}")
    for n in plan.notices:
        lines.append(f"notice: {n}")
    return "\n".join(lines)


def _finetune_text(algorithm: str, variant: Variant) -> str:
    """'1M+100k updates, eval every 5k, eval_episodes 5': the run's length, then its other named fine-tuning
    settings where they are not the config's defaults."""
    cls, ft = config_class(algorithm), variant.finetune
    updates, extra, every = (field_with_role(cls, r) for r in ("updates", "extra_updates", "eval_every"))
    text = f"{_k(ft.values[updates])}" + (f"+{_k(ft.values[extra])}" if extra and ft.values.get(extra) else "")
    text += " updates" + (f", eval every {_k(ft.eval_every)}" if ft.eval_every is not None else "")
    for key, name in named_keys(cls, "finetune").items():
        if name not in (updates, extra, every) and name in ft.values and ft.values[name] != field_default(cls, name):
            value = ft.values[name]
            text += f", {key} {_k(value) if isinstance(value, int) and not isinstance(value, bool) else _short(value)}"
    return text


def plan_fingerprint(plan: Plan) -> str:
    """Changes when anything that changes a trial's result changes (used to refuse a mismatched resume)."""
    return params_key({"trials": [canonical_json(t.to_dict()) for t in plan.trials]})[:16]
