"""The launcher's checks that need no Ray: storage, resources, skipping finished trials, status, ls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthrl.errors import UserError
from synthrl.rundir import RunDir
from synthrl.sweep.schema import sweep_from_dict
from trainables import resources as res
from trainables.launcher import ls_text, prepare, resolve_storage, status_text
from trainables.trainable import run_directory, summarize

REPO = Path(__file__).resolve().parents[1]


def sweep_doc(data_file: Path, **over) -> dict:
    doc = {
        "name": "tiny",
        "algorithm": "cql",
        "datasets": [{"name": "hopper-file", "path": str(data_file), "env": "hopper"}],
        "seeds": "0-3",
        "seeds_per_trial": 2,
        "finetune": {"updates": 40, "eval_every": 20, "eval_episodes": 1},
        "resources": {"gpu_per_trial": 0.25, "cpus_per_trial": 1, "pretrain_gpus": 1},
        "variants": [{"name": "CQL"}, {"name": "CQL+MDP", "pretrain": {"kind": "mdp", "updates": 10}}],
    }
    doc.update(over)
    return doc


def test_storage_must_be_writable_and_a_path(tmp_path):
    assert resolve_storage(str(tmp_path / "new" / "root")) == tmp_path / "new" / "root"
    relative = resolve_storage(os.path.relpath(tmp_path / "rel"))
    assert relative.is_absolute() and relative == (tmp_path / "rel")
    with pytest.raises(UserError, match=r"--storage s3://bucket/x: s3:// storage is not supported"):
        resolve_storage("s3://bucket/x")
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(UserError, match=r"--storage .*file/sub: a file is in the way"):
        resolve_storage(str(a_file / "sub"))


def test_storage_refusal_is_one_line_exit_2_before_anything_starts(tmp_path):
    result = subprocess.run([sys.executable, "-m", "synthrl", "sweep", "run", "sweeps/quickstart.yaml",
                             "--storage", "s3://bucket/results"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "s3:// storage is not supported" in result.stderr
    assert "Traceback" not in result.stderr


def test_gpu_requests_fall_back_to_cpu_without_gpus_and_impossible_requests_are_refused(tmp_path):
    sweep = sweep_from_dict(sweep_doc(tmp_path / "d.hdf5"), "s.yaml")
    no_gpu = {"CPU": 2.0}
    assert res.trial_resources(sweep, no_gpu) == {"cpu": 1.0, "gpu": 0.0}
    assert res.pretrain_resources(sweep, no_gpu) == {"num_cpus": 1.0, "num_gpus": 0.0}
    notes = res.resource_notices(sweep, no_gpu)
    assert notes and "has none: running on CPU" in notes[0]
    with_gpu = {"CPU": 16.0, "GPU": 1.0}
    assert res.trial_resources(sweep, with_gpu) == {"cpu": 1.0, "gpu": 0.25}
    assert res.resource_notices(sweep, with_gpu) == []
    assert res.max_concurrent_trials(sweep, {"cpu": 1.0, "gpu": 0.25}, max_gpus=1) == 4
    assert res.trial_resources(sweep, with_gpu, max_gpus=0) == {"cpu": 1.0, "gpu": 0.0}
    greedy = sweep_from_dict(sweep_doc(tmp_path / "d.hdf5", resources={"cpus_per_trial": 8}), "s.yaml")
    with pytest.raises(UserError, match=r"s.yaml: resources.cpus_per_trial: 8 CPUs per trial, but the cluster has 2"):
        res.trial_resources(greedy, no_gpu)
    two = sweep_from_dict(sweep_doc(tmp_path / "d.hdf5", resources={"gpu_per_trial": 2}), "s.yaml")
    with pytest.raises(UserError, match=r"resources.gpu_per_trial: 2 GPUs per trial, but the cluster has 1"):
        res.trial_resources(two, with_gpu)


def test_missing_dataset_file_is_refused_naming_it(tmp_path):
    sweep = sweep_from_dict(sweep_doc(tmp_path / "absent.hdf5"), "s.yaml")
    with pytest.raises(UserError, match=r"s.yaml: datasets: 1 file\(s\) not found in .*: absent.hdf5"):
        prepare(sweep, tmp_path / "store", {}, {}, out=lambda _: None)


def _fake_run(run_dir: RunDir, config: dict, updates: list[int], done: bool) -> None:
    """A run directory as the trainable writes it (params.json with the trial's config, metrics, DONE)."""
    run_dir.write_params({"algorithm": "cql", "sweep": {"config": config}})
    rows = [{"seed": s, "update": u, "normalized_score": 10.0 * u / 20 + s} for u in updates for s in (0, 1)]
    run_dir.append_metrics(rows, ["seed", "update", "normalized_score"])
    if done:
        run_dir.mark_done({})


def test_prepare_skips_finished_trials_refuses_foreign_run_dirs_and_status_reads_files(tmp_path):
    data = tmp_path / "hopper.hdf5"
    data.write_bytes(b"")   # prepare only checks the file is there
    storage = tmp_path / "store"
    doc = sweep_doc(data)
    sweep = sweep_from_dict(doc, "s.yaml")
    lines: list[str] = []
    first = prepare(sweep, storage, doc, {}, out=lines.append)
    assert len(first.trials) == 4 and not first.skipped_done
    record = json.loads((storage / "tiny" / "sweep.json").read_text())
    assert record["dataset_paths"] == {"hopper-file": str(data)} and len(record["trials"]) == 4

    done, partial = first.trials[0], first.trials[1]
    _fake_run(run_directory(storage, "tiny", done.trial_id), done.config, [20, 40], done=True)
    _fake_run(run_directory(storage, "tiny", partial.trial_id), partial.config, [20], done=False)
    lines.clear()
    second = prepare(sweep, storage, doc, {}, out=lines.append)
    assert [t.trial_id for t in second.skipped_done] == [done.trial_id]
    assert done not in second.trials and len(second.trials) == 3
    assert any(line.startswith("skipping 1 finished trial(s)") and done.trial_id in line for line in lines)

    text = status_text(storage, "tiny")
    assert "trials: 1 done, 1 partial, 2 pending of 4" in text
    assert f"partial  {partial.trial_id}: update 20/40, score 10.5" in text
    assert "best latest score: 20.5" in text
    assert "tiny" in ls_text(storage) and "1/4 trials done" in ls_text(storage)

    # an error recorded by Tune for a trial shows with its message
    experiment = storage / "_tune" / "tiny" / "run-x"
    (experiment / partial.trial_id.replace("/", "__")).mkdir(parents=True)
    (experiment / partial.trial_id.replace("/", "__") / "error.txt").write_text("Traceback...\nValueError: boom\n")
    record = json.loads((storage / "tiny" / "sweep.json").read_text())
    record["tune_experiment"] = str(experiment)
    (storage / "tiny" / "sweep.json").write_text(json.dumps(record))
    text = status_text(storage, "tiny")
    assert "1 error" in text and "error: ValueError: boom" in text

    # a run directory of another configuration under the same name is refused, not overwritten
    changed = sweep_from_dict({**doc, "finetune": {"updates": 60, "eval_every": 20, "eval_episodes": 1}}, "s.yaml")
    with pytest.raises(UserError, match="holds a run with different parameters"):
        prepare(changed, storage, doc, {}, out=lambda _: None)


def test_status_of_unknown_sweep_lists_known_ones(tmp_path):
    with pytest.raises(UserError, match=r"sweep 'nope': no .*sweep.json \(sweeps in .*: none\)"):
        status_text(tmp_path, "nope")


def test_summarize_means_over_the_ensemble():
    class R:
        updates_done, total_updates = 50, 100

    rows = [{"seed": 0, "update": 50, "normalized_score": 10.0, "q_loss": 1.0, "dataset": "x"},
            {"seed": 1, "update": 50, "normalized_score": 20.0, "q_loss": 3.0, "dataset": "x"}]
    out = summarize(rows, R())
    assert out["normalized_score"] == 15.0 and out["normalized_score_std"] == 5.0
    assert out["q_loss"] == 2.0 and out["update"] == 50 and out["progress"] == 0.5
    assert "dataset" not in out and "seed" not in out


def test_bad_algorithm_fields_are_refused_before_anything_starts(tmp_path):
    data = tmp_path / "hopper.hdf5"
    data.write_bytes(b"")
    doc = sweep_doc(data, variants=[{"name": "CQL", "finetune": {"config": {"cql_n_actions": 0}}}])
    with pytest.raises(UserError, match=r"s.yaml: variants\[0\].finetune.config.cql_n_actions: expected an integer >= 1, got 0"):
        prepare(sweep_from_dict(doc, "s.yaml"), tmp_path / "store", doc, {}, out=lambda _: None)
    doc = sweep_doc(data, variants=[{"name": "CQL", "finetune": {"config": {"no_such_field": 1}}}])
    with pytest.raises(UserError, match=r"variants\[0\].finetune.config.no_such_field: unknown key"):
        prepare(sweep_from_dict(doc, "s.yaml"), tmp_path / "store", doc, {}, out=lambda _: None)
    assert not (tmp_path / "store" / "tiny").exists()


def test_variant_needing_a_corpus_is_refused_at_launch_and_the_others_still_run(tmp_path):
    data = tmp_path / "hopper.hdf5"
    data.write_bytes(b"")
    doc = sweep_doc(data, algorithm="dt", variants=[
        {"name": "DT"},
        {"name": "DT+Wiki", "pretrain": {"data": "text", "steps": 10}},
        {"name": "DT+MC", "pretrain": {"data": "mc", "steps": 10}},
    ])
    lines: list[str] = []
    prepared = prepare(sweep_from_dict(doc, "s.yaml"), tmp_path / "store", doc, {}, out=lines.append)
    assert {t.variant for t in prepared.trials} == {"DT", "DT+MC"}
    assert {t.variant for t in prepared.refused} == {"DT+Wiki"}
    assert any(line.startswith("refused: variant 'DT+Wiki' (2 trials) needs a language corpus") for line in lines)
    assert "refused variants: DT+Wiki" in status_text(tmp_path / "store", "tiny")

    corpus = tmp_path / "wiki.txt"
    corpus.write_text("some text " * 100)
    overrides = {"corpus": str(corpus)}
    prepared = prepare(sweep_from_dict(doc, "s.yaml", overrides), tmp_path / "store", doc, overrides,
                       out=lambda _: None)
    assert not prepared.refused and {t.variant for t in prepared.trials} == {"DT", "DT+Wiki", "DT+MC"}


def test_a_trial_gets_evaluation_workers_only_when_cores_are_free_beside_it():
    from trainables.trainable import trial_eval_workers

    # 2 CPUs: stepping in-process measured faster than 2 workers (20 vs 32 Hopper episodes/s)
    assert trial_eval_workers(1) == 0 and trial_eval_workers(2) == 0
    assert trial_eval_workers(3) == 2 and trial_eval_workers(8) == 7


def test_status_and_ls_read_a_read_only_copy_of_the_results_and_create_nothing(tmp_path, capsys):
    from synthrl.cli import main

    data = tmp_path / "hopper.hdf5"
    data.write_bytes(b"")
    storage = tmp_path / "store"
    doc = sweep_doc(data)
    prepare(sweep_from_dict(doc, "s.yaml"), storage, doc, {}, out=lambda _: None)

    missing = tmp_path / "never-used"
    assert main(["sweep", "ls", "--storage", str(missing)]) == 0
    assert "no sweeps" in capsys.readouterr().out and not missing.exists()  # looking creates nothing

    copy = tmp_path / "copy"  # the results as a colleague sees them: mounted read-only
    copy.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(storage), str(copy)], capture_output=True).returncode:
        pytest.skip("no bind mount here (needs root and mount): no read-only copy to read")
    try:
        assert subprocess.run(["mount", "-o", "remount,ro,bind", str(copy)], capture_output=True).returncode == 0
        assert main(["sweep", "status", "tiny", "--storage", str(copy)]) == 0
        assert "trials: 4 pending of 4" in capsys.readouterr().out
        assert main(["sweep", "ls", "--storage", str(copy)]) == 0
        assert "0/4 trials done" in capsys.readouterr().out
    finally:
        subprocess.run(["umount", "-l", str(copy)], capture_output=True)


def test_status_names_a_metrics_cell_that_is_not_a_number(tmp_path):
    data = tmp_path / "hopper.hdf5"
    data.write_bytes(b"")
    storage = tmp_path / "store"
    doc = sweep_doc(data)
    trial = prepare(sweep_from_dict(doc, "s.yaml"), storage, doc, {}, out=lambda _: None).trials[0]
    run_dir = run_directory(storage, "tiny", trial.trial_id)
    _fake_run(run_dir, trial.config, [20, 40], done=False)
    text = run_dir.metrics_path.read_text().splitlines()
    header = text[0].split(",")
    cells = text[-1].split(",")   # the latest evaluation's: the one status reads
    cells[header.index("normalized_score")] = "oops"
    run_dir.metrics_path.write_text("\n".join([*text[:-1], ",".join(cells)]) + "\n")
    with pytest.raises(UserError, match=r"metrics.csv: row 4: normalized_score: expected a number, got 'oops'"):
        status_text(storage, "tiny")
