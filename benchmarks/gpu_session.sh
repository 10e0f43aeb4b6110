#!/usr/bin/env bash
# Everything the open speed and learning goals need from the lent GPU machine, in a few full calls.
#
# Here (the development machine), once:   benchmarks/gpu_session.sh fetch
#   downloads the gymnasium/MuJoCo wheels for the GPU machine's Python 3.12 into .whl/ and copies the
#   shared Hopper dataset into .data/ (both git-ignored; carry them: carry [".whl", ".data"]).
# There (device `run`, carry .whl and .data), one stage or several per call, each well under 10 minutes:
#   benchmarks/gpu_session.sh bench       # synthetic tokens, CQL ensemble, DT pre-training/fine-tuning, evaluation
#   benchmarks/gpu_session.sh tests       # the CUDA-only tests (pytest -m gpu)
#   benchmarks/gpu_session.sh learn-cql   # CQL and CQL+MDP, 4 seeds each, on hopper-medium-sac-200k
#   benchmarks/gpu_session.sh learn-dt    # DT and DT+MC (20k MC pre-training steps), 4 seeds each
#   benchmarks/gpu_session.sh smoke       # every stage at toy sizes (also runs on a CPU machine: checks this script;
#                                         # SMOKE=1 before any stage does the same for that stage)
# Sizes: CQL_UPDATES (200000), DT_PRETRAIN_STEPS (20000), DT_UPDATES (50000), SEEDS (0-3); a machine goes back
# 30 s after a call, so a stage that needs another's files (learn-dt's pre-training) runs in the same call.
# Results: $OUT/gpu_session.tgz (or ./gpu_out/), holding one log per stage, JSON lines from the benchmarks, the runs' metrics.csv.
# The GPU machine has torch, h5py, pandas, tqdm, pytest and pyyaml but no gymnasium/MuJoCo and no Ray: the
# runs use `python3 -m synthrl run …`, which needs no Ray.
set -euo pipefail
cd "$(dirname "$0")/.."
# the device returns at most 8 files from $OUT: stages write to /tmp/gpu_session_results, packed into $OUT/gpu_session.tgz at the end
FINAL="${OUT:-$PWD/gpu_out}"
OUT=/tmp/gpu_session_results
mkdir -p "$OUT" "$FINAL"
pack() { tar czf "$FINAL/gpu_session.tgz" -C "$OUT" . 2> /dev/null || true; }
trap pack EXIT  # also after a failed stage; each finished stage packs too (a call killed at its limit keeps them)
DATA=.data/hopper-medium-sac-200k.hdf5
PY="${PYTHON:-python3}"
SMOKE="${SMOKE:-0}"  # SMOKE=1: toy sizes for any stage

fetch() {
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
    grep -qx '/.data/' .git/info/exclude 2>/dev/null || echo /.data/ >> .git/info/exclude
    mkdir -p .whl .data
    # the versions this checkout's venv runs (gymnasium 1.4, mujoco 4), and what they need beyond the GPU image
    local gym mj
    gym=$(.venv/bin/python -c "import gymnasium; print(gymnasium.__version__)")
    mj=$(.venv/bin/python -c "import mujoco; print(mujoco.__version__)")
    local wheels=("gymnasium==$gym" "mujoco==$mj" farama-notifications glfw pyopengl cloudpickle)
    local download=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
                    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
                    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl)
    "${download[@]}" "${wheels[@]}"
    # mujoco's own needs (split packages in newer releases), whatever its metadata names
    local extra
    extra=$(unzip -p .whl/mujoco-*.whl '*/METADATA' | sed -n 's/^Requires-Dist: \([A-Za-z0-9_.-]*\)\([^;]*\)$/\1\2/p' \
            | grep -v -i -E '^(numpy|absl-py|etils|glfw|pyopengl)' || true)
    if [ -n "$extra" ]; then
        # shellcheck disable=SC2086
        "${download[@]}" $extra
    fi
    cp ../shared/data/hopper-medium-sac-200k.hdf5 .data/
    du -sh .whl .data
    ls .whl
}

setup() {
    if ls .whl/*.whl > /dev/null 2>&1 && ! "$PY" -c "import gymnasium, mujoco" 2> /dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
    fi
    export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 MUJOCO_GL=egl
    export SYNTHRL_STORE="${SYNTHRL_STORE:-/tmp/synthrl-store}"
    [ -f "$DATA" ] || DATA=../shared/data/hopper-medium-sac-200k.hdf5
    "$PY" -c "import torch, gymnasium, mujoco; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name() if torch.cuda.is_available() else '', 'gymnasium', gymnasium.__version__, 'mujoco', mujoco.__version__)"
    nproc
}

synthrl() { "$PY" -m synthrl "$@"; }

bench() {
    if [ "$SMOKE" = 1 ]; then
        "$PY" benchmarks/bench_synthetic.py --seconds 0.2 --states 100 --skip-mdp | tee "$OUT/bench_synthetic.txt"
        "$PY" benchmarks/bench_cql.py --members 1,2 --updates 8 --warmup 2 --eval-episodes 1 --eval-every 100 \
            --pretrain-updates 20 --json | tee "$OUT/bench_cql.jsonl"
        "$PY" benchmarks/bench_dt.py --what pretrain,finetune --states 100 --seq-len 64 --pt-batch 2 --steps 2 --warmup 1 --members 1 \
            --ft-batch 4 --updates 2 --dataset "$DATA" | tee "$OUT/bench_dt.jsonl"
        "$PY" benchmarks/bench_eval.py --seeds 2 --episodes 1 --rounds 1 | tee "$OUT/bench_eval.txt"
        return
    fi
    "$PY" benchmarks/bench_synthetic.py --seconds 2 --states 100 100000 --threads 1 | tee "$OUT/bench_synthetic.txt"
    "$PY" benchmarks/bench_synthetic.py --skip-mdp --seconds 2 --states 100 100000 --batch 512 | tee -a "$OUT/bench_synthetic.txt"
    "$PY" benchmarks/bench_synthetic.py --skip-mdp --seconds 2 --states 100000 --temperature 0.1 | tee -a "$OUT/bench_synthetic.txt"
    "$PY" benchmarks/bench_cql.py --members 1,20,40 --updates 2000 --pretrain-updates 5000 --json \
        | tee "$OUT/bench_cql.jsonl"
    "$PY" benchmarks/bench_cql.py --members 20 --updates 2000 --pretrain-updates 0 --eval-episodes 0 \
        --matmul-precision high --json | tee -a "$OUT/bench_cql.jsonl"
    "$PY" benchmarks/bench_dt.py --what pretrain --states 100 --steps 200 --warmup 20 --fp32-check 300 \
        --dataset "$DATA" | tee "$OUT/bench_dt.jsonl"
    "$PY" benchmarks/bench_dt.py --what pretrain --states 100000 --steps 30 --warmup 5 --dataset "$DATA" \
        | tee -a "$OUT/bench_dt.jsonl"
    "$PY" benchmarks/bench_dt.py --what finetune --members 1,20 --updates 300 --warmup 20 --dataset "$DATA" \
        | tee -a "$OUT/bench_dt.jsonl"
    "$PY" benchmarks/bench_eval.py --rounds 2 --device cuda | tee "$OUT/bench_eval.txt"
}

tests() {
    "$PY" -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/tests_gpu.txt"
}

keep_metrics() {  # run dir -> $OUT/<name>.csv
    cp "$1/metrics.csv" "$OUT/$2.csv" 2> /dev/null || true
}

learn_cql() {
    rm -rf /tmp/learn/cql /tmp/learn/cql_mdp
    local updates="${CQL_UPDATES:-200000}" every=10000 seeds="${SEEDS:-0-3}" episodes=10
    [ "$SMOKE" = 1 ] && { updates=20; every=10; seeds=0-1; episodes=1; }
    local extra=()
    [ "$SMOKE" = 1 ] && extra=(--pretrain-updates 20 --trajectories 10 --length 10)
    synthrl run cql --dataset "$DATA" --out /tmp/learn/cql --seeds "$seeds" --updates "$updates" \
        --eval-every "$every" --eval-episodes "$episodes" --no-progress 2>&1 | tee "$OUT/learn_cql.log"
    keep_metrics /tmp/learn/cql learn_cql
    synthrl run cql --dataset "$DATA" --out /tmp/learn/cql_mdp --pretrain mdp --seeds "$seeds" \
        --updates "$updates" --eval-every "$every" --eval-episodes "$episodes" "${extra[@]}" --no-progress \
        2>&1 | tee "$OUT/learn_cql_mdp.log"
    keep_metrics /tmp/learn/cql_mdp learn_cql_mdp
    "$PY" benchmarks/plot_learning.py /tmp/learn/cql /tmp/learn/cql_mdp --labels CQL,CQL+MDP --behaviour 47.5 \
        --out "$OUT/learn_cql.png" | tee "$OUT/learn_cql_table.md"
}

learn_dt() {
    local steps="${DT_PRETRAIN_STEPS:-20000}" updates="${DT_UPDATES:-50000}" every=5000 seeds="${SEEDS:-0-3}" episodes=10 pt=()
    rm -rf /tmp/learn/mc /tmp/learn/dt /tmp/learn/dt_mc
    [ "$SMOKE" = 1 ] && { steps=4; updates=4; every=2; seeds=0-1; episodes=1; pt=(--batch-size 2 --seq-len 64 --warmup-steps 2); }
    synthrl run dt-pretrain --out /tmp/learn/mc --data mc --states 100 --steps "$steps" "${pt[@]}" --no-progress \
        2>&1 | tee "$OUT/learn_dt_pretrain.log"
    keep_metrics /tmp/learn/mc learn_dt_pretrain
    synthrl run dt --dataset "$DATA" --out /tmp/learn/dt --seeds "$seeds" --updates "$updates" \
        --eval-every "$every" --eval-episodes "$episodes" --no-progress 2>&1 | tee "$OUT/learn_dt.log"
    keep_metrics /tmp/learn/dt learn_dt
    synthrl run dt --dataset "$DATA" --out /tmp/learn/dt_mc --pretrained /tmp/learn/mc --pretrain-step "$steps" \
        --seeds "$seeds" --updates "$updates" --eval-every "$every" --eval-episodes "$episodes" --no-progress \
        2>&1 | tee "$OUT/learn_dt_mc.log"
    keep_metrics /tmp/learn/dt_mc learn_dt_mc
    "$PY" benchmarks/plot_learning.py /tmp/learn/dt /tmp/learn/dt_mc --labels DT,DT+MC --behaviour 47.5 \
        --out "$OUT/learn_dt.png" | tee "$OUT/learn_dt_table.md"
}

[ $# -ge 1 ] || { sed -n '2,17p' "$0"; exit 2; }
if [ "$1" = fetch ]; then fetch; exit 0; fi
setup
for stage in "$@"; do
    case "$stage" in
        bench) bench ;;
        tests) tests ;;
        learn-cql) learn_cql ;;
        learn-dt) learn_dt ;;
        smoke) SMOKE=1; bench; learn_cql; learn_dt ;;
        *) echo "gpu_session.sh: unknown stage '$stage' (fetch, bench, tests, learn-cql, learn-dt, smoke)" >&2; exit 2 ;;
    esac
    pack
done
ls -la "$OUT"
echo "results: $FINAL/gpu_session.tgz"
