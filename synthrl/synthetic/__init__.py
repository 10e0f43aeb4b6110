"""Synthetic pre-training data (spec: ../shared/spec/synthetic-data.md).

DT tokens::

    from synthrl.synthetic import mc_row, first_token_row, token_source
    p = mc_row(3, states=100, temperature=1.0, seed=666)         # reference row after state 3
    src = token_source("mc", states=100, order=1, temperature=1.0, device="cuda")
    tokens, targets = src.sample(64, torch.Generator("cuda").manual_seed(0))   # [64, 1024], None

The reference generator's exact streams (NumPy, CPU, slow; synthrl.synthetic.compat)::

    tokens = compat_mc_tokens(100, workers=8, rows_per_worker=16, iterations=2)   # [256, 1024]
    tokens = compat_iid_tokens(100, workers=8, rows_per_worker=16, iterations=2)  # [256, 1024], spec 1.3

CQL transitions::

    from synthrl.synthetic import mdp_dataset, index_to_vectors, cql_pretrain_data
    obs, act, next_obs = mdp_dataset(states=100, actions=100)   # reference-exact, 10^6 transitions
    data = cql_pretrain_data("mdp", obs_dim=11, act_dim=3)      # + vector tables, cached in the store
"""

from synthrl.synthetic.compat import compat_iid_tokens, compat_mc_tokens
from synthrl.synthetic.cql_data import CQL_KINDS, CQLPretrainData, cql_pretrain_data, save_npz
from synthrl.synthetic.mdp import index_to_vectors, mdp_dataset, mdp_iid_dataset
from synthrl.synthetic.tokens import (
    KINDS,
    IIDTokens,
    MarkovTokens,
    PairTokens,
    TokenSource,
    entropy,
    first_token_row,
    hash_row,
    mc_row,
    token_source,
)

__all__ = [
    "CQL_KINDS",
    "KINDS",
    "CQLPretrainData",
    "IIDTokens",
    "MarkovTokens",
    "PairTokens",
    "TokenSource",
    "compat_iid_tokens",
    "compat_mc_tokens",
    "cql_pretrain_data",
    "entropy",
    "first_token_row",
    "hash_row",
    "index_to_vectors",
    "mc_row",
    "mdp_dataset",
    "mdp_iid_dataset",
    "save_npz",
    "token_source",
]
