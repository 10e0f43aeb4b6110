"""What a sweep's files say (no Ray): `sweep status`, `sweep ls`, and the live view's progress line."""

from __future__ import annotations

from pathlib import Path

from synthrl.errors import UserError
from synthrl.rundir import RunDir
from synthrl.sweep.plan import Trial
from trainables.records import SWEEP_FILE, group_path, list_sweep_names, read_group, read_sweep_record, sweep_dir
from trainables.trainable import PID_FILE, run_directory


# -- live view (the Tune callback itself is trainables/progress.py) ----------------------------------
def trial_label(trial) -> str:
    try:
        return trial.config["trial"]["trial_id"]
    except (AttributeError, KeyError, TypeError):
        return str(trial)


def progress_line(name, trials, artifacts: str, skipped: int, best, elapsed: float) -> str:
    counts: dict[str, int] = {}
    done_fraction = 0.0
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
        if t.status == "TERMINATED":
            done_fraction += 1.0
        else:
            last = t.last_result or {}
            done_fraction += float(last.get("progress", 0.0) or 0.0)
    order = ["RUNNING", "PENDING", "PAUSED", "TERMINATED", "ERROR"]
    words = {"RUNNING": "running", "PENDING": "pending", "PAUSED": "paused", "TERMINATED": "done", "ERROR": "error"}
    state = ", ".join(f"{counts[s]} {words[s]}" for s in order if counts.get(s))
    if skipped:
        state += f" (+{skipped} skipped, done before)"
    eta = "?"
    if trials and done_fraction > 0:
        fraction = done_fraction / len(trials)
        eta = duration(elapsed * (1 - fraction) / fraction) if fraction < 1 else "0s"
    best_text = f"best {best[0]:.1f} ({best[1]})" if best else "best -"
    return f"[{name} {duration(elapsed)}] trials: {state or 'none'} | artifacts {artifacts} | {best_text} | ETA {eta}"


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def trial_dirname(trial) -> str:
    """Tune trial directory named after the trial: variant__dataset__seedgroup."""
    return trial_label(trial).replace("/", "__")



# -- status / ls -----------------------------------------------------------------------------------
def trial_states(storage: Path, name: str, record: dict) -> list[dict]:
    """Per trial: state (done | running/partial | pending | refused | error), progress, last score, error."""
    errors = _tune_errors(record.get("tune_experiment"))
    out = []
    for t in record["trials"]:
        trial = Trial.from_dict(t)
        rd = RunDir(run_directory(storage, name, trial.trial_id).path)
        rows = rd.read_metrics() if rd.metrics_path.exists() else []
        updates = [int(_number(rd.metrics_path, i, r, "update")) for i, r in enumerate(rows)]
        last_update = max(updates, default=0)
        scores = [_number(rd.metrics_path, i, r, "normalized_score") for i, (r, u) in enumerate(zip(rows, updates))
                  if u == last_update and r.get("normalized_score") not in (None, "")]
        if trial.needs:
            state = "refused"
        elif rd.is_done():
            state = "done"
        elif trial.trial_id in errors:
            state = "error"
        elif rows or rd.has_checkpoint():
            state = "partial"
        else:
            state = "pending"
        out.append({"trial_id": trial.trial_id, "state": state, "update": last_update,
                    "total_updates": trial.total_updates,
                    "score": sum(scores) / len(scores) if scores else None,
                    "error": errors.get(trial.trial_id), "needs": trial.needs})
    return out


def _number(path: Path, index: int, row: dict, column: str) -> float:
    """One metrics.csv cell as a number; a clear error naming the file, row and column otherwise."""
    try:
        return float(row[column])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: row {index + 1}: {column}: expected a number, got {row.get(column)!r}") from None


def _tune_errors(experiment: str | None) -> dict[str, str]:
    """trial_id -> last line of its error.txt in the latest Tune experiment (if it has not finished since)."""
    if not experiment or not Path(experiment).is_dir():
        return {}
    errors = {}
    for error_file in Path(experiment).glob("*/error.txt"):
        trial_id = error_file.parent.name.replace("__", "/")
        lines = [ln for ln in error_file.read_text(errors="replace").splitlines() if ln.strip()]
        errors[trial_id] = lines[-1].strip() if lines else "failed"
    return errors


def state_counts(states: list[dict]) -> str:
    """'1 done, 2 partial, 1 pending of 4' (the order of `sweep status`)."""
    counts: dict[str, int] = {}
    for s in states:
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    return ", ".join(f"{counts[k]} {k}" for k in ("done", "partial", "pending", "error", "refused")
                     if counts.get(k)) + f" of {len(states)}"


def latest_scores(storage: Path, name: str) -> dict[str, float]:
    """trial_id -> its latest evaluation's score (mean over the seeds): what `status` and the live view rank."""
    try:
        record = read_sweep_record(storage, name)
    except UserError:
        return {}
    return {s["trial_id"]: s["score"] for s in trial_states(storage, name, record) if s["score"] is not None}


def status_text(storage: Path, name: str) -> str:
    if not (sweep_dir(storage, name) / SWEEP_FILE).is_file() and group_path(storage, name).is_file():
        return _group_status_text(storage, name)
    record = read_sweep_record(storage, name)
    states = trial_states(storage, name, record)
    done_updates = sum(min(s["update"], s["total_updates"]) if s["state"] != "done" else s["total_updates"]
                       for s in states if s["state"] != "refused")
    total_updates = sum(s["total_updates"] for s in states if s["state"] != "refused")
    resumed = f", resumed {record['resumed']}" if record.get("resumed") else ""
    lines = [f"sweep {name} ({record['algorithm']}, from {record['source']}, launched {record['created']}{resumed})",
             "trials: " + state_counts(states),
             f"progress: {100 * done_updates / max(1, total_updates):.1f}% of the fine-tuning updates"]
    scored = [s for s in states if s["score"] is not None]
    if scored:
        best = max(scored, key=lambda s: s["score"])
        lines.append(f"best latest score: {best['score']:.1f} ({best['trial_id']} at update {best['update']})")
    if record.get("best_config"):
        found = record["best_config"]
        lines.append("search best: " + ", ".join(f"{k}={v}" for k, v in found.items() if k != "config")
                     + " with " + ", ".join(f"{k}={v}" for k, v in found["config"].items()))
    for s in states:
        if s["state"] in ("partial", "error"):
            score = f", score {s['score']:.1f}" if s["score"] is not None else ""
            lines.append(f"  {s['state']:<8} {s['trial_id']}: update {s['update']}/{s['total_updates']}{score}")
        if s["state"] == "error":
            lines.append(f"           error: {s['error']}")
    refused = sorted({s["trial_id"].split("/")[0] for s in states if s["state"] == "refused"})
    if refused:
        need = next(s["needs"] for s in states if s["state"] == "refused")
        lines.append(f"refused variants: {', '.join(refused)} (need {need})")
    lines.append(f"results: {sweep_dir(storage, name)}")
    return "\n".join(lines)


def _group_status_text(storage: Path, name: str) -> str:
    """`sweep status NAME` for a multi-sweep file launched under NAME: each of its sweeps in turn."""
    group = read_group(storage, name)
    parts = [f"{name}: {len(group['sweeps'])} sweeps from {group['source']}"]
    for member in group["sweeps"]:
        if (sweep_dir(storage, member["name"]) / SWEEP_FILE).is_file():
            parts.append(status_text(storage, member["name"]))
        else:
            parts.append(f"sweep {member['name']}: not started (sweep resume {name} runs it)")
    return "\n\n".join(parts)


def ls_text(storage: Path) -> str:
    names = list_sweep_names(storage)
    if not names:
        return f"no sweeps in {storage}"
    lines = [f"sweeps in {storage}:"]
    for name in names:
        try:
            record = read_sweep_record(storage, name)
            states = trial_states(storage, name, record)
        except (UserError, KeyError, ValueError) as e:
            lines.append(f"  {name}: unreadable ({e})")
            continue
        done = sum(s["state"] == "done" for s in states)
        errors = sum(s["state"] == "error" for s in states)
        err = f", {errors} error" if errors else ""
        lines.append(f"  {name:<24} {record['algorithm']:<4} {done}/{len(states)} trials done{err}  "
                     f"launched {record['created']}"
                     + (f", resumed {record['resumed']}" if record.get("resumed") else "")
                     + f"  ({record['source']})")
    return "\n".join(lines)


def worker_pids(storage: Path, name: str) -> dict[str, tuple[str, int]]:
    """trial_id -> (host, pid) of the worker process that last ran it."""
    runs = sweep_dir(storage, name) / "runs"
    pids = {}
    for f in runs.glob(f"**/{PID_FILE}"):
        try:
            host, pid = f.read_text().split()
            pids[str(f.parent.relative_to(runs))] = (host, int(pid))
        except ValueError:
            pass
    return pids
