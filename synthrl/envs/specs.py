"""The four D4RL locomotion environments: dimensions, gymnasium ids, D4RL score constants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthrl.errors import UserError

VERSIONS = ("v4", "v5")  # gymnasium has no v2/v3 without mujoco-py; v4 is closest to D4RL's physics
MAX_EPISODE_STEPS = 1000


@dataclass(frozen=True)
class EnvSpec:
    name: str          # "hopper", "halfcheetah", "walker2d", "ant"
    gym_name: str      # gymnasium id without version: "Hopper"
    obs_dim: int       # D4RL v2 observation width (ant: 27 real + 84 zero contact forces)
    act_dim: int
    ref_min: float     # D4RL random-policy return
    ref_max: float     # D4RL expert return

    def gym_id(self, version: str = "v4") -> str:
        return f"{self.gym_name}-{check_version(version)}"


ENVS: dict[str, EnvSpec] = {
    "halfcheetah": EnvSpec("halfcheetah", "HalfCheetah", 17, 6, -280.178953, 12135.0),
    "hopper": EnvSpec("hopper", "Hopper", 11, 3, -20.272305, 3234.3),
    "walker2d": EnvSpec("walker2d", "Walker2d", 17, 6, 1.629008, 4592.3),
    "ant": EnvSpec("ant", "Ant", 111, 8, -325.6, 3879.7),
}

# Ant: gymnasium's default 27-dim observation, then D4RL's 84 contact-force entries (all zero in D4RL data)
ANT_REAL_OBS_DIM = 27


def check_version(version: str) -> str:
    if version not in VERSIONS:
        raise UserError(f"environment version: expected one of {', '.join(VERSIONS)}, got {version!r}")
    return version


def get_spec(env: str) -> EnvSpec:
    """'hopper', 'Hopper-v4' or 'hopper-medium-v2' -> the EnvSpec; anything else is a UserError."""
    key = str(env).strip().lower()
    if key not in ENVS:
        head = key.replace("_", "-").split("-", 1)[0]
        if head not in ENVS:
            raise UserError(f"environment {env!r}: expected one of {', '.join(ENVS)}")
        key = head
    return ENVS[key]


def normalized_score(env: str, returns) -> np.ndarray:
    """D4RL normalised score: 100 * (return - random) / (expert - random), elementwise, float64."""
    spec = get_spec(env)
    returns = np.asarray(returns, dtype=np.float64)
    return 100.0 * (returns - spec.ref_min) / (spec.ref_max - spec.ref_min)
