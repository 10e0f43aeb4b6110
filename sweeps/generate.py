"""Write the paper's sweep files (one per table, plus the figure sweeps) from one place.

    python sweeps/generate.py        # rewrites sweeps/table*.yaml and sweeps/fig_*.yaml

The files are committed; this script keeps them consistent (same datasets, seeds, resources) and
is the record of how each table's variants were read from the paper (spec/tables.md).
`quickstart.yaml` and `optuna_*.yaml` are written by hand and not touched here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ENVS = ("halfcheetah", "hopper", "walker2d", "ant")
DATASETS = [f"{env}-{kind}-v2" for kind in ("medium-expert", "medium-replay", "medium") for env in ENVS]
SEEDS = "0-19"
# one trial = one 20-seed ensemble on a quarter GPU (4 trials share an H100), 4 CPUs for evaluation
RESOURCES = {"gpu_per_trial": 0.25, "cpus_per_trial": 4, "pretrain_gpus": 1, "pretrain_cpus": 4, "max_failures": 3}
DT_FT = {"updates": 100_000, "eval_every": 5_000, "eval_episodes": 10}
CQL_FT = {"updates": 1_000_000, "eval_every": 5_000, "eval_episodes": 10}

# DT variants (spec/dt.md): synthetic MC data, 80k-step pre-training, fine-tuned from the 20k checkpoint
DT = {"name": "DT", "pretrain": "none"}
DT_CHECKPOINTS = [1, 1000, 8000, 10000, 20000, 40000, 60000, 80000]


def dt_mc(name, states=100, order=1, temperature=1.0, step=20_000, data="mc"):
    pre = {"data": data, "steps": 80_000, "checkpoints": DT_CHECKPOINTS}
    if data == "mc":
        pre.update(states=states, order=order, temperature=temperature)
    elif data == "iid":
        pre.update(states=states)
    return {"name": name, "pretrain": pre, "finetune": {"pretrain_step": step}}


DT_WIKI = {"name": "DT+Wiki", "pretrain": {"data": "text", "steps": 80_000, "checkpoints": DT_CHECKPOINTS},
           "finetune": {"pretrain_step": 80_000}}
DT_SYN = dt_mc("DT+Synthetic")
DT_IDENTITY = {"name": "DT+Identity", "pretrain": {"data": "identity", "steps": 80_000, "checkpoints": DT_CHECKPOINTS},
               "finetune": {"pretrain_step": 20_000}}
DT_MAPPING = {"name": "DT+Mapping", "pretrain": {"data": "mapping", "steps": 80_000, "checkpoints": DT_CHECKPOINTS},
              "finetune": {"pretrain_step": 20_000}}

# CQL variants (spec/cql.md): forward-dynamics pre-training on the synthetic MDP, 100k updates
CQL = {"name": "CQL", "pretrain": "none"}


def cql_mdp(name, states=100, temperature=1.0, updates=100_000, kind="mdp"):
    pre = {"kind": kind, "updates": updates, "states": states, "actions": states}
    if kind == "mdp":
        pre.update(policy_temperature=temperature, transition_temperature=temperature)
    return {"name": name, "pretrain": pre}


def k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 else str(n)


def sci(n: int) -> str:
    return {10_000: "1e4", 100_000: "1e5"}.get(n, str(n))


DT_STATES = [dt_mc(f"S={sci(s)}", states=s) for s in (10, 100, 1000, 10_000, 100_000)]
DT_STEPS = [dt_mc(f"n={n}", order=n) for n in (1, 2, 5)]
DT_TEMPS = [dt_mc(f"tau={t:g}", temperature=t) for t in (0.01, 0.1, 1.0, 10.0, 100.0)] + [dt_mc("IID", data="iid")]
CQL_STATES = [cql_mdp(f"S=A={sci(s)}", states=s) for s in (10, 100, 1000, 10_000, 100_000)]
CQL_TEMPS = [cql_mdp(f"tau={t:g}", temperature=t) for t in (0.01, 0.1, 1.0, 10.0, 100.0)] + [
    cql_mdp("CQL+IID", kind="iid")]

TABLES = {
    "table1": ("dt", "Table 1 / 18: DT, DT+Wiki, DT+Synthetic (MC, S100, tau 1, n 1, 20k pre-training updates)",
               [DT, DT_WIKI, DT_SYN]),
    "table2": ("dt", "Table 2 / 19: MC steps n in {1, 2, 5}", [DT] + DT_STEPS),
    "table3": ("dt", "Table 3 / 20: number of MC states", [DT] + DT_STATES),
    "table4": ("dt", "Table 4 / 21: MC temperature, and IID uniform tokens", [DT] + DT_TEMPS),
    "table5": ("dt", "Table 5 / 22: pre-training updates (checkpoints of one 80k run)",
               [DT] + [dt_mc(f"PT {k(s)}", step=s) for s in (1000, 10_000, 20_000, 40_000, 60_000, 80_000)]),
    "table26": ("dt", "Table 26: DT with more fine-tuning updates vs pre-training",
                [DT, {"name": "DT+20k more", "finetune": {"extra_updates": 20_000}},
                 {"name": "DT+80k more", "finetune": {"extra_updates": 80_000}}, DT_WIKI, DT_SYN]),
    "table27": ("dt", "Table 27: Identity and Mapping pre-training", [DT, DT_WIKI, DT_SYN, DT_IDENTITY, DT_MAPPING]),
    "table6": ("cql", "Table 6 / 23: state/action space size S = A (tau 1, 100k pre-training)", [CQL] + CQL_STATES),
    "table7": ("cql", "Table 7 / 24: MDP temperature, and IID data", [CQL] + CQL_TEMPS),
    "table8": ("cql", "Table 8 / 25: pre-training updates",
               [CQL] + [cql_mdp(f"PT {k(u)}", updates=u) for u in (1000, 10_000, 40_000, 100_000, 500_000,
                                                                     1_000_000)]),
    "table28": ("cql", "Table 28: CQL with 100k more fine-tuning updates vs pre-training",
                [CQL, {"name": "CQL+100k more", "finetune": {"extra_updates": 100_000}}, cql_mdp("CQL+MDP"),
                 cql_mdp("CQL+IID", kind="iid")]),
    "table29": ("cql", "Table 29: Identity and Mapping pre-training",
                [CQL, cql_mdp("CQL+MDP"), cql_mdp("CQL+Identity", kind="identity"),
                 cql_mdp("CQL+Mapping", kind="mapping")]),
}


def with_finetune(variant: dict, **overrides) -> dict:
    v = dict(variant)
    v["finetune"] = {**v.get("finetune", {}), **overrides}
    return v


def figure_sweeps() -> dict:
    """Figures 10/16 (score against fine-tuning updates) and 11/17 (against the data ratio)."""
    out = {}
    dt_axes = [DT] + DT_STATES + DT_STEPS[1:] + DT_TEMPS
    cql_axes = [CQL] + CQL_STATES + CQL_TEMPS + [cql_mdp(f"PT {k(u)}", updates=u) for u in (1000, 10_000, 40_000,
                                                                                            500_000)]
    # each budget is its own run (a shorter run is not a prefix of a longer one where a schedule depends on
    # the total), named "<variant> @<budget>"; the 100k/1M points are the tables' own runs
    for algo, axes, budgets in (("dt", dt_axes, (20_000, 40_000, 60_000, 80_000)),
                                ("cql", cql_axes, (200_000, 400_000, 600_000, 800_000))):
        variants = [with_finetune(v, updates=b) | {"name": f"{v['name']} @{k(b)}"}
                    for b in budgets for v in axes]
        out[f"fig_finetune_updates_{algo}"] = (
            algo, f"Figures {'10' if algo == 'dt' else '16'}: ablation axes against the fine-tuning budget", variants)
        ratios = (0.1, 0.25, 0.5, 0.75)
        variants = [with_finetune(v, finetune_ratio=r) | {"name": f"{v['name']} r={r:g}"} for r in ratios for v in axes]
        out[f"fig_data_ratio_{algo}"] = (
            algo, f"Figures {'11' if algo == 'dt' else '17'}: ablation axes against the fraction of the dataset used",
            variants)
    return out


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):  # shared lists are written out in full, not as &anchors
        return True


def document(name: str, algorithm: str, description: str, variants: list[dict]) -> dict:
    doc = {
        "name": name,
        "description": description,
        "algorithm": algorithm,
        "datasets": DATASETS,
        "seeds": SEEDS,
        "seeds_per_trial": 20,
        "finetune": dict(DT_FT if algorithm == "dt" else CQL_FT),
        "resources": dict(RESOURCES),
        "variants": variants,
    }
    if any(isinstance(v.get("pretrain"), dict) and v["pretrain"].get("data") == "text" for v in variants):
        doc["corpus"] = None   # the DT+Wiki corpus: a text file the user supplies (--set corpus=PATH)
    return doc


def main() -> None:
    for name, (algorithm, description, variants) in {**TABLES, **figure_sweeps()}.items():
        doc = document(name, algorithm, description, variants)
        text = f"# {description}\n# Generated by sweeps/generate.py; the format is described in sweeps/README.md.\n"
        text += yaml.dump(doc, Dumper=_NoAliases, sort_keys=False, width=120)
        (HERE / f"{name}.yaml").write_text(text)
        print(f"wrote sweeps/{name}.yaml ({len(variants)} variants)")


if __name__ == "__main__":
    main()
