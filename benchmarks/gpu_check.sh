#!/usr/bin/env bash
# One prepared GPU check: it runs the CUDA tests and the GPU timings and writes a markdown card of the results.
# In two parts, each under 10 minutes on one GPU (one device call each):
#
#   bash benchmarks/gpu_check.sh                  # PART=speed: steps 1, 4, 5; card: benchmarks/gpu_card.md
#   PART=rest bash benchmarks/gpu_check.sh        # steps 2, 3, 6 (appended to the card with CARD_APPEND=1)
#   CARD=$OUT/gpu_card.md PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
#
# Steps (each under its own time limit, so one slow or failing step never eats the others' time):
#   1. raytrace CPU vs CUDA agreement and the other gpu-marked tests (pytest -m gpu);
#   2. the renderers on the GPU: raytrace (a quarter of the lens, extrapolated) vs render_layers at 1024x576;
#   3. the DataModule's throughput of 8-frame training pairs at 1024x576 (ground truth rendered on the GPU);
#   4. stage-1 training steps on the real SVD architecture (random weights) at 1024x576, bf16-mixed, with
#      gradient checkpointing: seconds per step and peak memory;
#   5. inference on a 100-frame clip: the real architecture and the authors' release architecture in bf16 at
#      576x1024, the old (two_pass) and the new (stream) schedule and the decode-once option side by side
#      (seconds per frame, per-part times, encoder/decoder passes per frame, peak memory, seams) and the
#      cost of the weighted overlap itself;
#   6. the learning benchmark (benchmarks/learning.py, experiment=learn_cpu) for a fixed time on the GPU, two
#      learning rates side by side: how many steps the targets need. Tables: $LEARN_OUT/lr-*/learning.md.
# Without a GPU it stops at once (CPU=1 runs the steps that work on the CPU, at small sizes, to check the script).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
CARD=${CARD:-benchmarks/gpu_card.md}
LEARN_OUT=${LEARN_OUT:-logs/learning_gpu}
LEARN_SECONDS=${LEARN_SECONDS:-180}
PART=${PART:-speed}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    if [ "${CPU:-0}" != 1 ]; then
        echo "gpu_check.sh: no CUDA device; set CPU=1 to run its CPU-safe steps at small sizes" >&2
        exit 2
    fi
    echo "gpu_check.sh: no CUDA device, running the CPU-safe steps at small sizes" >&2
fi

mkdir -p "$(dirname "$CARD")"
device=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU (smoke run)')")
{
    echo "# GPU check"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $device, $("$PYTHON" -c 'import torch; print("torch", torch.__version__)'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
} > "$CARD.head"
if [ "${CARD_APPEND:-0}" = 1 ] && [ -f "$CARD" ]; then cat "$CARD.head" >> "$CARD"; else mv "$CARD.head" "$CARD"; fi
rm -f "$CARD.head"

failures=0
# learn LR GATE_LR SECONDS STAGE3_STEPS [OVERRIDES...]: one learning-benchmark run into $LEARN_OUT/lr-LR,
# stage 1 stopped after SECONDS (Lightning's max_time), with every group at LR but the gates at GATE_LR
learn() {
    local lr=$1 gate_lr=$2 seconds=$3 stage3=$4
    shift 4
    "$PYTHON" benchmarks/learning.py "$@" "+trainer.max_time=$(printf '00:00:%02d:%02d' $((seconds / 60)) $((seconds % 60)))" \
        trainer.max_steps=100000 "module.optimizer.lr=$lr" "module.param_groups.new.lr=$lr" \
        "module.param_groups.gates.lr=$gate_lr" --stage3-steps "$stage3" --out "$LEARN_OUT/lr-$lr"
}
# both runs at once (the tiny model gives the GPU little work); their tables follow
learn_both() {
    learn 3e-4 3e-3 "$@" > "$LEARN_OUT/log-3e-4.txt" 2>&1 &
    local pid=$!
    learn 1e-3 1e-2 "$@" > "$LEARN_OUT/log-1e-3.txt" 2>&1
    local second=$?
    wait $pid
    local first=$?
    for lr in 3e-4 1e-3; do cat "$LEARN_OUT/lr-$lr/learning.md" 2>/dev/null || tail -n 20 "$LEARN_OUT/log-$lr.txt"; done
    return $(( first || second ))
}
export -f learn learn_both
export PYTHON LEARN_OUT LEARN_SECONDS
mkdir -p "$LEARN_OUT"
# step NAME LIMIT_SECONDS COMMAND...: runs the command, appends its status, time and output to the card
step() {
    local name=$1 limit=$2
    shift 2
    local log start status seconds
    log=$(mktemp)
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
    status=$?
    seconds=$(( $(date +%s) - start ))
    if [ $status -eq 0 ]; then result=ok; elif [ $status -eq 124 ] || [ $status -eq 137 ]; then result="timed out after ${limit} s"; else result="failed (exit $status)"; fi
    [ $status -eq 0 ] || failures=$((failures + 1))
    echo "[$result] $name (${seconds} s)" >&2
    {
        echo "## $name: $result, ${seconds} s"
        echo
        echo '`'"$*"'`'
        echo
        echo '```'
        # tables and summaries: the last lines, without progress bars and warnings
        grep -v -E 'it/s\]|s/it\]|Warning|warn\(|deprecated|available: |Tip: |eval mode|^\s*$' "$log" | tail -n 40
        echo '```'
        echo
    } >> "$CARD"
    rm -f "$log"
}

if [ "${CPU:-0}" = 1 ]; then
    step "gpu tests (skipped without CUDA)" 120 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/optics/test_raytrace.py tests/integration/test_pipeline.py
    step "training step (tiny model, CPU)" 600 "$PYTHON" benchmarks/train_step.py --tiny --device cpu --height 64 --width 64 --steps 3 --checkpointing all,deep
    step "inference (CPU)" 600 "$PYTHON" benchmarks/predict.py --device cpu --sections model,real,release,overlap --tiny-size 32x48 --frames 10
    step "learning benchmark (CPU, a few steps)" 300 bash -c 'learn_both 20 2 trainer.val_check_interval=4 data.val_size=2 data.test_size=2'
elif [ "$PART" = speed ]; then
    step "raytrace CPU vs CUDA and the other gpu tests" 60 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/optics/test_raytrace.py tests/integration/test_pipeline.py
    step "stage-1 training steps, real SVD architecture, each checkpointing level" 200 "$PYTHON" benchmarks/train_step.py --steps 4 --checkpointing all,deep,none
    step "inference on 100 frames: the real SVD architecture and the release's, in bf16" 290 "$PYTHON" benchmarks/predict.py --device cuda --sections real,release,overlap --frames 100 --repeats 1
else
    step "renderers at 1024x576" 60 "$PYTHON" benchmarks/render.py --device cuda --lens-fraction 0.25 --psnr-rows 64
    step "DataModule throughput at 1024x576" 75 "$PYTHON" benchmarks/synthesis.py --device cuda --skip-renderers --throughput-size 576x1024 --workers 4 --clips 8
    step "learning benchmark, ${LEARN_SECONDS} s of stage 1 per run" $(( LEARN_SECONDS + 150 )) bash -c \
        "learn_both $LEARN_SECONDS 0 hardware=gpu trainer.precision=32-true trainer.val_check_interval=250 data.num_workers=3"
fi

echo "$failures step(s) failed; card: $CARD" >&2
exit $(( failures > 0 ))
