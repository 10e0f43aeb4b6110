"""Optuna search for a sweep's ``search:`` section: the Tune objects, and a real search on local Ray."""

import pytest

from synthrl.errors import UserError


def _search_spec(asha=None):
    from synthrl.sweep.schema import sweep_from_dict

    data = {"name": "s", "algorithm": "cql", "datasets": ["hopper-medium-v2"], "variants": [{"name": "CQL"}],
            "search": {"space": {"cql_min_q_weight": {"type": "loguniform", "low": 0.5, "high": 20},
                                 "cql_n_actions": {"type": "choice", "values": [3, 5, 10]},
                                 "hidden": {"type": "randint", "low": 2, "high": 4}},
                       "num_samples": 6, "max_concurrent": 2}}
    if asha:
        data["search"]["asha"] = asha
    return sweep_from_dict(data).search


def test_build_search_gives_optuna_behind_a_concurrency_limit():
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from trainables.search import build_search

    space, alg, scheduler = build_search(_search_spec())
    assert isinstance(alg, ConcurrencyLimiter) and alg.max_concurrent == 2
    assert isinstance(alg.searcher, OptunaSearch)
    assert scheduler is None
    assert space["cql_min_q_weight"].lower == 0.5 and space["cql_min_q_weight"].upper == 20
    assert set(space["cql_n_actions"].categories) == {3, 5, 10}
    # the file's randint range is inclusive: 4 must be reachable
    assert space["hidden"].lower == 2 and space["hidden"].upper == 5

    _, _, scheduler = build_search(_search_spec({"grace_period": 2, "reduction_factor": 3}), max_evaluations=10)
    assert isinstance(scheduler, ASHAScheduler)
    assert scheduler._max_t == 10 and scheduler._reduction_factor == 3 and scheduler._time_attr == "training_iteration"
    with pytest.raises(UserError, match="grace_period: expected at most max_t"):
        build_search(_search_spec({"grace_period": 20}), max_evaluations=10)


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_optuna_search_runs_on_local_ray_and_finds_the_best_config(tmp_path):
    import tempfile

    import ray
    from ray import tune

    from trainables.search import best_config, build_search

    spec = _search_spec({"grace_period": 1, "reduction_factor": 2})
    space, search_alg, scheduler = build_search(spec, max_evaluations=3)

    def trainable(config):  # the score peaks at min-Q weight 3 with the most sampled actions
        for evaluation in range(3):
            tune.report({"normalized_score": 50 - (config["cql_min_q_weight"] - 3) ** 2
                         + config["cql_n_actions"] + evaluation})

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    try:
        results = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, search_alg=search_alg,
                                        scheduler=scheduler, num_samples=spec.num_samples),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="search", verbose=0)).fit()
    finally:
        ray.shutdown()
    assert len(results) == spec.num_samples and not results.errors
    configs = [r.config for r in results]
    assert len({c["cql_min_q_weight"] for c in configs}) == spec.num_samples  # sampled, not a grid
    assert all(0.5 <= c["cql_min_q_weight"] <= 20 and c["cql_n_actions"] in (3, 5, 10) for c in configs)
    best = best_config(results, spec)
    scores = {r.config["cql_min_q_weight"]: r.metrics_dataframe["normalized_score"].max() for r in results}
    assert scores[best["cql_min_q_weight"]] == max(scores.values())
    assert set(best) == {"cql_min_q_weight", "cql_n_actions", "hidden"}
