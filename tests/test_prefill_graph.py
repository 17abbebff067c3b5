"""A prefill padded to its graph's width (`StepRunner.prefill`) computes what the unpadded prompt computes: the
same logits for the prompt's last positions, the same cache over its columns, and the same generation after it.
The padding runs on the CPU as well, so these tests run the steps a GPU's prefill graph replays."""

import pytest
import torch

from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
from specdraft.engine import Engine
from specdraft.engine.decoder import KVCache
from specdraft.engine.runner import PREFILL_BLOCK, PREFILL_LOGITS
from tests.tiny_models import hf_greedy, tiny_qwen2


@pytest.fixture(scope="module")
def engine():
    return Engine.from_hf(tiny_qwen2(0), max_seq_len=256)


@pytest.mark.parametrize("num_tokens", [17, 20, 32, 45])
def test_a_padded_prefill_returns_the_unpadded_prompts_last_logits_and_cache(engine, num_tokens):
    runner = engine.session_runner()
    ids = torch.randint(1, 97, (1, num_tokens), generator=torch.Generator().manual_seed(num_tokens))
    zero = torch.zeros(1, dtype=torch.long)
    assert runner.prefill_width(0, num_tokens) == -(-num_tokens // PREFILL_BLOCK) * PREFILL_BLOCK
    logits = runner.prefill(ids, zero, zero, num_tokens)[0]  # [16, V]
    alone = KVCache(engine.decoder.shape, 1, 256, torch.float32, torch.device("cpu"))
    with torch.inference_mode():
        reference = engine.decoder(ids, zero, zero, alone, runner.kv_len(num_tokens))[0]  # [T, V], unpadded
    assert logits.shape == (PREFILL_LOGITS, engine.vocab_size)
    torch.testing.assert_close(logits, reference[-PREFILL_LOGITS:], rtol=0, atol=1e-5)
    for padded, unpadded in zip(runner.cache.k + runner.cache.v, alone.k + alone.v):
        torch.testing.assert_close(padded[:, :, :num_tokens], unpadded[:, :, :num_tokens], rtol=0, atol=1e-5)


def test_a_prefill_that_cannot_pad_within_the_cache_runs_unpadded():
    engine = Engine.from_hf(tiny_qwen2(0), max_seq_len=40)
    runner = engine.session_runner()
    assert runner.prefill_width(0, 30) == 32 and runner.prefill_width(0, 33) is None  # 64 columns exceed 40
    assert runner.prefill_width(20, 18) is None and runner.prefill_width(0, 16) is None  # 16: a graph step
    ids = torch.randint(1, 97, (1, 33), generator=torch.Generator().manual_seed(0))
    zero = torch.zeros(1, dtype=torch.long)
    assert runner.prefill(ids, zero, zero, 33).shape == (1, PREFILL_LOGITS, engine.vocab_size)
    assert not runner.shapes_met  # no graph shape: this prefill is eager on every device


@pytest.mark.parametrize("prompt_len", [20, 40])
def test_generation_after_a_padded_prefill_equals_hugging_face(prompt_len):
    model = tiny_qwen2(0)
    target, draft = Engine.from_hf(model, max_seq_len=256), Engine.from_hf(tiny_qwen2(1), max_seq_len=256)
    prompt = torch.randint(1, 97, (1, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    reference = hf_greedy(model, prompt, 40)
    assert torch.equal(autoregressive_generate(target, prompt, max_new_tokens=40), reference)
    for k in (3, 5):  # the target's first forward is the prompt and k proposals: k + 1 logits of a prefill
        out = speculative_generate(target, draft, prompt, num_speculative_tokens=k, max_new_tokens=40)
        assert torch.equal(out.token_ids, reference)


def test_warm_up_meets_the_prefill_shapes_of_its_prompt_lengths():
    target = Engine.from_hf(tiny_qwen2(0), max_seq_len=256)
    target.warm_up([5], prompt_lengths=[30])  # 28 (a draft's), 30 and 30 + k' up to 35: widths 32 and 64
    met = {key for key in target.session_runner().shapes_met if key[0] == "prefill"}
    assert {key[2] for key in met} == {32, 64}
