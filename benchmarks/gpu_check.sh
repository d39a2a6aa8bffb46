#!/usr/bin/env bash
# One short check of atso on a GPU (under 5 minutes). Installs nothing; needs atso installed with a
# CUDA build of torch. Run from the repository root:
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]        # default: $OUT, else ./gpu-check
#
# 1. CUDA is available (device name, bf16 support);
# 2. the throughput benchmark on the GPU with bf16 autocast and channels_last, with the data loaded
#    in the training process (num_workers 0) and by 12 loader processes;
# 3. the float16 path (gradient scaler), training only;
# 4. a 2-step smoke test of `atso demo --quick` on CUDA;
# 5. with 2 or more GPUs: the same demo under torchrun (DDP, NCCL) and with --devices (fold parallelism).
# Results: OUT_DIR/*.json and OUT_DIR/*.log; a PASS/FAIL line per step and a non-zero exit if any failed.
set -uo pipefail
out="${1:-${OUT:-gpu-check}}"
mkdir -p "$out"
failed=0

step() {  # step NAME SECONDS COMMAND...
    local name="$1" limit="$2"
    shift 2
    local started=$SECONDS
    if timeout "$limit" "$@" >"$out/$name.log" 2>&1; then
        echo "PASS $name ($((SECONDS - started))s)"
    else
        echo "FAIL $name (exit $?, $((SECONDS - started))s); last lines of $out/$name.log:"
        tail -n 15 "$out/$name.log" | sed 's/^/    /'
        failed=1
    fi
}

python - <<'PY' || { echo "FAIL cuda: torch.cuda.is_available() is False"; exit 1; }
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(1)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} x "
      f"{torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}")
PY
gpus=$(python -c "import torch; print(torch.cuda.device_count())")

step throughput-bf16 120 python benchmarks/throughput.py --device cuda --amp-dtype bfloat16 --channels-last \
    --size 256 320 --batch 16 --iterations 100 --label-images 256 --student-iterations 100 --skip memory \
    --out "$out/throughput-bf16.json"
step throughput-bf16-workers 45 python benchmarks/throughput.py --device cuda --amp-dtype bfloat16 --channels-last \
    --size 256 320 --batch 16 --iterations 100 --num-workers 12 --skip labeling memory folds \
    --out "$out/throughput-bf16-workers.json"
step throughput-fp16 40 python benchmarks/throughput.py --device cuda --amp-dtype float16 \
    --size 256 320 --batch 16 --iterations 40 --repeats 1 --skip labeling memory folds \
    --out "$out/throughput-fp16.json"
two_steps=(--set train.iterations=2 --set train.student_iterations=2 --set train.checkpoint_every=1)
step demo 75 atso demo --quick --quiet --force --out "$out/demo" --set runtime.device=cuda \
    --set runtime.channels_last=true "${two_steps[@]}"
if [ "$gpus" -ge 2 ]; then
    step demo-torchrun 90 torchrun --standalone --nproc_per_node 2 -m atso demo --quick --quiet --force \
        --out "$out/demo-ddp" --set runtime.device=cuda "${two_steps[@]}"
    step demo-devices 90 atso demo --quick --quiet --force --out "$out/demo-devices" \
        --set runtime.device=cuda --set "runtime.devices=[cuda:0,cuda:1]" "${two_steps[@]}"
fi

for file in "$out"/throughput-*.json; do
    [ -f "$file" ] && python -c "import json, sys; print(sys.argv[1]); print(json.load(open(sys.argv[1]))['table'])" "$file"
done
exit $failed
