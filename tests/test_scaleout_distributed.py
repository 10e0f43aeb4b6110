"""Multi-GPU DT pre-training through Ray Train's TorchTrainer, tested with 2 CPU workers on gloo:
the same artifact (key, files, format) as a single-process run, and the same weights without dropout."""

import tempfile

import pytest
import torch

from synthrl.dt.config import BackboneConfig, DTPretrainConfig
from synthrl.dt.pretrain import ARTIFACT_KIND, build_pretrain_artifact, load_backbone_checkpoint, read_losses
from synthrl.errors import UserError
from synthrl.store import ArtifactStore

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

TINY = BackboneConfig(n_layer=1, n_head=1, n_embd=32, n_inner=64, n_positions=64)


def _cfg(**kw) -> DTPretrainConfig:
    base = dict(data="mc", states=8, steps=6, checkpoints=(3, 6), seq_len=16, batch_size=4, warmup_steps=2,
                dropout=0.0, device="cpu", backbone=TINY, progress_every=3, log_every=1, lr=1e-3, compile="off")
    base.update(kw)
    return DTPretrainConfig(**base).validate()


@pytest.fixture
def local_ray():
    import ray

    temp_dir = tempfile.mkdtemp(prefix="rd", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False, _temp_dir=temp_dir)
    try:
        yield
    finally:
        ray.shutdown()


def test_two_worker_pretraining_matches_the_single_process_artifact(tmp_path, local_ray):
    from trainables.distributed import build_pretrain_artifact_distributed

    cfg = _cfg()
    single = build_pretrain_artifact(cfg, ArtifactStore(tmp_path / "single"), progress=False)
    store = ArtifactStore(tmp_path / "shared")
    parallel = build_pretrain_artifact_distributed(cfg, store, workers=2, use_gpu=False,
                                                   storage_path=str(tmp_path / "ray-train"))

    # same key, same files, verified COMPLETE: fine-tuning finds it like any other artifact
    assert parallel.name == single.name and parallel.parent.name == ARTIFACT_KIND
    assert store.is_complete(parallel)
    names = sorted(p.name for p in parallel.iterdir())
    assert names == sorted(p.name for p in single.iterdir())
    assert [int(r["update"]) for r in read_losses(parallel)] == [1, 2, 3, 4, 5, 6]

    # every batch is the single-process batch split in two and gradients are averaged, so without
    # dropout the weights agree up to summation order
    for step in (3, 6):
        a = load_backbone_checkpoint(single / f"step_{step:07d}.pt")["state_dict"]
        b = load_backbone_checkpoint(parallel / f"step_{step:07d}.pt")["state_dict"]
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    single_losses = [float(r["train_loss"]) for r in read_losses(single)]
    parallel_losses = [float(r["train_loss"]) for r in read_losses(parallel)]
    assert parallel_losses == pytest.approx(single_losses, rel=1e-4)

    # built once: a second request is a lookup, no training
    assert build_pretrain_artifact_distributed(cfg, store, workers=2, use_gpu=False) == parallel


def test_batch_must_split_evenly_over_workers(tmp_path):
    from trainables.distributed import build_pretrain_artifact_distributed

    with pytest.raises(UserError, match="batch_size 4: expected a multiple of the 3 data-parallel workers"):
        build_pretrain_artifact_distributed(_cfg(), ArtifactStore(tmp_path), workers=3, use_gpu=False)
