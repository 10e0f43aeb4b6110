"""``synthrl doctor``: the fast paths prove themselves on the device they will run on.

Every fast path a GPU run takes (CUDA-graph CQL updates, compiled / bf16 DT steps, the device token
sampler, the evaluation overlapped on its own stream) is run beside its eager fp32 reference from
the same state and batch stream, and the two compared (synthrl.utils.fastpath); resume and speed
are measured too. One table (check, ok, detail, speed, goal), the same as JSON::

    {"device": ..., "quick": false, "seconds": ..., "complete": true,
     "checks": [{"check", "ok", "detail", "speed", "goal"}, ...]}

``ok`` is true, false, or null for a check this device cannot run (said in ``detail``); the exit
code is 0 when no check is false. Speeds are reported beside the goals of benchmarks/RESULTS.md
and never fail a check. ``run_doctor`` is what the command and the sweep's per-node hook call.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Check:
    check: str
    ok: bool | None          # None: not run on this device (detail says why)
    detail: str
    speed: str = "-"
    goal: str = "-"


def run_doctor(device: str = "auto", quick: bool = False, log=None, progress=None) -> dict:
    """Run every check on ``device``; returns the report (the JSON document). ``log(line)`` gets each row as
    it is done, ``progress(report)`` the report so far (``"complete": false`` until the last check)."""
    import tempfile

    import torch

    from synthrl.doctor.checks import Context, all_checks
    from synthrl.utils.io import resolve_device

    dev = resolve_device(device)
    started = time.perf_counter()
    name = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else f"cpu x{torch.get_num_threads()} threads"
    report = {"device": dev, "device_name": name, "quick": quick, "torch": torch.__version__, "seconds": 0.0,
              "complete": False, "checks": []}
    with tempfile.TemporaryDirectory(prefix="synthrl-doctor-") as tmp:
        ctx = Context(device=dev, quick=quick, tmp=Path(tmp))
        for check_name, check in all_checks(ctx):
            try:
                row = check(ctx)
            except Exception as e:  # a check that crashes is a failed check, named, never a lost report
                row = Check(check_name, False, f"raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            report["checks"].append(asdict(row))
            report["seconds"] = round(time.perf_counter() - started, 1)
            if log is not None:
                log(format_row(row))
            if progress is not None:
                progress(report)
    report["complete"] = True
    return report


def _ok_text(ok: bool | None) -> str:
    return "ok" if ok else "skip" if ok is None else "FAIL"


def format_row(row: Check) -> str:
    return f"{row.check:<22} {_ok_text(row.ok):<4}  {row.detail}  | {row.speed}  | goal: {row.goal}"


def render_table(report: dict) -> str:
    """The report as one markdown table (check, ok, detail, speed, goal)."""
    lines = [f"synthrl doctor on {report['device']} ({report['device_name']}, torch {report['torch']}"
             f"{', quick' if report['quick'] else ''}): {report['seconds']} s", "",
             "| check | ok | detail | speed | goal |", "|---|---|---|---|---|"]
    for c in report["checks"]:
        lines.append(f"| {c['check']} | {_ok_text(c['ok'])} | {c['detail']} | {c['speed']} | {c['goal']} |")
    failing = failed_checks(report)
    lines += ["", f"FAILED: {', '.join(failing)}" if failing else "all checks passed"]
    return "\n".join(lines)


def failed_checks(report: dict) -> list[str]:
    return [c["check"] for c in report["checks"] if c["ok"] is False]


def write_json(report: dict, path: str | Path) -> Path:
    from synthrl.utils.io import atomic_write_json

    path = Path(path)
    atomic_write_json(path, report)
    return path


__all__ = ["Check", "run_doctor", "render_table", "failed_checks", "write_json", "format_row"]
