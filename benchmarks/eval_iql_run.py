"""Evaluate an IQL run's latest checkpoint with more episodes than its run did, deterministic or sampled.

    OMP_NUM_THREADS=1 python benchmarks/eval_iql_run.py RUN_DIR [--episodes 50] [--sampled]

Each member acts as the runner's evaluation does (the policy's mean on observations normalised by the
run's statistics: from the checkpoint, or recomputed from the dataset for checkpoints older than that);
``--sampled`` draws a ~ N(mean, std) instead (clipped to the action box). Episodes are seeded by evaluation index ``--eval-index`` (default 10**6,
away from the indices the run's own evaluations used). Prints one line per member and their mean.
"""

from __future__ import annotations

import argparse

import numpy as np


class IQLMember:
    """A BatchPolicy of member ``member``: its mean action, or (sampled) a draw from its Gaussian."""

    def __init__(self, state: dict, member: int, obs_stats, sampled: bool, seed: int):
        import torch

        self.torch, self.sampled = torch, sampled
        ens = state["runner"]["ensemble"]
        self.policy = {k: t[member:member + 1].float() for k, t in ens["policy"].items()}
        self.mean, self.std = obs_stats
        self.generator = torch.Generator().manual_seed(seed)

    def reset(self, num_envs: int) -> None:
        pass

    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> np.ndarray:
        from synthrl.iql import policy_mean_log_std

        with self.torch.inference_mode():
            x = (self.torch.as_tensor(np.array(obs, np.float32))[None] - self.mean) / self.std
            mean, log_std = policy_mean_log_std(self.policy, x)
            if not self.sampled:
                return mean[0].numpy()
            noise = self.torch.randn(mean.shape, generator=self.generator)
            return (mean + noise * log_std.exp()).clamp(-1, 1)[0].numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="an IQL run directory")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--sampled", action="store_true", help="sample actions from the Gaussian instead of its mean")
    p.add_argument("--eval-index", type=int, default=10**6)
    p.add_argument("--workers", type=int, default=0, help="evaluation worker processes (0: in this process)")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    from synthrl.envs import evaluate
    from synthrl.data import load_dataset
    from synthrl.iql import observation_stats
    from synthrl.rundir import RunDir

    run = RunDir(args.run)
    params, state = run.read_params(), run.load_checkpoint()
    seeds, env = [int(s) for s in params["seeds"]], params["env"]
    updates = int(state["runner"]["ensemble"]["updates_done"])
    ens = state["runner"]["ensemble"]
    if "obs_mean" in ens:
        stats = [tuple(ens[k][m:m + 1].float() for k in ("obs_mean", "obs_std")) for m in range(len(seeds))]
    else:  # an older checkpoint: the statistics of the whole dataset (its runs used all of it)
        if params["config"].get("finetune_ratio", 1.0) != 1.0:
            raise SystemExit(f"{run.path}: checkpoint without observation statistics and finetune_ratio < 1")
        mean, std = (torch.as_tensor(a)[None, None] for a in observation_stats(load_dataset(params["dataset_path"])
                                                                              .qlearning()["observations"]))
        stats = [(mean, std)] * len(seeds)
    scores = []
    for member, seed in enumerate(seeds):
        policy = IQLMember(state, member, stats[member], args.sampled, seed)
        result = evaluate(env, policy, [seed], args.episodes, args.eval_index, version=params["env_version"],
                          workers=args.workers)
        s = np.asarray(result.normalized[0])
        scores.append(float(s.mean()))
        print(f"seed {seed} at {updates} updates ({'sampled' if args.sampled else 'mean'} action, {args.episodes} "
              f"episodes): normalised {s.mean():.1f} +- {s.std():.1f} (min {s.min():.1f}, max {s.max():.1f})")
    print(f"mean over {len(seeds)} seed(s): {np.mean(scores):.1f}")


if __name__ == "__main__":
    main()
