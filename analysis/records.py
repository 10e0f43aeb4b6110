"""Evaluation records: run directories or a long CSV, read into one pandas DataFrame.

Two inputs, one shape:

* a folder of run directories (``DIR/**/params.json`` + ``metrics.csv``, see design.md): a sweep's
  results, a single ``synthrl run`` output, or a copy of either; read while a sweep is still running
  (rows appear as evaluations happen; ``DONE`` marks a finished run);
* a long CSV with one row per (variant, dataset, seed, evaluation), from this project or elsewhere.

The frame has one row per (variant, dataset, seed, evaluation) with the columns of ``COLUMNS``.
Beside it, ``Records.expected`` says what each (variant, dataset) should hold when complete
(seeds and number of evaluations, from params.json where known), so partial results can be
reported instead of averaged silently (see ``coverage``).
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from synthrl import registry
from synthrl.errors import UserError

REQUIRED = ["algorithm", "variant", "dataset", "seed", "update", "normalized_score"]
OPTIONAL = ["return", "train_loss", "wall_clock_s", "pretrain_updates", "finetune_ratio", "pretrain_wall_clock_s"]
COLUMNS = REQUIRED + OPTIONAL + ["source", "done"]
METRICS_REQUIRED = ["seed", "update", "normalized_score"]

# the paper's row order; other datasets follow, sorted by name
PAPER_DATASETS = [
    "halfcheetah-medium-expert", "hopper-medium-expert", "walker2d-medium-expert", "ant-medium-expert",
    "halfcheetah-medium-replay", "hopper-medium-replay", "walker2d-medium-replay", "ant-medium-replay",
    "halfcheetah-medium", "hopper-medium", "walker2d-medium", "ant-medium",
]



def dataset_key(name: str) -> str:
    """'~/.d4rl/datasets/hopper_medium_replay-v2.hdf5' and 'hopper-medium-replay-v2' -> 'hopper-medium-replay'."""
    base = Path(str(name)).name
    base = re.sub(r"\.(hdf5|h5)$", "", base)
    base = re.sub(r"-v\d+$", "", base)
    return base.replace("_", "-")


def dataset_order(names) -> list[str]:
    names = set(names)
    return [d for d in PAPER_DATASETS if d in names] + sorted(names - set(PAPER_DATASETS))


def is_auto_variant(name: str) -> bool:
    """Whether ``name`` is what a plain `synthrl run` records ('cql', 'iql+mdp': a registered algorithm + kind)."""
    if re.fullmatch(r"[a-z_0-9]+(\+[a-z_]*)?", str(name)) is None:
        return False   # the paper's spelling ('CQL+MDP', 'S=A=10'): no need to load the registry (and torch)
    algorithm, _, kind = str(name).partition("+")
    return algorithm in registry.algorithms()


def pretty_variant(name: str) -> str:
    """A plain run's automatic name in the paper's spelling: 'cql+mdp' -> 'CQL+MDP', 'dt+mc' -> 'DT+Synthetic'
    (the registry's labels: synthrl.registry.variant_label)."""
    if not is_auto_variant(name):
        return name
    algorithm, _, kind = name.partition("+")
    return registry.variant_label(algorithm, kind or None)


def _param(params: dict, key: str, default=None):
    """A parameter at the top level of params.json (what a sweep trial adds) or in its ``config``."""
    if params.get(key) is not None:
        return params[key]
    config = params.get("config")
    if isinstance(config, dict) and config.get(key) is not None:
        return config[key]
    return default


def _pretrain_kind(params: dict) -> str | None:
    pretrain = _param(params, "pretrain")
    kind = None
    if isinstance(pretrain, dict):
        kind = pretrain.get("kind") or pretrain.get("data")
    elif isinstance(pretrain, str):
        kind = pretrain
    kind = kind or params.get("pretrain_kind")
    if kind in (None, "", "none") and _param(params, "pretrained_path"):
        kind = "pretrained"
    return None if kind in (None, "", "none") else str(kind)


def derive_variant(params: dict) -> str:
    """The column name of a run: the sweep's variant name, or for a plain ``synthrl run`` (which
    records only 'cql+mdp'-style names) the algorithm's label + '+' + the pre-training kind's (the registry's)."""
    variant = params.get("variant")
    if variant and ("sweep" in params or not is_auto_variant(str(variant))):
        return str(variant)
    if variant and not str(variant).endswith("+pretrained"):
        return pretty_variant(str(variant))  # the run named its own kind ('dt+mc' -> 'DT+Synthetic')
    return registry.variant_label(str(params.get("algorithm", "?")), _pretrain_kind(params))


def derive_pretrain_updates(params: dict) -> int:
    if params.get("pretrain_updates") is not None:
        return int(params["pretrain_updates"])
    if _pretrain_kind(params) is None:
        return 0
    config = {"pretrain": _pretrain_kind(params),
              **{k: int(_param(params, k, 0) or 0) for k in ("pretrain_step", "pretrain_updates")}}
    algo = registry.algorithms().get(str(params.get("algorithm")))   # its rule (DT: the checkpoint's step)
    return algo.trial_pretrain_updates(config) if algo else config["pretrain_updates"]


def _store_roots(results_root: Path) -> list[Path]:
    import os

    roots = [results_root, *list(results_root.parents)[:3]]
    if os.environ.get("SYNTHRL_STORE"):
        roots.append(Path(os.environ["SYNTHRL_STORE"]))
    roots.append(Path.home() / ".cache" / "synthrl")
    return [r for r in roots if (r / "artifacts").is_dir()]


def pretrain_wall_clock(params: dict, stores: list[Path]) -> float:
    """Seconds the run's pre-training took, read from its artifact when a store holding it is found (else NaN).

    CQL: ``artifacts/cql-pretrain/<key>/pretrain.json`` (wall_clock_s). DT: the wall-clock of the step
    fine-tuning starts from, in ``artifacts/dt-pretrain/<key>/losses.csv``.
    """
    pretrained = params.get("pretrained") if isinstance(params.get("pretrained"), dict) else {}
    if params.get("pretrain_key"):
        kind, key = "cql-pretrain", params["pretrain_key"]
    elif pretrained.get("artifact_key"):
        kind, key = pretrained.get("artifact_kind", "dt-pretrain"), pretrained["artifact_key"]
    else:
        return math.nan
    for root in stores:
        artifact = root / "artifacts" / kind / str(key)
        try:
            if (artifact / "pretrain.json").is_file():
                return float(json.loads((artifact / "pretrain.json").read_text())["wall_clock_s"])
            if (artifact / "losses.csv").is_file():
                losses = pd.read_csv(artifact / "losses.csv")
                step = int(pretrained.get("step") or losses["update"].max())
                reached = losses[losses["update"] >= step]
                return float((reached if len(reached) else losses).iloc[0]["wall_clock_s"])
        except (ValueError, KeyError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            return math.nan  # a timing we cannot read is left out, not guessed
    return math.nan


@dataclass
class Records:
    frame: pd.DataFrame
    # one row per (variant, dataset): seeds (tuple) and evals (int, or NaN when unknown) a complete
    # result should have, and whether every run behind it wrote DONE
    expected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["variant", "dataset", "seeds", "evals", "done"]))
    source: str = ""

    @property
    def variants(self) -> list[str]:
        return [str(v) for v in self.frame["variant"].unique()]  # in order of appearance

    @property
    def datasets(self) -> list[str]:
        return dataset_order(self.frame["dataset"].unique())

    def select(self, variants: list[str]) -> "Records":
        frame = self.frame[self.frame["variant"].isin(variants)]
        expected = self.expected[self.expected["variant"].isin(variants)]
        return Records(frame, expected, self.source)


NUMERIC = ["seed", "update", "normalized_score"] + OPTIONAL
INFINITE_ALLOWED = {"train_loss"}  # a diverged loss is data; a score, time or count of inf is a broken record


def _num(series: pd.Series, what: str, column: str) -> pd.Series:
    """The column as numbers; UserError naming the column and data row of the first text, empty required
    value (seed, update, normalized_score; a 'nan' is empty) or infinite value."""
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any():
        bad &= series.astype(str).str.strip() != ""
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{what}: column {column!r}, data row {row + 1}: expected a number, got {series.iloc[row]!r}")
    if column in METRICS_REQUIRED and values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise UserError(f"{what}: column {column!r}, data row {row + 1}: empty or NaN; every row needs a number here")
    if column not in INFINITE_ALLOWED and np.isinf(values.to_numpy(dtype=float)).any():
        row = int(np.flatnonzero(np.isinf(values.to_numpy(dtype=float)))[0])
        raise UserError(f"{what}: column {column!r}, data row {row + 1}: {float(values.iloc[row])} is not a finite number")
    return values


def _check_numbers(frame: pd.DataFrame, what: str) -> None:
    """Convert every numeric column present to numbers (in place), refusing bad cells by column and row."""
    for column in NUMERIC:
        if column in frame:
            frame[column] = _num(frame[column], what, column)


def _finish(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    for column in OPTIONAL:
        if column not in frame:
            frame[column] = np.nan
    _check_numbers(frame, what)
    frame["seed"] = frame["seed"].astype(int)
    frame["update"] = frame["update"].astype(int)
    frame["pretrain_updates"] = frame["pretrain_updates"].fillna(0).astype(int)
    frame["finetune_ratio"] = frame["finetune_ratio"].fillna(1.0).astype(float)
    names = frame["dataset"].astype(str)
    frame["dataset"] = names.map({name: dataset_key(name) for name in names.unique()})
    frame["variant"] = frame["variant"].astype(str)
    frame["algorithm"] = frame["algorithm"].astype(str).str.lower()
    return frame


def _check_duplicates(frame: pd.DataFrame) -> None:
    key = ["variant", "dataset", "finetune_ratio", "seed", "update"]
    dup = frame[frame.duplicated(key, keep=False)]
    if len(dup):
        first = dup.iloc[0]
        sources = sorted(set(dup[(dup[key] == first[key]).all(axis=1)]["source"]))
        raise UserError(
            f"two records for variant {first['variant']!r}, dataset {first['dataset']!r}, seed {first['seed']}, "
            f"update {first['update']} (from {', '.join(sources)}); point --results at one sweep's folder, "
            "or remove the duplicate run"
        )


# -- long CSV ---------------------------------------------------------------------------------------

def read_long_csv(path: str | Path) -> Records:
    """A long CSV: columns ``REQUIRED`` (+ any of ``OPTIONAL``; other columns are ignored)."""
    path = Path(path)
    try:
        # only the known columns, read whole (low_memory=False): other columns are ignored, mixed types and all
        frame = pd.read_csv(path, usecols=lambda c: c in REQUIRED + OPTIONAL, low_memory=False,
                            dtype={"variant": str, "dataset": str, "algorithm": str})
    except FileNotFoundError:
        raise UserError(f"--csv {path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"--csv {path}: not a readable CSV ({e})") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise UserError(f"--csv {path}: missing required column(s) {', '.join(missing)} "
                        f"(expected {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL[:4])})")
    frame["source"] = str(path)
    frame["done"] = True
    frame = _finish(frame, f"--csv {path}")
    _check_duplicates(frame)
    # a CSV says nothing about what a complete result holds: take the most any dataset of the variant has
    expected = _infer_expected(frame, pd.DataFrame(columns=["variant", "dataset", "seeds", "evals", "done"]))
    return Records(frame[COLUMNS].reset_index(drop=True), expected, str(path))


# -- run directories --------------------------------------------------------------------------------

def _expected_evals(params: dict) -> float:
    try:
        total = params.get("total_updates")
        if total is None:
            total = int(_param(params, "updates")) + int(_param(params, "extra_updates", 0) or 0)
        every = int(_param(params, "eval_every"))
    except (TypeError, ValueError):
        return math.nan
    return math.ceil(int(total) / every) if every > 0 else math.nan


def _params_seeds(params: dict) -> list[int]:
    seeds = params.get("seeds", params.get("seed"))
    if seeds is None:
        return []
    if isinstance(seeds, (int, float)):
        return [int(seeds)]
    if isinstance(seeds, str):
        from synthrl.utils.io import parse_seeds

        return parse_seeds(seeds)
    return [int(s) for s in seeds]


def _params_datasets(params: dict) -> list[str]:
    names = params.get("datasets") or params.get("dataset") or []
    if isinstance(names, str):
        names = [names]
    return [dataset_key(n) for n in names]


def read_run_dirs(root: str | Path) -> Records:
    """Every run directory under ``root`` (``root`` itself may be one)."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"--results {root}: no such directory")
    if not root.is_dir():
        raise UserError(f"--results {root}: not a directory (for a long CSV use --csv)")
    frames: list[pd.DataFrame] = []
    expected_rows: list[dict] = []
    stores = _store_roots(root.absolute())
    for params_path in sorted(root.rglob("params.json")):
        if any(part.startswith(".") for part in params_path.relative_to(root).parts[:-1]):
            continue  # temporary directories (checkpoints being written aside)
        try:
            params = json.loads(params_path.read_text())
        except ValueError as e:
            raise UserError(f"{params_path}: not valid JSON ({e})") from None
        if not isinstance(params, dict) or "algorithm" not in params or "seeds" not in params or "trial" in params:
            continue  # not a synthrl run directory (e.g. Tune's own params.json of a trial: its config)
        run = params_path.parent
        variant = derive_variant(params)
        done = (run / "DONE").is_file()
        for dataset in _params_datasets(params) or ["?"]:
            expected_rows.append({"variant": variant, "dataset": dataset, "seeds": tuple(_params_seeds(params)),
                                  "evals": _expected_evals(params), "done": done})
        metrics = run / "metrics.csv"
        if not metrics.is_file() or metrics.stat().st_size == 0:
            continue  # launched, no evaluation yet: reported as missing seeds
        text = metrics.read_text()
        if not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]  # a row being appended right now: read it next time
        try:
            frame = pd.read_csv(io.StringIO(text), low_memory=False)
        except pd.errors.EmptyDataError:
            continue
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise UserError(f"{metrics}: not a readable CSV ({e})") from None
        missing = [c for c in METRICS_REQUIRED if c not in frame.columns]
        if missing:
            raise UserError(f"{metrics}: missing required column(s) {', '.join(missing)} (expected {', '.join(METRICS_REQUIRED)})")
        _check_numbers(frame, str(metrics))  # bad cells named by this file's row, not the merged frame's
        if "dataset" not in frame.columns:
            names = _params_datasets(params)
            if len(names) != 1:
                raise UserError(f"{metrics}: no 'dataset' column and params.json names {len(names)} datasets")
            frame["dataset"] = names[0]
        if "train_loss" not in frame.columns and {"q_loss", "cql_loss"} <= set(frame.columns):
            # CQL's training loss in the paper's figures: Q loss plus the conservative loss
            frame["train_loss"] = pd.to_numeric(frame["q_loss"], errors="coerce") + pd.to_numeric(frame["cql_loss"], errors="coerce")
        frame["algorithm"] = params["algorithm"]
        if "variant" in frame.columns and frame["variant"].nunique() > 1:
            # one ensemble of several configs (e.g. `synthrl run cql` with a group): each row says which
            frame["variant"] = frame["variant"].astype(str).map(pretty_variant)
        else:
            frame["variant"] = variant
        if "pretrain_updates" not in frame.columns:
            frame["pretrain_updates"] = derive_pretrain_updates(params)
        if "finetune_ratio" not in frame.columns:
            frame["finetune_ratio"] = float(_param(params, "finetune_ratio", 1.0))
        if "pretrain_wall_clock_s" not in frame.columns:
            frame["pretrain_wall_clock_s"] = params.get("pretrain_wall_clock_s", pretrain_wall_clock(params, stores))
        frame["source"] = str(run)
        frame["done"] = done
        frames.append(frame[[c for c in COLUMNS if c in frame.columns]].copy())
    if not frames and not expected_rows:
        raise UserError(f"--results {root}: no run directories found (looked for **/params.json with 'algorithm' and 'seeds')")
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    frame = _finish(frame, f"--results {root}")
    frame["done"] = frame["done"].astype(bool)
    _check_duplicates(frame)
    expected = _infer_expected(frame, pd.DataFrame(expected_rows, columns=["variant", "dataset", "seeds", "evals", "done"]))
    return Records(frame[COLUMNS].reset_index(drop=True), expected, str(root))


def _infer_expected(frame: pd.DataFrame, declared: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, dataset): the seeds and evaluation count a complete result holds.

    Seeds: those params.json names, plus any seed the variant has on another dataset. Evaluations:
    from params.json (updates / eval_every) where known, else the most any seed of the variant has.
    """
    rows = []
    seeds_seen = frame[["variant", "seed"]].drop_duplicates()
    by_variant_seeds = seeds_seen.groupby("variant")["seed"].agg(lambda s: set(s.astype(int))).to_dict()
    counts = frame.groupby(["variant", "dataset", "seed"]).size()
    most_evals = counts.groupby(level="variant").max().to_dict() if len(counts) else {}
    present = frame[["variant", "dataset"]].drop_duplicates()
    pairs = set(zip(present["variant"], present["dataset"])) | set(zip(declared["variant"], declared["dataset"]))
    for variant, dataset in pairs:
        decl = declared[(declared["variant"] == variant) & (declared["dataset"] == dataset)]
        seeds = set(by_variant_seeds.get(variant, set()))
        for s in decl["seeds"]:
            seeds |= set(s)
        evals = pd.to_numeric(decl["evals"], errors="coerce").max() if len(decl) else math.nan
        if not evals == evals:  # NaN: unknown
            evals = most_evals.get(variant, math.nan)
        done = bool(decl["done"].all()) if len(decl) else True
        rows.append({"variant": variant, "dataset": dataset, "seeds": tuple(sorted(seeds)), "evals": evals, "done": done})
    return pd.DataFrame(rows, columns=["variant", "dataset", "seeds", "evals", "done"])


def load_records(results: str | Path | None = None, csv: str | Path | None = None) -> Records:
    if (results is None) == (csv is None):
        raise UserError("give exactly one of --results DIR or --csv FILE")
    return read_run_dirs(results) if results is not None else read_long_csv(csv)


def write_long_csv(records: Records, path: str | Path) -> None:
    """The records as a long CSV (the format ``read_long_csv`` reads), written atomically."""
    from synthrl.utils.io import atomic_write_text

    columns = REQUIRED + OPTIONAL
    atomic_write_text(path, records.frame[columns].to_csv(index=False))
