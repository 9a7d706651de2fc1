"""torch.topk over float32 [32, N], k = N/32, timed as the peer script
does (CUDA events, median of 60 calls after 10 warm-up calls, inputs
rotated over several sets so small N does not sit in L2), for the oracle
top-k comparison of issue 7. Usage: python3 topk_peer.py N [N...]"""
import statistics
import sys

import torch


def main():
    dev = torch.device("cuda")
    print("| N | torch.topk f32 [32, N], k = N/32 (us) |")
    print("|---:|---:|")
    for n in [int(a) for a in sys.argv[1:]]:
        sets = max(2, (256 << 20) // (32 * n * 4))
        xs = [torch.randn(32, n, device=dev) for _ in range(min(sets, 16))]
        k = n // 32
        for i in range(10):
            torch.topk(xs[i % len(xs)], k, dim=1)
        times = []
        for i in range(60):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            x = xs[i % len(xs)]
            a.record()
            torch.topk(x, k, dim=1)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1000)
        print(f"| {n} | {statistics.median(times):.1f} |")


if __name__ == "__main__":
    main()
