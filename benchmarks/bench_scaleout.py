"""Scale-out timings: loopback cluster start-up, and DT pre-training single-process vs data-parallel
(Ray Train, gloo CPU workers) on the same global batch.

    .venv/bin/python benchmarks/bench_scaleout.py [--steps 20] [--workers 2]

CPU numbers only say what the machinery costs; the GPU speed-up of data-parallel pre-training is
left to measure on a multi-GPU machine (NCCL).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def cluster_startup() -> dict:
    from scaleout_cluster import loopback_cluster

    started = time.perf_counter()
    with loopback_cluster(tempfile.mkdtemp(prefix="rb", dir="/tmp"), head_cpus=1) as cluster:
        head = time.perf_counter() - started
        cluster.add_worker(num_cpus=1)
        worker = time.perf_counter() - started - head
    return {"head_s": head, "worker_s": worker, "total_with_teardown_s": time.perf_counter() - started}


def pretraining(steps: int, workers: int) -> dict:
    import ray

    from synthrl.dt.config import BackboneConfig, DTPretrainConfig
    from synthrl.dt.pretrain import build_pretrain_artifact
    from synthrl.store import ArtifactStore
    from trainables.distributed import build_pretrain_artifact_distributed

    cfg = DTPretrainConfig(data="mc", states=100, steps=steps, checkpoints=(steps,), seq_len=256, batch_size=16,
                           warmup_steps=2, device="cpu", backbone=BackboneConfig(n_positions=256),
                           progress_every=steps, log_every=steps, compile="off").validate()
    root = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    started = time.perf_counter()
    build_pretrain_artifact(cfg, ArtifactStore(root / "single"), progress=False)
    single = time.perf_counter() - started
    ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="rb", dir="/tmp"))
    try:
        started = time.perf_counter()
        build_pretrain_artifact_distributed(cfg, ArtifactStore(root / "dp"), workers=workers, use_gpu=False,
                                            storage_path=str(root / "ray-train"))
        parallel = time.perf_counter() - started
    finally:
        ray.shutdown()
    tokens = steps * cfg.batch_size * cfg.seq_len
    return {"steps": steps, "tokens": tokens, "single_s": single, "single_tok_s": tokens / single,
            f"dp{workers}_s": parallel, f"dp{workers}_tok_s": tokens / parallel}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for name, value in cluster_startup().items():
        print(f"cluster {name}: {value:.1f}")
    for name, value in pretraining(args.steps, args.workers).items():
        print(f"pretrain {name}: {value:.1f}" if isinstance(value, float) else f"pretrain {name}: {value}")


if __name__ == "__main__":
    main()
