#!/usr/bin/env python3
"""Capture the attention inputs of a Hugging Face causal LM as qkv-capture/1 files.

For each requested layer and token window this writes one safetensors file with

    q [heads, T, d]     query states, after RoPE
    k [kv_heads, T, d]  key states, after RoPE, before GQA repetition (repeat_kv)
    v [kv_heads, T, d]  value states, before GQA repetition

and the metadata of the qkv-capture/1 format (see the hbench data README).

How it captures: it registers an attention function with transformers'
AttentionInterface (and the matching mask function with AttentionMaskInterface)
that records q/k/v of the requested layers and then calls the library's own
"sdpa" attention function, so the model code is used unchanged and no T x T
attention matrix is built (sdpa with is_causal; memory-efficient kernel in
float32). The model is switched to that attention function only for the
capture pass. Before writing anything it checks

  * that the logits of the capture pass equal those of a pass with the stock
    "sdpa" attention (max abs difference <= --logit-tol, default 0);
  * for the last query of every captured layer, that softmax(q k^T * scale) v
    recomputed from the recorded tensors equals the output the model's
    attention returned (so the attention really is plain causal softmax
    attention over exactly these q, k, v);
  * that the model is of a supported kind: it routes attention through
    config._attn_implementation, applies rotary embeddings (RoPE) over the
    whole head before attention, and uses a plain causal mask (no sliding
    window, ALiBi bias, logit soft-capping or attention sinks).

It fails with a CaptureError that says what is unsupported otherwise.

Usage:
    capture.py --model DIR (--text FILE | --tokens FILE) --layers 1,4,7 \
        [--window 8192] [--start 2000[,20000...]] [--bos ID] --out DIR

Requires: pip install torch transformers safetensors
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "qkv-capture/1"
ATTN_NAME = "hbench_capture"


class CaptureError(Exception):
    """A model, input or check that the capture tool cannot accept."""


# ---------------------------------------------------------------------------
# Token windows (no torch needed)


@dataclass
class Window:
    """One window of token ids to feed as a sequence of its own."""

    ids: list[int]  # the T ids fed at positions 0..T-1
    bos: bool  # position 0 holds the BOS token
    source_offset: int  # offset in the token stream of the first *text* token
    start_token: int  # the same, plus --text-offset (position in the original text)


def read_tokens(path: str, dtype: str = "uint16") -> list[int]:
    """Reads little-endian unsigned token ids (uint16 or uint32) from path."""
    code = {"uint16": "H", "uint32": "I"}.get(dtype)
    if code is None:
        raise CaptureError(f"--tokens-dtype {dtype!r}: want uint16 or uint32")
    data = Path(path).read_bytes()
    a = array(code)
    if len(data) % a.itemsize:
        raise CaptureError(f"{path}: {len(data)} bytes is not a whole number of {dtype} token ids")
    a.frombytes(data)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tolist()


def make_windows(
    stream: list[int],
    starts: list[int],
    window: int,
    bos_id: int | None,
    model_bos_id: int | None,
    text_offset: int = 0,
) -> list[Window]:
    """Cuts windows of `window` ids out of the token stream.

    With bos_id, each window is [bos_id] + stream[s : s+window-1], and s is the
    window's first text token. Without it, the window is stream[s : s+window];
    it counts as starting with a BOS when its first id is the model's
    bos_token_id (then the first text token is s+1).
    """
    if window < 2:
        raise CaptureError(f"--window {window}: want at least 2 tokens")
    out = []
    for s in starts:
        if s < 0:
            raise CaptureError(f"--start {s}: must be >= 0")
        n = window - 1 if bos_id is not None else window
        if s + n > len(stream):
            raise CaptureError(
                f"--start {s} --window {window}: the window needs tokens {s}..{s + n - 1}, "
                f"but the input has only {len(stream)} tokens"
            )
        if bos_id is not None:
            out.append(Window([bos_id] + stream[s : s + n], True, s, s + text_offset))
        else:
            ids = stream[s : s + n]
            has_bos = model_bos_id is not None and ids[0] == model_bos_id
            first = s + 1 if has_bos else s
            out.append(Window(ids, has_bos, first, first + text_offset))
    return out


def parse_int_list(s: str, flag: str) -> list[int]:
    try:
        out = [int(x) for x in s.split(",") if x.strip() != ""]
    except ValueError:
        raise CaptureError(f"{flag} {s!r}: want comma-separated integers") from None
    if not out:
        raise CaptureError(f"{flag}: give at least one value")
    return out


def scale_string(scale: float, d: int) -> str:
    """The format's scale string: '1/sqrt(d)' when scale is 1/sqrt(d), else the number."""
    if math.isclose(scale, 1 / math.sqrt(d), rel_tol=1e-6):
        return f"1/sqrt({d})"
    return repr(float(scale))


# ---------------------------------------------------------------------------
# Capture (torch and transformers imported lazily so the helpers above work
# without them)


@dataclass
class LayerCapture:
    """The attention inputs of one layer, float32, batch dimension dropped."""

    layer: int
    q: object  # torch.Tensor [heads, T, d]
    k: object  # torch.Tensor [kv_heads, T, d]
    v: object  # torch.Tensor [kv_heads, T, d]
    scale: float
    last_out_err: float = 0.0  # max abs diff of the recomputed last-query output


@dataclass
class CaptureResult:
    layers: dict[int, LayerCapture] = field(default_factory=dict)
    logit_max_diff: float = 0.0
    logit_max_abs: float = 0.0
    attention_calls: int = 0


def _supported_model_checks(model) -> None:
    """Raises CaptureError for models whose attention this tool cannot record faithfully."""
    import torch

    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "_attn_implementation"):
        raise CaptureError(
            f"{type(model).__name__}: no config._attn_implementation; the model does not select its "
            "attention through transformers' AttentionInterface, so it cannot be captured"
        )
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    prf = getattr(text_cfg, "partial_rotary_factor", 1.0)
    if prf is not None and float(prf) != 1.0:
        raise CaptureError(
            f"partial_rotary_factor={prf}: RoPE covers only part of each head; only Llama-style "
            "rotary over the whole head is supported"
        )
    rope = getattr(text_cfg, "rope_parameters", None) or getattr(text_cfg, "rope_scaling", None) or {}
    if isinstance(rope, dict) and rope.get("partial_rotary_factor", 1.0) not in (None, 1.0):
        raise CaptureError(f"rope partial_rotary_factor={rope['partial_rotary_factor']}: not supported")
    if not any("Rotary" in type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.Module)):
        raise CaptureError(
            f"{type(model).__name__} has no rotary embedding module: qkv-capture/1 stores q and k after "
            "RoPE, and models with absolute, learned or ALiBi positions are not supported"
        )
    for name in ("attn_logit_softcapping", "attn_logit_softcap"):
        if getattr(text_cfg, name, None):
            raise CaptureError(f"{name}={getattr(text_cfg, name)}: soft-capped attention logits are not supported")


def _check_mask(mask, t: int, layer: int) -> None:
    """Accepts no mask, or a mask equivalent to plain causal over t keys."""
    import torch

    if mask is None:
        return
    m = mask
    while m.dim() > 2:
        if m.shape[0] != 1:
            m = m[:1]
        m = m[0]
    if m.shape[-2:] != (t, t):
        raise CaptureError(f"layer {layer}: attention mask of shape {tuple(mask.shape)}, want a causal [{t}, {t}] mask")
    causal = torch.ones(t, t, dtype=torch.bool, device=m.device).tril()
    allowed = m if m.dtype == torch.bool else (m == 0)
    if not torch.equal(allowed, causal):
        raise CaptureError(f"layer {layer}: the attention mask is not plain causal (sliding window, padding or bias)")
    if m.dtype != torch.bool and not bool((m[~causal] < -1e4).all()):
        raise CaptureError(f"layer {layer}: the attention mask carries a bias, not a plain causal mask")


def _make_attention_fn(result: CaptureResult, wanted: set[int]):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def capture_attention(module, query, key, value, attention_mask, *args, **kwargs):
        import torch

        result.attention_calls += 1
        layer = getattr(module, "layer_idx", None)
        if layer is None:
            raise CaptureError(f"{type(module).__name__} has no layer_idx; cannot tell which layer is called")
        out = sdpa(module, query, key, value, attention_mask, *args, **kwargs)
        if layer not in wanted:
            return out
        for bad in ("sliding_window", "softcap", "s_aux", "sinks"):
            val = kwargs.get(bad)
            if val is not None and not (bad == "sliding_window" and val >= query.shape[2]):
                raise CaptureError(f"layer {layer}: attention called with {bad}={val!r}; only plain causal attention is supported")
        if kwargs.get("is_causal") is False:
            raise CaptureError(f"layer {layer}: attention called with is_causal=False")
        if args or kwargs.get("dropout", 0.0):
            raise CaptureError(f"layer {layer}: attention dropout is on; put the model in eval mode")
        if query.shape[0] != 1:
            raise CaptureError(f"layer {layer}: batch of {query.shape[0]}; the capture feeds one sequence")
        b, h, t, d = query.shape
        g = key.shape[1]
        if key.shape != (b, g, t, d) or value.shape[:3] != (b, g, t) or h % g != 0:
            raise CaptureError(
                f"layer {layer}: q {tuple(query.shape)}, k {tuple(key.shape)}, v {tuple(value.shape)}: "
                "want q [1, heads, T, d] and k, v [1, kv_heads, T, d] with heads a multiple of kv_heads"
            )
        _check_mask(attention_mask, t, layer)
        scaling = kwargs.get("scaling")
        scale = float(scaling) if scaling is not None else 1 / math.sqrt(d)
        lc = LayerCapture(
            layer,
            query[0].detach().float().clone(),
            key[0].detach().float().clone(),
            value[0].detach().float().clone(),
            scale,
        )
        # The model's own output for the last query, [heads, d_v], against a
        # float64 recomputation from the recorded tensors.
        got = out[0][0, -1].detach().double()
        qd, kd, vd = lc.q[:, -1].double(), lc.k.double(), lc.v.double()
        rep = h // g
        p = torch.softmax(torch.einsum("hd,htd->ht", qd, kd.repeat_interleave(rep, 0)) * scale, dim=-1)
        want = torch.einsum("ht,htd->hd", p, vd.repeat_interleave(rep, 0))
        lc.last_out_err = float((got - want).abs().max())
        tol = 1e-4 * max(1.0, float(want.abs().max()))
        if lc.last_out_err > tol:
            raise CaptureError(
                f"layer {layer}: the model's attention output for the last query differs from "
                f"softmax(q k^T * {scale:.6g}) v by {lc.last_out_err:.3g} (> {tol:.3g}); the attention is not "
                "plain causal softmax attention over the recorded q, k, v"
            )
        result.layers[layer] = lc
        return out

    return capture_attention


def _register(result: CaptureResult, wanted: set[int]) -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, _make_attention_fn(result, wanted))
    try:
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError:  # older transformers: masks are not chosen by name
        return
    AttentionMaskInterface.register(ATTN_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def _set_attn(model, name: str) -> None:
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name
    if model.config._attn_implementation != name:
        raise CaptureError(f"could not switch the model's attention to {name!r}")


def capture(model, input_ids, layers: list[int], logit_tol: float = 0.0) -> CaptureResult:
    """Runs the model on input_ids [1, T] twice, with the stock sdpa attention
    and with the capturing one, and returns the recorded q/k/v (float32) of
    the given layers. Raises CaptureError when a check fails."""
    import torch

    _supported_model_checks(model)
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n_layers = getattr(cfg, "num_hidden_layers", None)
    for layer in layers:
        if layer < 0 or (n_layers is not None and layer >= n_layers):
            raise CaptureError(f"--layers: layer {layer} out of range 0..{(n_layers or 1) - 1}")
    if model.training:
        raise CaptureError("the model is in training mode; call model.eval()")
    result = CaptureResult()
    _register(result, set(layers))
    original = model.config._attn_implementation
    with torch.no_grad():
        _set_attn(model, "sdpa")
        stock = model(input_ids=input_ids, use_cache=False).logits
        try:
            _set_attn(model, ATTN_NAME)
            captured = model(input_ids=input_ids, use_cache=False).logits
        finally:
            _set_attn(model, original or "sdpa")
        result.logit_max_diff = float((captured.float() - stock.float()).abs().max())
        result.logit_max_abs = float(stock.float().abs().max())
        del stock, captured
    missing = sorted(set(layers) - set(result.layers))
    if result.attention_calls == 0:
        raise CaptureError(
            f"{type(model).__name__} never called the attention function set in config._attn_implementation; "
            "it does not use transformers' AttentionInterface"
        )
    if missing:
        raise CaptureError(f"layers {missing} were never captured ({result.attention_calls} attention calls seen)")
    if not result.logit_max_diff <= logit_tol:
        raise CaptureError(
            f"the capturing attention changed the logits: max abs diff {result.logit_max_diff:.3g} > --logit-tol {logit_tol}"
        )
    return result


def capture_metadata(
    lc: LayerCapture, w: Window, model_name: str, text_name: str, source_file: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The qkv-capture/1 metadata of one layer's capture over window w."""
    h, t, d = lc.q.shape
    g = lc.k.shape[0]
    meta = {
        "format": FORMAT,
        "model": model_name,
        "text": text_name,
        "layer": str(lc.layer),
        "start_token": str(w.start_token),
        "n_tokens": str(t),
        "rope": "applied",
        "scale": scale_string(lc.scale, d),
        "causal": "true",
        "positions": f"0..{t - 1}",
        "gqa_group": str(h // g),
        "bos": "true" if w.bos else "false",
        "source_file": source_file,
        "source_offset": str(w.source_offset),
    }
    if extra:
        for k, v in extra.items():
            meta.setdefault(k, v)
    return meta


def write_capture(path: str, lc: LayerCapture, meta: dict[str, str], dtype: str = "float16") -> None:
    """Writes one qkv-capture/1 file atomically (temporary file, then rename)."""
    import torch
    from safetensors.torch import save_file

    td = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(dtype)
    if td is None:
        raise CaptureError(f"--dtype {dtype!r}: want float16, bfloat16 or float32")
    tensors = {name: getattr(lc, name).to(td).contiguous().cpu() for name in ("q", "k", "v")}
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Command line


def load_model(model_dir: str, device: str):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    except TypeError:  # transformers < 4.56 spells it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="sdpa")
    return model.to(device).eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="capture.py",
        description="Write qkv-capture/1 files (post-RoPE q, k and v per KV head) from a Hugging Face causal LM.",
    )
    ap.add_argument("--model", required=True, help="model directory (Hugging Face format)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text file, tokenized with the model's tokenizer (no special tokens)")
    src.add_argument("--tokens", help="file of little-endian token ids (see --tokens-dtype)")
    ap.add_argument("--tokens-dtype", default="uint16", choices=["uint16", "uint32"], help="id width of --tokens")
    ap.add_argument("--layers", required=True, help="comma-separated 0-based layer indices, e.g. 1,4,7")
    ap.add_argument("--window", type=int, default=8192, help="tokens per window, BOS included (default 8192)")
    ap.add_argument("--start", default="0", help="comma-separated token offsets of the windows (default 0)")
    ap.add_argument(
        "--bos",
        type=int,
        default=None,
        help="prepend this token id at position 0 of every window (then --start is the first text token); "
        "without it the window is fed as it is in the input",
    )
    ap.add_argument("--text-offset", type=int, default=0, help="added to start_token: where the input begins in the original text")
    ap.add_argument("--name", help="text name for metadata and file names (default: input file stem)")
    ap.add_argument("--model-name", help="model name for metadata (default: model directory name)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"], help="stored dtype (default float16)")
    ap.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    ap.add_argument("--logit-tol", type=float, default=0.0, help="largest allowed logit change from the capture hook (default 0)")
    a = ap.parse_args(argv)

    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"capture.py: {e}; install with: pip install torch transformers safetensors", file=sys.stderr)
        return 2
    try:
        layers = sorted(set(parse_int_list(a.layers, "--layers")))
        starts = parse_int_list(a.start, "--start")
        device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch.set_float32_matmul_precision("highest")  # no TF32: the pass runs in true float32
        model = load_model(a.model, device)
        cfg = model.config
        if a.text:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(a.model)
            stream = tok(Path(a.text).read_text(encoding="utf-8"), add_special_tokens=False, verbose=False)["input_ids"]
            source = a.text
        else:
            stream = read_tokens(a.tokens, a.tokens_dtype)
            source = a.tokens
        vocab = getattr(cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg, "vocab_size", None)
        if vocab is not None and stream and max(stream) >= vocab:
            raise CaptureError(f"{source}: token id {max(stream)} >= the model's vocab_size {vocab}")
        windows = make_windows(stream, starts, a.window, a.bos, getattr(cfg, "bos_token_id", None), a.text_offset)
        if a.bos is None and not all(w.bos for w in windows):
            print(
                f"capture.py: note: the window does not start with the model's BOS ({getattr(cfg, 'bos_token_id', None)}); "
                "pretrained models usually see one at position 0 (pass --bos ID)",
                file=sys.stderr,
            )
        name = a.name or Path(source).stem
        model_name = a.model_name or Path(a.model.rstrip("/")).name
        extra = {
            "tool": "hbench tools/capture/capture.py",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "compute_dtype": "float32",
        }
        os.makedirs(a.out, exist_ok=True)
        for w in windows:
            ids = torch.tensor([w.ids], dtype=torch.long, device=device)
            res = capture(model, ids, layers, a.logit_tol)
            print(
                f"window start {w.start_token}: {len(w.ids)} tokens, logits max abs diff with stock attention "
                f"{res.logit_max_diff:.3g} (max |logit| {res.logit_max_abs:.3g})"
            )
            for layer in layers:
                lc = res.layers[layer]
                stem = f"{name}-L{layer}" if len(windows) == 1 else f"{name}-s{w.start_token}-L{layer}"
                path = os.path.join(a.out, stem + ".safetensors")
                write_capture(path, lc, capture_metadata(lc, w, model_name, name, Path(source).name, extra), a.dtype)
                print(
                    f"{path}: q {list(lc.q.shape)} k {list(lc.k.shape)} v {list(lc.v.shape)}, "
                    f"last-query output check {lc.last_out_err:.2g}"
                )
            del res
    except CaptureError as e:
        print(f"capture.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
