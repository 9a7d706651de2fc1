#!/bin/bash
# One device call on the H200 machine: GPU tests, hbench gpu, the bench
# experiments and the PyTorch peer, all in the same run. Expects the
# cross-compiled binaries in .gpubin/ (see docs/gpu-notes.md) and $OUT.
# Usage: gpu/scripts/h200.sh [bench files...]
# Env: BIN (binaries folder, default .gpubin: gpu.test, hbench, and
# optionally gpueval.test, runner.test, peer_decode.py), TEST_SKIP (a
# -test.skip pattern for gpu.test), QUALITY (experiment files to run with
# "hbench run --device gpu"), SKIP_PEER, AB/AB_FILE, TEST_TUNING.
set -o pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/hbench-out}
BIN=${BIN:-.gpubin}
mkdir -p "$OUT/results"
export HBENCH_CUBIN_CACHE=/tmp/hbench-cubin
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.limit,temperature.gpu --format=csv
  ls /usr/local/cuda/lib64/libnvrtc* 2>&1 | head -3
  timeout 60 $BIN/hbench gpu
} 2>&1 | tee "$OUT/env.txt"
(cd gpu && timeout 300 ../$BIN/gpu.test -test.v -test.timeout 290s ${TEST_SKIP:+-test.skip "$TEST_SKIP"}) > "$OUT/gpu-test.log" 2>&1
echo "gpu tests rc=$?"
if [ -x $BIN/gpueval.test ]; then
  (cd gpueval && timeout 120 ../$BIN/gpueval.test -test.v) > "$OUT/gpueval-test.log" 2>&1
  echo "gpueval tests rc=$?"; grep -E "^(--- |ok|FAIL|PASS)" "$OUT/gpueval-test.log" | head -30
fi
if [ -x $BIN/runner.test ]; then
  (cd runner && timeout 120 ../$BIN/runner.test -test.v -test.run TestDevice) > "$OUT/runner-test.log" 2>&1
  echo "runner device tests rc=$?"; grep -E "^(--- |ok|FAIL|PASS)" "$OUT/runner-test.log" | head -10
fi
if [ -n "$TEST_TUNING" ]; then  # the kernel tests again under another HBENCH_DECODE tuning
  (cd gpu && HBENCH_DECODE="$TEST_TUNING" timeout 120 ../$BIN/gpu.test -test.v -test.run 'TestDecode|TestHash') > "$OUT/gpu-test-tuned.tmp" 2>&1
  echo "gpu tests ($TEST_TUNING) rc=$?"
  { echo "== HBENCH_DECODE=$TEST_TUNING"; cat "$OUT/gpu-test-tuned.tmp"; } >> "$OUT/gpu-test.log"; rm -f "$OUT/gpu-test-tuned.tmp"
fi
grep -E "^(--- |ok|FAIL|PASS)|rel err|differ" "$OUT/gpu-test.log" | cut -c1-200 | head -60
for f in "${@:-experiments/bench-decode.yaml}"; do
  timeout 240 $BIN/hbench bench --out "$OUT/results" --run-id h200 --commit "${HBENCH_COMMIT:-}" "$f" >> "$OUT/bench.txt" 2>&1
  echo "bench $f rc=$?"
done
# AB="threads=256,tile=4;threads=128,tile=2,minb=4": one extra run of
# $AB_FILE (default experiments/bench-dense-ab.yaml) per HBENCH_DECODE tuning.
IFS=';' read -ra tunings <<< "${AB:-}"
for t in "${tunings[@]}"; do
  HBENCH_DECODE="$t" timeout 120 $BIN/hbench bench --out "$OUT/results" --run-id "ab-${t//[=,]/-}" --commit "${HBENCH_COMMIT:-}" "${AB_FILE:-experiments/bench-dense-ab.yaml}" > "$OUT/ab.tmp" 2>&1
  echo "bench A/B $t rc=$?"
  { echo "== HBENCH_DECODE=$t"; cat "$OUT/ab.tmp"; } >> "$OUT/ab.txt"
  grep -aE "^(dense|sparse|hash).*N=(131072|1048576) .*cold graph=(true|false)" "$OUT/ab.tmp" | grep -av "select\|qcode" | sed "s/^/[$t] /" | cut -c1-150
done
rm -f "$OUT/ab.tmp"
for q in ${QUALITY:-}; do
  TIMEFORMAT="quality $q wall %R s"
  time (timeout 120 $BIN/hbench run --device gpu --out "$OUT/results" --no-report "$q" > "$OUT/quality.log" 2>&1; echo "quality $q rc=$?")
  tail -5 "$OUT/quality.log"
done
(cd "$OUT" && tar czf results.tgz results && rm -rf results)
if [ -z "$SKIP_PEER" ]; then
  PYTHONUNBUFFERED=1 timeout 200 python3 $BIN/peer_decode.py "$OUT/peer.md" > "$OUT/peer.log" 2>&1
  echo "peer rc=$?"
  # torch.topk over [32, N] float32, k = N/32: the oracle top-k's peer.
  [ -n "$SKIP_TOPK_PEER" ] || timeout 60 python3 gpu/scripts/topk_peer.py 16384 32768 131072 1048576 > "$OUT/topk-peer.md" 2>&1
  echo "topk peer rc=$?"
fi
grep -vE "^\S+\s+\S+\s+N=" "$OUT/bench.txt" | cut -c1-170 | tail -80
grep -A8 "^| N " "$OUT/peer.md" 2>/dev/null
