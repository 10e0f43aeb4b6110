"""Optuna search for a sweep's ``search:`` section: Tune search space, searcher and scheduler.

A sweep that declares ``search:`` (``synthrl.sweep.schema.SearchSpec``, validated there) tunes the
named fine-tuning parameters with Optuna's TPE sampler through Ray Tune's ``OptunaSearch``, with at
most ``max_concurrent`` trials in flight (``ConcurrencyLimiter``) and, when ``asha:`` is given,
ASHA early stopping on the evaluations each trial reports.
"""

from __future__ import annotations

from typing import Any

from synthrl.errors import UserError

# what a trainable reports once per evaluation; ASHA counts evaluations, not wall clock
TIME_ATTR = "training_iteration"


def tune_domain(name: str, param: Any):
    """One ``SearchParam`` (type, low, high, values) as a Ray Tune domain."""
    from ray import tune

    kind = param.type
    if kind == "choice":
        return tune.choice(list(param.values))
    if kind == "uniform":
        return tune.uniform(param.low, param.high)
    if kind == "loguniform":
        return tune.loguniform(param.low, param.high)
    if kind == "randint":
        # the sweep file's high is inclusive (what a user means by 'from 2 to 20'); Tune's is not
        return tune.randint(int(param.low), int(param.high) + 1)
    raise UserError(f"search.space.{name}.type: expected uniform, loguniform, randint or choice, got {kind!r}")


def build_search(search_spec: Any, max_evaluations: int | None = None, seed: int = 0):
    """``(param_space, search_alg, scheduler)`` for ``tune.Tuner`` from a sweep's ``SearchSpec``.

    ``param_space`` maps each searched parameter to its Tune domain (the launcher merges it into
    the trial config); ``search_alg`` is OptunaSearch (TPE, seeded) behind a ConcurrencyLimiter;
    ``scheduler`` is ASHA over evaluations when the spec asks for it, else None (FIFO).
    ``max_evaluations`` (evaluations per trial) is ASHA's default ``max_t``.
    Pass ``metric=search_spec.metric, mode=search_spec.mode`` to ``tune.TuneConfig``: the scheduler
    takes them from there (Tune refuses a scheduler that sets its own as well).
    """
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    param_space = {name: tune_domain(name, param) for name, param in search_spec.space.items()}
    sampler = optuna.samplers.TPESampler(seed=seed)
    searcher = OptunaSearch(metric=search_spec.metric, mode=search_spec.mode, sampler=sampler)
    search_alg = ConcurrencyLimiter(searcher, max_concurrent=search_spec.max_concurrent)

    scheduler = None
    if search_spec.asha:
        asha = dict(search_spec.asha)
        max_t = int(asha.get("max_t") or max_evaluations or 100)
        grace = int(asha.get("grace_period", 1))
        if grace > max_t:
            raise UserError(f"search.asha.grace_period: expected at most max_t ({max_t} evaluations), got {grace}")
        scheduler = ASHAScheduler(time_attr=TIME_ATTR, max_t=max_t, grace_period=grace,
                                  reduction_factor=float(asha.get("reduction_factor", 2)))
    return param_space, search_alg, scheduler


def best_config(result_grid, search_spec: Any) -> dict[str, Any]:
    """The searched parameters of the best trial (by the spec's metric and mode, best over evaluations)."""
    best = result_grid.get_best_result(metric=search_spec.metric, mode=search_spec.mode, scope="all")
    return {name: best.config[name] for name in search_spec.space if name in best.config}
