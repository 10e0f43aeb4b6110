"""``synthrl run cql``'s texts and parsed options (the command itself: synthrl/commands/run.py, from the registry)."""

from __future__ import annotations

import argparse

from synthrl.config_fields import config_from_args as build_config
from synthrl.cql.config import CQLConfig

FAST_PATH_HELP = "before the first update, check the CUDA graph against eager (on a mismatch: train eagerly)"
HELP = "CQL fine-tuning of a seed ensemble, optionally after synthetic forward-dynamics pre-training"


def config_from_args(args: argparse.Namespace) -> CQLConfig:
    return build_config(CQLConfig, args)
