"""Gymnasium MuJoCo environments laid out like the D4RL datasets."""

from __future__ import annotations

import warnings

import gymnasium as gym
import mujoco
import numpy as np

from synthrl.envs.specs import ANT_REAL_OBS_DIM, MAX_EPISODE_STEPS, check_version, get_spec


def _mujoco_warning(message: str) -> None:
    # gymnasium's v4 XML files use the deprecated 'settotalmass'; without a handler MuJoCo prints that
    # on every model load and appends it to MUJOCO_LOG.TXT in the working directory
    if "settotalmass" not in message:
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


if mujoco.get_mju_user_warning() is None:
    mujoco.set_mju_user_warning(_mujoco_warning)


class AntD4RLObservation(gym.ObservationWrapper):
    """Ant's 27 real observation entries followed by 84 zeros: D4RL's 111-dim layout.

    D4RL's ant data carries 84 contact-force entries that are all zero; `use_contact_forces=True`
    would fill them with non-zero forces and change the reward, so we pad instead.
    """

    def __init__(self, env: gym.Env, obs_dim: int):
        super().__init__(env)
        real = env.observation_space.shape[0]
        if real != ANT_REAL_OBS_DIM:
            raise ValueError(f"Ant observation has {real} entries, expected {ANT_REAL_OBS_DIM}")
        self.pad = obs_dim - real
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float64)

    def observation(self, observation):
        return np.concatenate([observation, np.zeros(self.pad, dtype=observation.dtype)])


def make_env(env: str, version: str = "v4") -> gym.Env:
    """One evaluation environment: gymnasium `<Name>-<version>`, 1000-step limit, D4RL observation width."""
    spec = get_spec(env)
    gym_id = spec.gym_id(check_version(version))
    kwargs = {}
    if spec.name == "ant" and version == "v5":
        kwargs["include_cfrc_ext_in_observation"] = False  # v5 includes contact forces by default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "v4 is out of date" deprecation notes: v4 is chosen on purpose
        environment = gym.make(gym_id, max_episode_steps=MAX_EPISODE_STEPS, **kwargs)
    if spec.name == "ant":
        environment = AntD4RLObservation(environment, spec.obs_dim)
    obs_dim = environment.observation_space.shape[0]
    if obs_dim != spec.obs_dim:  # guards against a gymnasium release changing a layout under us
        raise RuntimeError(f"{gym_id} gives {obs_dim}-dim observations, D4RL's {spec.name} data has {spec.obs_dim}")
    return environment
