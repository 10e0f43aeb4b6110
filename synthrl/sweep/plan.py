"""Expand a sweep into the pre-training artifacts to build and the fine-tuning trials to run.

One trial per (variant, dataset, seed group): a seed ensemble trained in one process. Pre-training
is shared: CQL pre-trains once per (pre-training spec, environment) since the synthetic MDP is
mapped to the environment's dimensions; DT once per pre-training spec (every dataset and seed
fine-tunes from the same checkpoints; the checkpoint step is a fine-tuning choice). No Ray here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synthrl.data.dataset import d4rl_dataset_dir   # the d4rl package's cache layout, one place
from synthrl.data.official import d4rl_file_name
from synthrl.errors import UserError
from synthrl.sweep.schema import (
    CQLPretrainSpec,
    DatasetSpec,
    DTPretrainSpec,
    Sweep,
    Variant,
    slugify,
)
from synthrl.utils.io import canonical_json, params_key

# Throughputs behind the cost estimates, per trial process (benchmarks/RESULTS.md keeps the sources).
# "gpu": the speed goals of the CQL and DT issues on one H100 -- goals, not measured until a GPU session
# measures them; "cpu": measured on one core of the 2-core development machine with the spec's networks.
# `batch` / `tokens`: the batch the CPU rate was measured at (CPU time is compute-bound: it scales with it).
RATES = {
    "cql": {"seed_updates_per_s": 20_000.0, "eval_s_per_seed_round": 3.0 / 20, "pretrain_updates_per_s": 100_000 / 30},
    "dt": {"seed_updates_per_s": 20 * 100_000 / 300, "eval_s_per_seed_round": 15.0 / 20,
           "pretrain_updates_per_s": 80_000 / 240},
}
CPU_RATES = {
    # bench_cql.py, E = 1, HalfCheetah dims, batch 256: 4.5-7.3 seed-updates/s (the low end here);
    # forward-dynamics pre-training 32-35 updates/s; a 200-episode evaluation round on 2 workers 10.9 s
    "cql": {"seed_updates_per_s": 4.5, "batch": 256, "eval_s_per_seed_round": 10.9 / 20,
            "pretrain_updates_per_s": 32.0},
    # bench_dt.py: fine-tuning 2.0 seed-updates/s at batch 16 (E = 1); pre-training 363 ms/step at 4 x 128
    # tokens; DT's evaluation is not measured on CPU: the CQL round's environment stepping stands in for it
    "dt": {"seed_updates_per_s": 2.0, "batch": 16, "eval_s_per_seed_round": 10.9 / 20,
           "pretrain_updates_per_s": 1 / 0.363, "tokens": 4 * 128},
}
RATE_SOURCES = {
    "gpu": "at the H100 speed goals of the CQL/DT issues (goals: not measured on a GPU yet)",
    "cpu": ("at the rates measured on one core of the 2-core development machine (benchmarks/RESULTS.md: CQL "
            f"{CPU_RATES['cql']['seed_updates_per_s']:g} seed-updates/s at batch 256, DT "
            f"{CPU_RATES['dt']['seed_updates_per_s']:.1f} at batch 16, evaluation "
            f"{CPU_RATES['cql']['eval_s_per_seed_round']:.2f} s per seed and round (measured for CQL), "
            f"pre-training CQL {CPU_RATES['cql']['pretrain_updates_per_s']:g} updates/s, DT "
            f"{1000 / CPU_RATES['dt']['pretrain_updates_per_s']:.0f} ms per 4 x 128-token step)"),
}


@dataclass(frozen=True)
class ArtifactJob:
    """One pre-training run, shared by every trial whose ``artifact`` names it."""

    artifact_id: str         # short content hash of (algorithm, pre-training spec, env dims for CQL)
    algorithm: str
    pretrain: dict           # the variant's pre-training spec
    env: str | None          # CQL: the environment whose dims the synthetic data is mapped to
    config: dict             # a representative trial config (what build_pretrain_artifact receives)
    variants: tuple[str, ...]
    needs: str | None        # what the user must supply first (DT+Wiki corpus), or None
    gpu_hours: float

    def describe(self) -> str:
        p = self.pretrain
        if self.algorithm == "cql":
            text = f"{p['kind']} S={p['states']} A={p['actions']}"
            if p["kind"] == "mdp":
                text += f" tau_pi={p['policy_temperature']:g} tau_T={p['transition_temperature']:g}"
            text += f" {_k(p['updates'])} updates, {self.env} dims"
        else:
            text = f"{p['data']} steps={_k(p['steps'])}"
            if p["data"] == "text":
                text += f" corpus={p.get('corpus')}"
            else:
                text += f" M={p['states']} n={p['order']} tau={p['temperature']:g}"
        return text


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


def _k(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def seed_group_name(seeds: tuple[int, ...]) -> str:
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"s{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"s{seeds[0]}"
    return "s" + "_".join(str(s) for s in seeds)


def trial_config(sweep: Sweep, variant: Variant, dataset: DatasetSpec, seeds: tuple[int, ...]) -> dict:
    """The algorithm-config fields of one trial, named as in docs/CONTRACTS.md (CQLConfig / DTConfig)."""
    ft = variant.finetune
    config: dict[str, Any] = {
        "dataset": dataset.name,
        "seeds": list(seeds),
        "updates": ft.updates,
        "eval_every": ft.eval_every,
        "eval_episodes": ft.eval_episodes,
        "finetune_ratio": ft.finetune_ratio,
    }
    if ft.extra_updates:
        config["extra_updates"] = ft.extra_updates
    p = variant.pretrain
    if sweep.algorithm == "cql":
        if p is None:
            config["pretrain"] = "none"
        else:
            assert isinstance(p, CQLPretrainSpec)
            config.update(pretrain=p.kind, pretrain_updates=p.updates, states=p.states, actions=p.actions,
                          policy_temperature=p.policy_temperature, transition_temperature=p.transition_temperature,
                          random_start=p.random_start, **p.config)
    else:
        if p is None:
            config["pretrain"] = None
        else:
            assert isinstance(p, DTPretrainSpec)
            pre = {k: v for k, v in asdict(p).items() if v is not None and k != "config"}
            if p.data == "text":
                pre["corpus"] = p.corpus or sweep.corpus
            pre["checkpoints"] = list(p.checkpoints)
            pre.update(p.config)
            config["pretrain"] = pre
            config["pretrain_step"] = ft.pretrain_step
    config.update(ft.config)
    return config


def _pretrain_identity(sweep: Sweep, variant: Variant, dataset: DatasetSpec) -> dict | None:
    p = variant.pretrain
    if p is None:
        return None
    spec = asdict(p)
    if isinstance(p, DTPretrainSpec) and p.data == "text":
        spec["corpus"] = p.corpus or sweep.corpus
    ident = {"algorithm": sweep.algorithm, "pretrain": spec}
    if sweep.algorithm == "cql":
        ident["env"] = dataset.env   # the synthetic MDP is mapped to the env's dims
        # fine-tuning fields passed through could touch pre-training too: splitting on them costs at most a
        # no-op build (the store is content-addressed), merging on them could pre-train with the wrong ones
        ident["config"] = variant.finetune.config
    return ident


def _trial_gpu_hours(algorithm: str, seeds: int, updates: int, eval_every: int) -> float:
    return _trial_hours(RATES[algorithm], seeds, updates, eval_every)


def _trial_hours(r: dict, seeds: int, updates: int, eval_every: int, batch_scale: float = 1.0) -> float:
    evals = max(1, updates // eval_every)
    seconds = seeds * updates * batch_scale / r["seed_updates_per_s"] + evals * seeds * r["eval_s_per_seed_round"]
    return seconds / 3600


def trial_cpu_hours(algorithm: str, trial: "Trial") -> float:
    """One trial on one CPU core at the measured CPU rates, scaled to its batch size."""
    r = CPU_RATES[algorithm]
    batch = trial.config.get("batch_size", 256 if algorithm == "cql" else 64)
    return _trial_hours(r, len(trial.seeds), trial.total_updates, trial.config["eval_every"], batch / r["batch"])


def artifact_cpu_hours(artifact: "ArtifactJob") -> float:
    """One pre-training job on one CPU core at the measured CPU rates (DT: scaled to its tokens per step)."""
    r, p = CPU_RATES[artifact.algorithm], artifact.pretrain
    if artifact.algorithm == "cql":
        return p["updates"] / r["pretrain_updates_per_s"] / 3600
    pre = artifact.config.get("pretrain") or {}
    tokens = pre.get("batch_size", 64) * pre.get("seq_len", 1024)
    return p["steps"] * tokens / r["tokens"] / r["pretrain_updates_per_s"] / 3600


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
            ident = _pretrain_identity(sweep, variant, dataset)
            artifact_id = None
            if ident is not None:
                artifact_id = params_key(ident)[:12]
                if artifact_id not in artifacts:
                    p = variant.pretrain
                    steps = p.updates if isinstance(p, CQLPretrainSpec) else p.steps
                    hours = steps / RATES[sweep.algorithm]["pretrain_updates_per_s"] / 3600
                    artifacts[artifact_id] = ArtifactJob(
                        artifact_id=artifact_id, algorithm=sweep.algorithm, pretrain=ident["pretrain"],
                        env=ident.get("env"), config=trial_config(sweep, variant, dataset, sweep.seed_groups()[0]),
                        variants=(variant.name,), needs=needs,
                        gpu_hours=hours * max(1, sweep.resources.pretrain_gpus))
                elif variant.name not in artifacts[artifact_id].variants:
                    a = artifacts[artifact_id]
                    artifacts[artifact_id] = dataclasses.replace(a, variants=a.variants + (variant.name,))
            for seeds in sweep.seed_groups():
                group = seed_group_name(seeds)
                total = variant.finetune.updates + variant.finetune.extra_updates
                trials.append(Trial(
                    trial_id=f"{variant.slug}/{slugify(dataset.name)}/{group}",
                    variant=variant.name, dataset=dataset, seeds=seeds, group=group, artifact=artifact_id,
                    needs=needs, config=trial_config(sweep, variant, dataset, seeds), total_updates=total,
                    gpu_hours=_trial_gpu_hours(sweep.algorithm, len(seeds), total, variant.finetune.eval_every),
                ))
    return Plan(sweep=sweep, artifacts=tuple(artifacts.values()), trials=tuple(trials), notices=tuple(notices))


# -- datasets at launch ----------------------------------------------------------------------------
def dataset_file(dataset: DatasetSpec) -> Path | None:
    """Where a named or user file dataset lives (None for one the sweep makes)."""
    if dataset.make is not None:
        return None
    if dataset.path is not None:
        return Path(dataset.path).expanduser().absolute()
    return d4rl_dataset_dir() / d4rl_file_name(dataset.name)


def missing_datasets_message(sweep: Sweep) -> str | None:
    """The refusal for dataset files not on disk (what `sweep run` stops on, `sweep plan` lists), or None."""
    missing = missing_datasets(sweep)
    if not missing:
        return None
    count = sum(1 for d in sweep.datasets if d.make is None and not dataset_file(d).is_file())
    return f"{sweep.source}: datasets: {count} file(s) not found " + "; ".join(missing)


def missing_datasets(sweep: Sweep) -> list[str]:
    """Datasets whose files are not on disk, grouped by folder (made datasets are built at launch)."""
    by_folder: dict[Path, list[str]] = {}
    for d in sweep.datasets:
        path = dataset_file(d)
        if path is not None and not path.is_file():
            by_folder.setdefault(path.parent, []).append(path.name)
    out = []
    for folder, names in by_folder.items():
        hint = " ($D4RL_DATASET_DIR, else ~/.d4rl/datasets)" if folder == d4rl_dataset_dir() else ""
        out.append(f"in {folder}{hint}: {', '.join(names)}")
    return out


def make_params(dataset: DatasetSpec) -> dict:
    assert dataset.make is not None
    # the name is part of the key: the file is called after it, and the algorithms name the dataset by its file
    return {"env": dataset.make.env, "policy": policy_content(dataset.make.policy), "steps": dataset.make.steps,
            "seed": dataset.make.seed, "name": dataset.name}


def policy_content(policy: str) -> str | dict:
    """What a made dataset's behaviour policy is, for its store key: a built-in's name, or a saved run's
    content (sha256 of params.json and of every checkpoint file), so copies of a run share the key and a
    retrained run at the same path gets a new one."""
    from synthrl.envs.policies import BUILTIN_POLICIES
    from synthrl.utils.io import sha256_file

    if policy in BUILTIN_POLICIES:
        return policy
    run_dir = Path(policy).expanduser()
    while not (run_dir / "params.json").is_file() and run_dir.parent != run_dir:
        run_dir = run_dir.parent   # a file or folder inside the run directory
    if not (run_dir / "params.json").is_file():
        raise UserError(f"make.policy {policy}: no params.json in it or above it, expected random, sine or a run "
                        "directory of `synthrl run`")
    files = [run_dir / "params.json"] + sorted(p for p in (run_dir / "checkpoint").rglob("*") if p.is_file())
    return {"run": {str(f.relative_to(run_dir)): sha256_file(f) for f in files}}


def build_made_dataset(dataset: DatasetSpec, store) -> Path:
    """Generate a ``make:`` dataset once into ``store`` (content-addressed), as `synthrl data make` does."""
    from synthrl.data.make import make_dataset
    from synthrl.envs.policies import BUILTIN_POLICIES, builtin_policy, load_policy

    params = make_params(dataset)
    file_name = f"{slugify(dataset.name)}.hdf5"
    make = dataset.make

    def build(tmp: Path) -> None:
        if make.policy in BUILTIN_POLICIES:
            policy = builtin_policy(make.policy, make.env, seed=make.seed)
            description = policy.describe()
        else:
            policy, description = load_policy(make.policy), f"saved run {make.policy} (member 0)"
        make_dataset(make.env, policy, make.steps, tmp / file_name, seed=make.seed, policy_description=description)

    return store.get_or_build("datasets", params, build) / file_name


# -- algorithm configs -----------------------------------------------------------------------------
def build_config(algorithm: str, config: dict, dataset_path: str, device: str):
    """Turn a trial's JSON config into the algorithm's typed config (CQLConfig / DTConfig), validated."""
    cfg = dict(config, dataset=dataset_path, device=device)
    if algorithm == "cql":
        from synthrl.cql.config import CQLConfig as Config

        pretrain_cls = None
    else:
        from synthrl.dt.config import DTConfig as Config
        from synthrl.dt.config import DTPretrainConfig as pretrain_cls
    names = {f.name for f in dataclasses.fields(Config)}
    if "extra_updates" in cfg and "extra_updates" not in names:
        cfg["updates"] = cfg["updates"] + cfg.pop("extra_updates")   # DT: 'more updates' = a longer run
    if pretrain_cls is not None and isinstance(cfg.get("pretrain"), dict):
        pre = dict(cfg["pretrain"])
        pre_names = {f.name for f in dataclasses.fields(pretrain_cls)}
        if "device" in pre_names:
            pre["device"] = device
        unknown = sorted(set(pre) - pre_names)
        if unknown:
            raise UserError(f"pretrain: {', '.join(unknown)}: not a field of {pretrain_cls.__name__}")
        _match_sequence_types(pretrain_cls, pre)
        cfg["pretrain"] = pretrain_cls(**pre)
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
        ft = v.finetune
        extra = f"+{_k(ft.extra_updates)}" if ft.extra_updates else ""
        more = f", ratio {ft.finetune_ratio:g}" if ft.finetune_ratio != 1 else ""
        more += f", from step {_k(ft.pretrain_step)}" if ft.pretrain_step else ""
        needs = "  [NEEDS " + s.variant_needs(v).split(" (")[0] + "]" if s.variant_needs(v) else ""
        lines.append(f"  {v.name:<{width}}  {_k(ft.updates)}{extra} updates, eval every {_k(ft.eval_every)} x "
                     f"{ft.eval_episodes} ep{more}; {pre}{needs}")
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
                 f"{ft_hours:.1f}) {RATE_SOURCES['gpu']}")
    lines.append(f"estimated CPU-core-hours: {pt_cpu + ft_cpu:.1f} (pre-training {pt_cpu:.1f} + fine-tuning "
                 f"{ft_cpu:.1f}) {RATE_SOURCES['cpu']}")
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


def plan_fingerprint(plan: Plan) -> str:
    """Changes when anything that changes a trial's result changes (used to refuse a mismatched resume)."""
    return params_key({"trials": [canonical_json(t.to_dict()) for t in plan.trials]})[:16]
