#!/usr/bin/env bash
# Everything that needs an accelerator, in at most 8 minutes, its tables and logs under one folder.
#
#   bash tools/device_check.sh [OUT]        (OUT default: device-check/; $OUT/device-check when $OUT is set)
#
# 1. the card (nvidia-smi) and torch's view of it                              -> card.txt
# 2. pytest -m cuda: mixed precision vs float32, compiled / channels_last vs eager, device expansion bit for
#    bit, a resumed run bit-exact, no step that synchronises, DDP over NCCL under torchrun  -> pytest.log
# 3. tools/gpu_bench.py, eager: 64x6, 128x10, 256x20 and an attention body bt-256x8 at float32, bf16, fp16,
#    channels_last off and on
#                                                                              -> bench-eager.txt / .json
# 4. tools/gpu_bench.py, 128x10 compiled (bf16, fp16, channels_last), the live teacher against its cache,
#    host reads, and the loader (shards and gzip chunks, 2 workers) against that training rate
#                                                                              -> bench-compiled.txt / .json
# 5. summary.md: the tables, each step's exit status and time.
# Each step has its own time limit (the sum stays under 8 minutes); a step that fails or runs out of time is
# recorded and the next one runs.
set -u
cd "$(dirname "$0")/.."
out="${1:-${OUT:+$OUT/device-check}}"
out="${out:-device-check}"
mkdir -p "$out"
python="${PYTHON:-python}"
summary="$out/summary.md"
: > "$summary"

step() {  # step NAME LIMIT_SECONDS LOG COMMAND...
    local name="$1" limit="$2" log="$3"
    shift 3
    local started=$SECONDS
    timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$log" 2>&1
    local status=$?
    local took=$((SECONDS - started))
    local verdict="ok"
    [ "$status" -eq 124 ] && verdict="ran out of time (${limit} s)"
    [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && verdict="failed (exit $status)"
    echo "- $name: $verdict, ${took} s (log: $(basename "$log"))" >> "$summary"
    echo "device_check: $name: $verdict, ${took} s" >&2
}

{
    echo "# device check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
} >> "$summary"
step "card" 30 "$out/card.txt" bash -c "nvidia-smi; $python -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0))'"
step "pytest -m cuda" 140 "$out/pytest.log" "$python" -m pytest -m cuda tests/cuda -q -p no:randomly -rs
step "gpu_bench eager" 140 "$out/bench-eager.txt" "$python" tools/gpu_bench.py --parts train \
    --sizes 64x6,128x10,256x20,bt-256x8 --precisions float32,bf16,fp16 --compile off --channels-last off,on \
    --steps 20 --warmup 2 --repeat 2 --row-seconds 1.5 --json "$out/bench-eager.json"
step "gpu_bench compiled + teacher + loader" 170 "$out/bench-compiled.txt" "$python" tools/gpu_bench.py \
    --sizes 128x10 --precisions bf16,fp16 --compile on --channels-last on --steps 20 --warmup 2 --repeat 2 \
    --row-seconds 1.5 --loader-seconds 8 --json "$out/bench-compiled.json"
{
    echo
    for table in bench-eager bench-compiled; do
        echo "## $table"
        echo
        echo '```'
        grep -v '^gpu_bench: ' "$out/$table.txt" 2>/dev/null | tail -n 40
        echo '```'
        echo
    done
    echo "## pytest -m cuda"
    echo
    echo '```'
    tail -n 15 "$out/pytest.log" 2>/dev/null
    echo '```'
} >> "$summary"
cat "$summary"
