#!/usr/bin/env bash
# Export parity of freshly trained students for the ONNX Runtime target, with and without --int32-bias.
# Every quantizer family at W4A4 and W8A8: a float teacher (3 epochs) and one SQAKD epoch per student on the
# embedded data, then `sqakd-edge export --int8 --target onnxruntime --no-parity-fail`; the table lists
# export's own parity (top-1 agreement with the PyTorch student, ORT optimisations off / on; thresholds 99.9 / 99).
# Usage: benchmarks/ort_parity_matrix.sh [WORK_DIR] [RESULTS_MD]   (~5 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
out=${2:-benchmarks/results/ort_parity_matrix.md}
cli=${SQAKD_EDGE:-.venv/bin/sqakd-edge}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$work"
[ -f "$work/teacher/best.pt" ] || "$cli" train --fp --data embedded --model resnet20 --epochs 3 --out "$work/teacher" >/dev/null 2>&1
rows=()
for family in "pact ste" "lsq ste" "dorefa ste" "interval ewgs"; do
  set -- $family
  for bits in 4 8; do
    for flag in "" "--int32-bias"; do
      run="$work/$1-$2-w${bits}${flag:+-int32}"
      "$cli" train --teacher "$work/teacher/best.pt" --data embedded --quantizer "$1" --backward "$2" \
        --wbits "$bits" --abits "$bits" --epochs 1 $flag --force --out "$run" >/dev/null 2>&1
      "$cli" export "$run/best.pt" --int8 --target onnxruntime --no-parity-fail --force --out "$run/export" >/dev/null 2>&1 || true  # a miss exits 1
      rows+=("$("$py" - "$run/export/manifest.json" "$1-$2" "W${bits}A${bits}" "${flag:-no}" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["parity"]["int8"]
off, on = m["off"], m["on"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {'yes' if sys.argv[4] != 'no' else 'no'} | {off['top1_agreement']:.2%} | "
      f"{on['top1_agreement']:.2%} | {off['mean_abs_dlogit']:.2g} / {on['mean_abs_dlogit']:.2g} | "
      f"{'pass' if m['passed'] else 'MISS'} |")
PY
)")
      echo "${rows[-1]}"
    done
  done
done
{
  echo "# Export parity for --target onnxruntime, with and without train --int32-bias"
  echo
  echo "Written $(date -u +%FT%TZ) by \`benchmarks/ort_parity_matrix.sh\` at $(git rev-parse --short HEAD) on $(uname -m), $(nproc) cores."
  echo "ResNet-20 on the embedded Fashion-MNIST subset: a 3-epoch float teacher, one SQAKD epoch per student (no labels), 256 parity inputs."
  echo
  echo "| student | bits | --int32-bias | top-1 agreement, ORT off | on | mean abs dlogit off / on | default parity |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$out"
echo "wrote $out"
