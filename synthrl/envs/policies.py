"""Behaviour and evaluation policies with the BatchPolicy interface, and the saved-policy loader.

A BatchPolicy maps a batch of observations (and the previous step's rewards, which DT needs for its
returns-to-go) to a batch of actions; `reset(num_envs)` starts new episodes for every row.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from synthrl.envs.specs import get_spec
from synthrl.errors import UserError


class RandomPolicy:
    """Uniform actions in [-1, 1]^dA from a seeded generator."""

    def __init__(self, act_dim: int, seed: int = 0):
        self.act_dim = act_dim
        self.rng = np.random.default_rng(seed)

    def reset(self, num_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=(len(obs), self.act_dim)).astype(np.float32)

    def describe(self) -> str:
        return "random: uniform in [-1, 1]"


class SinePolicy:
    """A scripted open-loop gait: each joint follows a sine with its own phase, plus Gaussian noise.

    Not a good controller; it moves the robot in a structured, repeatable way, which gives datasets
    with longer episodes and less spread-out actions than uniform noise.
    """

    def __init__(self, act_dim: int, seed: int = 0, period: int = 20, amplitude: float = 0.8, noise: float = 0.2):
        self.act_dim, self.period, self.amplitude, self.noise = act_dim, period, amplitude, noise
        self.rng = np.random.default_rng(seed)
        self.phase = 2 * np.pi * np.arange(act_dim) / act_dim
        self.t = np.zeros(0, dtype=np.int64)

    def reset(self, num_envs: int) -> None:
        self.t = np.zeros(num_envs, dtype=np.int64)

    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> np.ndarray:
        angle = 2 * np.pi * self.t[:, None] / self.period + self.phase[None, :]
        self.t += 1
        actions = self.amplitude * np.sin(angle) + self.noise * self.rng.standard_normal(angle.shape)
        return np.clip(actions, -1.0, 1.0).astype(np.float32)

    def describe(self) -> str:
        return f"sine: period {self.period}, amplitude {self.amplitude}, noise {self.noise}"


class NoisyPolicy:
    """Any BatchPolicy plus clipped Gaussian action noise (a cheap way to widen a dataset)."""

    def __init__(self, base, noise: float, seed: int = 0):
        self.base, self.noise = base, float(noise)
        self.rng = np.random.default_rng(seed)

    def reset(self, num_envs: int) -> None:
        self.base.reset(num_envs)

    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> np.ndarray:
        actions = np.asarray(self.base.act(obs, last_rewards), dtype=np.float32)
        actions = actions + self.noise * self.rng.standard_normal(actions.shape).astype(np.float32)
        return np.clip(actions, -1.0, 1.0)

    def describe(self) -> str:
        inner = self.base.describe() if hasattr(self.base, "describe") else type(self.base).__name__
        return f"{inner} + gaussian noise {self.noise}"


class TorchPolicy:
    """A torch module mapping observations [B, dS] to actions [B, dA], as a BatchPolicy.

    One forward pass per step for the whole batch; observations go to the module's device once per
    step. Used by the benchmarks and by algorithms whose actor is a plain feed-forward network.
    """

    def __init__(self, module, device: str = "cpu"):
        import torch

        self.torch = torch
        self.module = module.to(device).eval()
        self.device = torch.device(device)

    def reset(self, num_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            x = self.torch.from_numpy(np.ascontiguousarray(obs)).to(self.device, non_blocking=True)
            return self.module(x).float().cpu().numpy()


BUILTIN_POLICIES = ("random", "sine")


class MemberPolicy:
    """One member of a trained ensemble as a BatchPolicy: ``actions`` maps torch observations [1, N, dS] to
    that member's deterministic actions [1, N, dA] (e.g. IQL's mean on normalised observations)."""

    def __init__(self, actions, env: str, obs_dim: int, device: str, description: str):
        import torch

        self.torch, self.actions, self.device = torch, actions, torch.device(device)
        self.env, self.obs_dim, self.description = env, int(obs_dim), description

    def reset(self, num_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> np.ndarray:
        x = self.torch.as_tensor(np.array(obs, np.float32), device=self.device)  # a copy: obs may be read-only
        if x.dim() != 2 or x.shape[1] != self.obs_dim:
            raise UserError(f"{self.description}: trained on {self.env} ({self.obs_dim}-dim observations), "
                            f"got observations of shape {tuple(x.shape)}")
        with self.torch.inference_mode():
            return self.actions(x.unsqueeze(0))[0].cpu().numpy()

    def describe(self) -> str:
        return self.description


def builtin_policy(name: str, env: str, seed: int = 0):
    act_dim = get_spec(env).act_dim
    if name == "random":
        return RandomPolicy(act_dim, seed)
    if name == "sine":
        return SinePolicy(act_dim, seed)
    raise UserError(f"--policy: expected {' or '.join(BUILTIN_POLICIES)} or a saved run directory, got {name!r}")


def load_policy(path: str | Path, *, member: int = 0, device: str = "cpu"):
    """A saved policy of this project: a run directory (or a file/folder inside one) of a registered
    algorithm's run (CQL, DT, IQL).

    Dispatches on params.json's "algorithm" and imports its code lazily: an algorithm package provides
    `synthrl.<algorithm>.policy.load_policy(run_dir, member=, device=) -> BatchPolicy` (docs/CONTRACTS.md),
    a one-file algorithm (synthrl/iql.py) the same `load_policy` in its module.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"policy {str(path)!r}: no such file or directory")
    run_dir = None
    for candidate in [path, *path.parents][:3]:  # RUN, RUN/checkpoint, RUN/checkpoint/state.pt
        if candidate.is_dir() and (candidate / "params.json").is_file():
            run_dir = candidate
            break
    if run_dir is None:
        raise UserError(f"policy {str(path)!r}: not a run directory of this project (no params.json in it or above it)")
    try:
        params = json.loads((run_dir / "params.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{run_dir / 'params.json'}: unreadable ({e})") from None
    from synthrl.registry import algorithms

    algorithm, registered = str(params.get("algorithm", "")).lower(), list(algorithms())
    if algorithm not in registered:
        raise UserError(f"{run_dir / 'params.json'}: field 'algorithm' must be one of {', '.join(registered)}, "
                        f"got {algorithm!r}")
    try:
        module = importlib.import_module(f"synthrl.{algorithm}")
        if hasattr(module, "__path__"):  # a package: its policy module
            module = importlib.import_module(f"synthrl.{algorithm}.policy")
    except ModuleNotFoundError as e:
        if e.name and f"synthrl.{algorithm}.policy".startswith(e.name):
            raise UserError(f"policy {str(path)!r}: a {algorithm} run, but synthrl.{algorithm}.policy is not "
                            "available in this install") from None
        raise
    if not hasattr(module, "load_policy"):
        raise UserError(f"policy {str(path)!r}: a {algorithm} run, but {module.__name__} has no load_policy "
                        "(its runs cannot act as a saved policy)")
    return module.load_policy(run_dir, member=member, device=device)


def member_checkpoint(run, seeds: list[int], member: int, algorithm: str) -> dict:
    """The checkpoint of a saved run (a synthrl.rundir.RunDir), after checking ``member`` indexes its seeds."""
    if not isinstance(member, int) or not 0 <= member < len(seeds):
        raise UserError(f"--member {member}: the {algorithm} run {run.path} has {len(seeds)} member(s) "
                        f"(seeds {seeds}); expected 0..{len(seeds) - 1}")
    if not run.has_checkpoint():
        raise UserError(f"{run.path}: no checkpoint yet (the run saves one at its first evaluation)")
    return run.load_checkpoint()
