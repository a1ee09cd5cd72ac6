#!/usr/bin/env bash
# The GPU path end to end, on demand on a CUDA machine (not a test: CI has no GPU).
#
#     benchmarks/cuda_check.sh OUT_DIR [CACHE_DIR]
#
# 1. trains the default config's x0 run on the GPU for 2 epochs (bf16-mixed, fused AdamW, EMA on the device),
#    then runs the same command with 4 epochs, which must resume from last.ckpt (log.csv continues);
# 2. checks that model.pt loads with weights_only=True and samples two z-bins on the GPU;
# 3. runs benchmarks/train_throughput.py on CUDA (paper and small model; plain, channels_last, torch.compile).
# CACHE_DIR is a slice cache made with the default config (`snakemake results/cache/cache_meta.json`).
# DEVICE=cpu runs the same steps on the CPU (to check the script itself).
set -euo pipefail
out=${1:?usage: benchmarks/cuda_check.sh OUT_DIR [CACHE_DIR]}
cache=${2:-results/cache}
device=${DEVICE:-cuda}
run=x0_lp1.5_sc0.5
mkdir -p "$out"
export PYTHONUNBUFFERED=1
# A first probe with a deadline: a machine whose CUDA start-up hangs should say so, not eat the whole budget.
if ! timeout 120 python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"; then
    echo "cuda_check: 'import torch' and CUDA start-up did not finish within 120 s" >&2
    exit 1
fi

train() {
    python -m slimdiff.cli.train --cache "$cache" --out "$out/run" --config config/config.yaml --run $run \
        --device "$device" --max-epochs "$1"
}
start=$(date +%s)
train 2
echo "train 2 epochs: $(($(date +%s) - start)) s"
start=$(date +%s)
train 4
echo "resume to 4 epochs: $(($(date +%s) - start)) s"
cat "$out/run/log.csv"
python - "$out/run" <<'EOF'
import csv, sys
from slimdiff.training.export import load_denoiser
rows = list(csv.DictReader(open(f"{sys.argv[1]}/log.csv")))
epochs = [int(r["epoch"]) for r in rows]
assert epochs == list(range(4)), f"log.csv epochs {epochs}: resume left a gap"
net, diffusion, payload = load_denoiser(f"{sys.argv[1]}/model.pt")  # torch.load(weights_only=True) inside
print("model.pt:", {k: payload["provenance"][k] for k in ("epoch", "global_step", "device")})
EOF
start=$(date +%s)
python -m slimdiff.cli.generate --model "$out/run/model.pt" --out "$out/samples" --zbins 0,5 \
    --n-per-condition 16 --device "$device"
echo "generate 2 z-bins x 2 classes x 16: $(($(date +%s) - start)) s"
python benchmarks/train_throughput.py --device "$device" --out "$out/train_throughput.json" ${BENCH_ARGS:-}
