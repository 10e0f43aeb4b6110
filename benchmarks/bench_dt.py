"""Decision Transformer throughput: pre-training ms/step (M = 100 and 100,000) and fine-tuning seed-updates/s.

    python benchmarks/bench_dt.py                                  # cuda if visible: the spec's sizes
    python benchmarks/bench_dt.py --device cpu --seq-len 128 --pt-batch 4 --ft-batch 16 --steps 3

Pre-training uses the real synthetic MC token source (synthrl.synthetic) and the real loop
(Pretrainer.train_step: sampling + forward + chunked loss + backward + AdamW); it also reports the
token-sampling time alone and, with --fp32-check N, the loss after N steps in bf16 vs fp32.
Fine-tuning uses the real DTRunner on a D4RL-format file (--dataset; default: the shared
hopper-medium-sac-200k file) and times DTRunner.train for E members at once.
Prints one JSON line per setting (peak GPU memory on CUDA).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from synthrl.dt.config import DTConfig, DTPretrainConfig
from synthrl.dt.pretrain import Pretrainer
from synthrl.dt.runner import make_runner
from synthrl.utils.timing import sync

HOPPER = Path(__file__).resolve().parents[2] / "shared" / "data" / "hopper-medium-sac-200k.hdf5"


def bench_pretrain(states: int, args) -> dict:
    cfg = DTPretrainConfig(states=states, steps=10**6, checkpoints=(10**6,), seq_len=args.seq_len,
                           batch_size=args.pt_batch, device=args.device, precision=args.precision,
                           compile=args.compile, warmup_steps=10)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer = Pretrainer(cfg)
    setup_s = time.perf_counter() - started
    for _ in range(args.warmup):
        trainer.train_step()
    sync(args.device)
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = trainer.train_step()
    sync(args.device)
    step_s = (time.perf_counter() - started) / args.steps
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.source.sample(cfg.batch_size, trainer.data_generator)
    sync(args.device)
    sample_s = (time.perf_counter() - started) / args.steps
    out = {"bench": "pretrain", "device": args.device, "states": states, "seq_len": cfg.seq_len,
           "batch": cfg.batch_size, "tokens_per_step": cfg.seq_len * cfg.batch_size,
           "precision": "bf16" if trainer.bf16 else "fp32", "compiled": trainer.compiled,
           "ms_per_step": round(step_s * 1e3, 2), "sampling_ms_per_step": round(sample_s * 1e3, 2),
           "setup_s": round(setup_s, 2), "loss": round(float(loss), 4),
           "full_logits_gib_fp32": round(cfg.batch_size * (cfg.seq_len - 1) * states * 4 / 2**30, 3),
           "hours_for_80k": round(step_s * 80000 / 3600, 2)}
    if args.device.startswith("cuda"):
        out["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def fp32_check(args) -> dict:
    """Loss after N steps at M = 100, bf16 autocast vs fp32, same seeds."""
    losses = {}
    for precision in ("bf16", "fp32"):
        cfg = DTPretrainConfig(states=100, steps=args.fp32_check, checkpoints=(args.fp32_check,),
                               seq_len=args.seq_len, batch_size=args.pt_batch, device=args.device,
                               precision=precision, compile=args.compile,
                               warmup_steps=max(1, args.fp32_check // 8))
        trainer = Pretrainer(cfg)
        tail = []
        for i in range(args.fp32_check):
            loss = trainer.train_step()
            if i >= args.fp32_check - 50:
                tail.append(loss)
        losses[precision] = round(float(torch.stack(tail).mean()), 4)
    return {"bench": "bf16-vs-fp32", "device": args.device, "steps": args.fp32_check, "final_loss": losses}


def bench_finetune(E: int, args) -> dict:
    cfg = DTConfig(dataset=str(args.dataset), seeds=list(range(E)), batch_size=args.ft_batch, device=args.device,
                   precision=args.precision, compile=args.compile, updates=10**6, eval_every=10**6)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    runner = make_runner(cfg, None, fast_path_check=False)  # speed only: synthrl doctor checks the parity
    started = time.perf_counter()
    runner.train(args.warmup)
    sync(args.device)
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    runner.train(args.updates)
    sync(args.device)
    train_s = time.perf_counter() - started
    out = {"bench": "finetune", "device": args.device, "members": E, "batch": cfg.batch_size,
           "context": cfg.context, "precision": "bf16" if runner.bf16 else "fp32",
           "compiled": runner.compiled, "updates": args.updates, "ms_per_update": round(train_s / args.updates * 1e3, 2),
           "seed_updates_per_s": round(E * args.updates / train_s, 2), "warmup_s": round(warm_s, 2),
           "minutes_for_100k": round(train_s / args.updates * 100000 / 60, 1),
           "train_loss": [round(float(x), 4) for x in (runner.loss_sum / runner.loss_count).tolist()][:4]}
    if args.device.startswith("cuda"):
        out["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--what", default="pretrain,finetune", help="pretrain, finetune or both")
    ap.add_argument("--states", default="100,100000")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--pt-batch", type=int, default=64)
    ap.add_argument("--members", default="1,20")
    ap.add_argument("--ft-batch", type=int, default=64)
    ap.add_argument("--dataset", default=str(HOPPER))
    ap.add_argument("--steps", type=int, default=20, help="timed pre-training steps")
    ap.add_argument("--updates", type=int, default=50, help="timed fine-tuning updates")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, graph capture)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--compile", default="auto")
    ap.add_argument("--fp32-check", type=int, default=0, help="also compare bf16 and fp32 loss after N steps")
    args = ap.parse_args()
    what = set(args.what.split(","))
    if "pretrain" in what:
        for m in (int(x) for x in args.states.split(",")):
            print(json.dumps(bench_pretrain(m, args)), flush=True)
        if args.fp32_check:
            print(json.dumps(fp32_check(args)), flush=True)
    if "finetune" in what:
        for E in (int(x) for x in args.members.split(",")):
            print(json.dumps(bench_finetune(E, args)), flush=True)


if __name__ == "__main__":
    main()
