"""A sweep's datasets at launch: where a named or user file lives, which are missing, and the made ones
(``make:``) generated once into the artifact store, keyed by content. No Ray here."""

from __future__ import annotations

from pathlib import Path

from synthrl.data.dataset import d4rl_dataset_dir   # the d4rl package's cache layout, one place
from synthrl.data.official import d4rl_file_name
from synthrl.errors import UserError
from synthrl.sweep.schema import DatasetSpec, Sweep, slugify


def dataset_file(dataset: DatasetSpec) -> Path | None:
    """Where a named or user file dataset lives (None for one the sweep makes)."""
    if dataset.make is not None:
        return None
    if dataset.path is not None:
        return Path(dataset.path).expanduser().absolute()
    return d4rl_dataset_dir() / d4rl_file_name(dataset.name)


def missing_datasets_message(sweep: Sweep) -> str | None:
    """The refusal for dataset files not on disk (what `sweep run` stops on, `sweep plan` lists), or None."""
    missing = missing_datasets(sweep)
    if not missing:
        return None
    count = sum(1 for d in sweep.datasets if d.make is None and not dataset_file(d).is_file())
    return f"{sweep.source}: datasets: {count} file(s) not found " + "; ".join(missing)


def missing_datasets(sweep: Sweep) -> list[str]:
    """Datasets whose files are not on disk, grouped by folder (made datasets are built at launch)."""
    by_folder: dict[Path, list[str]] = {}
    for d in sweep.datasets:
        path = dataset_file(d)
        if path is not None and not path.is_file():
            by_folder.setdefault(path.parent, []).append(path.name)
    out = []
    for folder, names in by_folder.items():
        hint = " ($D4RL_DATASET_DIR, else ~/.d4rl/datasets)" if folder == d4rl_dataset_dir() else ""
        out.append(f"in {folder}{hint}: {', '.join(names)}")
    return out


def make_params(dataset: DatasetSpec) -> dict:
    assert dataset.make is not None
    # the name is part of the key: the file is called after it, and the algorithms name the dataset by its file
    return {"env": dataset.make.env, "policy": policy_content(dataset.make.policy), "steps": dataset.make.steps,
            "seed": dataset.make.seed, "name": dataset.name}


def policy_content(policy: str) -> str | dict:
    """What a made dataset's behaviour policy is, for its store key: a built-in's name, or a saved run's
    content (sha256 of params.json and of every checkpoint file), so copies of a run share the key and a
    retrained run at the same path gets a new one."""
    from synthrl.envs.policies import BUILTIN_POLICIES
    from synthrl.utils.io import sha256_file

    if policy in BUILTIN_POLICIES:
        return policy
    run_dir = Path(policy).expanduser()
    while not (run_dir / "params.json").is_file() and run_dir.parent != run_dir:
        run_dir = run_dir.parent   # a file or folder inside the run directory
    if not (run_dir / "params.json").is_file():
        raise UserError(f"make.policy {policy}: no params.json in it or above it, expected random, sine or a run "
                        "directory of `synthrl run`")
    files = [run_dir / "params.json"] + sorted(p for p in (run_dir / "checkpoint").rglob("*") if p.is_file())
    return {"run": {str(f.relative_to(run_dir)): sha256_file(f) for f in files}}


def build_made_dataset(dataset: DatasetSpec, store) -> Path:
    """Generate a ``make:`` dataset once into ``store`` (content-addressed), as `synthrl data make` does."""
    from synthrl.data.make import make_dataset
    from synthrl.envs.policies import BUILTIN_POLICIES, builtin_policy, load_policy

    params = make_params(dataset)
    file_name = f"{slugify(dataset.name)}.hdf5"
    make = dataset.make

    def build(tmp: Path) -> None:
        if make.policy in BUILTIN_POLICIES:
            policy = builtin_policy(make.policy, make.env, seed=make.seed)
            description = policy.describe()
        else:
            policy, description = load_policy(make.policy), f"saved run {make.policy} (member 0)"
        make_dataset(make.env, policy, make.steps, tmp / file_name, seed=make.seed, policy_description=description)

    return store.get_or_build("datasets", params, build) / file_name
