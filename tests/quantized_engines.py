"""Checks that a quantized engine (int8, int4) computes what its dequantized model computes, and that
speculative decoding over it reproduces its own greedy output."""

from __future__ import annotations

import torch

from tests.tiny_models import hf_greedy


def assert_engine_is_its_dequantized_model(model, reference, weights: str):
    """The engine of `weights` (int8, int4) built from `model` computes what `reference` (model over the
    dequantized weights) computes: bit for bit against a float engine built from `reference`, within 1e-4
    of the Hugging Face model over it (and not of `model` itself: quantizing changed it), and greedy
    output equal to Hugging Face's. Returns the quantized engine."""
    from specdraft.decoding.speculative import autoregressive_generate
    from specdraft.engine import Engine

    quantized = Engine.from_hf(model, max_seq_len=128, weights=weights)
    over_dequantized = Engine.from_hf(reference, max_seq_len=128)  # model_dtype format: plain float32 matrices
    prompt = torch.randint(0, model.config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(1))
    logits = []
    for engine in (quantized, over_dequantized):
        session = engine.open_session(64)
        logits.append(torch.cat([session.forward(prompt[0, :6].tolist(), 6),
                                 session.forward(prompt[0, 6:7].tolist(), 1),
                                 session.forward(prompt[0, 7:].tolist(), 2)]))
    assert torch.equal(logits[0], logits[1])  # the same function, bit for bit
    with torch.no_grad():
        hf = reference(prompt).logits[0]
    torch.testing.assert_close(logits[0], hf, atol=1e-4, rtol=0)
    with torch.no_grad():
        assert not torch.allclose(logits[0], model(prompt).logits[0], atol=1e-4)
    out = autoregressive_generate(quantized, prompt, max_new_tokens=30)
    assert out.tolist() == hf_greedy(reference, prompt, 30).tolist()
    return quantized


def assert_speculative_equals_quantized_target_greedy(target, draft, weights: str):
    """Speculative decoding over a `weights` (int8, int4) target reproduces that quantized target's own
    greedy output, with a draft of the same format and with a float one, k = 1 and 4, three prompts."""
    from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
    from specdraft.engine import Engine

    quantized_target = Engine.from_hf(target, max_seq_len=128, weights=weights)
    drafts = (Engine.from_hf(draft, max_seq_len=128, weights=weights), Engine.from_hf(draft, max_seq_len=128))
    for draft_engine in drafts:
        for seed in range(3):
            prompt = torch.randint(0, 97, (1, 5 + seed), generator=torch.Generator().manual_seed(seed))
            reference = autoregressive_generate(quantized_target, prompt, max_new_tokens=40)
            for k in (1, 4):
                out = speculative_generate(quantized_target, draft_engine, prompt, num_speculative_tokens=k,
                                           max_new_tokens=40)
                assert torch.equal(out.token_ids, reference)
