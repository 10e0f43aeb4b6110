"""The doctor's checks: each runs one fast path beside its reference and returns one Check row.

Every check uses the real parts: a small Hopper dataset rolled out in MuJoCo (random policy, made
once per doctor run in a temporary directory), the real ensembles of every registered
forward-dynamics algorithm (CQL, IQL: built by their own make_runner), the real runners, the real DT
runner and pre-trainer, the real token sources and evaluation. Sizes are the issue's on CUDA (so
the speeds compare with the goals) and small on the CPU (so the doctor finishes in minutes on 2
cores); the code paths are the same.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from synthrl.doctor import Check
from synthrl.utils.fastpath import SAME_ARITHMETIC, Parity, compare, flatten_tensors
from synthrl.utils.timing import seconds_per_call

# the goals of benchmarks/RESULTS.md, printed beside the speeds
GOAL_CQL = ">= 20,000 seed-updates/s (H100, E = 20-40, batch 256)"
GOAL_DT = ">= 6,700 seed-updates/s (H100: 20 seeds x 100k updates in 5 min)"
GOAL_PRETRAIN = "<= 3 ms/step (H100, M = 100, 64 x 1024 tokens)"
GOAL_TOKENS = ">= 50 M tokens/s (GPU, M = 100)"
GOAL_EVAL = ">= 67,000 env-steps/s (16 cores: 200 x 1000 steps in 3 s)"


@dataclass(frozen=True)
class Sizes:
    cql_hidden: int
    cql_batch: int
    cql_speed_updates: int
    cql_chunk: int               # rng_chunk: the run's default on CUDA, smaller on the CPU (fewer timed updates)
    dt_batch: int
    dt_backbone: dict            # BackboneConfig fields
    dt_speed_updates: int
    pt_seq: int
    pt_batch: int
    pt_speed_steps: int
    token_sequences: int         # M = 100 chains of 1024 tokens for the chi-square test
    eval_episodes: int


def sizes_for(device: str, quick: bool) -> Sizes:
    if device.startswith("cuda"):  # the sizes
        return Sizes(cql_hidden=256, cql_batch=256, cql_speed_updates=512, cql_chunk=64, dt_batch=64,
                     dt_backbone={}, dt_speed_updates=100, pt_seq=1024, pt_batch=64, pt_speed_steps=20,
                     token_sequences=512, eval_episodes=5)
    tiny = {"n_layer": 1, "n_embd": 32, "n_inner": 64}
    return Sizes(cql_hidden=64, cql_batch=64, cql_speed_updates=32 if quick else 64, cql_chunk=16, dt_batch=16,
                 dt_backbone=tiny, dt_speed_updates=10 if quick else 20, pt_seq=64, pt_batch=4,
                 pt_speed_steps=3 if quick else 5,
                 token_sequences=64, eval_episodes=2)


def compiler_available() -> str | None:
    """The C++ compiler torch.compile's CPU backend needs, or None."""
    for name in ("cc", "g++", "gcc", "clang++"):
        if shutil.which(name):
            return name
    return None


@dataclass
class Context:
    device: str
    quick: bool
    tmp: Path
    sizes: Sizes = field(init=False)
    _hopper: Path | None = field(default=None, init=False)

    def __post_init__(self):
        self.sizes = sizes_for(self.device, self.quick)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def hopper(self) -> Path:
        """A D4RL-format Hopper file of 3,000 random-policy steps (MuJoCo), made once."""
        if self._hopper is None:
            from synthrl.data.make import make_dataset
            from synthrl.envs.policies import RandomPolicy

            self._hopper = make_dataset("hopper", RandomPolicy(3, seed=0), 3000, self.tmp / "hopper-doctor.hdf5",
                                        seed=0)
        return self._hopper


def _fmt_rate(value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


# ---------------------------------------------------------------------------------------------
# the ensembles of CQL, IQL (every registered forward-dynamics algorithm): the CUDA-graph update against eager
def forward_dynamics_algorithms() -> list[str]:
    """The registered algorithms of the forward-dynamics family (their runners train a batched ensemble)."""
    from synthrl.registry import FORWARD_DYNAMICS, algorithms

    return [name for name, algo in algorithms().items() if algo.pretrain_family == FORWARD_DYNAMICS]


def algorithm_ensemble(ctx: Context, name: str, members: int):
    """The ensemble of algorithm ``name``'s runner at the doctor's sizes, built by its own make_runner (its
    data preparation included); the runner's start-up check is left to the doctor."""
    from synthrl.registry import algorithm
    from synthrl.store import ArtifactStore

    algo, s = algorithm(name), ctx.sizes
    wanted = {"dataset": str(ctx.hopper()), "seeds": list(range(members)), "pretrain": "none", "hidden": s.cql_hidden,
              "batch_size": s.cql_batch, "rng_chunk": s.cql_chunk, "device": ctx.device}
    declared = {f.name for f in fields(algo.config)}
    config = algo.config(**{k: v for k, v in wanted.items() if k in declared})
    runner = algo.make_runner(config, ArtifactStore(ctx.tmp / "store"), progress=False, fast_path_check=False)
    return getattr(runner, "ensemble", None)


def check_fast_path_of(name: str, members: int) -> Callable[[Context], Check]:
    """Algorithm ``name``'s fast path (CUDA graph) against its eager update, and its training speed."""
    def run(ctx: Context) -> Check:
        label = f"{name} E={members}"
        ens = algorithm_ensemble(ctx, name, members)
        if not hasattr(ens, "check_fast_path"):
            return Check(label, None, f"{name}'s runner has no ensemble with a fast-path check")
        parity = ens.check_fast_path(updates=8)
        path = "eager" if parity is None else "graph"
        s = ctx.sizes
        chunk = s.cql_chunk
        per_call = seconds_per_call(lambda: ens.train(chunk), max(1, s.cql_speed_updates // chunk), ctx.device)
        speed = _fmt_rate(members * chunk / per_call, f"seed-updates/s ({path}, E = {members}, hidden {s.cql_hidden}, "
                                                     f"batch {s.cql_batch})")
        goal = GOAL_CQL if name == "cql" else "-"
        if parity is None:
            return Check(label, None, f"no fast path here ({ens.eager_reason}): eager only", speed, goal)
        return Check(label, parity.ok, f"CUDA graph vs eager fp32: {parity.detail()}", speed, goal)
    return run


def cql_ensemble(ctx: Context, members: int, accel: str = "auto"):
    from synthrl.cql.algorithm import CQLEnsemble, MemberInit
    from synthrl.data import load_dataset

    data = load_dataset(str(ctx.hopper())).qlearning()
    data["actions"] = np.clip(data["actions"], -0.999, 0.999)
    return CQLEnsemble([data], [MemberInit(seed=s, dataset=0) for s in range(members)], hidden=ctx.sizes.cql_hidden,
                       batch_size=ctx.sizes.cql_batch, rng_chunk=ctx.sizes.cql_chunk, device=ctx.device, accel=accel)


# ---------------------------------------------------------------------------------------------
# DT: compiled / bf16 fine-tuning and pre-training steps against eager fp32
def dt_fast_settings(ctx: Context) -> tuple[str, str, str]:
    """(compile, precision, note) of the DT fast path this device can check."""
    if ctx.cuda:
        return "auto", "auto", ""
    if ctx.quick:
        return "off", "bf16", "torch.compile skipped (--quick: ~30 s per compile on 2 cores); bf16 autocast checked"
    cc = compiler_available()
    if cc is None:
        return "off", "bf16", "no C++ compiler: torch.compile cannot run here; bf16 autocast checked"
    return "on", "fp32", f"torch.compile on the CPU ({cc})"


def dt_config(ctx: Context, compile: str, precision: str, seeds=(0, 1)):
    from synthrl.dt.config import BackboneConfig, DTConfig

    # no dropout: the check's probe then compiles the very graph the timed run uses (one compile, not two)
    return DTConfig(dataset=str(ctx.hopper()), seeds=list(seeds), batch_size=ctx.sizes.dt_batch, device=ctx.device,
                    compile=compile, precision=precision, updates=10**6, eval_every=10**6, eval_episodes=1,
                    eval_workers=0, warmup_steps=10, backbone=BackboneConfig(**ctx.sizes.dt_backbone),
                    resid_dropout=0.0, attn_dropout=0.0, embd_dropout=0.0)


def _path_name(compiled: bool, bf16: bool) -> str:
    return " + ".join(p for p, on in (("compiled", compiled), ("bf16", bf16)) if on) or "eager fp32"


def check_dt_finetune(ctx: Context) -> Check:
    from synthrl.dt.runner import DTRunner

    compile, precision, note = dt_fast_settings(ctx)
    runner = DTRunner(dt_config(ctx, compile, precision))
    path = _path_name(runner.compiled, runner.bf16)
    parity = runner.check_fast_path(updates=4)
    E, n = runner.members, ctx.sizes.dt_speed_updates
    per_update = seconds_per_call(lambda: runner.train(1), n, ctx.device, warmup=2)
    speed = _fmt_rate(E / per_update, f"seed-updates/s ({path}, E = {E}, batch {ctx.sizes.dt_batch})")
    detail = f"{path} vs eager fp32: {parity.detail()}" + (f"; {note}" if note else "")
    return Check("dt fine-tune", parity.ok, detail, speed, GOAL_DT)


def check_dt_pretrain(ctx: Context) -> Check:
    from synthrl.dt.config import BackboneConfig, DTPretrainConfig
    from synthrl.dt.pretrain import Pretrainer

    compile, precision, note = dt_fast_settings(ctx)
    s = ctx.sizes
    cfg = DTPretrainConfig(states=100, steps=10**6, checkpoints=(10**6,), seq_len=s.pt_seq, batch_size=s.pt_batch,
                           device=ctx.device, precision=precision, compile=compile, warmup_steps=10, dropout=0.0,
                           backbone=BackboneConfig(**s.dt_backbone))
    with torch.random.fork_rng(devices=[ctx.device] if ctx.cuda else []):
        trainer = Pretrainer(cfg)
        path = _path_name(trainer.compiled, trainer.bf16)
        parity = trainer.check_fast_path(updates=4)
        per_step = seconds_per_call(trainer.train_step, s.pt_speed_steps, ctx.device, warmup=2)
    tokens = s.pt_batch * s.pt_seq
    speed = f"{per_step * 1e3:,.1f} ms/step ({path}, {s.pt_batch} x {s.pt_seq} tokens, M = 100)"
    detail = f"{path} vs eager fp32 (loss and weights): {parity.detail()}" + (f"; {note}" if note else "")
    return Check("dt pre-train step", parity.ok, detail, speed + f", {tokens / per_step:,.0f} tokens/s", GOAL_PRETRAIN)


# ---------------------------------------------------------------------------------------------
# the device token sampler against the reference rows
def chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson chi-square of observed counts (rows of categories) against row distributions, and its dof."""
    expected = counts.sum(axis=-1, keepdims=True) * probs
    keep = expected > 0
    stat = float(((counts - expected) ** 2 / np.where(keep, expected, 1))[keep].sum())
    return stat, int(keep.sum() - counts.reshape(-1, counts.shape[-1]).shape[0])


def check_token_sampler(ctx: Context) -> Check:
    from synthrl.synthetic import MarkovTokens, mc_row, token_source

    M, n = 100, ctx.sizes.token_sequences
    source = token_source("mc", states=M, device=ctx.device)
    draw = lambda src: src.sample(n, torch.Generator(device=ctx.device).manual_seed(7))[0]  # noqa: E731
    tokens = draw(source)
    deterministic = torch.equal(tokens, draw(source))
    reference_sampler = "loop" if source.sampler != "loop" else "blocked"
    same_as_other = torch.equal(tokens, draw(MarkovTokens(M, device=ctx.device, sampler=reference_sampler)))
    t = tokens.cpu().numpy()
    counts = np.zeros((M, M))
    np.add.at(counts, (t[:, :-1].ravel(), t[:, 1:].ravel()), 1)
    stat, dof = chi_square(counts, np.stack([mc_row(s, M, 1.0) for s in range(M)]))
    limit = dof + 6 * math.sqrt(2 * dof)
    ok = deterministic and same_as_other and stat < limit
    generator = torch.Generator(device=ctx.device).manual_seed(0)
    per_call = seconds_per_call(lambda: source.sample(64, generator), 2 if ctx.quick else 5, ctx.device)
    detail = (f"{source.sampler} sampler, {n} x 1024 tokens: chi-square {stat:,.0f} < {limit:,.0f} (dof {dof}) "
              f"{'ok' if stat < limit else 'FAILED'}; same tokens again: {deterministic}; "
              f"same as the {reference_sampler} sampler: {same_as_other}")
    return Check("token sampler", ok, detail, f"{64 * 1024 / per_call / 1e6:.2f} M tokens/s ({source.sampler})",
                 GOAL_TOKENS)


# ---------------------------------------------------------------------------------------------
# the overlapped evaluation against a synchronous one of the same snapshot
def cql_runner(ctx: Context, members: int = 2, accel: str = "auto"):
    from synthrl.cql.runner import CQLRunner, settle_fast_path

    ens = cql_ensemble(ctx, members, accel)
    info = [{"seed": s, "dataset": "hopper-doctor", "variant": "cql"} for s in range(members)]
    runner = CQLRunner(ens, info, env="hopper", total_updates=10**6, eval_every=10**6,
                       eval_episodes=ctx.sizes.eval_episodes, fast_path=settle_fast_path(ens, check=False))
    return runner


def check_overlap(ctx: Context) -> Check:
    runner = cql_runner(ctx)
    runner.train(16)  # a policy a little away from its initialisation
    start = runner.state_dict()
    pending = runner.start_evaluation()
    trained_during = 0
    while not pending.done():  # training goes on while the snapshot is evaluated (its own CUDA stream)
        runner.train(16)
        trained_during += 16
    overlapped = pending.rows()
    runner.load_state_dict(start)
    synchronous = runner.evaluate()
    diffs = [abs(a["return"] - b["return"]) / max(1.0, abs(b["return"])) for a, b in zip(overlapped, synchronous)]
    ok = max(diffs) <= 1e-5 and len(overlapped) == len(synchronous)
    episodes = runner.ensemble.num_members * runner.eval_episodes
    detail = (f"{episodes} Hopper episodes, returns {[round(r['return'], 3) for r in synchronous]}: "
              f"max rel diff {max(diffs):.1e} (<= 1e-5) with {trained_during} updates trained meanwhile")
    return Check("overlapped evaluation", ok, detail, _eval_speed(runner, episodes), GOAL_EVAL)


def _eval_speed(runner, episodes: int) -> str:
    """Hopper episodes/s and env-steps/s of one more (synchronous) evaluation round."""
    from synthrl.cql.runner import EnsemblePolicy
    from synthrl.envs import evaluate

    started = time.perf_counter()
    result = evaluate("hopper", EnsemblePolicy(runner.ensemble, runner.eval_episodes), runner.seeds,
                      runner.eval_episodes, 1)
    seconds = time.perf_counter() - started
    return f"{episodes / seconds:,.1f} Hopper episodes/s, {int(result.lengths.sum()) / seconds:,.0f} env-steps/s"


# ---------------------------------------------------------------------------------------------
# resume: save -> load -> k more updates equals k uninterrupted updates
def resumed_equals_uninterrupted(ctx: Context, build: Callable, first: int, more: int, tolerance=SAME_ARITHMETIC
                                 ) -> Parity:
    from synthrl.rundir import RunDir

    run_dir = RunDir(ctx.tmp / f"resume-{time.monotonic_ns()}")
    a = build()
    a.train(first)
    run_dir.save_checkpoint({"runner": a.state_dict()})  # the real checkpoint files
    a.train(more)
    b = build()
    b.load_state_dict(run_dir.load_checkpoint()["runner"])
    b.train(more)
    return compare(flatten_tensors(b.state_dict()), flatten_tensors(a.state_dict()), tolerance, more)


def check_resume_cql(ctx: Context) -> Check:
    parity = resumed_equals_uninterrupted(ctx, lambda: cql_runner(ctx, members=4), first=24, more=24)
    path = "graph" if ctx.cuda else "eager"
    return Check("resume cql", parity.ok, f"E = 4, {path}: resumed vs uninterrupted, {parity.detail()}")


def check_resume_dt(ctx: Context) -> Check:
    from synthrl.dt.runner import DTRunner
    from synthrl.utils.fastpath import tolerance_for

    # on the CPU eager (compiling twice more would not fit the time); on CUDA the run's fast path, where
    # atomics in the backward may change last bits, so rounding-level tolerances apply
    compile, precision = ("auto", "auto") if ctx.cuda else ("off", "fp32")
    cfg = dt_config(ctx, compile, precision)
    built: list[DTRunner] = []
    build = lambda: built.append(DTRunner(cfg)) or built[-1]  # noqa: E731
    tolerance = tolerance_for(compiled=ctx.cuda, bf16=ctx.cuda) if ctx.cuda else SAME_ARITHMETIC
    with torch.random.fork_rng(devices=[ctx.device] if ctx.cuda else []):
        parity = resumed_equals_uninterrupted(ctx, build, first=6, more=6, tolerance=tolerance)
    path = _path_name(built[0].compiled, built[0].bf16)
    return Check("resume dt", parity.ok, f"E = 2, {path}: resumed vs uninterrupted, {parity.detail()}")


def all_checks(ctx: Context) -> list[tuple[str, Callable[[Context], Check]]]:
    checks = [(f"{name} E={members}", check_fast_path_of(name, members))
              for name in forward_dynamics_algorithms() for members in (1, 4)]
    checks += [("dt fine-tune", check_dt_finetune), ("dt pre-train step", check_dt_pretrain),
               ("token sampler", check_token_sampler), ("overlapped evaluation", check_overlap),
               ("resume cql", check_resume_cql)]
    if not ctx.quick:
        checks.append(("resume dt", check_resume_dt))
    return checks


__all__ = ["Context", "Sizes", "all_checks", "chi_square", "compiler_available"]
