#!/usr/bin/env bash
# One short run on a lent NVIDIA machine (see the device tool): checks what only a GPU can show.
#   1. training on CUDA with AMP: a float teacher, then an SQAKD student with the EWGS backward
#      (Hessian-vector products on the GPU), from the CLI, on the embedded data;
#   2. export of the CUDA-trained student (checkpoints are device-independent);
#   3. seconds per training step on the GPU, SQAKD vs FP32 (benchmarks/train_step.py);
#   4. the device program's CUDA layer (scripts/gpu-check-device-program.py).
# Writes its logs and JSON under $OUT (or ./gpu-check-out).
set -u -o pipefail
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PY:-python3}
status=0
run() { echo "== $*"; "$@" || { echo "FAILED: $*"; status=1; }; }
exec > >(tee "$OUT/gpu_check.log") 2>&1
nvidia-smi -L
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))'
run $PY -m sqakd_edge train --fp --data embedded --out /tmp/gpu/teacher --epochs 2 --batch-size 256 --no-progress --force
run $PY -m sqakd_edge train --teacher /tmp/gpu/teacher/best.pt --data embedded --out /tmp/gpu/student \
      --quantizer lsq --backward ewgs --wbits 4 --abits 4 --epochs 2 --batch-size 256 --no-progress --force
if $PY -m sqakd_edge export --help >/dev/null 2>&1; then
    run $PY -m sqakd_edge export /tmp/gpu/student/best.pt --int8 --out /tmp/gpu/export --force
    cp /tmp/gpu/export/manifest.json "$OUT/export_manifest.json" 2>/dev/null
fi
run $PY benchmarks/train_step.py --steps 30 --warmup 5 --out "$OUT/train_step_gpu.json"
run $PY scripts/gpu-check-device-program.py
exit $status
