"""``synthrl synth KIND --out PATH``: materialise a synthetic pre-training dataset and print its statistics.

DT token kinds (``mc``, ``iid``, ``identity``, ``mapping``) write ``tokens`` [sequences, length]
(plus ``targets`` for identity/mapping); CQL kinds (``mdp``, ``mdp-iid``) write the index arrays
``obs``, ``act``, ``next_obs`` [J·T], trajectory-major. Every ``.npz`` also holds ``meta``: a JSON
string of every parameter. Same options, same arrays.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from synthrl.cli import positive_int, temperature
from synthrl.config_fields import field_default, show_default
from synthrl.cql.config import CQLConfig
from synthrl.dt.config import DTPretrainConfig
from synthrl.errors import UserError
from synthrl.utils.io import check_output_file

TOKEN_KINDS = ("mc", "iid", "identity", "mapping")
MDP_KINDS = ("mdp", "mdp-iid")
# which options each kind takes (anything else given on the command line is an error)
APPLIES = {
    "mc": {"states", "order", "temperature", "seed", "sequences", "length", "device", "compat", "workers",
           "rows_per_worker"},
    "iid": {"states", "seed", "sequences", "length", "device", "compat", "workers", "rows_per_worker"},
    "identity": {"seed", "sequences", "length", "device"},
    "mapping": {"seed", "sequences", "length", "device"},
    "mdp": {"states", "actions", "trajectories", "length", "policy_temperature", "transition_temperature",
            "random_start"},
    "mdp-iid": {"states", "actions", "trajectories", "length", "seed"},
}
CHUNK_SEQUENCES = 256


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="materialise a synthetic pre-training dataset and print its statistics",
        description="Materialise a synthetic pre-training dataset as an uncompressed .npz (arrays + a 'meta' JSON "
                    "string of every parameter) and print its statistics. Same options, same arrays.",
        epilog="examples: synthrl synth mc --out mc.npz --states 100 --temperature 0.1 --sequences 128; "
               "synthrl synth mdp --out mdp.npz --policy-temperature inf")
    p.add_argument("kind", metavar="KIND", choices=TOKEN_KINDS + MDP_KINDS,
                   help="DT tokens: mc, iid, identity, mapping; CQL transitions: mdp, mdp-iid")
    p.add_argument("--out", required=True, type=Path, metavar="PATH", help="output file (.npz, uncompressed)")
    p.add_argument("--states", type=positive_int, help=f"vocabulary M (mc/iid, default {_dt('states')}; >= 2) or MDP states S (default {_cql('states')})")
    p.add_argument("--order", type=positive_int, help=f"Markov-chain order n (mc, default {_dt('order')})")
    p.add_argument("--temperature", type=temperature, help=f"softmax temperature τ > 0 or inf (mc, default {_dt('temperature')})")
    p.add_argument("--seed", type=_seed, help=f"data seed σ (tokens, default {_dt('data_seed')}; mdp-iid, default {_cql('data_seed')})")
    p.add_argument("--sequences", type=positive_int, help="number of token sequences (default 1024)")
    p.add_argument("--length", type=positive_int, help=f"tokens per sequence (default {_dt('seq_len')}) or MDP trajectory length T "
                                                       f"(default {_cql('length')})")
    p.add_argument("--device", help="token sampling device: cpu (default), cuda, auto")
    p.add_argument("--compat", action="store_true", default=None,
                   help="mc, iid: the reference generator's exact streams (NumPy, CPU, slow: mc ~0.3 M tokens/s "
                        "at M = 100)")
    p.add_argument("--workers", type=positive_int, help="mc/iid --compat: the reference's worker count W (default 1)")
    p.add_argument("--rows-per-worker", type=positive_int,
                   help="mc/iid --compat: sequences each worker makes per iteration, b (default: all of them)")
    p.add_argument("--actions", type=positive_int, help=f"MDP actions A (default {_cql('actions')})")
    p.add_argument("--trajectories", type=positive_int, help=f"MDP trajectories J (default {_cql('trajectories')})")
    p.add_argument("--policy-temperature", type=temperature, help=f"τπ > 0 or inf (mdp, default {_cql('policy_temperature')})")
    p.add_argument("--transition-temperature", type=temperature, help=f"τP > 0 or inf (mdp, default {_cql('transition_temperature')})")
    p.add_argument("--random-start", action="store_true", default=None, help="mdp: start state seeded per trajectory")
    p.set_defaults(func=main)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}")
    return value


def _dt(name: str) -> str:
    return show_default(field_default(DTPretrainConfig, name))


def _cql(name: str) -> str:
    return show_default(field_default(CQLConfig, name))


def _given(value, config_cls, name: str):
    """An option's value, or the default its config field declares (the one place of that default)."""
    return field_default(config_cls, name) if value is None else value


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def main(args: argparse.Namespace) -> int:
    given = {name for name in ("states", "order", "temperature", "seed", "sequences", "length", "device", "actions",
                               "trajectories", "policy_temperature", "transition_temperature", "random_start",
                               "compat", "workers", "rows_per_worker")
             if getattr(args, name) is not None}
    extra = sorted(given - APPLIES[args.kind])
    if extra:
        raise UserError(f"{_option(extra[0])}: does not apply to KIND {args.kind} "
                        f"(it takes {', '.join(sorted(_option(o) for o in APPLIES[args.kind]))})")
    if args.out.suffix != ".npz":
        raise UserError(f"--out: expected a path ending in .npz, got {str(args.out)!r}")
    check_output_file(args.out, "--out")  # before sampling, which may take minutes
    if args.compat and args.device not in (None, "cpu"):
        raise UserError(f"--device: --compat runs NumPy on the CPU, got {args.device!r}")
    for name in ("workers", "rows_per_worker"):
        if not args.compat and getattr(args, name) is not None:
            raise UserError(f"{_option(name)}: applies only with --compat")
    if args.kind in TOKEN_KINDS:
        lines = _tokens(args)
    else:
        lines = _mdp(args)
    print("\n".join(lines))
    return 0


# ------------------------------------------------------------------------------------------ DT tokens
def _tokens(args) -> list[str]:
    import numpy as np

    from synthrl.synthetic import entropy, save_npz

    M = _given(args.states, DTPretrainConfig, "states")
    if args.kind in ("mc", "iid") and M < 2:
        raise UserError(f"--states: the token vocabulary needs at least 2 states, got {M}")
    seed = _given(args.seed, DTPretrainConfig, "data_seed")
    sequences = args.sequences or 1024
    tau = _given(args.temperature, DTPretrainConfig, "temperature")
    if args.compat:
        tokens, targets, meta, vocab, row_entropy = _compat_tokens(args, M, tau, seed, sequences)
    else:
        tokens, targets, meta, vocab, row_entropy = _sampled_tokens(args, M, tau, seed, sequences)
    arrays = {"tokens": tokens} if targets is None else {"tokens": tokens, "targets": targets}
    save_npz(args.out, arrays, meta)

    length = tokens.shape[1]
    counts = np.bincount(tokens.ravel(), minlength=vocab)
    lines = [f"wrote {args.out} ({_size(args.out)}): {sequences} sequences x {length} tokens, kind {args.kind}",
             "parameters: " + ", ".join(f"{k}={v}" for k, v in meta.items() if k not in ("generator", "synthrl"))]
    if row_entropy is not None:
        lines.append(f"row entropy: mean {row_entropy:.4f} nats = {row_entropy / math.log(vocab):.3f} log M")
    if length > 1 and sequences * (length - 1) >= 5 * vocab**2:
        # plug-in estimate; only shown when there are enough pairs per cell to mean something
        codes = (tokens[:, :-1].astype(np.int64) * vocab + tokens[:, 1:]).ravel()
        pairs = np.bincount(codes)
        pairs = pairs[pairs > 0]
        joint = float(entropy(pairs / pairs.sum()))
        marginal = float(entropy(counts / counts.sum()))
        lines.append(f"empirical next-token entropy H(x_t+1 | x_t) ~ {joint - marginal:.4f} nats "
                     f"(marginal {marginal:.4f}; plug-in estimate, biased low)")
    seen = counts[counts > 0]
    lines.append(f"visit counts: {len(seen)}/{vocab} tokens seen; per token min {counts.min()}, "
                 f"median {int(np.median(counts))}, max {counts.max()}")
    return lines


def _sampled_tokens(args, M: int, tau: float, seed: int, sequences: int):
    """The fast sampler (token_source) on the chosen device: tokens, targets, meta, vocab, row entropy."""
    import numpy as np
    import torch

    from synthrl.synthetic import token_source
    from synthrl.utils.io import resolve_device

    device = resolve_device(args.device or "cpu")
    source = token_source(args.kind, states=M, order=args.order or 1, temperature=tau, seed=seed,
                          length=_given(args.length, DTPretrainConfig, "seq_len"), device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = np.empty((sequences, source.length), np.int32)
    targets = np.empty_like(tokens) if args.kind in ("identity", "mapping") else None
    for lo in range(0, sequences, CHUNK_SEQUENCES):
        n = min(CHUNK_SEQUENCES, sequences - lo)
        batch, batch_targets = source.sample(n, generator)
        tokens[lo:lo + n] = batch.cpu().numpy()
        if targets is not None:
            targets[lo:lo + n] = batch_targets.cpu().numpy()
    meta = dict(source.metadata(), sequences=sequences, sampler_seed=seed,
                generator=f"torch.Generator({device}).manual_seed({seed}), {CHUNK_SEQUENCES} sequences per draw",
                synthrl=_version())
    return tokens, targets, meta, source.vocab_size, source.mean_row_entropy()


def _compat_tokens(args, M: int, tau: float, seed: int, sequences: int):
    """The reference generator's own streams (synthrl.synthetic.compat): tokens, None, meta, vocab, None."""
    import numpy as np
    from tqdm import tqdm

    from synthrl.synthetic.compat import compat_iid_tokens, compat_mc_tokens

    workers = args.workers or 1
    per_worker = args.rows_per_worker or -(-sequences // workers)
    if sequences % (workers * per_worker):
        raise UserError(f"--sequences: --compat makes whole iterations of --workers x --rows-per-worker = "
                        f"{workers} x {per_worker} sequences; {sequences} is not a multiple of {workers * per_worker}")
    order, length = _given(args.order, DTPretrainConfig, "order"), _given(args.length, DTPretrainConfig, "seq_len")
    layout = {"workers": workers, "rows_per_worker": per_worker, "iterations": sequences // (workers * per_worker),
              "length": length}
    with tqdm(total=sequences, unit="seq", desc=f"compat {args.kind}", mininterval=1.0) as bar:
        if args.kind == "mc":
            tokens = compat_mc_tokens(M, order, tau, seed, **layout, progress=bar.update)
        else:
            tokens = compat_iid_tokens(M, seed, **layout, progress=bar.update)
    if args.kind == "mc":
        meta = {"kind": "mc", "states": M, "order": order, "temperature": tau, "row_source": "reference",
                "generator": "reference streams: default_rng(seed + i*L*W + W*t + w) per (iteration, position, worker)"}
    else:
        meta = {"kind": "iid", "states": M,
                "generator": "reference streams: default_rng(seed + i*W + w) per (iteration, worker), "
                             "multinomial(1, [1/M]*M, size=(b, L)).argmax(-1)"}
    meta.update(seed=seed, length=length, sequences=sequences, sampler="compat", workers=workers,
                rows_per_worker=per_worker, synthrl=_version())
    return tokens.astype(np.int32), None, meta, M, None


# ------------------------------------------------------------------------------------------ CQL transitions
def _mdp(args) -> list[str]:
    import numpy as np

    from synthrl.synthetic import mdp_dataset, mdp_iid_dataset, save_npz

    S = _given(args.states, CQLConfig, "states")
    A = _given(args.actions, CQLConfig, "actions")
    J, T = _given(args.trajectories, CQLConfig, "trajectories"), _given(args.length, CQLConfig, "length")
    if args.kind == "mdp":
        tau_pi = _given(args.policy_temperature, CQLConfig, "policy_temperature")
        tau_p = _given(args.transition_temperature, CQLConfig, "transition_temperature")
        random_start = bool(args.random_start)
        obs, act, next_obs = mdp_dataset(S, A, J, T, tau_pi, tau_p, random_start)
        meta = {"kind": "mdp", "states": S, "actions": A, "trajectories": J, "length": T,
                "policy_temperature": tau_pi, "transition_temperature": tau_p, "random_start": random_start}
    else:
        seed = _given(args.seed, CQLConfig, "data_seed")
        obs, act, next_obs = mdp_iid_dataset(S, A, J * T, seed)
        meta = {"kind": "mdp-iid", "states": S, "actions": A, "trajectories": J, "length": T, "seed": seed,
                "draws": "numpy.random.default_rng(seed).integers: obs, act, next_obs"}
    meta["synthrl"] = _version()
    save_npz(args.out, {"obs": obs, "act": act, "next_obs": next_obs}, meta)

    state_counts = np.bincount(np.concatenate([obs, next_obs]), minlength=S)
    lines = [f"wrote {args.out} ({_size(args.out)}): {len(obs)} transitions ({J} trajectories x {T} steps), "
             f"kind {args.kind}",
             "parameters: " + json.dumps({k: v for k, v in meta.items() if k != "synthrl"}),
             f"visit counts: {np.count_nonzero(state_counts)}/{S} states, "
             f"{len(np.unique(act))}/{A} actions, {len(np.unique(obs * A + act))} (s, a) pairs; "
             f"per state min {state_counts.min()}, median {int(np.median(state_counts))}, max {state_counts.max()}"]
    if args.kind == "mdp":
        lines.append(_mdp_row_entropy(obs, act, S, A, meta["policy_temperature"], meta["transition_temperature"]))
    return lines


def _mdp_row_entropy(obs, act, S, A, tau_pi, tau_p) -> str:
    """Mean entropy of the visited policy rows and transition rows (at most 200 of each)."""
    import numpy as np
    import torch

    from synthrl.synthetic import entropy

    def mean_entropy(seeds, width, tau):
        if math.isinf(tau):
            return math.log(width)
        from synthrl.synthetic.mdp import _legacy_rand_rows

        rows = _legacy_rand_rows(seeds, width)
        probs = torch.softmax(torch.from_numpy(rows).float() / tau, dim=1).double().numpy()
        return float(entropy(probs).mean())

    rng = np.random.default_rng(0)
    states = np.unique(obs)
    keys = np.unique(8 * obs + 7 * act)
    states = rng.choice(states, min(200, len(states)), replace=False)
    picked = rng.choice(keys, min(200, len(keys)), replace=False)
    h_pi = mean_entropy(states, A, tau_pi)
    h_p = mean_entropy(111 * picked, S, tau_p)
    return (f"row entropy (visited rows): policy {h_pi:.4f} nats = {h_pi / math.log(A) if A > 1 else 0:.3f} log A, "
            f"transition {h_p:.4f} nats = {h_p / math.log(S) if S > 1 else 0:.3f} log S; "
            f"{len(keys)} distinct transition rows (888s + 777a shares rows)")


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def _version() -> str:
    from synthrl import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(argparse.Namespace()))
