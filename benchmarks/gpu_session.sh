#!/usr/bin/env bash
# Everything the open speed and learning goals need from the lent GPU machine, in ONE call of at most 8 minutes.
#
# Here (the development machine), once:   benchmarks/gpu_session.sh fetch
#   downloads the gymnasium/MuJoCo wheels for the GPU machine's Python 3.12 into .whl/ and copies the
#   shared Hopper dataset into .data/ (both git-ignored; carry them: carry [".whl", ".data"]).
# There, the one call (device `run`, carry .whl and .data, timeout_s 540):
#   benchmarks/gpu_session.sh all         # doctor, gpu tests, bench, then learn-cql in what is left of BUDGET_S
# Stages one at a time (each well under 10 minutes):
#   benchmarks/gpu_session.sh doctor      # synthrl doctor (full): every fast path against eager, speeds vs goals
#   benchmarks/gpu_session.sh bench       # synthetic tokens, CQL ensemble, DT pre-training/fine-tuning, evaluation
#   benchmarks/gpu_session.sh tests       # the CUDA-only tests (pytest -m gpu)
#   benchmarks/gpu_session.sh learn-cql   # CQL and CQL+MDP, 4 seeds each, on hopper-medium-sac-200k (side by side)
#   benchmarks/gpu_session.sh learn-dt    # DT and DT+MC (20k MC pre-training steps), 4 seeds each
#   benchmarks/gpu_session.sh smoke       # every stage at toy sizes (also runs on a CPU machine: checks this script;
#                                         # SMOKE=1 before any stage does the same for that stage)
#
# The one-call budget (BUDGET_S=480 s; the device allows 15 min in all, its 1-2 min start included, 10 min a call).
# Each stage runs under `timeout` of what is left, so a slow stage costs the later ones, never the tarball.
#   stage       cap     GPU estimate (never measured: no GPU lent yet)       SMOKE=1 all, 2-core CPU, loaded (measured)
#   setup       -       10-20 s (pip install of the carried wheels)          1-2 s
#   doctor      120 s   40-90 s (full; 3 cold torch.compile's, small graphs)  7-14 s (doctor --quick)
#   tests       90 s    30-60 s (pytest -m gpu)                              5-7 s (all skipped: no GPU)
#   bench       220 s   150-200 s (the issue sizes)                          26 s
#   learn-cql   rest    >= 100 s (CQL and CQL+MDP side by side)              13-24 s
#   pack        20 s    < 5 s                                                < 1 s
#   all                 <= 480 s by construction                             59-64 s in all
# learn-dt does not fit the one call: run it in a second call if the budget allows (`learn-dt`, ~5-8 min).
# learn-cql's runs append metrics.csv at every evaluation, so a run cut by the budget still leaves its curve.
# Sizes: CQL_UPDATES (200000), DT_PRETRAIN_STEPS (20000), DT_UPDATES (50000), SEEDS (0-3); a machine goes back
# 30 s after a call, so a stage that needs another's files (learn-dt's pre-training) runs in the same call.
# Results: $OUT/gpu_session.tgz (or ./gpu_out/), holding one log per stage, doctor.json, JSON lines from the
# benchmarks, the runs' metrics.csv and timings.txt (seconds per stage).
# The GPU machine has torch, h5py, pandas, tqdm, pytest and pyyaml but no gymnasium/MuJoCo and no Ray: the
# runs use `python3 -m synthrl run …` and `python3 -m synthrl doctor`, which need no Ray.
set -euo pipefail
cd "$(dirname "$0")/.."
# the device returns at most 8 files from $OUT: stages write to /tmp/gpu_session_results, packed into $OUT/gpu_session.tgz at the end
FINAL="${GPU_SESSION_FINAL:-${OUT:-$PWD/gpu_out}}"
export GPU_SESSION_FINAL="$FINAL"  # a stage run as a child of this script packs into the same place
OUT=/tmp/gpu_session_results
mkdir -p "$OUT" "$FINAL"
pack() { tar czf "$FINAL/gpu_session.tgz" -C "$OUT" . 2> /dev/null || true; }
trap pack EXIT  # also after a failed stage; each finished stage packs too (a call killed at its limit keeps them)
DATA=.data/hopper-medium-sac-200k.hdf5
PY="${PYTHON:-python3}"
SMOKE="${SMOKE:-0}"  # SMOKE=1: toy sizes for any stage
BUDGET_S="${BUDGET_S:-480}"  # the one call (`all`): every stage ends before this many seconds have passed
T0=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }

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

doctor() {
    local quick=()
    [ "$SMOKE" = 1 ] && quick=(--quick)
    # exit 1 names a failing fast path: recorded, the session goes on
    synthrl doctor --device auto "${quick[@]}" --json "$OUT/doctor.json" 2>&1 | tee "$OUT/doctor.txt" || true
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
    # side by side on the one GPU, each cut at LEARN_S seconds (default: no limit)
    local limit=(timeout --signal=INT "${LEARN_S:-0}")
    [ "${LEARN_S:-0}" -gt 0 ] || limit=()
    "${limit[@]}" "$PY" -m synthrl run cql --dataset "$DATA" --out /tmp/learn/cql --seeds "$seeds" \
        --updates "$updates" --eval-every "$every" --eval-episodes "$episodes" --no-progress \
        > "$OUT/learn_cql.log" 2>&1 &
    local plain=$!
    "${limit[@]}" "$PY" -m synthrl run cql --dataset "$DATA" --out /tmp/learn/cql_mdp --pretrain mdp --seeds "$seeds" \
        --updates "$updates" --eval-every "$every" --eval-episodes "$episodes" "${extra[@]}" --no-progress \
        > "$OUT/learn_cql_mdp.log" 2>&1 &
    local mdp=$!
    wait "$plain" || echo "learn-cql: CQL stopped (exit $?; cut by the budget when 124/130)" | tee -a "$OUT/learn_cql.log"
    wait "$mdp" || echo "learn-cql: CQL+MDP stopped (exit $?; cut by the budget when 124/130)" | tee -a "$OUT/learn_cql_mdp.log"
    keep_metrics /tmp/learn/cql learn_cql
    keep_metrics /tmp/learn/cql_mdp learn_cql_mdp
    "$PY" benchmarks/plot_learning.py /tmp/learn/cql /tmp/learn/cql_mdp --labels CQL,CQL+MDP --behaviour 47.5 \
        --out "$OUT/learn_cql.png" | tee "$OUT/learn_cql_table.md" || true
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

note_time() {  # a line of timings.txt (the stage's own process only, not a child run of it)
    [ -n "${GPU_SESSION_CHILD:-}" ] || echo "$1" | tee -a "$OUT/timings.txt"
}

timed() {  # stage name, seconds it may take (0: no limit): run it, write its time to timings.txt, pack
    local stage=$1 limit=$2 started
    started=$(date +%s)
    if [ "$limit" != 0 ] && [ "$limit" -lt 15 ]; then
        note_time "$stage: skipped (${limit} s of the budget left)"
        return
    fi
    echo "== $stage${limit:+ (at most $limit s)}"
    if [ "$limit" = 0 ]; then
        "$stage" || true
    elif [ "$stage" = learn-cql ]; then
        LEARN_S=$(( limit - 15 )) learn_cql || true  # its runs stop themselves; plotting and metrics follow
    else  # the stage as a child of this script, stopped (its whole process group) at the limit
        SMOKE=$SMOKE GPU_SESSION_CHILD=1 timeout -k 10 -s INT "$limit" "$0" "$stage" > /dev/null 2>&1 \
            || echo "$stage: stopped at ${limit} s"
    fi
    note_time "$stage: $(( $(date +%s) - started )) s"
    pack
}

one_call() {  # the essential work in ONE device call, each stage bounded by what is left of BUDGET_S
    cap() { local want=$1 reserve=$2 avail; avail=$(( $(left) - reserve )); echo $(( avail < want ? avail : want )); }
    timed doctor "$(cap 120 300)"
    timed tests "$(cap 90 260)"
    timed bench "$(cap 220 140)"
    timed learn-cql "$(( $(left) - 20 ))"   # what is left, 20 s kept for plotting and packing
}

[ $# -ge 1 ] || { sed -n '2,21p' "$0"; exit 2; }
if [ "$1" = fetch ]; then fetch; exit 0; fi
started=$(date +%s)
setup
note_time "setup: $(( $(date +%s) - started )) s"
for stage in "$@"; do
    case "$stage" in
        all) one_call ;;
        doctor|bench|tests) timed "$stage" 0 ;;
        learn-cql) timed learn_cql 0 ;;
        learn-dt) timed learn_dt 0 ;;
        smoke) SMOKE=1; timed doctor 0; timed tests 0; timed bench 0; timed learn_cql 0; timed learn_dt 0 ;;
        *) echo "gpu_session.sh: unknown stage '$stage' (fetch, all, doctor, bench, tests, learn-cql, learn-dt, smoke)" >&2
           exit 2 ;;
    esac
done
ls -la "$OUT"
echo "results: $FINAL/gpu_session.tgz"
