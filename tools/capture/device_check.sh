#!/bin/bash
# Reproduces the numbers in tools/capture/RESULTS.md on a machine with
# PyTorch and transformers (the H200 device machine), from the repository root.
#
# Expects the tinyllama-austen model split over two git-ignored folders (the
# device tool carries at most 64 MiB a call):
#   .gpudata1/  model-00001-of-00003.safetensors, config.json, generation_config.json,
#               model.safetensors.index.json and the tokenizer files
#   .gpudata2/  model-00002/3-of-00003.safetensors, persuasion-window.u16,
#               persuasion-window.txt, persuasion.u16 (all from ../shared/data)
# Writes the window's captures to $OUT split in two files per layer (q+k, v),
# each under the tool's 16 MiB per-file limit; compare them with the shared
# captures here with tools/capture/compare.py.
set -u
M=/tmp/tinyllama-austen
OUT=${OUT:-/tmp/out}
if [ ! -f .gpudata1/model-00001-of-00003.safetensors ] || [ ! -f .gpudata2/model-00002-of-00003.safetensors ]; then
	echo "device_check.sh: model shards missing: need .gpudata1 and .gpudata2 (see the comment at the top)" >&2
	exit 1
fi
mkdir -p "$M" "$OUT"
ln -sf "$PWD"/.gpudata1/* "$PWD"/.gpudata2/model-0000*.safetensors "$M"/
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import sys, torch, transformers, safetensors; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| transformers', transformers.__version__, '| safetensors', getattr(safetensors, '__version__', '?'))"
export PYTHONUNBUFFERED=1
echo "== pytest tools/capture"
python3 -m pytest -q -p no:cacheprovider tools/capture 2>&1 | tail -25
echo "== capture the Persuasion window, three ways"
M=$M python3 - <<'EOF'
import os, sys, time
import torch
sys.path.insert(0, "tools/capture")
import capture as c

m = os.environ["M"]
common = ["--model", m, "--layers", "1,4,7", "--window", "8192", "--name", "persuasion", "--model-name", "tinyllama-austen"]
runs = {
    # the window file already starts with the BOS; its first text token is token 2000 of the book
    "window": ["--tokens", ".gpudata2/persuasion-window.u16", "--start", "0", "--text-offset", "1999", "--out", "/tmp/cap-window"],
    "book": ["--tokens", ".gpudata2/persuasion.u16", "--bos", "50256", "--start", "2000", "--out", "/tmp/cap-book"],
    "text": ["--text", ".gpudata2/persuasion-window.txt", "--bos", "50256", "--start", "0", "--text-offset", "2000", "--out", "/tmp/cap-text"],
}
print("mem-efficient sdpa enabled:", torch.backends.cuda.mem_efficient_sdp_enabled())
for name, args in runs.items():
    torch.cuda.reset_peak_memory_stats()
    t = time.time()
    rc = c.main(common + args)
    print(f"run {name}: rc {rc}, {time.time() - t:.1f} s, peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
EOF
echo "== the three runs against each other"
for L in 1 4 7; do
	python3 tools/capture/compare.py /tmp/cap-window/persuasion-L$L.safetensors /tmp/cap-book/persuasion-L$L.safetensors
	[ -f /tmp/cap-text/persuasion-L$L.safetensors ] && python3 tools/capture/compare.py /tmp/cap-book/persuasion-L$L.safetensors /tmp/cap-text/persuasion-L$L.safetensors
done
python3 - <<'EOF'
import os
from safetensors import safe_open
from safetensors.torch import save_file

out = os.environ.get("OUT", "/tmp/out")
for layer in (1, 4, 7):
    with safe_open(f"/tmp/cap-window/persuasion-L{layer}.safetensors", "pt") as f:
        md, t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file({"q": t["q"], "k": t["k"]}, f"{out}/persuasion-L{layer}.qk.safetensors", metadata=md)
    save_file({"v": t["v"]}, f"{out}/persuasion-L{layer}.v.safetensors", metadata=md)
print("split files written to", out)
EOF
