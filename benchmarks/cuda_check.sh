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
# DEVICE=cpu runs the same steps on the CPU (to check the script itself); BENCH_ARGS go to train_throughput.py.
# At the paper's geometry: CONFIG=config/pilot.yaml RUN=epsilon_lp2.0_sc0.8@table1 with the pilot's split view
# as CACHE_DIR (results/pilot/results/splits/table1, after `make pilot` or its cache rules): the 26.9 M-parameter
# model at 160x160 in the config's precision (bf16-mixed), one optimiser step per epoch.
#
# OUT_DIR gets three files: cuda_check.log (everything printed, so a run cut short still tells how far it
# got), log.csv of the training, train_throughput.json. The run and samples go to WORK_DIR (default: a
# temporary folder).
# Each stage has a deadline; a stage that hangs is stopped with SIGABRT, on which Python's faulthandler prints
# the stack of every thread: the log then says where it hung (an import, CUDA start-up, a kernel, a loader).
set -euo pipefail
out=${1:?usage: benchmarks/cuda_check.sh OUT_DIR [CACHE_DIR]}
cache=${2:-results/cache}
device=${DEVICE:-cuda}
run=${RUN:-x0_lp1.5_sc0.5}
config=${CONFIG:-config/config.yaml}
work=${WORK_DIR:-$(mktemp -d)}
mkdir -p "$out" "$work"
exec > >(tee -a "$out/cuda_check.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1

t0=$(date +%s)
# stage SECONDS NAME COMMAND...: run with a deadline, print its wall time, stop the script if it fails.
stage() {
    local limit=$1 name=$2 start rc=0
    shift 2
    echo "== $name (deadline ${limit} s, $(($(date +%s) - t0)) s into the check)"
    start=$(date +%s)
    timeout -s ABRT -k 15 "$limit" "$@" || rc=$?
    echo "== $name: exit $rc after $(($(date +%s) - start)) s"
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 124 ] || [ "$rc" -eq 134 ] && echo "cuda_check: '$name' did not finish within $limit s" >&2
        exit "$rc"
    fi
}

if [ "$device" = cuda ]; then
    stage 30 nvidia-smi nvidia-smi
fi
# Import and CUDA start-up apart, so a machine whose start-up hangs says which of the two, in a minute or two.
stage 90 "import torch" python -c "import time; t = time.time(); import torch
print('torch', torch.__version__, 'imported in %.1f s' % (time.time() - t))"
stage 90 "CUDA start-up" python -c "import time, torch; t = time.time(); ok = torch.cuda.is_available()
print('cuda', ok, torch.cuda.get_device_name(0) if ok else '', 'in %.1f s' % (time.time() - t))"
stage 90 "import slimdiff" python -c "import time; t = time.time(); import monai, lightning, slimdiff.cli.train
print('monai', monai.__version__, 'lightning', lightning.__version__, 'imported in %.1f s' % (time.time() - t))"

train=(python -m slimdiff.cli.train --cache "$cache" --out "$work/run" --config "$config" --run "$run"
    --device "$device")
stage 300 "train 2 epochs" "${train[@]}" --max-epochs 2
stage 300 "resume to 4 epochs" "${train[@]}" --max-epochs 4
cp "$work/run/log.csv" "$out/log.csv" && cat "$out/log.csv"
cat > "$work/check_run.py" <<'EOF'
import csv, sys
from slimdiff.model.file import load_denoiser
rows = list(csv.DictReader(open(f"{sys.argv[1]}/log.csv")))
epochs = [int(r["epoch"]) for r in rows]
assert epochs == list(range(4)), f"log.csv epochs {epochs}: resume left a gap"
net, diffusion, payload = load_denoiser(f"{sys.argv[1]}/model.pt")  # torch.load(weights_only=True) inside
print("model.pt:", {k: payload["provenance"][k] for k in ("epoch", "global_step", "device", "precision")})
EOF
stage 60 "check log.csv and model.pt" python "$work/check_run.py" "$work/run"
stage 120 "generate 2 z-bins x 2 classes x 16" python -m slimdiff.cli.generate --model "$work/run/model.pt" \
    --out "$work/samples" --zbins 0,5 --n-per-condition 16 --device "$device"
# shellcheck disable=SC2086
stage 480 "train_throughput" python benchmarks/train_throughput.py --device "$device" \
    --out "$out/train_throughput.json" ${BENCH_ARGS:-}
echo "cuda_check: all stages passed in $(($(date +%s) - t0)) s"
