#!/usr/bin/env python3
"""Compare the tensors of safetensors files, element by element.

    compare.py REF.safetensors GOT.safetensors [GOT2.safetensors ...]

Every tensor of REF is looked up by name in the GOT files (a capture may be
split over several files) and compared: number of elements, how many differ,
the largest absolute difference, and the largest difference in float16/bfloat16
units in the last place. Metadata keys that differ are listed too.

Pure Python (no numpy or torch needed); exits 1 when a tensor is missing or
shapes or dtypes differ, 0 otherwise (differences in values are reported, not
judged: judge them against the precision you expect).
"""

from __future__ import annotations

import json
import struct
import sys
from array import array

_FMT = {"F16": ("e", "H"), "BF16": (None, "H"), "F32": ("f", "I")}


def read_header(path: str) -> tuple[dict, int]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def raw(path: str, start: int, info: dict) -> bytes:
    a, b = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + a)
        return f.read(b - a)


def decode(dtype: str, data: bytes, idx: list[int]) -> list[float]:
    """Values at the given element indices."""
    if dtype == "BF16":
        return [struct.unpack("<f", b"\x00\x00" + data[2 * i : 2 * i + 2])[0] for i in idx]
    size = 2 if dtype == "F16" else 4
    code = _FMT[dtype][0]
    return [struct.unpack("<" + code, data[size * i : size * (i + 1)])[0] for i in idx]


def ordered(bits: int, width: int) -> int:
    """Maps float bits to integers whose difference counts units in the last place."""
    sign = 1 << (width - 1)
    return -(bits & (sign - 1)) if bits & sign else bits


def compare(ref_path: str, got_paths: list[str], out=sys.stdout) -> bool:
    ref, ref_start = read_header(ref_path)
    got = {}
    for p in got_paths:
        h, s = read_header(p)
        for name, info in h.items():
            if name != "__metadata__":
                got[name] = (p, s, info)
        gm = h.get("__metadata__", {})
        rm = ref.get("__metadata__", {})
        diffs = sorted(k for k in set(gm) | set(rm) if gm.get(k) != rm.get(k))
        if diffs:
            print(f"{p}: metadata differs from {ref_path} in: " + ", ".join(
                f"{k}={gm.get(k)!r} (ref {rm.get(k)!r})" for k in diffs), file=out)
    ok = True
    for name, info in sorted(ref.items()):
        if name == "__metadata__":
            continue
        if name not in got:
            print(f"{name}: missing from {got_paths}", file=out)
            ok = False
            continue
        gp, gs, ginfo = got[name]
        if ginfo["shape"] != info["shape"] or ginfo["dtype"] != info["dtype"]:
            print(f"{name}: {ginfo['dtype']}{ginfo['shape']} in {gp}, ref {info['dtype']}{info['shape']}", file=out)
            ok = False
            continue
        dtype = info["dtype"]
        if dtype not in _FMT:
            print(f"{name}: dtype {dtype} not supported", file=out)
            ok = False
            continue
        a, b = array(_FMT[dtype][1]), array(_FMT[dtype][1])
        ra, rb = raw(ref_path, ref_start, info), raw(gp, gs, ginfo)
        a.frombytes(ra)
        b.frombytes(rb)
        if sys.byteorder != "little":
            a.byteswap()
            b.byteswap()
        n = len(a)
        if a == b:
            print(f"{name} {info['shape']} {dtype}: {n} elements, 0 differ (bitwise identical)", file=out)
            continue
        idx = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        va, vb = decode(dtype, ra, idx), decode(dtype, rb, idx)
        width = 8 * a.itemsize
        maxabs = max(abs(x - y) for x, y in zip(va, vb))
        maxulp = max(abs(ordered(a[i], width) - ordered(b[i], width)) for i in idx)
        print(
            f"{name} {info['shape']} {dtype}: {n} elements, {len(idx)} differ ({len(idx) / n:.2e}), "
            f"max abs diff {maxabs:.3g}, max {maxulp} ulp",
            file=out,
        )
    return ok


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    return 0 if compare(argv[0], argv[1:]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
