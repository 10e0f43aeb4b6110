"""D4RL-format offline datasets: find, read, validate, and the views CQL and DT train on.

Layout (what the `d4rl` package caches and `synthrl data make` writes): HDF5 datasets
`observations` [N, dS], `actions` [N, dA], `rewards` [N], `terminals` [N], `timeouts` [N], optionally
`next_observations` [N, dS], `infos/*`, `metadata/*`. Rows are consecutive steps; an episode ends at a
row with `terminals | timeouts`; rows after the last such row are a trailing partial episode.

Q-learning view (`qlearning`), exactly `d4rl.qlearning_dataset`'s convention: for each row i < N-1,
the next state is row i+1; a row with `timeouts[i]` is skipped (the last step of a timed-out episode
has no next state in the data, so it is no transition); terminal rows are kept with done = 1. The
next state is taken from row i+1 even when the file has `next_observations`, so the transitions are
the ones every published D4RL pipeline trains on (the two agree inside an episode of a consistent
file; they differ only on terminal rows, whose next state the done flag masks out of every target).
`qlearning(use_next_observations=True)` takes the file's `next_observations` instead.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np

from synthrl.data.official import d4rl_file_name, dataset_name_of_file, official_entry, parse_dataset_name
from synthrl.envs.specs import ENVS, get_spec
from synthrl.errors import UserError
from synthrl.utils.io import sha256_file

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")

# Values a sound file holds: actions in the environments' box [-1, 1] (up to rounding); observations and
# rewards far below VALUE_BOUND (MuJoCo locomotion gives a few tens at most). Anything past these is a
# corrupted or foreign file: it would train into NaN, or into silently clipped actions.
ACTION_BOUND = 1.0
ACTION_TOLERANCE = 1e-3
VALUE_BOUND = 1e6


class DatasetChecksumWarning(UserWarning):
    """A file named like an official D4RL v2 file whose size or SHA-256 is not the official one."""


class DatasetValueWarning(UserWarning):
    """Actions slightly outside [-1, 1] (within ACTION_TOLERANCE): kept; CQL clips them, DT fits them as they are."""


def d4rl_dataset_dir() -> Path:
    """Where the `d4rl` package caches its files: $D4RL_DATASET_DIR, else ~/.d4rl/datasets."""
    return Path(os.environ.get("D4RL_DATASET_DIR") or Path.home() / ".d4rl" / "datasets").expanduser()


class OfflineDataset:
    """One offline dataset in memory (float32 arrays, boolean flags) and its views.

    Attributes: name, path, env, observations, actions, rewards, terminals, timeouts,
    next_observations, obs_dim, act_dim, max_reward, meta (the file's metadata attributes),
    checksum_status, sha256 (of the file; computed on first use).
    """

    def __init__(self, *, name: str, path: Path, env: str, observations: np.ndarray, actions: np.ndarray,
                 rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray,
                 next_observations: np.ndarray | None = None, meta: dict | None = None,
                 sha256: str | None = None, checksum_status: str = "not checked"):
        self.name, self.path, self.env = name, Path(path), env
        self.observations, self.actions, self.rewards = observations, actions, rewards
        self.terminals, self.timeouts = terminals, timeouts
        self.has_next_observations = next_observations is not None
        if next_observations is None:
            # the next row stands in for the next state (last row: itself); terminal rows are masked anyway
            next_observations = np.concatenate([observations[1:], observations[-1:]])
        self.next_observations = next_observations
        self.meta = dict(meta or {})
        self._sha256 = sha256
        self.checksum_status = checksum_status
        for array in (observations, actions, rewards, terminals, timeouts, next_observations):
            array.flags.writeable = False  # trajectory views share this memory

    # -------------------------------------------------------------------------------- basics
    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return self._sha256

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def max_reward(self) -> float:
        return float(self.rewards.max())

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def __repr__(self) -> str:
        return (f"OfflineDataset({self.name!r}, env={self.env!r}, rows={len(self)}, "
                f"episodes={self.num_episodes}, path={str(self.path)!r})")

    # -------------------------------------------------------------------------------- episodes
    @functools.cached_property
    def episode_bounds(self) -> np.ndarray:
        """int64 [E, 2]: (start, end) row ranges, split after terminals | timeouts; a trailing partial episode kept."""
        ends = np.flatnonzero(self.terminals | self.timeouts) + 1
        if ends.size == 0 or ends[-1] != len(self):
            ends = np.append(ends, len(self))
        starts = np.concatenate([[0], ends[:-1]])
        return np.stack([starts, ends], axis=1).astype(np.int64)

    @property
    def num_episodes(self) -> int:
        return int(len(self.episode_bounds))

    def episode_lengths(self) -> np.ndarray:
        return self.episode_bounds[:, 1] - self.episode_bounds[:, 0]

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode (float64 sums of the float32 rewards)."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_bounds[:, 0])

    @property
    def has_partial_episode(self) -> bool:
        return not bool(self.terminals[-1] or self.timeouts[-1])

    @property
    def num_transitions(self) -> int:
        """Rows of the Q-learning view: every row but the last and those with a time-out."""
        return int(np.count_nonzero(~self.timeouts[:-1]))

    def require_batch(self, batch_size: int, view: str = "qlearning") -> None:
        """UserError naming the counts when the rows training samples from are fewer than one batch.

        view "qlearning": CQL's transitions (num_transitions); "trajectories": DT's window starts (every row).
        """
        usable = self.num_transitions if view == "qlearning" else len(self)
        if usable >= batch_size:
            return
        if view == "qlearning":
            what = (f"Q-learning transitions (of {len(self)} rows, {int(np.count_nonzero(self.timeouts))} with a "
                    f"time-out; the last row and time-out rows have no next state)")
        else:
            what = "rows to start DT windows at"
        if "subsample_ratio" in self.meta:
            what += f" after --finetune-ratio {self.meta['subsample_ratio']} kept {self.meta['subsample_episodes']} episode(s)"
        fix = "a larger dataset" + (f" or a batch size of at most {usable}" if usable else "")
        raise UserError(f"{self.path}: {usable} {what}, fewer than one batch of {batch_size}; use {fix}")

    # -------------------------------------------------------------------------------- views
    def qlearning(self, use_next_observations: bool = False) -> dict[str, np.ndarray]:
        """Transitions in d4rl.qlearning_dataset's convention (module docstring); fresh float32 arrays."""
        keep = np.flatnonzero(~self.timeouts[:-1])
        next_obs = self.next_observations[keep] if use_next_observations else self.observations[keep + 1]
        return {
            "observations": self.observations[keep],
            "actions": self.actions[keep],
            "next_observations": next_obs,
            "rewards": self.rewards[keep],
            "terminals": self.terminals[keep].astype(np.float32),
        }

    def trajectories(self) -> list[dict[str, np.ndarray]]:
        """Whole episodes for DT (read-only views into the dataset): observations, actions, rewards, terminals."""
        return [
            {
                "observations": self.observations[s:e],
                "actions": self.actions[s:e],
                "rewards": self.rewards[s:e],
                "terminals": self.terminals[s:e],
            }
            for s, e in self.episode_bounds
        ]

    def state_mean_std(self, eps: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and population std of all observation rows (float32); std + eps if asked."""
        mean = self.observations.mean(axis=0, dtype=np.float64)  # float64 accumulation, no float64 copy
        std = self.observations.std(axis=0, dtype=np.float64)
        return mean.astype(np.float32), (std + eps).astype(np.float32)

    def subsample(self, ratio: float, seed: int) -> "OfflineDataset":
        """A seeded fraction of the trajectories (at least one), kept in their original order."""
        ratio = float(ratio)
        if not 0.0 < ratio <= 1.0:
            raise UserError(f"fine-tuning data ratio: expected a fraction in (0, 1], got {ratio}")
        if ratio == 1.0:
            return self
        bounds = self.episode_bounds
        keep = max(1, int(round(ratio * len(bounds))))
        chosen = np.sort(np.random.default_rng(seed).choice(len(bounds), size=keep, replace=False))
        # the trailing partial episode, if chosen, is the last in the original order and stays last
        rows = np.concatenate([np.arange(s, e) for s, e in bounds[chosen]])
        meta = {**self.meta, "subsample_ratio": ratio, "subsample_seed": int(seed),
                "subsample_episodes": int(keep)}
        return OfflineDataset(
            name=self.name, path=self.path, env=self.env,
            observations=self.observations[rows], actions=self.actions[rows], rewards=self.rewards[rows],
            terminals=self.terminals[rows], timeouts=self.timeouts[rows],
            next_observations=self.next_observations[rows] if self.has_next_observations else None,
            meta=meta, sha256=self._sha256, checksum_status=self.checksum_status,
        )


# ------------------------------------------------------------------------------------ loading

def resolve_dataset(name_or_path: str) -> tuple[str, Path]:
    """(dataset name, file) for a path or a D4RL name such as hopper-medium-v2."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        path = path.resolve()
        stem = dataset_name_of_file(path.name) or path.name.removesuffix(".hdf5").removesuffix(".h5")
        return stem, path
    if path.is_dir():
        raise UserError(f"dataset {text!r}: is a directory, expected an HDF5 file (or a Minari dataset id)")
    file_name = d4rl_file_name(text)
    if file_name is None:
        raise UserError(f"dataset {text!r}: no such file, and not a D4RL dataset name like hopper-medium-v2")
    directory = d4rl_dataset_dir()
    candidate = directory / file_name
    if not candidate.is_file():
        raise UserError(f"dataset {text!r}: {file_name} not found in {directory} (set D4RL_DATASET_DIR, "
                        f"pass a file path, or make one with `synthrl data make`)")
    return text.strip().lower(), candidate


def load_dataset(name_or_path: str, env: str | None = None, *, verify_checksum: bool = True) -> OfflineDataset:
    """Read and validate a D4RL-format HDF5 file (by path or name), or a Minari dataset id.

    Every problem is a UserError naming the file and what is wrong. A file named like one of the 12
    official D4RL v2 files but with another size or SHA-256 gets a DatasetChecksumWarning.
    """
    text = str(name_or_path)
    if "/" in text and not Path(text).expanduser().exists():
        from synthrl.data.minari import minari_dataset_path, read_minari

        if minari_dataset_path(text) is not None:
            path, arrays, meta, guess = read_minari(text)
            arrays = _normalise_arrays(path, arrays)
            env_name = infer_env(path, guess, meta, arrays, env)
            validate_arrays(path, arrays, env_name)
            return OfflineDataset(name=text, path=path, env=env_name, meta=meta, checksum_status="Minari dataset",
                                  **arrays)
    name, path = resolve_dataset(text)
    arrays, meta = read_d4rl_hdf5(path)
    env_name = infer_env(path, name, meta, arrays, env)
    validate_arrays(path, arrays, env_name)
    sha, status = (None, "not an official D4RL file name")
    if verify_checksum:
        sha, status = check_official(path)
    return OfflineDataset(name=name, path=path, env=env_name, meta=meta, sha256=sha, checksum_status=status, **arrays)


def read_d4rl_hdf5(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    import h5py

    if not h5py.is_hdf5(path):
        raise UserError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED_KEYS if k not in f]
            if missing:
                raise UserError(f"{path}: missing key {missing[0]!r} (a D4RL dataset needs {', '.join(REQUIRED_KEYS)})")
            arrays = {}
            for key in (*REQUIRED_KEYS, "next_observations"):
                if key not in f:
                    continue
                if not isinstance(f[key], h5py.Dataset):
                    raise UserError(f"{path}: {key!r} is a group, expected an array")
                arrays[key] = f[key][()]
            meta = _read_metadata(f)
    except UserError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: unreadable HDF5 file ({e})") from None
    arrays.setdefault("next_observations", None)
    return _normalise_arrays(path, arrays), meta


def _read_metadata(f) -> dict:
    """The `metadata` group's attributes and small datasets, as plain Python/numpy values."""
    import h5py

    meta: dict = {}
    group = f.get("metadata")
    if isinstance(group, h5py.Group):
        for key, value in group.attrs.items():
            meta[key] = _plain(value)
        for key, item in group.items():
            if isinstance(item, h5py.Dataset) and item.size <= 64:  # skip policy weights in D4RL's metadata
                meta.setdefault(key, _plain(item[()]))
    for key, value in f.attrs.items():
        meta.setdefault(key, _plain(value))
    return meta


def _plain(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
        return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _normalise_arrays(path: Path, arrays: dict) -> dict[str, np.ndarray]:
    """Shapes and dtypes: float32 [N, d] observations/actions, float32 [N] rewards, bool [N] flags."""
    out = {}
    for key in ("observations", "actions", "next_observations"):
        a = arrays.get(key)
        if a is None:
            out[key] = None
            continue
        if a.ndim != 2:
            raise UserError(f"{path}: {key!r} has shape {a.shape}, expected 2 dimensions [N, dim]")
        if a.dtype.kind not in "fiu":
            raise UserError(f"{path}: {key!r} has dtype {a.dtype}, expected numbers")
        out[key] = np.ascontiguousarray(a, dtype=np.float32)
    for key in ("rewards", "terminals", "timeouts"):
        a = arrays[key]
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            raise UserError(f"{path}: {key!r} has shape {a.shape}, expected [N]")
        if a.dtype.kind not in "fiub":
            raise UserError(f"{path}: {key!r} has dtype {a.dtype}, expected numbers")
        out[key] = np.ascontiguousarray(a, dtype=np.float32) if key == "rewards" else a.astype(bool)
    return out


def infer_env(path: Path, name: str, meta: dict, arrays: dict, env: str | None) -> str:
    """The environment: given, else from the dataset/file name, else the metadata's env id, else the dims."""
    if env is not None:
        return get_spec(env).name
    for candidate in (name, dataset_name_of_file(path.name) or ""):
        parsed = parse_dataset_name(candidate)
        if parsed:
            return parsed[0]
    for key in ("env_id", "env", "env_name", "environment"):
        value = meta.get(key)
        if isinstance(value, str) and value:
            try:
                return get_spec(value).name
            except UserError:
                pass
    obs_dim, act_dim = arrays["observations"].shape[1], arrays["actions"].shape[1]
    matches = [s.name for s in ENVS.values() if (s.obs_dim, s.act_dim) == (obs_dim, act_dim)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UserError(f"{path}: {obs_dim}-dim observations and {act_dim}-dim actions fit {' and '.join(matches)}; "
                        f"say which environment (--env)")
    raise UserError(f"{path}: {obs_dim}-dim observations and {act_dim}-dim actions fit none of the environments "
                    f"({', '.join(f'{s.name} {s.obs_dim}/{s.act_dim}' for s in ENVS.values())})")


def validate_arrays(path: Path, arrays: dict, env: str) -> None:
    n = arrays["rewards"].shape[0]
    for key, a in arrays.items():
        if a is not None and a.shape[0] != n:
            raise UserError(f"{path}: {key!r} has {a.shape[0]} rows but 'rewards' has {n} (all keys need equal lengths)")
    if n == 0:
        raise UserError(f"{path}: holds no transitions (need at least one episode)")
    spec = get_spec(env)
    for key, want in (("observations", spec.obs_dim), ("actions", spec.act_dim), ("next_observations", spec.obs_dim)):
        a = arrays.get(key)
        if a is not None and a.shape[1] != want:
            extra = " (D4RL's 111-dim layout: 27 entries + 84 zeros)" if env == "ant" and key != "actions" else ""
            raise UserError(f"{path}: {key!r} are {a.shape[1]}-dim but {env} needs {want}{extra}")
    for key in ("observations", "actions", "rewards", "next_observations"):
        if arrays.get(key) is not None:
            check_values(path, key, arrays[key])


def _first_outside(a: np.ndarray, bound: float) -> tuple[int, ...] | None:
    """Index of the first element outside [-bound, bound] (NaN and inf included), else None.

    Two reductions when every value is inside (cheap on 2M-row files); the search only on failure.
    """
    if -bound <= a.min() and a.max() <= bound:  # a NaN fails both comparisons
        return None
    return tuple(int(i) for i in np.argwhere(~(np.abs(a) <= bound))[0])


def check_values(path: Path, key: str, a: np.ndarray) -> None:
    """NaN, inf and absurd values are a UserError naming the key, row and bound; actions slightly
    outside [-1, 1] are a DatasetValueWarning with their count."""
    bound = ACTION_BOUND + ACTION_TOLERANCE if key == "actions" else VALUE_BOUND
    bad = _first_outside(a, bound)
    if bad is not None:
        value, row = float(a[bad]), bad[0]
        if np.isnan(value):
            raise UserError(f"{path}: {key!r} holds NaN (first at row {row})")
        if np.isinf(value):
            raise UserError(f"{path}: {key!r} holds an infinite value (first at row {row})")
        column = f" (column {bad[1]})" if a.ndim == 2 else ""
        expected = (f"actions in [-1, 1] (tolerance {ACTION_TOLERANCE:g})" if key == "actions"
                    else f"|value| <= {VALUE_BOUND:g}")
        raise UserError(f"{path}: {key!r} holds {value:.6g} at row {row}{column}, outside the bound: expected "
                        f"{expected}; a corrupted or foreign file?")
    if key == "actions" and not (-ACTION_BOUND <= a.min() and a.max() <= ACTION_BOUND):
        outside = np.abs(a) > ACTION_BOUND
        count = int(np.count_nonzero(outside))
        if count:
            first = int(np.argwhere(outside)[0][0])
            warnings.warn(f"{path}: {count} action value(s) slightly outside [-1, 1] (first at row {first}, at most "
                          f"{float(np.abs(a).max()):.6g}, within the tolerance {ACTION_TOLERANCE:g}); kept as they are "
                          f"(CQL clips its actions to ±action_clip)", DatasetValueWarning, stacklevel=4)


def check_official(path: Path) -> tuple[str | None, str]:
    """(sha256 if computed, status). Warns when an official file name has another size or SHA-256."""
    entry = official_entry(path.name)
    if entry is None:
        return None, "not an official D4RL file name"
    size, official_sha = entry
    actual_size = path.stat().st_size
    if actual_size != size:
        status = f"size {actual_size} differs from the official {size} bytes"
        warnings.warn(f"{path}: named like the official D4RL file but its {status}; results will not be "
                      f"comparable with published D4RL numbers", DatasetChecksumWarning, stacklevel=3)
        return None, "MISMATCH: " + status
    sha = sha256_file(path)
    if sha != official_sha:
        warnings.warn(f"{path}: named like the official D4RL file but its SHA-256 {sha[:12]}... differs from the "
                      f"official {official_sha[:12]}...", DatasetChecksumWarning, stacklevel=3)
        return sha, "MISMATCH: sha256 differs from the official file"
    return sha, "official D4RL v2 file (size and sha256 match)"
