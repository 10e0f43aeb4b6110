"""The registered pre-training data kinds (synthrl.registry.PRETRAIN_MODULES lists this module).

Two families, by what the pre-training learns:
- forward-dynamics (CQL, IQL): (state, action) -> next state on a synthetic MDP mapped to the
  environment's dimensions; built by ``cql_pretrain_data(kind, obs_dim, act_dim, **settings)``;
- tokens (DT): next-token (or mapping) prediction; built by ``token_source(kind, **settings)``
  (``text``: a language corpus, synthrl.dt.text).
The label is the paper's name of the variant ("MDP" in "CQL+MDP"; the DT paper calls its Markov
chain "Synthetic").
"""

from __future__ import annotations

from synthrl.registry import FORWARD_DYNAMICS, TOKENS, PretrainKind


def cql_pretrain_data(kind: str, obs_dim: int, act_dim: int, **settings):
    """Forward-dynamics data of ``kind`` (imported on use: the tables read labels without torch)."""
    from synthrl.synthetic.cql_data import cql_pretrain_data as build

    return build(kind, obs_dim, act_dim, **settings)


def token_source(kind: str, **settings):
    """A token source of ``kind`` (imported on use)."""
    from synthrl.synthetic.tokens import token_source as build

    return build(kind, **settings)


PRETRAIN_KINDS = (
    PretrainKind("mdp", "MDP", FORWARD_DYNAMICS, build=cql_pretrain_data,
                 help="a synthetic MDP: softmax policy and transitions at temperatures tau_pi, tau_P"),
    PretrainKind("iid", "IID", FORWARD_DYNAMICS, build=cql_pretrain_data, help="uniform i.i.d. transitions"),
    PretrainKind("identity", "Identity", FORWARD_DYNAMICS, build=cql_pretrain_data,
                 help="(s, a) -> (s, a): the identity map"),
    PretrainKind("mapping", "Mapping", FORWARD_DYNAMICS, build=cql_pretrain_data,
                 help="(s, a) -> a fixed random (s', a')"),
    PretrainKind("mc", "Synthetic", TOKENS, build=token_source, help="Markov-chain tokens (the paper's DT+Synthetic)"),
    PretrainKind("iid", "IID", TOKENS, build=token_source, help="i.i.d. uniform tokens"),
    PretrainKind("identity", "Identity", TOKENS, build=token_source, help="token -> the same token"),
    PretrainKind("mapping", "Mapping", TOKENS, build=token_source, help="token -> a fixed random token"),
    PretrainKind("text", "Wiki", TOKENS, help="a language corpus (the paper's DT+Wiki)"),
)
