"""Evaluation environments: the D4RL locomotion tasks in gymnasium, normalised scores, batched evaluation.

Never imports torch at module level: evaluation workers import this package.
"""

from synthrl.envs.evaluate import (BatchPolicy, EvalResult, close_pools, episode_seeds, evaluate, evaluate_async,
                                   in_background)
from synthrl.envs.make import make_env
from synthrl.envs.specs import ENVS, VERSIONS, EnvSpec, get_spec, normalized_score

__all__ = [
    "ENVS", "VERSIONS", "EnvSpec", "get_spec", "normalized_score", "make_env",
    "BatchPolicy", "EvalResult", "episode_seeds", "evaluate", "evaluate_async", "in_background", "close_pools",
]
