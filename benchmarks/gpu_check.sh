#!/usr/bin/env bash
# Issue 29 item 7: the GPU runs, one prepared script (never needed for CI; run it where a CUDA GPU is at hand).
#
#   bash benchmarks/gpu_check.sh OUT_DIR [DATA_DIR]
#
# 1. char-gpt at nanoGPT's GPU character config (config/train_shakespeare_char.py: 6 layers, 6 heads, 384 dims,
#    block 256, batch 64, dropout 0.2, lr 1e-3 decaying to 1e-4 over 5,000 updates after 100 of warm-up, beta2 0.99,
#    gradient clipping at 1), on the KJV split of this project: 20 epochs x 250 updates. nanoGPT reports validation
#    loss 1.4697 after about 3 minutes on one A100 (on Shakespeare, a different text).
# 2. image-classification --preset fashion-mnist (airbench94's recipe; 94.0-94.3% over 3 seeds on 2 CPU cores).
# Both with mixed precision (bf16 autocast on CUDA: TrainConfig.amp, on by default) and torch.compile (--compile on).
#
# DATA_DIR (default: ./.data) holds kjv/kjv.tsv and kjv/manifest.json (as `deepnotes data build kjv` writes them under
# ~/.cache/deepnotes) and fashion-mnist/ with the four IDX .gz files (/usr/share/datasets/fashion-mnist). On a machine
# without this project installed (e.g. an image with its own torch), PYTHONPATH=src is used. Writes OUT_DIR/gpu.md
# (the GPU's name, torch, wall times, the two labs' numbers) and each run's folder under OUT_DIR/runs.
# DEVICE=cpu SMOKE=1 bash benchmarks/gpu_check.sh /tmp/gpu-smoke ~/.cache/deepnotes: a seconds-long check of the
# script itself on a CPU (one short epoch of each, DATA_DIR with kjv/ and fashion-mnist/).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR [DATA_DIR]}
data=$(realpath -m "${2:-.data}")
mkdir -p "$out/runs"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 DEEPNOTES_DATA="$data"
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
if [ "$device" = cuda ]; then
  $py -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))" \
    | tee "$out/device.txt"
else
  $py -c "import torch, platform; print(torch.__version__, platform.processor() or platform.machine())" | tee "$out/device.txt"
fi
smoke_gpt=() smoke_img=()
if [ "${SMOKE:-0}" = 1 ]; then
  smoke_gpt=(--epochs 1 --steps-per-epoch 3 --limit-chars 100000 --eval-windows 8 --n-layers 1 --compile off)
  smoke_img=(--epochs 1 --limit-train 2048 --limit-test 500 --compile off)
fi
timed() {  # name, then the command: its output to $out/<name>.log, its wall time in seconds to $out/<name>.time
  local name=$1 start=$SECONDS; shift
  "$@" 2>&1 | tee "$out/$name.log"
  echo $((SECONDS - start)) > "$out/$name.time"
}
timed char-gpt $py -m deepnotes run char-gpt --device "$device" --no-progress --out "$out/runs" --compile on \
  --n-layers 6 --n-heads 6 --d-model 384 --block-size 256 --batch-size 64 --dropout 0.2 --epochs 20 \
  --steps-per-epoch 250 --lr 1e-3 --min-lr 1e-4 --warmup 0.02 --beta2 0.99 --grad-clip 1.0 ${smoke_gpt[@]+"${smoke_gpt[@]}"}
timed fashion-mnist $py -m deepnotes run image-classification --preset fashion-mnist --device "$device" --no-progress \
  --out "$out/runs" --compile on --data-dir "$data/fashion-mnist" ${smoke_img[@]+"${smoke_img[@]}"}
{
  echo "# GPU runs (benchmarks/gpu_check.sh), $(date -u +%Y-%m-%d)"
  echo; echo "device: $(cat "$out/device.txt")"; echo
  echo "| lab | result | wall time of the whole command |"; echo "|---|---|---|"
  echo "| char-gpt, nanoGPT's GPU character config | $(grep -h 'validation loss' "$out/char-gpt.log" | tail -1) | $(cat "$out/char-gpt.time") s |"
  echo "| image-classification --preset fashion-mnist | $(grep -h 'test accuracy' "$out/fashion-mnist.log" | tail -1) | $(cat "$out/fashion-mnist.time") s |"
} > "$out/gpu.md"
cat "$out/gpu.md"
