"""A trained CQL run as a BatchPolicy (``synthrl data make ENV --policy RUN_DIR``; docs/CONTRACTS.md).

    load_policy(run_dir, member=0, device="cpu") -> CQLMemberPolicy

The run's checkpoint holds the whole ensemble's policy tensors [E, ...]; member ``member`` (an index
into params.json's "seeds") acts deterministically with tanh(mean), exactly as the runner's evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from synthrl.cql.algorithm import deterministic_actions
from synthrl.cql.config import CQLConfig
from synthrl.envs.specs import get_spec
from synthrl.envs.policies import member_checkpoint
from synthrl.errors import UserError
from synthrl.rundir import WRONG_CONTENT, RunDir, error_detail


class CQLMemberPolicy:
    """One member's tanh-Gaussian policy, acting with tanh(mean); one forward pass per step for the batch."""

    def __init__(self, policy: dict[str, torch.Tensor], env: str, obs_dim: int, device: str = "cpu",
                 description: str = "cql"):
        self.device = torch.device(device)
        self.policy = {k: v.to(self.device) for k, v in policy.items()}  # tensors [1, ...]
        self.env, self.obs_dim, self.description = env, int(obs_dim), description

    def reset(self, num_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.array(obs, np.float32), device=self.device)  # a copy: obs may be read-only
        if x.dim() != 2 or x.shape[1] != self.obs_dim:
            raise UserError(f"{self.description}: trained on {self.env} ({self.obs_dim}-dim observations), "
                            f"got observations of shape {tuple(x.shape)}")
        return deterministic_actions(self.policy, x.unsqueeze(0))[0].cpu().numpy()

    def describe(self) -> str:
        return self.description


def load_policy(run_dir: str | Path, *, member: int = 0, device: str = "cpu") -> CQLMemberPolicy:
    run = RunDir(run_dir)
    params = run.read_params()
    where = str(run.path)
    try:
        config = CQLConfig.from_dict({**params["config"], "device": str(device)})
        env = str(params["env"])
    except (KeyError, TypeError) as e:
        raise UserError(f"{run.path / 'params.json'}: not the params of a cql run (missing {e})") from None
    seeds = list(config.seeds)
    state = member_checkpoint(run, seeds, member, "cql")
    try:
        ensemble = state["runner"]["ensemble"]
        policy, saved_seeds = ensemble["policy"], [int(s) for s in ensemble["seeds"]]
        if saved_seeds != seeds:
            raise UserError(f"{run.checkpoint_dir}: holds seeds {saved_seeds}, params.json says {seeds}")
        one = {k: v[member:member + 1].to(torch.float32) for k, v in policy.items()}
        w0 = tuple(one["w0"].shape)
    except WRONG_CONTENT as e:
        raise UserError(f"{run.checkpoint_dir}: not a cql run checkpoint ({error_detail(e)})") from None
    obs_dim = get_spec(env).obs_dim
    if w0 != (1, obs_dim, config.hidden):
        raise UserError(f"{run.checkpoint_dir}: policy input layer has shape {w0[1:]}, "
                        f"expected ({obs_dim}, {config.hidden}) for {env} with hidden={config.hidden}")
    return CQLMemberPolicy(one, env, obs_dim, device,
                           description=f"cql run {where} (member {member}, seed {seeds[member]}): tanh(mean)")
