"""The 12 official D4RL v2 locomotion files the paper used: file names, sizes and SHA-256.

Source: TensorFlow Datasets' recorded download checksums for the D4RL files
(github.com/tensorflow/datasets, tensorflow_datasets/d4rl/d4rl_mujoco_{halfcheetah,hopper,walker2d,ant}/
checksums.tsv), one line per URL http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/<file>:
size in bytes and SHA-256 of the file exactly as D4RL serves it (and as the `d4rl` package caches it).
These could not be re-verified here (no internet); a mismatch is therefore a warning, never an error.
"""

from __future__ import annotations

import re

from synthrl.envs.specs import ENVS

LEVELS = ("medium", "medium-replay", "medium-expert")

# file name -> (size in bytes, sha256)
OFFICIAL_V2: dict[str, tuple[int, str]] = {
    "halfcheetah_medium-v2.hdf5": (237727262, "41324e8487a9556d8cfa4538827f8937f4d63dae3030825ebc9f3a726ed08ca0"),
    "halfcheetah_medium_replay-v2.hdf5": (59448533, "48d494a4770c11f48260736dec090b78bdca8375647ed4d24bfa5b6610c7f683"),
    "halfcheetah_medium_expert-v2.hdf5": (474567252, "015db75dae5bbe8e94029b71fa0bafc2073365df0c94744e71031189f3f79c06"),
    "hopper_medium-v2.hdf5": (152756557, "5bdf1bc4a713c82941de44633df669b36c89850b652a25985166796d25cf71a0"),
    "hopper_medium_replay-v2.hdf5": (75854457, "e121c5f7c9857a307baa9edc6a2c3b48e85fedb9ac316ecddd0f48ca7ef4e39b"),
    "hopper_medium_expert-v2.hdf5": (304537315, "9d51ad87f8c905be3880d84c6140bcdb7fbf39a19e046a237f238ba34fec9e26"),
    "walker2d_medium-v2.hdf5": (232254996, "cf00f43add04c17fdfc2958dd581dea0851b2e5bedbe6fda073758a8f841aeda"),
    "walker2d_medium_replay-v2.hdf5": (86323963, "e75de96a4f77acf7d4e0d6fdf0d7ccb177c26c44bb4388e4fd99f543ccfa18db"),
    "walker2d_medium_expert-v2.hdf5": (462197079, "6b8d7f868c45bbaedf460be797fb7271b46dee6ebe45fe7a64319f2005b59a04"),
    "ant_medium-v2.hdf5": (376239825, "461c03b9f70f40d66b47608a92965e4ef3642bd9cdb1320d10acc92754167137"),
    "ant_medium_replay-v2.hdf5": (136482252, "844c4e5743ef51091f2106a3570b257fb149032c4743f8a5f02f40adc3b42a46"),
    "ant_medium_expert-v2.hdf5": (748335217, "8cfb64e62d8944b5d9dada5f0cfc13a295fafe0c6ba58b778e32ebf16c95aef1"),
}

# "hopper-medium-replay-v2" (any level, any version: the user may have other D4RL files cached)
_NAME = re.compile(r"^(?P<env>[a-z0-9]+)-(?P<level>[a-z][a-z-]*?)-v(?P<version>\d+)$")


def parse_dataset_name(name: str) -> tuple[str, str, int] | None:
    """'hopper-medium-replay-v2' -> ('hopper', 'medium-replay', 2); None when it is not such a name."""
    m = _NAME.match(name.strip().lower())
    if not m or m["env"] not in ENVS:
        return None
    return m["env"], m["level"], int(m["version"])


def d4rl_file_name(name: str) -> str | None:
    """The file the `d4rl` package caches a dataset as: 'hopper-medium-replay-v2' -> 'hopper_medium_replay-v2.hdf5'."""
    parsed = parse_dataset_name(name)
    if parsed is None:
        return None
    env, level, version = parsed
    return f"{env}_{level.replace('-', '_')}-v{version}.hdf5"


def dataset_name_of_file(file_name: str) -> str | None:
    """Inverse of d4rl_file_name: 'hopper_medium_replay-v2.hdf5' -> 'hopper-medium-replay-v2'."""
    m = re.match(r"^([a-z0-9]+)_([a-z_]+)-v(\d+)\.hdf5$", file_name.lower())
    if not m or m[1] not in ENVS:
        return None
    return f"{m[1]}-{m[2].replace('_', '-')}-v{m[3]}"


def official_entry(file_name: str) -> tuple[int, str] | None:
    return OFFICIAL_V2.get(file_name)
