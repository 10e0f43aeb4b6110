"""Multi-GPU DT pre-training: data-parallel through Ray Train's ``TorchTrainer``.

The paper pre-trained DT on 2 GPUs. A pre-training job that asks for ``workers`` > 1 GPUs runs
here instead of in one process; the science is ``synthrl.dt.pretrain`` unchanged (its loop
``run_pretraining``, ``Pretrainer``, token source, checkpoint files and artifact assembly), and only the
update step is split, by the loop's gradient-sync hook (``GradientSync``):

- every worker draws the *same* global batch (``batch_size`` sequences from the shared data
  generator, as a single-GPU run would) and trains on its contiguous 1/N slice of it;
- the gradients are averaged across workers (one flattened all-reduce per step), so each step
  equals the single-GPU step on the whole batch up to summation order; dropout masks come from a
  per-worker stream;
- worker 0 holds the key's build lock (so a single-GPU builder of the same key waits instead of
  training it twice) and writes the loss curve, the step checkpoints and the resumable progress
  checkpoint into the same work directory ``run_pretraining`` uses, so a failed job (Ray Train
  retries it) or a later single-process run continues from there.

When training is done, worker 0 calls ``synthrl.dt.pretrain.build_pretrain_artifact``, which finds
the finished work directory and assembles the artifact exactly as for a single-GPU run (same key,
same files, same COMPLETE), so fine-tuning trials use it without knowing it was trained on several
GPUs.
"""

from __future__ import annotations

from pathlib import Path

from synthrl.errors import UserError


def _train_loop_per_worker(config: dict) -> None:
    """Runs on each Ray Train worker (the process group is already set up by TorchTrainer)."""
    import contextlib
    import dataclasses

    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import get_device

    from synthrl.dt.config import DTPretrainConfig
    from synthrl.dt.pretrain import ARTIFACT_KIND, FORMAT_VERSION, build_pretrain_artifact, pretrain_params
    from synthrl.store import ArtifactStore

    cfg = DTPretrainConfig.from_dict(config["cfg"])
    store = ArtifactStore(config["store"])
    work = Path(config["work_dir"])
    rank = ray.train.get_context().get_world_rank()
    device = str(get_device())
    lock = store.lock(ARTIFACT_KIND, pretrain_params(cfg), FORMAT_VERSION)
    with lock if rank == 0 else contextlib.nullcontext():
        # worker 0 holds the lock: tell every worker whether another builder finished the key meanwhile
        done = torch.tensor([rank == 0 and store.lookup(ARTIFACT_KIND, pretrain_params(cfg), FORMAT_VERSION)
                             is not None], dtype=torch.int32)
        dist.broadcast(done, src=0)
        if done.item():
            return
        _train(cfg, work, device)
    if rank == 0:
        # resumes the finished work directory on this same device, then assembles the artifact
        build_pretrain_artifact(dataclasses.replace(cfg, device=device), store, progress=False)


def _train(cfg, work_dir: Path, device: str) -> None:
    """This worker's share of the pre-training: synthrl.dt.pretrain.run_pretraining with the gradient sync."""
    import dataclasses

    from synthrl.dt.pretrain import run_pretraining

    run_pretraining(dataclasses.replace(cfg, device=device), work_dir, progress=False, sync=GradientSync())


class GradientSync:
    """run_pretraining's data-parallel hook: every worker draws the same global batch, trains on its
    contiguous slice, and the gradients (and the loss, for the curve) are averaged in one all-reduce;
    worker 0 writes the files."""

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.writes = self.rank == 0

    def begin(self, trainer) -> None:
        import torch

        # a dropout stream per worker (one shared stream would repeat masks across the slices)
        torch.manual_seed(trainer.cfg.init_seed + 1 + 1000 * self.rank + 1_000_003 * trainer.step)

    def update(self, trainer):
        import torch
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        trainer.model.train()
        cfg, per_worker = trainer.cfg, trainer.cfg.batch_size // self.world
        tokens, targets = trainer.source.sample(cfg.batch_size, trainer.data_generator)
        rows = slice(self.rank * per_worker, (self.rank + 1) * per_worker)
        loss = trainer.loss(tokens[rows], None if targets is None else targets[rows])
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in trainer.model.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = _flatten_dense_tensors(grads + [loss.detach().reshape(1)])
        self.dist.all_reduce(flat)
        flat /= self.world
        for p, averaged in zip(params, _unflatten_dense_tensors(flat[:-1], grads)):
            p.grad = averaged
        trainer.optimizer.step()
        trainer.scheduler.step()
        trainer.step += 1
        return flat[-1]   # the averaged loss: the curve of the whole batch

    def logged(self, step: int, loss: float) -> None:
        import ray.train

        ray.train.report({"step": step, "train_loss": loss})

    def barrier(self) -> None:
        self.dist.barrier()


def build_pretrain_artifact_distributed(cfg, store=None, workers: int = 2, use_gpu: bool | None = None,
                                        cpus_per_worker: float = 1.0, max_failures: int = 2,
                                        storage_path: str | None = None) -> Path:
    """The DT pre-training artifact for ``cfg``, trained data-parallel on ``workers`` Ray Train workers.

    ``use_gpu`` None: GPUs when the cluster has at least ``workers`` of them, else CPU workers (gloo).
    Needs a connected Ray (``ray.init``). The store must be on storage every node sees.
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from synthrl.dt.pretrain import ARTIFACT_KIND, FORMAT_VERSION, pretrain_params, work_dir_for
    from synthrl.store import ArtifactStore

    store = store or ArtifactStore()
    cfg = cfg.validate()
    if workers < 1:
        raise UserError(f"resources.pretrain_gpus: expected at least 1 worker, got {workers}")
    if cfg.batch_size % workers:
        raise UserError(f"dt-pretrain.batch_size {cfg.batch_size}: expected a multiple of the {workers} "
                        "data-parallel workers (each trains on an equal slice of every batch)")
    params = pretrain_params(cfg)
    found = store.lookup(ARTIFACT_KIND, params, FORMAT_VERSION)
    if found is not None:
        return found
    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0.0) >= workers
    work = work_dir_for(cfg, store)
    config = {"cfg": {**cfg.to_dict(), "device": "auto"}, "work_dir": str(work), "store": str(store.root)}
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config=config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(name=f"dt-pretrain-{cfg.data}-{work.name[:12]}",
                             storage_path=storage_path or str(store.root / "ray-train"),
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    trainer.fit()
    found = store.lookup(ARTIFACT_KIND, params, FORMAT_VERSION)
    if found is None:
        raise RuntimeError(f"distributed pre-training finished without the artifact {store.path(ARTIFACT_KIND, params, FORMAT_VERSION)}")
    return found


def runs_data_parallel(algorithm: str, gpus: float) -> bool:
    """Whether a sweep's pre-training jobs run here: token pre-training (DT's) on more than one GPU."""
    from synthrl import registry

    return registry.algorithm(algorithm).pretrain_family == registry.TOKENS and gpus > 1


def build_artifact_data_parallel(algorithm: str, config: dict, dataset_path: str, storage: str,
                                 workers: int = 2) -> str:
    """Stage 1 for a DT pre-training job on several GPUs (the launcher's ``build_artifact`` twin): the
    Ray task that calls this holds no resources; Ray Train places one worker per GPU."""
    from synthrl.store import ArtifactStore
    from synthrl.sweep.plan import build_config

    if not runs_data_parallel(algorithm, max(workers, 2)):
        raise UserError(f"resources.pretrain_gpus: only token pre-training (DT's) runs data-parallel, not "
                        f"{algorithm}'s")
    tokens_config = build_config(algorithm, config, dataset_path, "cpu")
    return str(build_pretrain_artifact_distributed(tokens_config.pretrain, ArtifactStore(storage), workers=workers))
