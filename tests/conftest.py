import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HOPPER_SAC = SHARED / "data" / "hopper-medium-sac-200k.hdf5"


def missing_shared(path: Path) -> str:
    """The skip reason of a test that needs a file of the shared folder beside this checkout."""
    return f"needs {path}, which is not there ({SHARED} holds the shared data and paper text; not in a plain clone)"


def tiny_hopper_file(tmp_path: Path, rows: int = 3000) -> Path:
    """The first ``rows`` transitions of the shared Hopper dataset as a D4RL-format file (skip without it)."""
    import h5py

    if not HOPPER_SAC.is_file():
        pytest.skip(missing_shared(HOPPER_SAC))
    path = tmp_path / "hopper-tiny.hdf5"
    with h5py.File(HOPPER_SAC) as src, h5py.File(path, "w") as f:
        for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
            f[k] = src[k][:rows]
    return path

def registered_algorithm(monkeypatch, module_name: str, name: str):
    """A fixture's body: the algorithm of test module ``module_name`` registered (one more registry line)
    while the test runs, then forgotten. Use as ``yield from registered_algorithm(monkeypatch, __name__, "toy")``."""
    from synthrl import registry

    monkeypatch.setattr(registry, "ALGORITHM_MODULES", registry.ALGORITHM_MODULES + (module_name,))
    registry.reset_cache()
    yield registry.algorithm(name)
    monkeypatch.undo()
    registry.reset_cache()


# keep tests off the user's cache and away from threads the 2-core CI machine does not have
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    """Every test gets its own artifact store and D4RL cache directory."""
    monkeypatch.setenv("SYNTHRL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))


def pytest_collection_modifyitems(config, items):
    import importlib.util

    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
