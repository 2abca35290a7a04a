#!/usr/bin/env bash
# Everything that needs an NVIDIA GPU, in one run of < 10 minutes (each step has a time limit), ending in one table.
#   benchmarks/download_wheels.sh      # once, where pip works: hydra-core, omegaconf, torchdata into .whl/ (checked)
#   benchmarks/gpu_check.sh            # on the GPU machine (no internet needed); results in gpu-check/
# The machine needs torch, torchvision, lightning, torchmetrics and triton. W&B is off throughout.
# Steps: the CUDA tests; benchmarks/bench.py on CUDA; trainer=ddp and trainer=towers for a few steps
# with two processes sharing the one GPU (gloo: NCCL refuses two ranks on one device); 200 steps of
# train.py on a generated prepared data set; experiment=paper (and model.init=caffe) on the demo data
# for a few thousand steps, reporting when the loss leaves chance.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
PAPER_STEPS=${PAPER_STEPS:-2000}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
STATUS="$OUT/status.tsv"
: > "$STATUS"

if ! $PY -c "import hydra, omegaconf, torchdata" 2>/dev/null; then
    $PY -m pip install --no-index --find-links .whl hydra-core omegaconf torchdata >"$OUT/pip.log" 2>&1 \
        || { echo "hydra-core/omegaconf/torchdata missing and not in .whl/: run benchmarks/download_wheels.sh first"; exit 2; }
fi
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" || exit 2

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, log to $OUT/NAME.log, note pass/fail and time
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    echo "== $name"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\n' "$name" "$([ $rc = 0 ] && echo ok || echo "FAILED ($rc)")" "$((SECONDS - start))" >>"$STATUS"
    tail -n 3 "$OUT/$name.log"
}

two_processes() {  # two_processes STRATEGY OVERRIDES...: two ranks on GPU 0, each a "node" of one device
    local port=$((29500 + RANDOM % 1000)) pids=()
    for rank in 0 1; do
        MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=$rank NODE_RANK=$rank LOCAL_RANK=0 \
            $PY train.py "trainer=$1" trainer.devices=1 trainer.num_nodes=2 \
            +trainer.strategy.process_group_backend=gloo "hydra.run.dir=$OUT/runs/$1_two_processes" "${@:2}" &
        pids+=($!)
    done
    local rc=0
    for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
    return $rc
}
export -f two_processes
export PY OUT

FEW=(logger=csv trainer.max_steps=20 trainer.limit_val_batches=4 test=false data.batch_size=64
     data.num_workers=4 trainer.accelerator=gpu)

step cuda_tests 90 $PY -m pytest -q -p no:cacheprovider -m cuda tests
step bench 150 $PY benchmarks/bench.py --json "$OUT/bench.json" --loop-workers 4 8 --loop-steps 100
step ddp_two_processes 60 bash -c 'two_processes "$@"' _ ddp "${FEW[@]}"
step towers_two_processes 60 bash -c 'two_processes "$@"' _ towers "${FEW[@]}"
step prepared_200_steps 90 $PY benchmarks/gpu_prepared_run.py "$OUT"
step paper_recipe 70 $PY train.py experiment=paper logger=csv "trainer.max_steps=$PAPER_STEPS" test=false \
    data.num_workers=12 trainer.accelerator=gpu "hydra.run.dir=$OUT/runs/paper_recipe"
step paper_recipe_caffe_init 70 $PY train.py experiment=paper model.init=caffe logger=csv \
    "trainer.max_steps=$PAPER_STEPS" test=false data.num_workers=12 trainer.accelerator=gpu \
    "hydra.run.dir=$OUT/runs/paper_recipe_caffe_init"

$PY benchmarks/gpu_summary.py "$OUT" | tee "$OUT/summary.md"
