"""Optional reader for Minari datasets already on disk (no `minari` package needed, no download).

A Minari dataset `namespace/env/name-vN` lives in `$MINARI_DATASETS_PATH` or `~/.minari/datasets`, as
`<id>/data/main_data.hdf5` with one group per episode: `observations` [T+1, dS], `actions` [T],
`rewards` [T], `terminations` [T], `truncations` [T]. It is flattened into D4RL's row layout: rows
are the first T observations, `next_observations` the last T, `terminals` = terminations and
`timeouts` = truncations (an episode ending with neither is marked as timed out, so episodes stay apart).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from synthrl.errors import UserError


def minari_root() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets").expanduser()


def minari_dataset_path(dataset_id: str) -> Path | None:
    path = minari_root() / dataset_id / "data" / "main_data.hdf5"
    return path if path.is_file() else None


def read_minari(dataset_id: str) -> tuple[Path, dict[str, np.ndarray], dict, str]:
    """A Minari dataset's episodes as D4RL-layout arrays: (path, arrays, meta, the name to infer the env from).
    synthrl.data.dataset.load_dataset checks them and makes the OfflineDataset."""
    import h5py

    path = minari_dataset_path(dataset_id)
    if path is None:
        raise UserError(f"Minari dataset {dataset_id!r}: no {minari_root() / dataset_id / 'data' / 'main_data.hdf5'}")
    parts: dict[str, list] = {k: [] for k in ("observations", "next_observations", "actions", "rewards",
                                              "terminals", "timeouts")}
    try:
        with h5py.File(path, "r") as f:
            names = sorted((k for k in f if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
            for name in names:
                g = f[name]
                for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                    if key not in g or not isinstance(g[key], h5py.Dataset):
                        raise UserError(f"{path}: episode {name!r} lacks array {key!r} (nested observations are not supported)")
                obs = g["observations"][()]
                steps = len(g["actions"])
                if len(obs) != steps + 1:
                    raise UserError(f"{path}: episode {name!r} has {len(obs)} observations for {steps} actions (expected T+1)")
                term = g["terminations"][()].astype(bool)
                trunc = g["truncations"][()].astype(bool) & ~term
                if steps and not (term[-1] or trunc[-1]):
                    trunc[-1] = True
                parts["observations"].append(obs[:-1])
                parts["next_observations"].append(obs[1:])
                parts["actions"].append(g["actions"][()])
                parts["rewards"].append(g["rewards"][()])
                parts["terminals"].append(term)
                parts["timeouts"].append(trunc)
            env_id = f.attrs.get("env_spec", "")
    except UserError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: unreadable Minari file ({e})") from None
    if not parts["rewards"]:
        raise UserError(f"{path}: holds no episodes")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    guess = dataset_id.split("/")[1] if dataset_id.count("/") >= 2 else dataset_id.split("/")[0]
    meta = {"minari_id": dataset_id, "env_spec": env_id if isinstance(env_id, str) else str(env_id)}
    return path, arrays, meta, f"{guess}-minari-v0"
