"""Vectorised, seeded evaluation: many episodes step together, one batched policy call per step.

The environments live in persistent worker processes (fresh interpreters running
`python -m synthrl.envs._worker`), each owning every W-th row of the batch. Per step the parent
sends each worker its share of the actions and receives observations, rewards and done flags back
(a few hundred bytes through a socket pair: cheaper than any shared-memory handshake at these
sizes). Workers are started once per (env, version, worker count) and reused by every later
evaluation, so a run that evaluates 200 times pays the start-up (importing MuJoCo) once.

Every environment runs exactly one episode, reset with its own seed from `episode_seeds`, so an
evaluation repeats exactly given the policy's actions. Row b of the batch belongs to ensemble member
b // episodes for the whole evaluation, so a stateful policy (DT's history) can index by row.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Callable, Protocol

import numpy as np

from synthrl.envs.make import make_env
from synthrl.envs.specs import MAX_EPISODE_STEPS, check_version, get_spec, normalized_score
from synthrl.errors import UserError

_EVAL_SALT = 0x5EED_E7A1  # keeps evaluation seeds apart from anything else derived from the run seed


class BatchPolicy(Protocol):
    def reset(self, num_envs: int) -> None: ...

    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> np.ndarray:
        """obs float32 [B, dS], rewards of the previous step float32 [B] (zeros at step 0) -> actions [B, dA]."""


@dataclass
class EvalResult:
    returns: np.ndarray      # float64 [members, episodes], undiscounted
    normalized: np.ndarray   # float64 [members, episodes], D4RL-normalised
    lengths: np.ndarray      # int64 [members, episodes]
    env_id: str              # e.g. "Hopper-v4": which environment produced the numbers
    seeds: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))  # reset seed of each episode
    workers: int = 0         # worker processes used (0: stepped in the calling process)
    wall_s: float = 0.0

    @property
    def env_steps(self) -> int:
        return int(self.lengths.sum())


def episode_seeds(run_seed: int, eval_index: int, episodes: int) -> np.ndarray:
    """Reset seeds of one evaluation's episodes: a pure function of (run seed, evaluation index)."""
    if int(run_seed) < 0 or int(eval_index) < 0 or int(episodes) < 0:
        raise ValueError(f"episode_seeds needs non-negative arguments, got {run_seed}, {eval_index}, {episodes}")
    seq = np.random.SeedSequence([_EVAL_SALT, int(run_seed), int(eval_index)])
    return seq.generate_state(int(episodes), dtype=np.uint32).astype(np.int64)


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask; the machine's count off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def workers_for(num_envs: int, cpus: int, busy: int = 1) -> int:
    """Worker processes worth starting for num_envs environments on `cpus` cores, `busy` of them taken by
    this process (the evaluation loop's policy calls; plus the training thread when evaluation overlaps
    training). Workers pay only when at least two cores are free for them: the loop is synchronous, so one
    worker merely moves the stepping out of this process and adds a round trip per step (measured on
    2 cores: 2 workers 20 Hopper episodes/s, in-process 32). Never more than one per environment."""
    free = int(cpus) - int(busy)
    return min(free, int(num_envs)) if free >= 2 else 0


def default_workers(num_envs: int, busy: int = 1) -> int:
    """$SYNTHRL_EVAL_WORKERS if set (e.g. by a sweep running several trials per machine), else chosen from
    the free cores (workers_for); 0 steps the environments in this process."""
    configured = os.environ.get("SYNTHRL_EVAL_WORKERS", "").strip()
    if configured:
        try:
            cpus = int(configured)
        except ValueError:
            raise UserError(f"SYNTHRL_EVAL_WORKERS: expected an integer >= 0, got {configured!r}") from None
        if cpus < 0:
            raise UserError(f"SYNTHRL_EVAL_WORKERS: expected an integer >= 0, got {configured!r}")
        return min(cpus, int(num_envs))
    return workers_for(num_envs, usable_cpus(), busy)


# ----------------------------------------------------------------------------------------------
# the environments a worker owns (also used in-process when workers == 0)

class _EnvSlice:
    """Environments stepped through their unwrapped MuJoCo env (the wrappers cost ~15% per step here);
    the 1000-step limit and Ant's zero padding, which the wrappers provide, are applied by hand."""

    def __init__(self, env: str, version: str):
        self.env, self.version = env, version
        self.obs_dim = get_spec(env).obs_dim
        self.envs: list = []
        self.raw: list = []  # the unwrapped envs, stepped directly
        self.active = np.zeros(0, dtype=bool)
        self.steps = np.zeros(0, dtype=np.int64)
        self.last = np.zeros((0, self.obs_dim))

    def reset(self, seeds: list[int]) -> np.ndarray:
        while len(self.envs) < len(seeds):
            self.envs.append(make_env(self.env, self.version))
            self.raw.append(self.envs[-1].unwrapped)
        self.last = np.zeros((len(seeds), self.obs_dim))
        for k, seed in enumerate(seeds):
            self.last[k] = self.envs[k].reset(seed=int(seed))[0]  # wrapped reset: seeding, padding
        self.active = np.ones(len(seeds), dtype=bool)
        self.steps = np.zeros(len(seeds), dtype=np.int64)
        return self.last

    def step(self, actions: np.ndarray) -> np.ndarray:
        """-> float64 [n, dS + 2]: observation, reward, done (0 running, 1 terminated, 2 time limit; episodes
        finished before this step report 1 and keep their last observation)."""
        n, d = self.last.shape
        out = np.zeros((n, d + 2))
        out[:, :d] = self.last
        out[:, d + 1] = ~self.active
        for k in np.flatnonzero(self.active):
            obs, reward, terminated, _, _ = self.raw[k].step(actions[k])
            out[k, : len(obs)] = obs  # ant: 27 real entries, the 84 padding zeros stay
            out[k, d] = reward
            self.steps[k] += 1
            if terminated or self.steps[k] >= MAX_EPISODE_STEPS:
                out[k, d + 1] = 1.0 if terminated else 2.0  # 2: cut by the time limit (a D4RL timeout)
                self.active[k] = False
        self.last = out[:, :d].copy()
        return out


def _worker_main(conn, env: str, version: str) -> None:
    """Worker loop. Messages: b'R' + pickled seeds -> obs bytes; b'S' + float32 actions -> step bytes; b'C'."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    envs = _EnvSlice(env, version)
    act_dim = get_spec(env).act_dim
    while True:
        try:
            msg = conn.recv_bytes()
        except (EOFError, OSError):
            return
        tag, body = msg[:1], msg[1:]
        if tag == b"C":
            return
        try:
            if tag == b"S":
                actions = np.frombuffer(body, dtype=np.float32).reshape(-1, act_dim)
                reply = b"O" + envs.step(actions).tobytes()
            elif tag == b"R":
                reply = b"O" + envs.reset(pickle.loads(body)).tobytes()
            elif tag == b"T":  # CPU seconds this worker has used (benchmarks)
                reply = b"O" + np.float64(time.process_time()).tobytes()
            else:
                raise ValueError(f"unknown message {tag!r}")
        except Exception:
            reply = b"E" + traceback.format_exc().encode()
        try:
            conn.send_bytes(reply)
        except OSError:  # the parent closed the pool (or died) while we worked
            return


class EnvWorkerPool:
    """Persistent worker processes, each stepping a share of the batch of one environment kind."""

    def __init__(self, env: str, version: str, workers: int):
        self.spec = get_spec(env)
        self.env, self.version, self.workers = self.spec.name, check_version(version), int(workers)
        self.lock = threading.Lock()  # one evaluation at a time (evaluation may run in a thread beside training)
        self.local = _EnvSlice(self.env, self.version) if self.workers == 0 else None
        self.procs, self.conns = [], []
        for _ in range(self.workers):
            self._start_worker()
        self.rows: list[np.ndarray] = []  # the batch rows each worker owns

    def _start_worker(self) -> None:
        # A fresh interpreter running `python -m synthrl.envs._worker`, joined by a private socket pair.
        # Not fork: the parent may hold CUDA state and torch threads. Not multiprocessing's spawn: that
        # re-imports the parent's __main__ (a script without a main guard, a notebook, a Ray worker).
        parent_sock, child_sock = socket.socketpair()
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "synthrl.envs._worker", str(child_sock.fileno()), self.env, self.version]
        proc = subprocess.Popen(cmd, pass_fds=[child_sock.fileno()], env=env, stdin=subprocess.DEVNULL)
        child_sock.close()
        self.procs.append(proc)
        self.conns.append(Connection(parent_sock.detach()))

    def _receive(self, k: int) -> bytes:
        try:
            msg = self.conns[k].recv_bytes()
        except (EOFError, OSError):
            self.close()
            raise RuntimeError(f"evaluation worker {k} for {self.env} died (exit code {self.procs[k].poll()})") from None
        if msg[:1] == b"E":
            self.close()
            raise RuntimeError(f"evaluation worker {k} for {self.env} failed:\n{msg[1:].decode()}")
        return msg[1:]

    def reset(self, seeds: np.ndarray) -> np.ndarray:
        d = self.spec.obs_dim
        if self.local is not None:
            return self.local.reset(list(seeds)).copy()
        # strided, not contiguous: worker k owns rows k, k+W, ...; neighbouring rows are the same ensemble
        # member, whose episodes tend to end together, so this spreads early terminations over the workers
        used = min(self.workers, len(seeds))
        self.rows = [np.arange(k, len(seeds), used) for k in range(used)]
        try:
            for k, rows in enumerate(self.rows):
                self.conns[k].send_bytes(b"R" + pickle.dumps([int(s) for s in seeds[rows]]))
            obs = np.empty((len(seeds), d))
            for k, rows in enumerate(self.rows):
                obs[rows] = np.frombuffer(self._receive(k), dtype=np.float64).reshape(len(rows), d)
        except BaseException:
            self.close()
            raise
        return obs

    def step(self, actions: np.ndarray) -> np.ndarray:
        """actions float32 [B, dA] -> float64 [B, dS + 2] (observation, reward, done code as in _EnvSlice.step)."""
        d = self.spec.obs_dim
        if self.local is not None:
            return self.local.step(actions)
        try:
            for k, rows in enumerate(self.rows):
                self.conns[k].send_bytes(b"S" + actions[rows].tobytes())
            out = np.empty((len(actions), d + 2))
            for k, rows in enumerate(self.rows):
                out[rows] = np.frombuffer(self._receive(k), dtype=np.float64).reshape(len(rows), d + 2)
        except BaseException:
            self.close()  # interrupted between send and receive: replies may be pending, the pool is unusable
            raise
        return out

    def cpu_seconds(self) -> float:
        """CPU time used so far by the worker processes (0 for in-process stepping)."""
        total = 0.0
        for k, conn in enumerate(self.conns):
            conn.send_bytes(b"T")
            total += float(np.frombuffer(self._receive(k), dtype=np.float64)[0])
        return total

    @property
    def alive(self) -> bool:
        return self.local is not None or (bool(self.procs) and all(p.poll() is None for p in self.procs))

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send_bytes(b"C")
                conn.close()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs, self.conns = [], []


_POOLS: dict[tuple[str, str, int], EnvWorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(env: str, version: str, workers: int) -> EnvWorkerPool:
    key = (get_spec(env).name, check_version(version), int(workers))
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None or not pool.alive:
            pool = _POOLS[key] = EnvWorkerPool(*key)
        return pool


@atexit.register
def close_pools() -> None:
    """Stop every evaluation worker this process started (also run at exit)."""
    with _POOLS_LOCK:
        for pool in _POOLS.values():
            pool.close()
        _POOLS.clear()


def _as_numpy_actions(actions, batch: int, act_dim: int) -> np.ndarray:
    if hasattr(actions, "detach"):  # a torch tensor, possibly on the GPU
        actions = actions.detach().float().cpu().numpy()
    actions = np.asarray(actions, dtype=np.float32)
    if actions.shape != (batch, act_dim):
        raise ValueError(f"policy.act returned actions of shape {actions.shape}, expected {(batch, act_dim)}")
    return actions


def evaluate(env: str, policy: BatchPolicy, member_seeds: list[int], episodes: int, eval_index: int,
             version: str = "v4", workers: int | None = None) -> EvalResult:
    """Run len(member_seeds) * episodes episodes as one batch; env b belongs to member b // episodes.

    Member m's episodes are reset with episode_seeds(member_seeds[m], eval_index, episodes). Actions
    are clipped to the action box ([-1, 1] in all four environments). workers=0 steps in this process.
    """
    spec = get_spec(env)
    version = check_version(version)
    members = len(member_seeds)
    if members < 1 or episodes < 1:
        raise UserError(f"evaluate: need at least one seed and one episode, got {members} seeds, {episodes} episodes")
    seeds = np.stack([episode_seeds(s, eval_index, episodes) for s in member_seeds])  # [members, episodes]
    batch = members * episodes
    if workers is None:  # in the background thread, training goes on beside us: its thread takes a core too
        workers = default_workers(batch, busy=2 if threading.current_thread().name.startswith(_BACKGROUND_NAME) else 1)
    workers = int(workers)
    pool = get_pool(spec.name, version, workers)
    d = spec.obs_dim
    started = time.perf_counter()
    with pool.lock:
        obs = pool.reset(seeds.reshape(-1))
        policy.reset(batch)
        returns = np.zeros(batch)
        lengths = np.zeros(batch, dtype=np.int64)
        done = np.zeros(batch, dtype=bool)
        last_rewards = np.zeros(batch, dtype=np.float32)
        while not done.all():
            actions = _as_numpy_actions(policy.act(obs.astype(np.float32), last_rewards), batch, spec.act_dim)
            if not np.isfinite(actions[~done]).all():
                raise ValueError("policy.act returned non-finite actions")
            np.clip(actions, -1.0, 1.0, out=actions)
            out = pool.step(actions)
            obs, rewards, finished = out[:, :d], out[:, d], out[:, d + 1] > 0.5
            running = ~done
            returns[running] += rewards[running]
            lengths[running] += 1
            last_rewards = rewards.astype(np.float32)
            done |= finished
    returns = returns.reshape(members, episodes)
    return EvalResult(returns=returns, normalized=normalized_score(spec.name, returns),
                      lengths=lengths.reshape(members, episodes), env_id=spec.gym_id(version), seeds=seeds,
                      workers=workers, wall_s=time.perf_counter() - started)


_BACKGROUND: concurrent.futures.ThreadPoolExecutor | None = None
_BACKGROUND_NAME = "synthrl-eval"


def in_background(fn: Callable, *args, **kwargs) -> concurrent.futures.Future:
    """Run fn(*args) in the one background evaluation thread (evaluations run one after another)."""
    global _BACKGROUND
    if _BACKGROUND is None:
        _BACKGROUND = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=_BACKGROUND_NAME)
    return _BACKGROUND.submit(fn, *args, **kwargs)


def evaluate_async(env: str, policy: BatchPolicy, member_seeds: list[int], episodes: int, eval_index: int,
                   version: str = "v4", workers: int | None = None) -> concurrent.futures.Future:
    """`evaluate` in a background thread, so the update loop need not wait for it.

    Give it a policy holding a *copy* of the weights (training keeps changing the originals). The
    environments step in the worker processes and torch releases the GIL, so training and evaluation
    overlap; evaluations submitted this way run one after another. `.result()` gives the EvalResult.
    """
    return in_background(evaluate, env, policy, member_seeds, episodes, eval_index, version, workers)
