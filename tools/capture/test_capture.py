"""Tests of capture.py.

The window and token-file helpers need only Python. The capture tests need
torch and transformers and skip cleanly without them: they build a tiny
random LlamaForCausalLM (GQA, head_dim != hidden/heads) from a config, so no
weights are needed, capture some layers, and check the recorded q/k/v against
projections, RoPE and attention computed here independently in float64.

Run: python3 -m pytest tools/capture
"""

import inspect
import math
import os
import struct
import sys
from types import SimpleNamespace

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capture as cap  # noqa: E402

THETA = 10000.0
BOS = 100
REQUIRED_KEYS = {
    "format", "model", "text", "layer", "start_token", "n_tokens", "rope", "scale",
    "causal", "positions", "gqa_group", "bos", "source_file", "source_offset",
}


# ---------------------------------------------------------------------------
# Pure-Python helpers


def test_read_tokens(tmp_path):
    p = tmp_path / "t.u16"
    p.write_bytes(struct.pack("<4H", 0, 1, 258, 65535))
    assert cap.read_tokens(str(p)) == [0, 1, 258, 65535]
    p32 = tmp_path / "t.u32"
    p32.write_bytes(struct.pack("<2I", 70000, 3))
    assert cap.read_tokens(str(p32), "uint32") == [70000, 3]
    bad = tmp_path / "odd.u16"
    bad.write_bytes(b"\x01\x02\x03")
    with pytest.raises(cap.CaptureError, match="whole number"):
        cap.read_tokens(str(bad))


@pytest.mark.parametrize(
    "name, stream, starts, window, bos_id, text_offset, want",
    [
        # --bos prepends the id; --start is the first text token.
        ("bos", list(range(10, 30)), [0, 5], 4, 99, 0,
         [([99, 10, 11, 12], True, 0, 0), ([99, 15, 16, 17], True, 5, 5)]),
        # A window that already starts with the model's BOS: first text token is s+1.
        ("in-file bos", [99, 10, 11, 12, 13], [0], 3, None, 1999, [([99, 10, 11], True, 1, 2000)]),
        # No BOS at all.
        ("no bos", [5, 6, 7, 8], [1], 3, None, 0, [([6, 7, 8], False, 1, 1)]),
    ],
)
def test_make_windows(name, stream, starts, window, bos_id, text_offset, want):
    got = cap.make_windows(stream, starts, window, bos_id, 99, text_offset)
    assert [(w.ids, w.bos, w.source_offset, w.start_token) for w in got] == want, name


@pytest.mark.parametrize(
    "stream_len, starts, window, bos_id, match",
    [
        (10, [8], 4, 99, "only 10 tokens"),  # needs 8..10
        (10, [7], 4, None, "only 10 tokens"),  # needs 7..10
        (10, [-1], 4, None, ">= 0"),
        (10, [0], 1, None, "at least 2"),
    ],
)
def test_make_windows_errors(stream_len, starts, window, bos_id, match):
    with pytest.raises(cap.CaptureError, match=match):
        cap.make_windows(list(range(stream_len)), starts, window, bos_id, None)


def test_scale_string():
    assert cap.scale_string(1 / math.sqrt(128), 128) == "1/sqrt(128)"
    assert cap.scale_string(0.25, 128) == "0.25"


# ---------------------------------------------------------------------------
# Capture on a tiny random Llama


@pytest.fixture(scope="module")
def tt():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    return SimpleNamespace(torch=torch, transformers=transformers)


def config_theta(cfg):
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict) and "rope_theta" in rp:
        return rp["rope_theta"]
    return cfg.rope_theta


def tiny_llama(tt, layers=3):
    kw = dict(
        vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32,  # head_dim != 64/4
        max_position_embeddings=128, rms_norm_eps=1e-5, initializer_range=0.3,
        bos_token_id=BOS, eos_token_id=BOS, tie_word_embeddings=False,
    )
    params = inspect.signature(tt.transformers.LlamaConfig.__init__).parameters
    if "rope_parameters" in params:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": THETA}
    else:
        kw["rope_theta"] = THETA
    cfg = tt.transformers.LlamaConfig(**kw)
    assert config_theta(cfg) == THETA
    tt.torch.manual_seed(0)
    return tt.transformers.LlamaForCausalLM(cfg).eval()


def random_ids(tt, t, seed=1):
    g = tt.torch.Generator().manual_seed(seed)
    ids = tt.torch.randint(0, BOS, (1, t), generator=g)
    ids[0, 0] = BOS
    return ids


def test_capture_matches_independent_attention(tt):
    torch = tt.torch
    model = tiny_llama(tt)
    T, H, G, d = 40, 4, 2, 32
    ids = random_ids(tt, T)

    attn_in, o_in, hooks = {}, {}, []
    for i, layer in enumerate(model.model.layers):
        def pre_attn(mod, args, kwargs, i=i):
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            attn_in[i] = x.detach().clone()

        def pre_o(mod, args, i=i):
            o_in[i] = args[0].detach().clone()

        hooks.append(layer.self_attn.register_forward_pre_hook(pre_attn, with_kwargs=True))
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(pre_o))
    try:
        res = cap.capture(model, ids, [0, 2])
    finally:
        for h in hooks:
            h.remove()

    assert sorted(res.layers) == [0, 2]
    assert res.logit_max_diff == 0.0
    assert res.attention_calls == 3  # the capture pass, one call per layer

    pos = torch.arange(T, dtype=torch.float64)
    inv = 1.0 / THETA ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = pos[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x):  # rotate-half RoPE over the whole head, positions 0..T-1
        x1, x2 = x[..., : d // 2], x[..., d // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for layer in (0, 2):
        attn = model.model.layers[layer].self_attn
        x = attn_in[layer][0].double()  # [T, hidden], after input_layernorm

        def proj(lin, n):
            y = x @ lin.weight.double().T
            if lin.bias is not None:
                y = y + lin.bias.double()
            return y.view(T, n, d).transpose(0, 1)

        q, k, v = rope(proj(attn.q_proj, H)), rope(proj(attn.k_proj, G)), proj(attn.v_proj, G)
        lc = res.layers[layer]
        assert tuple(lc.q.shape) == (H, T, d) and tuple(lc.k.shape) == (G, T, d) and tuple(lc.v.shape) == (G, T, d)
        assert lc.scale == pytest.approx(1 / math.sqrt(d))
        torch.testing.assert_close(lc.q.double(), q, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(lc.k.double(), k, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(lc.v.double(), v, rtol=1e-4, atol=1e-4)

        # softmax(q k^T / sqrt(d)) v over the captured tensors, query head h on
        # KV head h // 2, equals the layer's attention output before o_proj.
        kr = lc.k.double().repeat_interleave(H // G, 0)
        vr = lc.v.double().repeat_interleave(H // G, 0)
        s = (lc.q.double() @ kr.transpose(1, 2) / math.sqrt(d)).masked_fill(~causal, float("-inf"))
        p = torch.softmax(s, -1)
        want = (p @ vr).transpose(0, 1).reshape(T, H * d)
        torch.testing.assert_close(o_in[layer][0].double(), want, rtol=1e-4, atol=1e-5)
        # The attention is far from uniform, so the check above can tell heads apart.
        assert float(p[:, -1].max()) > 5.0 / T
        assert lc.last_out_err < 1e-5


def test_write_capture_roundtrip(tt, tmp_path):
    torch = tt.torch
    from safetensors import safe_open

    model = tiny_llama(tt, layers=2)
    ids = random_ids(tt, 24)
    lc = cap.capture(model, ids, [1]).layers[1]
    w = cap.Window(ids[0].tolist(), True, 1, 2001)
    meta = cap.capture_metadata(lc, w, "tiny", "rand", "rand.u16", {"tool": "test"})
    path = tmp_path / "rand-L1.safetensors"
    cap.write_capture(str(path), lc, meta)
    assert not (tmp_path / "rand-L1.safetensors.tmp").exists()
    with safe_open(str(path), "pt") as f:
        md = f.metadata()
        assert REQUIRED_KEYS <= set(md)
        assert md["format"] == "qkv-capture/1"
        assert (md["layer"], md["n_tokens"], md["positions"], md["gqa_group"]) == ("1", "24", "0..23", "2")
        assert (md["scale"], md["rope"], md["causal"], md["bos"]) == ("1/sqrt(32)", "applied", "true", "true")
        assert (md["start_token"], md["source_offset"], md["source_file"]) == ("2001", "1", "rand.u16")
        assert md["tool"] == "test"
        for name, shape in (("q", (4, 24, 32)), ("k", (2, 24, 32)), ("v", (2, 24, 32))):
            t = f.get_tensor(name)
            assert t.dtype == torch.float16 and tuple(t.shape) == shape
            assert torch.equal(t, getattr(lc, name).half())


def test_main_end_to_end(tt, tmp_path):
    torch = tt.torch
    from safetensors import safe_open

    model = tiny_llama(tt, layers=2)
    mdir = tmp_path / "tiny-model"
    model.save_pretrained(str(mdir))
    stream = [(7 * i + 3) % BOS for i in range(60)]
    tok = tmp_path / "book.u16"
    tok.write_bytes(struct.pack(f"<{len(stream)}H", *stream))
    out = tmp_path / "out"
    rc = cap.main([
        "--model", str(mdir), "--tokens", str(tok), "--layers", "0,1", "--window", "32",
        "--start", "5,20", "--bos", str(BOS), "--out", str(out), "--device", "cpu", "--text-offset", "1000",
    ])
    assert rc == 0
    assert sorted(os.listdir(out)) == [f"book-s{s}-L{l}.safetensors" for s in (1005, 1020) for l in (0, 1)]

    def load(s, layer):
        with safe_open(str(out / f"book-s{s}-L{layer}.safetensors"), "pt") as f:
            return f.metadata(), f.get_tensor("v")

    m5, v5 = load(1005, 0)
    m20, v20 = load(1020, 0)
    assert (m5["start_token"], m5["source_offset"], m5["model"], m5["text"]) == ("1005", "5", "tiny-model", "book")
    assert m20["source_offset"] == "20" and m20["bos"] == "true"
    # Layer 0's values depend on each token alone (no RoPE on v), so the
    # overlap of the two windows (stream 20..35) holds the same rows: window
    # s=5 position j is stream[5+j-1], window s=20 position j is stream[20+j-1].
    torch.testing.assert_close(v5[:, 16:32].float(), v20[:, 1:17].float(), rtol=0, atol=2e-3)
    # And position 0 is the BOS in both.
    torch.testing.assert_close(v5[:, 0].float(), v20[:, 0].float(), rtol=0, atol=2e-3)
    assert not torch.allclose(v5[:, 1].float(), v20[:, 1].float())


def test_unsupported_models_fail_clearly(tt):
    torch, transformers = tt.torch, tt.transformers

    class NoInterface(torch.nn.Module):
        config = SimpleNamespace()

    with pytest.raises(cap.CaptureError, match="_attn_implementation"):
        cap.capture(NoInterface(), torch.zeros(1, 4, dtype=torch.long), [0])

    # Learned absolute positions: no RoPE to speak of.
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=50, n_positions=64)
    ).eval()
    with pytest.raises(cap.CaptureError, match="rotary"):
        cap.capture(gpt2, torch.zeros(1, 8, dtype=torch.long), [0])

    # A sliding window: not plain causal attention over the whole window.
    mistral = transformers.MistralForCausalLM(
        transformers.MistralConfig(
            vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
            max_position_embeddings=64,
        )
    ).eval()
    with pytest.raises(cap.CaptureError, match="sliding|causal|softmax"):
        cap.capture(mistral, torch.arange(24).remainder(50)[None], [1])

    llama = tiny_llama(tt, layers=2)
    with pytest.raises(cap.CaptureError, match="out of range"):
        cap.capture(llama, random_ids(tt, 8), [2])
    llama.train()
    with pytest.raises(cap.CaptureError, match="training mode"):
        cap.capture(llama, random_ids(tt, 8), [0])
