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

from synthrl.envs.make import make_env
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
            policy_description: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Roll `policy` (a BatchPolicy used with batch 1) out for exactly `steps` environment steps."""
    from tqdm import tqdm

    spec = get_spec(env)
    version = check_version(version)
    environment = make_env(spec.name, version)
    reset_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xDA7A]))
    obs_buf = np.empty((steps, spec.obs_dim), np.float32)
    next_buf = np.empty((steps, spec.obs_dim), np.float32)
    act_buf = np.empty((steps, spec.act_dim), np.float32)
    rew_buf = np.empty(steps, np.float32)
    term_buf = np.zeros(steps, bool)
    timeout_buf = np.zeros(steps, bool)
    returns, lengths, reset_seeds, terminated_flags = [], [], [], []
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=f"rollout {spec.gym_id(version)}", unit="step", disable=not progress,
               mininterval=0.5, smoothing=0.05)
    i = 0
    while i < steps:
        reset_seed = int(reset_rng.integers(0, 2**31 - 1))
        obs, _ = environment.reset(seed=reset_seed)
        policy.reset(1)
        last_reward = np.zeros(1, np.float32)
        episode_return, episode_start = 0.0, i
        while i < steps:
            action = np.asarray(policy.act(np.asarray(obs, np.float32)[None], last_reward), np.float32).reshape(-1)
            action = np.clip(action, -1.0, 1.0)
            next_obs, reward, terminated, truncated, _ = environment.step(action)
            obs_buf[i], act_buf[i], next_buf[i] = obs, action, next_obs
            rew_buf[i] = reward
            term_buf[i] = terminated
            timeout_buf[i] = truncated and not terminated
            episode_return += float(np.float32(reward))
            last_reward = np.full(1, reward, np.float32)
            obs = next_obs
            i += 1
            if i % 1000 == 0:
                bar.update(1000)
            if terminated or truncated:
                returns.append(episode_return)
                lengths.append(i - episode_start)
                reset_seeds.append(reset_seed)
                terminated_flags.append(bool(terminated))
                break
    bar.update(steps - bar.n)
    bar.close()
    tail_steps = steps - int(sum(lengths))
    arrays = {"observations": obs_buf, "actions": act_buf, "rewards": rew_buf, "terminals": term_buf,
              "timeouts": timeout_buf, "next_observations": next_buf}
    meta = rollout_metadata(spec, version, seed, steps, policy_description or _describe(policy),
                            returns, lengths, reset_seeds, terminated_flags, tail_steps,
                            float(rew_buf[steps - tail_steps:].astype(np.float64).sum()),
                            time.perf_counter() - started)
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
                 policy_description: str | None = None) -> Path:
    """Roll out and write one D4RL-format file; returns its path."""
    arrays, meta = rollout(env, policy, steps, seed=seed, version=version, progress=progress,
                           policy_description=policy_description)
    return write_d4rl_hdf5(out, arrays, meta, compression=compression)
