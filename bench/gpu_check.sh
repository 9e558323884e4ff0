#!/usr/bin/env bash
# Every GPU check and timing in one device call, for a session that is lent a GPU:
#   run(command="bash bench/gpu_check.sh", timeout_s=560)
# Uses the machine's own python3 and torch (nothing can be installed there); the package
# runs from src/ on PYTHONPATH. Results land in $OUT (or /tmp/gpu_out): card.txt, the test
# log, bilateral_gpu.json, lm_gpu.json. Record the card and figures in bench/RESULTS.md.
# Not yet run on a GPU: the first session that has one should expect to fix small things.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/gpu_out}"
mkdir -p "$OUT"
LM_ITERS="${LM_ITERS:-5000}"  # nanoGPT's shakespeare-char GPU setting; lower it if time is short

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/card.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/card.txt"

echo "== 1. the same numbers on CUDA as on the CPU"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_primitive.py tests/test_model.py 2>&1 | tee "$OUT/tests.log" | tail -5

echo "== 2. bilateral filter: ours on the GPU vs OpenCV on the CPU, same image"
timeout 120 python3 - "$OUT/bilateral_gpu.json" <<'PY'
import json, sys, time
import cv2, numpy as np, torch
from skimage import data
from assocmem.filters import bilateral
res = []
for name in ("camera", "astronaut", "coffee"):
    img = getattr(data, name)()
    x = torch.from_numpy(img).cuda()
    for _ in range(3):
        bilateral(x, 5, 25.0, 3.0)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        y = bilateral(x, 5, 25.0, 3.0)
    torch.cuda.synchronize()
    ours = (time.perf_counter() - t) / 10
    t = time.perf_counter()
    for _ in range(10):
        ref = cv2.bilateralFilter(img, 11, 25.0, 3.0)
    cv = (time.perf_counter() - t) / 10
    mse = np.mean((y.cpu().numpy().astype(float) - ref.astype(float)) ** 2)
    res.append({"name": name, "time_gpu_s": ours, "time_opencv_cpu_s": cv, "speedup": cv / ours,
                "psnr_opencv": float(10 * np.log10(255**2 / mse)) if mse else float("inf")})
    print(res[-1])
json.dump({"card": torch.cuda.get_device_name(0), "images": res}, open(sys.argv[1], "w"), indent=1)
PY

echo "== 3. MemLM vs GPT, nanoGPT's shakespeare-char GPU setting"
timeout 420 python3 bench/lm_vs_gpt.py --preset gpu --iters "$LM_ITERS" --threads 0 --quiet --json "$OUT/lm_gpu.json" 2>&1 | tail -20
