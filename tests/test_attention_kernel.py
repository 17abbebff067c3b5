"""`attention.decode_attention` (split-KV decode attention) against SDPA: every candidate configuration under
Triton's interpreter (TRITON_INTERPRET=1 with triton installed) or on a CUDA device, on the masks a ragged,
left-padded batch gives; and the engine's greedy output through it."""

import os

import pytest
import torch
import torch.nn.functional as F

from specdraft.engine import attention
from specdraft.engine import tuner as tuning

needs_triton = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                                  reason="the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def engine_mask(T: int, group: int, kv_len: int, starts: list[int], pads: list[int]) -> torch.Tensor:
    """The additive mask [B, 1, T * group, kv_len] `Decoder.forward` builds for rows whose T tokens sit at
    columns starts[b].. and whose sequences begin at column pads[b]: each query sees the columns up to its
    own from pads[b] on, and always its own (a query in the left padding sees only itself)."""
    from specdraft.engine.decoder import attention_mask

    columns = torch.tensor(starts)[:, None] + torch.arange(T)  # [B, T]
    return attention_mask(columns, torch.tensor(pads), kv_len, group, torch.float32)


def test_splits_cover_every_key_block_once():
    for config in attention.ATTENTION_CANDIDATES:
        for kv_len in (1, 31, 64, 256, 300, 512, 2048):
            splits, per_split = attention.attention_splits(config, kv_len)
            blocks = -(-kv_len // config.block_n)
            assert 1 <= splits <= config.splits and (splits - 1) * per_split < blocks <= splits * per_split
            # The tuner keeps the effective split count: it must run as the configuration it came from.
            assert attention.attention_splits(config._replace(splits=splits), kv_len) == (splits, per_split)
    # 300 keys in 5 blocks of 64: two splits of 3 and 2 blocks, three of 2, 2 and 1; the test below runs them.
    assert attention.attention_splits(attention.AttentionConfig(64, 2, 4, 2), 300) == (2, 3)
    assert attention.attention_splits(attention.AttentionConfig(64, 4, 4, 2), 300) == (3, 2)
    assert [c.splits for c in attention.attention_candidates_for(256)] == [1, 2, 4, 8, 2]  # duplicates dropped


def test_tuner_keeps_the_fastest_candidate_or_sdpa(monkeypatch):
    """The tuner's choice with the GPU's timing replaced by a table: the fastest configuration that runs;
    SDPA where it is faster or where none runs (failures saying why); never inside a graph capture."""
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    tuner = tuning.KernelTuner(interpreting=False, time_ms=lambda run, device: run())  # run() returns its "ms"
    candidates = attention.attention_candidates_for(512)
    fast, broken = candidates[3], candidates[1]

    def run(config):
        if config == broken:
            raise RuntimeError("out of shared memory")
        return 0.5 if config == fast else 2.0

    assert tuner.fastest(("k", 1), candidates, run, lambda: 1.0, torch.device("cpu")) == fast
    assert tuner.fastest(("k", 2), candidates, run, lambda: 0.4, torch.device("cpu")) is tuning.REFERENCE
    assert tuner.failures == {}

    def nothing_compiles(config):
        raise RuntimeError("no such GPU")

    assert tuner.fastest(("k", 3), candidates, nothing_compiles, lambda: 1.0, torch.device("cpu")) is None
    assert "no such GPU" in tuner.failures[("k", 3)]
    assert tuning.KernelTuner().failures == {}  # a fresh tuner shares nothing
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="graph capture"):  # choosing, stored or tuned, is never captured
        tuner.choose(("k", 4), attention.AttentionConfig, run, lambda: fast)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("kv_len", [256, 300, 512], ids=["kv256", "kv300", "kv512"])  # 300: a cache length, no multiple of any block size
@pytest.mark.parametrize("head_dim", [8, 32, 64, 128], ids=["hd8", "hd32", "hd64", "hd128"])  # 8, 32: the tests' models
@pytest.mark.parametrize("tokens,group", [(1, 1), (1, 5), (1, 7), (6, 5), (16, 7)],
                         ids=["R1", "R5", "R7", "R30", "R112"])
@pytest.mark.parametrize("config", range(len(attention.ATTENTION_CANDIDATES)), ids=lambda i: f"config{i}")
def test_decode_attention_equals_sdpa(config, tokens, group, head_dim, kv_len, dtype, monkeypatch):
    """Each candidate configuration (one split or several, splits that do and do not divide the key blocks)
    against SDPA in float64, for R = tokens * group query rows of three ragged rows: the longest ending at
    kv_len, one left-padded (its first columns masked) and ending earlier, one short whose first queries are
    left padding (each sees only its own column, so most splits see nothing of it); cache columns past
    kv_len and the cache's spare batch row hold NaN, so reading any of them would show."""
    pytest.importorskip("triton")
    import triton

    if DEVICE == "cpu" and dtype == torch.bfloat16:
        pytest.skip("the interpreter's bf16 dot is numpy's float32 one: nothing more than the float32 case")
    candidate = attention.ATTENTION_CANDIDATES[config]
    B, nkv, T, R = 3, 2, tokens, tokens * group
    g = torch.Generator().manual_seed(R + head_dim + kv_len)
    q = torch.randn(B, nkv, R, head_dim, generator=g)
    k_cache, v_cache = (torch.full((B + 1, nkv, kv_len + 40, head_dim), float("nan")) for _ in range(2))
    k_cache[:B, :, :kv_len] = torch.randn(B, nkv, kv_len, head_dim, generator=g) * 2  # peaked softmax rows
    v_cache[:B, :, :kv_len] = torch.randn(B, nkv, kv_len, head_dim, generator=g)
    mask = engine_mask(T, group, kv_len, starts=[kv_len - T, kv_len - T - 70, 9], pads=[0, 45, 9 + T - 1])
    assert bool(mask[1, 0, :, :45].isinf().all()) and bool(mask[2, 0, 0, 10:].isinf().all())
    try:
        with tuning.use(tuning.KernelTuner(forced={"attention": candidate})):
            out = attention.decode_attention(*(t.to(DEVICE, dtype) for t in (q, k_cache, v_cache, mask)))
    except triton.runtime.errors.OutOfResources as e:  # the tuner skips such a candidate too
        pytest.skip(f"{candidate} does not fit this GPU for {dtype}: {e}")
    assert out is not None and out.shape == q.shape and out.dtype == dtype
    expected = F.scaled_dot_product_attention(q.double(), k_cache[:B, :, :kv_len].double(),
                                              v_cache[:B, :, :kv_len].double(), attn_mask=mask.double())
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.cpu().double(), expected, atol=tolerance, rtol=tolerance)


@needs_triton
def test_decode_attention_declines_what_it_does_not_cover():
    """Prefill-sized steps and layouts it was not written for go to SDPA (None), untuned."""
    with tuning.use(tuning.KernelTuner()) as tuner:
        declines_what_it_does_not_cover()
    assert tuner.choices == {}


def declines_what_it_does_not_cover():
    q = torch.randn(1, 2, attention.MAX_ATTENTION_ROWS + 1, 16, device=DEVICE)
    cache = torch.zeros(1, 2, 64, 16, device=DEVICE)
    assert attention.decode_attention(q, cache, cache, torch.zeros(1, 1, q.shape[2], 64, device=DEVICE)) is None
    q = q[:, :, :4]
    assert attention.decode_attention(q, cache, cache, torch.zeros(1, 2, 4, 64, device=DEVICE)) is None  # per head
    assert attention.decode_attention(q, cache, cache, torch.ones(1, 1, 4, 64, dtype=torch.bool,
                                                                device=DEVICE)) is None  # boolean
    assert attention.decode_attention(q, cache, cache, torch.zeros(1, 1, 4, 65, device=DEVICE)) is None  # > cache


@needs_triton
def test_engine_greedy_output_through_the_kernel_equals_the_reference_engine(monkeypatch):
    """The engine with the Triton kernels forced on (a CPU under the interpreter takes the CUDA path's
    kernels: RoPE + cache writes and split-KV attention with several splits) generates what the engine on
    torch's path generates, plainly and speculatively, and its logits agree to float32 rounding."""
    pytest.importorskip("triton")
    from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
    from specdraft.engine import Engine, decoder
    from tests.tiny_models import tiny_qwen2

    target, draft = (m.to(DEVICE) for m in (tiny_qwen2(0), tiny_qwen2(1, hidden_size=16, num_hidden_layers=1)))
    # 40 tokens and more: keys in two of the four splits (32 columns each), so the combine kernel weighs them.
    prompt = torch.randint(0, 97, (1, 40), generator=torch.Generator().manual_seed(0)).to(DEVICE)

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        engine = Engine.from_hf(target, max_seq_len=128)  # kv_len 128: 8 blocks of 16 keys, 4 splits of 2
        session = engine.open_session(64)
        logits = torch.cat([session.forward(prompt[0, :38], 1), session.forward(prompt[0, 38:], 2)])
        plain = autoregressive_generate(engine, prompt, max_new_tokens=12)
        speculative = speculative_generate(engine, Engine.from_hf(draft, max_seq_len=128), prompt,
                                           num_speculative_tokens=3, max_new_tokens=12).token_ids
        return logits.clone(), plain, speculative

    monkeypatch.setattr(decoder, "fast_kernels", lambda x: False)  # torch's path, on a GPU too
    reference = run()
    used = []
    original = attention.decode_attention

    def spy(*args):
        out = original(*args)
        used.append(out is not None)
        return out

    monkeypatch.setattr(decoder, "fast_kernels", lambda x: True)
    monkeypatch.setattr(decoder, "decode_attention", spy)
    with tuning.use(tuning.KernelTuner(forced={"attention": attention.INTERPRETER_ATTENTION})) as tuner:  # not SDPA
        logits, plain, speculative = run()
    assert len(used) > 20 and all(used)
    assert any(key[0] == "decode_attention" and key[3] > 1 for key in tuner.choices)  # multi-row steps too
    torch.testing.assert_close(logits, reference[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(plain, reference[1]) and torch.equal(speculative, reference[2])
