#!/usr/bin/env bash
# Every GPU check and timing in one device call, for a session that is lent a GPU:
#   run(command="bash bench/gpu_check.sh", carry=[".gpudata"], timeout_s=420)
# where .gpudata/input.txt is a copy of ../shared/data/tinyshakespeare/input.txt (that folder
# does not travel; put `/.gpudata/` in .git/info/exclude). Uses the machine's own python3
# and torch (nothing can be installed there); the package runs from src/ on PYTHONPATH.
# Results land in $OUT (or /tmp/gpu_out): card.txt, tests.log, bilateral_gpu.json,
# lm_gpu.json, slots_profile.json. Record the card and figures in bench/RESULTS.md.
# Ran on an NVIDIA H200 on 2026-11-26: 214 s of command time (plus about a minute to start).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/gpu_out}"
mkdir -p "$OUT"
LM_ITERS="${LM_ITERS:-600}"  # nanoGPT's setting is 5000: far more than one device call holds

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/card.txt"
python3 -c "import torch, cv2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'opencv', cv2.__version__)" | tee -a "$OUT/card.txt"

echo "== 1. the same numbers on CUDA as on the CPU (and the CPU suites of the core)"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_primitive.py \
  tests/test_model.py tests/test_filters.py -k "not cli" 2>&1 | tee "$OUT/tests.log" | tail -5

echo "== 2. bilateral filter: ours on the GPU vs OpenCV on this machine's CPU, same uint8 image"
timeout 120 python3 - "$OUT/bilateral_gpu.json" <<'PY'
import json, sys, time
import cv2, numpy as np, torch
from skimage import data
from assocmem.filters import TILE, bilateral

def wall(f, n):
    """Best wall time of n calls, each synchronised (the GPU runs asynchronously)."""
    best, out = float("inf"), None
    for _ in range(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = f()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, out

res = []
threads = cv2.getNumThreads()
for name in ("camera", "astronaut", "coffee"):
    img = getattr(data, name)()
    x = torch.from_numpy(img).cuda()
    row = {"name": name}
    for tile in (TILE, 8, 16):
        bilateral(x, 5, 25.0, 3.0, tile=tile)  # warm-up (kernels, caches)
        t, y = wall(lambda: bilateral(x, 5, 25.0, 3.0, tile=tile), 10)
        row[f"time_gpu_s_tile_{tile if isinstance(tile, int) else 'x'.join(map(str, tile))}"] = t
    row["time_gpu_s"] = min(v for k, v in row.items() if k.startswith("time_gpu_s_tile"))
    cv2.setNumThreads(1)
    row["time_opencv_cpu_1thread_s"], ref = wall(lambda: cv2.bilateralFilter(img, 11, 25.0, 3.0), 10)
    cv2.setNumThreads(threads)
    row["time_opencv_cpu_allthreads_s"], _ = wall(lambda: cv2.bilateralFilter(img, 11, 25.0, 3.0), 10)
    row["opencv_threads"] = threads
    row["speedup_vs_opencv_1thread"] = row["time_opencv_cpu_1thread_s"] / row["time_gpu_s"]
    row["speedup_vs_opencv_allthreads"] = row["time_opencv_cpu_allthreads_s"] / row["time_gpu_s"]
    mse = np.mean((y.cpu().numpy().astype(float) - ref.astype(float)) ** 2)
    row["psnr_opencv"] = float(10 * np.log10(255**2 / mse)) if mse else float("inf")
    res.append(row)
    print(json.dumps(row))
json.dump({"card": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "opencv": cv2.__version__, "images": res}, open(sys.argv[1], "w"), indent=1)
PY

echo "== 3. where MemLM's and GPT's training steps spend GPU time; the slot read's forms"
timeout 90 python3 -W ignore bench/gpu_slots_profile.py --json "$OUT/slots_profile.json" 2>&1 \
  | grep -E "slot read|train step"

echo "== 4. MemLM vs GPT, nanoGPT's shakespeare-char GPU model, $LM_ITERS iterations"
if [ -f .gpudata/input.txt ] && [ ! -f ../shared/data/tinyshakespeare/input.txt ]; then
  mkdir -p ../shared/data/tinyshakespeare && cp .gpudata/input.txt ../shared/data/tinyshakespeare/
fi
timeout 200 python3 bench/lm_vs_gpt.py --preset gpu --iters "$LM_ITERS" --eval-iters 50 \
  --speed-rounds 3 --threads 0 --quiet --out-dir /tmp/lm_runs --json "$OUT/lm_gpu.json" 2>&1 | tail -20
