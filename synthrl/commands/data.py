"""``synthrl data``: make D4RL-format datasets by rolling out a policy, and describe a dataset.

    synthrl data make ENV --policy random|sine|RUN_DIR --steps N --out FILE [--seed S] [--version v4|v5] [--envs B]
                      [--force]
    synthrl data info NAME|FILE [--env ENV] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings


def _env_name(text: str) -> str:
    from synthrl.envs.specs import ENVS

    key = text.strip().lower()
    if key not in ENVS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(ENVS)}, got {text!r}")
    return key


def register(subparsers) -> None:
    from synthrl.cli import nonneg_float, nonneg_int, positive_int

    parser = subparsers.add_parser("data", help="make and inspect D4RL-format offline datasets")
    verbs = parser.add_subparsers(dest="data_verb", metavar="{make,info}", parser_class=type(parser))
    verbs.required = True

    make = verbs.add_parser("make", help="roll out a behaviour policy and write a D4RL-format HDF5 file",
                            description="Roll out a behaviour policy in the environment and write the D4RL "
                                        "layout (with next_observations and metadata).")
    make.add_argument("env", metavar="ENV", type=_env_name, help="halfcheetah, hopper, walker2d or ant")
    make.add_argument("--policy", required=True,
                      help="'random' (uniform), 'sine' (scripted noisy gait) or a run directory of this "
                           "project's CQL/DT training")
    make.add_argument("--steps", type=positive_int, required=True, help="environment steps to record (rows)")
    make.add_argument("--out", required=True, help="output .hdf5 file (written atomically; an existing one is "
                                                    "kept unless --force)")
    make.add_argument("--force", action="store_true", help="replace an existing --out file")
    make.add_argument("--seed", type=nonneg_int, default=0, help="seed of the resets and the policy noise (default 0)")
    make.add_argument("--version", choices=["v4", "v5"], default="v4", help="gymnasium environment version (default v4)")
    make.add_argument("--noise", type=nonneg_float, default=0.0, help="Gaussian action noise added to a saved policy")
    make.add_argument("--member", type=nonneg_int, default=0, help="which ensemble member of a saved run acts (default 0)")
    make.add_argument("--device", default="cpu", help="device for a saved policy (default cpu)")
    make.add_argument("--envs", type=positive_int, default=1,
                      help="episodes rolled out together, one batched policy call per step (default 1; use "
                           "16-64 for a saved policy, above all on a GPU)")
    make.add_argument("--workers", type=nonneg_int, default=None,
                      help="processes stepping the environments (default: none for --envs 1, else one per CPU)")
    make.add_argument("--gzip", action="store_true", help="gzip-compress the arrays (smaller, slower to load)")
    make.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    make.set_defaults(func=run_make)

    info = verbs.add_parser("info", help="describe a dataset: size, episodes, returns, dims, checksum status",
                            description="Validate a D4RL-format dataset and print what is in it.")
    info.add_argument("dataset", metavar="NAME|FILE", help="a file, or a D4RL name like hopper-medium-v2")
    info.add_argument("--env", type=_env_name, default=None, help="the environment, when it cannot be inferred")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    info.set_defaults(func=run_info)


def run_make(args) -> int:
    from synthrl.data.make import make_dataset
    from synthrl.envs.policies import BUILTIN_POLICIES, NoisyPolicy, builtin_policy, load_policy
    from synthrl.errors import UserError
    from synthrl.utils.io import check_output_file, resolve_device

    out = check_output_file(args.out, "--out")  # before the rollout, which may take minutes
    if out.exists() and not args.force:
        raise UserError(f"--out {args.out}: already exists; pass --force to replace it or choose another file")
    if args.policy in BUILTIN_POLICIES:
        policy = builtin_policy(args.policy, args.env, seed=args.seed)
        description = policy.describe()
    else:
        policy = load_policy(args.policy, member=args.member, device=resolve_device(args.device))
        description = f"saved run {args.policy} (member {args.member})"
        if args.noise > 0:
            policy = NoisyPolicy(policy, args.noise, seed=args.seed)
            description += f" + gaussian noise {args.noise}"
    path = make_dataset(args.env, policy, args.steps, out, seed=args.seed, version=args.version,
                        progress=not args.quiet, compression="gzip" if args.gzip else None,
                        policy_description=description, envs=args.envs, workers=args.workers)
    if not args.quiet:  # a store build (the sweeps' `make:` datasets) writes a temporary path: it says the final one
        print(f"wrote {path} ({args.steps} steps of {args.env} {args.version}, policy: {description})")
    return 0


def dataset_summary(dataset) -> dict:
    import numpy as np

    from synthrl.envs.specs import normalized_score

    lengths = dataset.episode_lengths()
    returns = dataset.episode_returns()
    complete = slice(None, -1) if dataset.has_partial_episode else slice(None)
    full_returns = returns[complete]
    stats = {}
    if len(full_returns):
        scores = normalized_score(dataset.env, full_returns)
        stats = {"return_mean": float(full_returns.mean()), "return_std": float(full_returns.std()),
                 "return_min": float(full_returns.min()), "return_max": float(full_returns.max()),
                 "normalized_mean": float(scores.mean()), "normalized_std": float(scores.std())}
    meta_keys = ("env_id", "policy", "generator", "note", "seed", "created_utc")
    return {
        "name": dataset.name,
        "path": str(dataset.path),
        "size_bytes": dataset.path.stat().st_size,
        "sha256": dataset.sha256,
        "checksum": dataset.checksum_status,
        "env": dataset.env,
        "obs_dim": dataset.obs_dim,
        "act_dim": dataset.act_dim,
        "rows": len(dataset),
        "qlearning_transitions": int((~dataset.timeouts[:-1]).sum()),
        "episodes": dataset.num_episodes,
        "complete_episodes": int(len(full_returns)),
        "partial_episode_steps": int(lengths[-1]) if dataset.has_partial_episode else 0,
        "terminals": int(dataset.terminals.sum()),
        "timeouts": int(dataset.timeouts.sum()),
        "episode_length_mean": float(np.mean(lengths)),
        "reward_min": float(dataset.rewards.min()),
        "reward_max": dataset.max_reward,
        "has_next_observations": dataset.has_next_observations,
        **stats,
        "metadata": {k: dataset.meta[k] for k in meta_keys if k in dataset.meta},
    }


def run_info(args) -> int:
    from synthrl.data.dataset import load_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(args.dataset, env=args.env)
        summary = dataset_summary(dataset)
    for w in caught:
        print(f"synthrl: warning: {w.message}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    s = summary
    lines = [
        ("dataset", s["name"]),
        ("file", s["path"]),
        ("size", f"{s['size_bytes']:,} bytes"),
        ("sha256", s["sha256"]),
        ("checksum", s["checksum"]),
        ("environment", s["env"] + (f" (made in {s['metadata']['env_id']})" if "env_id" in s["metadata"] else "")),
        ("dims", f"observations {s['obs_dim']}, actions {s['act_dim']}"),
        ("rows", f"{s['rows']:,} ({s['qlearning_transitions']:,} Q-learning transitions)"),
        ("episodes", f"{s['episodes']:,} ({s['complete_episodes']:,} complete"
                     + (f", 1 partial of {s['partial_episode_steps']} steps" if s["partial_episode_steps"] else "")
                     + f"); {s['terminals']:,} terminals, {s['timeouts']:,} timeouts; mean length {s['episode_length_mean']:.1f}"),
    ]
    if "return_mean" in s:
        lines += [
            ("returns", f"mean {s['return_mean']:.1f} ± {s['return_std']:.1f}, min {s['return_min']:.1f}, "
                        f"max {s['return_max']:.1f} (complete episodes)"),
            ("normalised", f"mean {s['normalized_mean']:.1f} ± {s['normalized_std']:.1f} (D4RL score)"),
        ]
    lines.append(("rewards", f"min {s['reward_min']:.4g}, max {s['reward_max']:.4g}"))
    for key, value in s["metadata"].items():
        lines.append((f"meta.{key}", str(value)))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0
