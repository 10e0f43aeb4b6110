"""synthrl doctor and the runners' start-up fast-path check.

No GPU here: the fast paths are corrupted on purpose on the CPU (a graph replay that skips one
parameter copy, a replay reading a stale batch, a bf16 step that loses a gradient), and the
doctor must name the failing path while the runners fall back to eager and say so in params.json.
"""

import json
import math

import numpy as np
import pytest
import torch

from synthrl.cli import main
from synthrl.cql.algorithm import CQLEnsemble
from synthrl.rundir import RunDir
from synthrl.utils.fastpath import BF16, SAME_ARITHMETIC, compare


@pytest.fixture(scope="module")
def hopper(tmp_path_factory):
    """A real D4RL-format Hopper file: 2,000 random-policy MuJoCo steps."""
    from synthrl.data.make import make_dataset
    from synthrl.envs.policies import RandomPolicy

    return make_dataset("hopper", RandomPolicy(3, seed=0), 2000, tmp_path_factory.mktemp("data") / "hopper-tiny.hdf5")


def skipping_fast_step(ens: CQLEnsemble, name: str = "w2", group: str = "q"):
    """A 'graph replay' that updates everything except one weight (of Q by default: its copy was lost)."""
    def step():
        kept = getattr(ens, group)[name].detach().clone()
        ens._update()
        with torch.no_grad():
            getattr(ens, group)[name].copy_(kept)
    return step


def stale_fast_step(ens: CQLEnsemble):
    """A 'graph replay' that keeps reading the first batch slot of the chunk (a stale buffer)."""
    def step():
        ens._update()
        ens.slot.zero_()
    return step


CQL_FLAGS = ["--updates", "60", "--eval-every", "30", "--eval-episodes", "1", "--batch-size", "32", "--seeds", "0,1",
             "--no-progress", "--device", "cpu"]


# ---------------------------------------------------------------------------------------------
# the doctor itself

def test_doctor_on_cpu_passes_and_writes_the_table_as_json(tmp_path, capsys):
    """The full CPU doctor (about a minute on 2 cores, torch.compile included where a C++ compiler exists)."""
    from synthrl.doctor.checks import compiler_available

    out = tmp_path / "doctor.json"
    assert main(["doctor", "--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["quick"] is False and report["complete"] is True
    names = [c["check"] for c in report["checks"]]
    assert names == ["cql E=1", "cql E=4", "iql E=1", "iql E=4", "dt fine-tune", "dt pre-train step",
                     "token sampler", "overlapped evaluation", "resume cql", "resume dt"]
    for c in report["checks"]:
        assert set(c) == {"check", "ok", "detail", "speed", "goal"}
        assert c["ok"] is not False, c
    by_name = {c["check"]: c for c in report["checks"]}
    for name in ("cql E=4", "iql E=4"):  # no CUDA graphs here
        assert by_name[name]["ok"] is None and "cpu" in by_name[name]["detail"]
        assert "seed-updates/s" in by_name[name]["speed"]
    fast = "compiled" if compiler_available() else "bf16"
    assert by_name["dt fine-tune"]["ok"] is True and by_name["dt fine-tune"]["detail"].startswith(fast)
    assert by_name["dt pre-train step"]["ok"] is True and by_name["dt pre-train step"]["detail"].startswith(fast)
    assert "seed-updates/s" in by_name["cql E=4"]["speed"] and "tokens/s" in by_name["token sampler"]["speed"]
    table = capsys.readouterr().out
    assert "| check | ok | detail | speed | goal |" in table and "all checks passed" in table


def test_doctor_names_a_corrupted_cuda_graph_and_exits_1(tmp_path, monkeypatch, capsys):
    from synthrl.doctor import checks

    monkeypatch.setattr(CQLEnsemble, "build_fast_step", lambda self: skipping_fast_step(self))
    monkeypatch.setattr(checks, "all_checks", lambda ctx: [("cql E=1", checks.check_fast_path_of("cql", 1)),
                                                           ("cql E=4", checks.check_fast_path_of("cql", 4))])
    out = tmp_path / "doctor.json"
    assert main(["doctor", "--device", "cpu", "--quick", "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    assert [c["ok"] for c in report["checks"]] == [False, False]
    assert "q.w2" in report["checks"][1]["detail"] and "OUTSIDE" in report["checks"][1]["detail"]
    assert "failing fast path(s): cql E=1, cql E=4" in capsys.readouterr().err


def test_doctor_checks_iql_and_names_its_corrupted_value_net(tmp_path, monkeypatch, capsys):
    """IQL is checked as a registered forward-dynamics algorithm (not by name): a 'graph' that loses V's
    head update fails its row."""
    from synthrl.doctor import checks
    from synthrl.iql import IQLEnsemble

    assert checks.forward_dynamics_algorithms() == ["cql", "iql"]
    monkeypatch.setattr(IQLEnsemble, "build_fast_step", lambda self: skipping_fast_step(self, "w2", group="v"))
    monkeypatch.setattr(checks, "all_checks", lambda ctx: [("iql E=4", checks.check_fast_path_of("iql", 4))])
    out = tmp_path / "doctor.json"
    assert main(["doctor", "--device", "cpu", "--quick", "--json", str(out)]) == 1
    [row] = json.loads(out.read_text())["checks"]
    assert row["check"] == "iql E=4" and row["ok"] is False and "v.w2" in row["detail"]
    assert "failing fast path(s): iql E=4" in capsys.readouterr().err


def test_doctor_bad_device_is_one_line_exit_2(capsys):
    code = main(["doctor", "--device", "tpu"])
    assert code == 2 and capsys.readouterr().err.strip().count("\n") == 0


def test_cql_check_catches_a_replay_that_reads_a_stale_batch():
    from test_cql import make_ensemble

    ens = make_ensemble(seeds=(0, 1, 2, 3), chunk=16)
    assert ens.check_fast_path() is None  # the CPU has no fast path of its own
    ens.fast_step = ens._update
    assert ens.check_fast_path().bit_equal  # the eager step as the "fast path": bit-equal
    before = {k: v.detach().clone() for k, v in ens.q.items()}
    ens.fast_step = stale_fast_step(ens)
    parity = ens.check_fast_path()
    assert not parity.ok and parity.worst_rel > 1e-2
    assert all(torch.equal(ens.q[k], before[k]) for k in before)  # the check leaves the state as it was


def test_tolerances_pass_rounding_noise_and_catch_a_skipped_update():
    g = torch.Generator().manual_seed(0)
    start = {"w": torch.randn(50, 50, generator=g), "b": torch.randn(50, generator=g)}
    eager = {k: v + 1e-3 * torch.randn(v.shape, generator=g) for k, v in start.items()}
    noisy = {k: v + 1e-3 * 0.02 * torch.randn(v.shape, generator=g) for k, v in eager.items()}
    skipped = {"w": eager["w"], "b": start["b"].clone()}
    assert compare(noisy, eager, BF16, 4, start=start).ok
    assert not compare(noisy, eager, SAME_ARITHMETIC, 4, start=start).ok
    for tolerance in (BF16, SAME_ARITHMETIC):
        verdict = compare(skipped, eager, tolerance, 4, start=start)
        assert not verdict.ok and "b" in verdict.worst
    assert not compare(eager, eager, BF16, 4, start=start, fast_losses=[1.0], eager_losses=[1.1]).ok
    assert math.isinf(compare({"w": torch.full((2,), math.nan)}, {"w": torch.ones(2)}, BF16, 1).worst_rel)


# ---------------------------------------------------------------------------------------------
# the runners: a failed check means an eager run, recorded in params.json

def test_cql_run_on_cpu_records_the_eager_path(hopper, tmp_path):
    out = tmp_path / "run"
    assert main(["run", "cql", "--dataset", str(hopper), "--out", str(out), *CQL_FLAGS]) == 0
    assert RunDir(out).read_params()["fast_path"] == {"path": "eager", "reason": "cpu"}


def test_cql_run_falls_back_to_eager_when_the_graph_skips_a_parameter_copy(hopper, tmp_path, monkeypatch):
    monkeypatch.setattr(CQLEnsemble, "build_fast_step", lambda self: skipping_fast_step(self))
    reference = tmp_path / "eager"
    assert main(["run", "cql", "--dataset", str(hopper), "--out", str(reference), *CQL_FLAGS,
                 "--accel", "eager", "--fast-path-check", "off"]) == 0  # (the patched build ignores --accel)
    unchecked = RunDir(reference).read_params()["fast_path"]
    assert unchecked["path"] == "graph" and "not checked" in unchecked["reason"]

    out = tmp_path / "checked"
    with pytest.warns(UserWarning, match="differs from eager.*trains eagerly"):
        assert main(["run", "cql", "--dataset", str(hopper), "--out", str(out), *CQL_FLAGS]) == 0
    fast_path = RunDir(out).read_params()["fast_path"]
    assert fast_path["path"] == "eager" and fast_path["reason"].startswith("fast-path check failed")
    assert "q.w2" in fast_path["reason"]
    # the eager run learned with every parameter: its losses differ from the corrupted unchecked run's
    rows = [r for r in RunDir(out).read_metrics()]
    bad = [r for r in RunDir(reference).read_metrics()]
    assert [r["q_loss"] for r in rows] != [r["q_loss"] for r in bad]
    # --resume of the recorded run is accepted (fast_path is not a parameter of the run)
    assert main(["run", "cql", "--dataset", str(hopper), "--out", str(out), *CQL_FLAGS, "--resume"]) == 0


def _lose_one_gradient_in_bf16(monkeypatch):
    """A bf16 DT step whose backward loses the gradient of the first attention projection."""
    from synthrl.dt.fast import UpdateStep

    original = UpdateStep.__call__

    def corrupted(self, batch):
        losses = original(self, batch)
        if self.bf16:
            for name, p in self.model.named_parameters():
                if "c_attn.weight" in name:
                    p.grad = torch.zeros_like(p)
        return losses

    monkeypatch.setattr(UpdateStep, "__call__", corrupted)


DT_FLAGS = ["--updates", "4", "--eval-every", "4", "--eval-episodes", "1", "--batch-size", "8", "--context", "5",
            "--warmup-steps", "2", "--device", "cpu", "--no-progress", "--eval-workers", "0", "--precision", "bf16"]


def test_dt_run_checks_its_bf16_path_and_falls_back_when_it_is_corrupted(hopper, tmp_path, monkeypatch):
    out = tmp_path / "bf16"
    assert main(["run", "dt", "--dataset", str(hopper), "--out", str(out), *DT_FLAGS]) == 0
    fast_path = RunDir(out).read_params()["fast_path"]
    assert fast_path["precision"] == "bf16" and fast_path["reason"].startswith("checked")

    _lose_one_gradient_in_bf16(monkeypatch)
    out = tmp_path / "corrupted"
    with pytest.warns(UserWarning, match="differs from eager fp32"):
        assert main(["run", "dt", "--dataset", str(hopper), "--out", str(out), *DT_FLAGS]) == 0
    fast_path = RunDir(out).read_params()["fast_path"]
    assert fast_path["path"] == "eager" and fast_path["precision"] == "fp32"
    assert "fast-path check failed" in fast_path["reason"] and "c_attn.weight" in fast_path["reason"]


def test_dt_pretraining_falls_back_when_its_fast_step_reads_a_stale_batch(tmp_path, monkeypatch):
    from synthrl.dt.pretrain import Pretrainer

    flags = ["--steps", "3", "--seq-len", "32", "--batch-size", "2", "--warmup-steps", "1", "--device", "cpu",
             "--precision", "bf16", "--no-progress", "--states", "20"]
    out = tmp_path / "pt"
    assert main(["run", "dt-pretrain", "--out", str(out), *flags]) == 0
    assert RunDir(out).read_params()["fast_path"]["reason"].startswith("checked")

    original, seen = Pretrainer.loss, {}

    def stale(self, tokens, targets):  # the bf16 path keeps reading the first batch it saw
        if self.bf16:
            tokens = seen.setdefault(id(self), tokens)
        return original(self, tokens, targets)

    monkeypatch.setattr(Pretrainer, "loss", stale)
    out = tmp_path / "stale"
    with pytest.warns(UserWarning, match="DT pre-training fast path .* training eagerly"):
        assert main(["run", "dt-pretrain", "--out", str(out), *flags, "--data-seed", "5"]) == 0
    fast_path = RunDir(out).read_params()["fast_path"]
    assert fast_path["path"] == "eager" and "fast-path check failed" in fast_path["reason"]


def test_a_fast_path_that_raises_in_the_check_leaves_the_run_eager(hopper, monkeypatch):
    from synthrl.cql.config import CQLConfig
    from synthrl.cql.runner import make_runner

    def broken(self):
        def step():
            raise RuntimeError("replay on a freed pool")
        return step

    monkeypatch.setattr(CQLEnsemble, "build_fast_step", broken)
    config = CQLConfig(dataset=str(hopper), seeds=[0], updates=4, eval_every=4, batch_size=8, hidden=16, device="cpu")
    with pytest.warns(UserWarning, match="trains eagerly"):
        runner = make_runner(config, None, progress=False)
    assert runner.fast_path["path"] == "eager" and "RuntimeError: replay on a freed pool" in runner.fast_path["reason"]
    runner.train(4)
    assert np.isfinite(runner.ensemble.pop_stats()["q_loss"]).all()


# ---------------------------------------------------------------------------------------------
# the sweep's hook: the quick doctor once per node, its report beside the sweep

@pytest.mark.ray
def test_a_sweep_runs_the_quick_doctor_per_node_and_keeps_the_reports(tmp_path):
    import tempfile

    ray = pytest.importorskip("ray")
    from synthrl.doctor import failed_checks
    from trainables.doctor_hook import run_node_doctors

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="ERROR",
             _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    try:
        lines: list[str] = []
        assert run_node_doctors(tmp_path / "sweep", lines.append) == {}  # a CPU node: listed, not run
        assert len(lines) == 1 and "has no GPU" in lines[0]
        (listed,) = (tmp_path / "sweep" / "doctor").glob("*.json")  # its report says why nothing ran there
        assert json.loads(listed.read_text())["checks"] == [] and "no GPU" in json.loads(listed.read_text())["skipped"]
        reports = run_node_doctors(tmp_path / "sweep", lines.append, mode="all")
        (label, report), = reports.items()
        saved = json.loads((tmp_path / "sweep" / "doctor" / f"{label}.json").read_text())
        quick_checks = ["cql E=1", "cql E=4", "iql E=1", "iql E=4", "dt fine-tune", "dt pre-train step", "token sampler",
                        "overlapped evaluation", "resume cql"]
        assert saved["device"] == "cpu" and saved["quick"] is True
        assert [c["check"] for c in saved["checks"]] == quick_checks
        assert not failed_checks(report) and "all fast paths pass" in lines[-1]
    finally:
        ray.shutdown()


@pytest.mark.gpu
def test_cuda_run_checks_its_graph_and_keeps_it(hopper):
    from synthrl.cql.config import CQLConfig
    from synthrl.cql.runner import make_runner

    config = CQLConfig(dataset=str(hopper), seeds=[0, 1], updates=16, eval_every=16, batch_size=32, hidden=32,
                       device="cuda")
    runner = make_runner(config, None, progress=False)
    assert runner.fast_path["path"] == "graph" and runner.fast_path["reason"].startswith("checked"), runner.fast_path
    runner.train(16)
    assert runner.ensemble._graph is not None and np.isfinite(runner.ensemble.pop_stats()["q_loss"]).all()
