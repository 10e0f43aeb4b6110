"""A sweep's fast-path check: ``synthrl doctor --quick`` once per node, before any trial.

Each alive GPU node runs the doctor in a Ray task pinned to it (one GPU, one CPU); the reports land
beside the sweep, ``STORAGE/NAME/doctor/<node>.json``, and one line per node goes to the driver.
A failing check never stops the sweep: every run checks its own fast path at start-up and trains
eagerly on a mismatch (params.json ``fast_path``); the report says which node and which path.
CPU-only nodes have no fast path to prove (their runs train eagerly): they are listed, not run,
unless ``SYNTHRL_SWEEP_DOCTOR=all``; ``SYNTHRL_SWEEP_DOCTOR=off`` skips the hook.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

MODES = ("gpu", "all", "off")


def _node_label(node: dict) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{node.get('NodeManagerAddress', 'node')}-{node['NodeID'][:8]}")


def _doctor_task():
    import ray

    @ray.remote(max_retries=0)
    def doctor_on_this_node() -> dict:
        from synthrl.doctor import run_doctor

        return run_doctor("auto", quick=True)

    return doctor_on_this_node


def run_node_doctors(sweep_dir: Path, out: Callable[[str], None], mode: str | None = None) -> dict[str, dict]:
    """Run the quick doctor on every alive node (see the module docstring); returns {node: report}."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from synthrl.doctor import failed_checks
    from synthrl.utils.io import atomic_write_json

    mode = mode or os.environ.get("SYNTHRL_SWEEP_DOCTOR", "gpu")
    if mode not in MODES:
        out(f"SYNTHRL_SWEEP_DOCTOR={mode!r}: expected one of {', '.join(MODES)}; running the doctor on GPU nodes")
        mode = "gpu"
    if mode == "off":
        return {}
    task = _doctor_task()
    pending, reports = {}, {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        gpus = float(node.get("Resources", {}).get("GPU", 0))
        label = _node_label(node)
        if gpus < 1 and mode != "all":
            path = sweep_dir / "doctor" / f"{label}.json"  # every node has its report, this one says why it is short
            atomic_write_json(path, {"device": "cpu", "checks": [], "skipped": "no GPU: its runs train eagerly "
                                     "(fast_path: eager, reason: cpu); SYNTHRL_SWEEP_DOCTOR=all runs the doctor here too"})
            out(f"doctor: node {label} has no GPU: its runs train eagerly (fast_path: eager, reason: cpu); {path}")
            continue
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        pending[label] = task.options(num_cpus=1, num_gpus=1 if gpus >= 1 else 0,
                                      scheduling_strategy=strategy).remote()
    for label, ref in pending.items():
        try:
            report = ray.get(ref)
        except Exception as e:  # the doctor could not run there: say so, the trials still check themselves
            report = {"device": "?", "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                      "checks": []}
        atomic_write_json(sweep_dir / "doctor" / f"{label}.json", report)
        reports[label] = report
        failing = failed_checks(report)
        verdict = (f"FAILED {', '.join(failing)} (those runs fall back to eager)" if failing
                   else f"could not run: {report['error']}" if "error" in report else "all fast paths pass")
        out(f"doctor: node {label} ({report['device']}, {report.get('seconds', '?')} s): {verdict}; "
            f"{sweep_dir / 'doctor' / (label + '.json')}")
    return reports
