#!/usr/bin/env bash
# The GPU path in one run (issue 15 item 5), about 8 minutes on one data-centre GPU; every figure lands as JSON.
#
#   bash benchmarks/gpu_suite.sh [OUT]          # on a machine with a CUDA GPU and a CUDA build of torch
#   bash benchmarks/gpu_suite.sh --cpu-check    # the same steps at toy sizes on CPU: checks the script itself
#
# 1. machine.json         GPU name, driver, torch / CUDA versions
# 2. train_step.json      method.step images/s, batch 16 + 16 (paper 000's SBI batch) in bf16 autocast +
#                         channels_last, for EfficientNet-B4 @380 with SAM (paper 000), ResNet-50 @256 and
#                         Xception @299 (SGD, one pass); then the same without bf16 / channels_last (what they buy),
#                         then torch.compile for B4 and ResNet-50 (does it help)
# 3. loader_feed.json     training pairs/s of the real input path (stored PNG -> SBI pseudo-fake -> 380 px batch)
#                         with K = 0, 4, 8, 16 workers, compared with the step's images/s: does the loader keep the
#                         GPU fed. Store: $UNMASK_STORE (a prepared store with train reals), else one prepared here
#                         from the embedded astronaut clip (unmask demo's video; no dataset needed)
# 4. train_cuda.log       a real `unmask train` on CUDA (bf16 AMP, channels_last, 4 loader workers, validation,
#                         checkpoints):
#                         the loop's CUDA path end to end
# Each step has its own time limit, so one slow step cannot eat the others; a failed step is recorded and the
# suite goes on. Python: $PYTHON, else .venv/bin/python, else python3 (it must have a CUDA torch).
set -uo pipefail
cd "$(dirname "$0")/.."
CPU=0
if [[ "${1:-}" == "--cpu-check" ]]; then CPU=1; shift; fi
OUT="${1:-benchmarks/results/gpu_suite_$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
STATUS="$OUT/steps.txt"
: > "$STATUS"
step() {  # step NAME SECONDS CMD...: run with a limit, record "NAME rc seconds"
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$STATUS"
}

if [[ $CPU == 1 ]]; then
  # toy sizes, one small model, no compile (inductor's C++ build takes minutes on a small CPU): checks the script
  DEV=cpu; B=2; STEPS=1; MODELS=(resnet50@32:sgd); COMPILE_MODELS=(); WORKERS=(0 2); BATCHES=2; LSIZE=128
  TRAIN_SIZE=64; TRAIN_BACKBONE=tf_efficientnet_lite0; NW=2; TRAIN_LIMIT=400
else
  DEV=cuda; B=16; STEPS=10; MODELS=(efficientnet_b4@380:sam resnet50@256:sgd xception@299:sgd)
  COMPILE_MODELS=(efficientnet_b4@380:sam resnet50@256:sgd); WORKERS=(0 4 8 16); BATCHES=20; LSIZE=380
  TRAIN_SIZE=380; TRAIN_BACKBONE=efficientnet_b4; NW=4; TRAIN_LIMIT=150
fi

# 1. the machine
step machine 60 "$PY" - "$OUT/machine.json" "$DEV" <<'EOF'
import json, os, platform, subprocess, sys
import torch
dev = sys.argv[2]
if dev == "cuda" and not torch.cuda.is_available():
    sys.exit(f"no CUDA device visible to torch {torch.__version__} (a CPU build?): nothing to measure")
info = {"host": platform.node(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if dev == "cuda" else None,
        "gpu": torch.cuda.get_device_name(0) if dev == "cuda" else None,
        "bf16": torch.cuda.is_bf16_supported() if dev == "cuda" else None, "device": dev}
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                         "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    info["nvidia_smi"] = None
open(sys.argv[1], "w").write(json.dumps(info, indent=1) + "\n")
print(json.dumps(info))
EOF
if ! grep -q "^machine rc=0" "$STATUS"; then echo "no usable device; see above"; exit 1; fi

# 2. train step: bf16 + channels_last (the training setting), then plain fp32 NCHW, then torch.compile
TS="$OUT/train_step.json"
step step_bf16_nhwc 240 "$PY" benchmarks/train_step.py --device "$DEV" --methods sbi --batch "$B" --steps "$STEPS" \
  --amp bf16 --channels-last --models "${MODELS[@]}" --json "$TS"
step step_fp32 150 "$PY" benchmarks/train_step.py --device "$DEV" --methods sbi --batch "$B" --steps "$STEPS" \
  --amp none --models "${MODELS[@]}" --json "$TS"
if (( ${#COMPILE_MODELS[@]} )); then
  step step_compile 200 "$PY" benchmarks/train_step.py --device "$DEV" --methods sbi --batch "$B" --steps "$STEPS" \
    --amp bf16 --channels-last --compile --warmup 3 --models "${COMPILE_MODELS[@]}" --json "$TS"
fi

# 3. the data loader, on the real input path
STORE="${UNMASK_STORE:-}"
if [[ -z "$STORE" ]]; then
  STORE="$OUT/astronaut_store"
  step store 120 "$PY" - "$OUT/astronaut_data" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from skimage.data import astronaut
from unmask.commands.demo import write_clip
root = Path(sys.argv[1])
write_clip(np.ascontiguousarray(astronaut()), root / "train" / "real" / "astronaut_pan.mp4", seconds=8.0)
write_clip(np.ascontiguousarray(astronaut()), root / "val" / "real" / "astronaut_val.mp4", seconds=2.0, phase=0.37)
EOF
  step prepare 120 "$PY" -m unmask.cli prepare generic "$OUT/astronaut_data" --out "$STORE" --frames 64 --no-progress \
    --workers "$(nproc)"
fi
STEP_RATES="$OUT/train_step_bf16_only.json"
"$PY" - "$TS" "$STEP_RATES" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])) if __import__("os").path.exists(sys.argv[1]) else {"rows": []}
rows = [r for r in d.get("rows", []) if r.get("amp") == "bf16" and r.get("channels_last") and not r.get("compile")]
json.dump({"rows": rows}, open(sys.argv[2], "w"))
EOF
step loader 150 "$PY" benchmarks/loader_feed.py --store "$STORE" --device "$DEV" --workers "${WORKERS[@]}" \
  --batches "$BATCHES" --json "$OUT/loader_feed.json" --train-step-json "$STEP_RATES" batch_size="$B" \
  model.input_size="$LSIZE" data.dataset=generic

# 4. the training loop on the device: bf16 AMP, loader workers, validation, checkpoints, resume-ready last.pt
step train_loop "$TRAIN_LIMIT" "$PY" -m unmask.cli train --config configs/tiny/sbi.yaml --out "$OUT/train_run" \
  "data.store=$STORE" data.dataset=generic "device=$DEV" amp=true channels_last=true "model.backbone=$TRAIN_BACKBONE" model.pretrained=null \
  "model.input_size=$TRAIN_SIZE" "batch_size=$B" epochs=2 steps_per_epoch=5 "data.num_workers=$NW" run.progress=false \
  run.tensorboard=false > "$OUT/train_cuda.log" 2>&1
tail -n 5 "$OUT/train_cuda.log"

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {"steps": [ln.split() for ln in (out / "steps.txt").read_text().splitlines()]}
for name in ("machine", "train_step", "loader_feed"):
    p = out / f"{name}.json"
    summary[name] = json.loads(p.read_text()) if p.is_file() else None
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
for r in (summary["train_step"] or {}).get("rows", []):
    print(f"{r['backbone']}@{r['size']} {r['optim']:<4} amp {r.get('amp')} nhwc {bool(r.get('channels_last'))} "
          f"compile {r.get('compile')}: {r['img_s']:.1f} img/s, step {r['step_s_median'] * 1000:.1f} ms, "
          f"peak {r.get('peak_mem_mb', r.get('peak_rss_mb', 0)):.0f} MB")
for v in (summary["loader_feed"] or {}).get("verdicts", []):
    print(f"loader: {v['loader_img_s']:.0f} img/s with {v['workers']} workers vs {v['backbone']}@{v['size']} "
          f"{v['step_img_s']:.0f} img/s: {'keeps up' if v['keeps_up'] else 'GPU waits on data'}")
print(f"wrote {out}/summary.json")
EOF
