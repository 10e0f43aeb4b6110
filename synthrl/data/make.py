"""Make D4RL-format datasets by rolling out a behaviour policy, and write the D4RL HDF5 layout.

No D4RL file can be downloaded on the development machines, so the quick start, the tests and the
benchmarks use files made here: same keys as D4RL v2 plus `next_observations`, and a `metadata`
group recording the environment id/version, the policy, the seed and per-episode statistics.

Flags: `terminals[i]` is the environment's `terminated`; `timeouts[i]` is set on the last step of an
episode cut by the 1000-step limit (`truncated` and not `terminated`), as in D4RL v2. Rows after the
last finished episode (when the step budget runs out mid-episode) are a trailing partial episode.
"""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from synthrl.envs.specs import MAX_EPISODE_STEPS, check_version, get_spec
from synthrl.utils.io import atomic_write


def write_d4rl_hdf5(path: str | Path, arrays: dict[str, np.ndarray], meta: dict | None = None,
                    compression: str | None = None) -> Path:
    """Write observations/actions/rewards/terminals/timeouts[/next_observations] and metadata atomically."""
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for key, value in arrays.items():
                if value is None:
                    continue
                kwargs = {"compression": compression} if compression and np.ndim(value) > 0 else {}
                f.create_dataset(key, data=value, **kwargs)
            group = f.create_group("metadata")
            for key, value in (meta or {}).items():
                group.attrs[key] = _attr_value(value)

    return atomic_write(path, write)


def _attr_value(value):
    if isinstance(value, (dict, list, tuple)) and not _is_numeric_sequence(value):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return "null"
    return value


def _is_numeric_sequence(value) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, bool, np.generic)) for v in value)


def rollout(env: str, policy, steps: int, seed: int = 0, version: str = "v4", progress: bool = False,
            policy_description: str | None = None, envs: int = 1,
            workers: int | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Roll a BatchPolicy out for exactly `steps` environment steps, `envs` episodes at a time.

    Rounds: every round resets `envs` environments (reset seeds drawn from `seed`), calls
    `policy.reset(envs)` and steps them together, one batched policy call per step, until their
    episodes end; the episodes are appended in environment order. The last episode is cut where the
    step budget ends (a trailing partial episode), and stepping stops as soon as the rows still
    needed are complete. With envs=1 this is a plain sequential rollout. Many envs make a GPU
    policy (a trained DT or CQL agent) fast; `workers` processes step them (default: none for one
    env, else one per CPU).
    """
    from tqdm import tqdm

    from synthrl.envs.evaluate import EnvWorkerPool, default_workers

    spec = get_spec(env)
    version = check_version(version)
    envs = max(1, int(envs))
    workers = (0 if envs == 1 else default_workers(envs)) if workers is None else int(workers)
    reset_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xDA7A]))
    d = spec.obs_dim
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                                          "terminals", "timeouts")}
    returns, lengths, reset_seeds, terminated_flags = [], [], [], []
    total = 0
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=f"rollout {spec.gym_id(version)}", unit="step", disable=not progress,
               mininterval=0.5, smoothing=0.05)
    pool = EnvWorkerPool(spec.name, version, min(workers, envs))  # private: closed below
    try:
        while total < steps:
            need = steps - total
            seeds = reset_rng.integers(0, 2**31 - 1, size=envs)
            obs = pool.reset(seeds)
            policy.reset(envs)
            last_rewards = np.zeros(envs, np.float32)
            done = np.zeros(envs, bool)
            length = np.zeros(envs, np.int64)
            history = {k: [] for k in ("obs", "act", "rew", "next", "code")}
            while not done.all():
                # stop once the episodes that will be kept (in env order, up to `need` rows) are complete
                cum = np.cumsum(length)
                enough = np.flatnonzero(cum >= need)
                if enough.size and done[: enough[0]].all():
                    break
                actions = np.asarray(policy.act(obs.astype(np.float32), last_rewards), np.float32)
                actions = np.clip(actions.reshape(envs, spec.act_dim), -1.0, 1.0)
                out = pool.step(actions)
                running = ~done
                history["obs"].append(obs.astype(np.float32))
                history["act"].append(actions)
                history["rew"].append(out[:, d].astype(np.float32))
                history["next"].append(out[:, :d].astype(np.float32))
                history["code"].append(np.where(running, out[:, d + 1], 0.0).astype(np.int8))
                obs, last_rewards = out[:, :d], out[:, d].astype(np.float32)
                length += running
                done |= out[:, d + 1] > 0.5
                bar.update(int(min(running.sum(), max(0, steps - bar.n))))
            stacked = {k: np.stack(v) for k, v in history.items()}  # [T, envs, ...]
            for b in range(envs):
                n = int(min(length[b], steps - total))
                if n == 0:
                    break
                code = stacked["code"][:n, b]
                parts["observations"].append(stacked["obs"][:n, b])
                parts["actions"].append(stacked["act"][:n, b])
                parts["rewards"].append(stacked["rew"][:n, b])
                parts["next_observations"].append(stacked["next"][:n, b])
                parts["terminals"].append(code == 1)
                parts["timeouts"].append(code == 2)
                total += n
                if n == length[b] and done[b]:  # a whole episode
                    returns.append(float(stacked["rew"][:n, b].astype(np.float64).sum()))
                    lengths.append(n)
                    reset_seeds.append(int(seeds[b]))
                    terminated_flags.append(bool(code[-1] == 1))
    finally:
        pool.close()
        bar.update(steps - bar.n)
        bar.close()
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    tail_steps = steps - int(sum(lengths))
    meta = rollout_metadata(spec, version, seed, steps, policy_description or _describe(policy),
                            returns, lengths, reset_seeds, terminated_flags, tail_steps,
                            float(arrays["rewards"][steps - tail_steps:].astype(np.float64).sum()),
                            time.perf_counter() - started)
    meta["rollout_envs"] = envs
    return arrays, meta


def _describe(policy) -> str:
    return policy.describe() if hasattr(policy, "describe") else type(policy).__name__


def rollout_metadata(spec, version, seed, steps, policy, returns, lengths, reset_seeds, terminated_flags,
                     tail_steps, tail_return, seconds) -> dict:
    import gymnasium
    import h5py
    import mujoco

    from synthrl import __version__
    from synthrl.envs.specs import normalized_score

    returns_arr = np.asarray(returns, np.float64)
    return {
        "generator": f"synthrl data make ({__version__})",
        "note": "NOT D4RL: D4RL-v2-layout rollouts made by synthrl",
        "env": spec.name,
        "env_id": spec.gym_id(version),
        "env_version": version,
        "max_episode_steps": MAX_EPISODE_STEPS,
        "obs_layout": "D4RL v2 (ant: 27 gymnasium entries + 84 zeros)" if spec.name == "ant" else f"gymnasium {spec.gym_id(version)}",
        "policy": policy,
        "seed": int(seed),
        "n_transitions": int(steps),
        "n_episodes": len(returns),
        "episode_returns": returns_arr,
        "episode_lengths": np.asarray(lengths, np.int64),
        "episode_reset_seeds": np.asarray(reset_seeds, np.int64),
        "episode_terminated": np.asarray(terminated_flags, bool),
        "tail_steps": int(tail_steps),
        "tail_return": float(tail_return),
        "return_mean": float(returns_arr.mean()) if len(returns_arr) else float("nan"),
        "return_std": float(returns_arr.std()) if len(returns_arr) else float("nan"),
        "normalized_score_mean": float(normalized_score(spec.name, returns_arr).mean()) if len(returns_arr) else float("nan"),
        "rollout_seconds": float(seconds),
        "created_utc": datetime.now(timezone.utc).isoformat(),
        "versions": json.dumps({"gymnasium": gymnasium.__version__, "mujoco": mujoco.__version__, "numpy": np.__version__,
                                "h5py": h5py.__version__, "python": platform.python_version()}, sort_keys=True),
    }


def make_dataset(env: str, policy, steps: int, out: str | Path, seed: int = 0, version: str = "v4",
                 progress: bool = False, compression: str | None = None,
                 policy_description: str | None = None, envs: int = 1, workers: int | None = None) -> Path:
    """Roll out and write one D4RL-format file; returns its path."""
    arrays, meta = rollout(env, policy, steps, seed=seed, version=version, progress=progress,
                           policy_description=policy_description, envs=envs, workers=workers)
    return write_d4rl_hdf5(out, arrays, meta, compression=compression)
