"""The native engine against Hugging Face on CPU, float32: same logits, same greedy tokens."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
from specdraft.engine import Engine
from tests.tiny_models import hf_greedy, tiny_qwen2

MAX_NEW = 30


@pytest.fixture(scope="module")
def engines(target, draft):
    return Engine.from_hf(target, max_seq_len=128), Engine.from_hf(draft, max_seq_len=128)


def test_logits_match_hf_for_prefill_and_incremental_steps(target, engines):
    prompt = torch.randint(0, 97, (1, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = target(prompt).logits[0]  # [11, V]
    session = engines[0].open_session(64)
    prefill = session.forward(prompt[0, :6].tolist(), 6)
    steps = [session.forward(prompt[0, i : i + 1].tolist(), 1) for i in range(6, 8)]
    verify = session.forward(prompt[0, 8:].tolist(), 3)
    mine = torch.cat([prefill, *steps, verify])
    torch.testing.assert_close(mine, reference, atol=1e-4, rtol=0)


def test_llama_architecture_without_attention_bias():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=48)).eval()
    prompt = torch.randint(0, 61, (1, 7))
    with torch.no_grad():
        reference = llama(prompt).logits[0]
    logits = Engine.from_hf(llama, max_seq_len=32).open_session(7).forward(prompt[0].tolist(), 7)
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=0)


def tiny_qwen3(seed: int, hidden_size: int = 32, num_hidden_layers: int = 2):
    """Qwen3: per-head q/k RMSNorm, no qkv bias, head_dim (16) unlike hidden_size / heads (8 or 4)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=61, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, intermediate_size=48, max_position_embeddings=256)).eval()
    with torch.no_grad():  # the norms start at 1: make them matter
        for layer in model.model.layers:
            layer.self_attn.q_norm.weight.uniform_(0.5, 1.5)
            layer.self_attn.k_norm.weight.uniform_(0.5, 1.5)
    return model


def test_qwen3_logits_match_hf_for_prefill_and_incremental_steps():
    qwen3 = tiny_qwen3(0)
    assert not any(name.endswith("q_proj.bias") for name, _ in qwen3.named_parameters())
    prompt = torch.randint(0, 61, (1, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = qwen3(prompt).logits[0]  # [11, V]
    session = Engine.from_hf(qwen3, max_seq_len=32).open_session(11)
    mine = torch.cat([session.forward(prompt[0, :6].tolist(), 6), session.forward(prompt[0, 6:7].tolist(), 1),
                      session.forward(prompt[0, 7:].tolist(), 4)])
    torch.testing.assert_close(mine, reference, atol=1e-4, rtol=0)


def test_qwen3_pair_speculative_greedy_equals_hf_generate():
    from specdraft.decoding.batched import speculative_generate_batch

    target, draft = tiny_qwen3(0), tiny_qwen3(1, hidden_size=16, num_hidden_layers=1)
    engine_target = Engine.from_hf(target, max_seq_len=64, max_batch_size=3)
    engine_draft = Engine.from_hf(draft, max_seq_len=64, max_batch_size=3)
    prompts = [torch.randint(0, 61, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in (4, 9, 2)]
    expected = [hf_greedy(target, p, MAX_NEW).tolist() for p in prompts]
    for p, e in zip(prompts, expected):
        out = speculative_generate(engine_target, engine_draft, torch.tensor([p]), num_speculative_tokens=3,
                                   max_new_tokens=MAX_NEW)
        assert out.token_ids.tolist() == e
    batched = speculative_generate_batch(engine_target, engine_draft, prompts, num_speculative_tokens=3,
                                         max_new_tokens=MAX_NEW, concurrency=3)
    assert [o.token_ids.tolist() for o in batched] == expected


def test_sliding_window_models_are_refused():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, head_dim=8, intermediate_size=48,
                                         use_sliding_window=True, sliding_window=16, max_window_layers=1))
    with pytest.raises(ValueError, match="sliding-window"):
        Engine.from_hf(model, max_seq_len=32)


@pytest.mark.parametrize("seed", [0, 1])
def test_plain_and_speculative_greedy_equal_hf_generate(target, engines, seed):
    prompt = torch.randint(0, 97, (1, 5 + seed), generator=torch.Generator().manual_seed(seed))
    expected = hf_greedy(target, prompt[0].tolist(), MAX_NEW).tolist()
    assert autoregressive_generate(engines[0], prompt, max_new_tokens=MAX_NEW).tolist() == expected
    for k in range(1, 7):
        out = speculative_generate(engines[0], engines[1], prompt, num_speculative_tokens=k, max_new_tokens=MAX_NEW)
        assert out.token_ids.tolist() == expected
        eos = expected[MAX_NEW // 2]
        stopped = speculative_generate(engines[0], engines[1], prompt, num_speculative_tokens=k,
                                       max_new_tokens=MAX_NEW, eos_token_id=eos)
        assert stopped.token_ids.tolist() == hf_greedy(target, prompt[0].tolist(), MAX_NEW, eos).tolist()


def test_engine_draft_identical_to_target_is_always_accepted(engines):
    twin = Engine(engines[0].decoder, max_seq_len=128)  # same weights, its own cache
    prompt = torch.randint(0, 97, (1, 6))
    out = speculative_generate(engines[0], twin, prompt, num_speculative_tokens=4, max_new_tokens=MAX_NEW)
    assert out.stats.acceptance_rate == 1.0


def test_a_second_session_on_one_engine_supersedes_the_first(engines):
    first = engines[0].open_session(10)
    engines[0].open_session(10)
    with pytest.raises(RuntimeError, match="superseded"):
        first.forward([1, 2], 1)
    with pytest.raises(RuntimeError, match="superseded"):
        first.propose_greedy([1, 2], 3)


def test_batched_generation_equals_per_prompt_greedy(target, engines):
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (3, 12, 7, 1)]
    expected = [hf_greedy(target, p, 20).tolist() for p in prompts]
    assert engines[0].generate_batch(prompts, max_new_tokens=20) == expected
    eos = expected[1][4]  # stops row 1 early; the other rows stop where they produce it, or run on
    stopped = engines[0].generate_batch(prompts, max_new_tokens=20, eos_token_id=eos)
    assert stopped == [hf_greedy(target, p, 20, eos).tolist() for p in prompts]
    assert len(stopped[1]) == expected[1].index(eos) + 1


def test_engine_refuses_sequences_longer_than_its_cache(engines):
    with pytest.raises(ValueError, match="max_seq_len"):
        engines[0].open_session(129)
    with pytest.raises(ValueError, match="max_seq_len"):
        engines[0].generate_batch([[1] * 120], max_new_tokens=20)


def test_bench_and_distill_give_the_same_results_on_either_engine(tmp_path):
    """The workflow's stages through `serve`: the native engine is a faster implementation, not another
    result."""
    from specdraft.stages.bench import run_benchmark
    from specdraft.plumbing.config import load_config
    from specdraft.decoding.generation import generate_batched
    from specdraft.models.loading import pad_vocab
    from specdraft.data.prompts import prompt_messages
    from specdraft.models.engine_choice import serve
    from specdraft.stages.base_models import build_model, train_tokenizer

    tokenizer = train_tokenizer(["What is 48+24? 48+24=72 #### 72", "Natalia sold 48/2 = 24 clips."] * 10, 300)
    config = load_config({"bench": {"num_speculative_tokens": [1, 3], "max_new_tokens": 12}})
    target = build_model(config.tiny.target, len(tokenizer), 512, seed=0).eval()
    draft = build_model(config.tiny.draft, len(tokenizer), 512, seed=1).eval()
    pad_vocab(draft, target.config.vocab_size)
    records = [{"id": str(i), "scenario": "easy", "answer": "72",
                "messages": prompt_messages(q, "cod") + [{"role": "assistant", "content": ""}]}
               for i, q in enumerate(["What is 48+24?", "Natalia sold 48/2 clips?"])]
    rows = {}
    for engine in ("hf", "native"):
        served = [serve(m, engine, max_seq_len=256, weights="model_dtype") for m in (target, draft)]
        assert isinstance(served[0], Engine) == (engine == "native")
        rows[engine], _ = run_benchmark(*served, tokenizer, records, config.bench, seed=0, enable_thinking=False)
    for hf_row, native_row in zip(rows["hf"], rows["native"]):
        assert hf_row.matches_target and native_row.matches_target
        assert (hf_row.num_new_tokens, hf_row.num_accepted, hf_row.answer) == (
            native_row.num_new_tokens, native_row.num_accepted, native_row.answer)
    prompts = [r["messages"][:-1] for r in records]
    outputs = [generate_batched(serve(target, engine, max_seq_len=256, max_batch_size=2, weights="model_dtype"),
                                tokenizer, prompts, max_new_tokens=12, temperature=0.0, batch_size=2, seed=0, enable_thinking=False)
               for engine in ("hf", "native")]
    assert outputs[0] == outputs[1]


def test_serve_picks_the_engine_for_architectures_it_implements(target):
    from transformers import GPT2Config, GPT2LMHeadModel

    from specdraft.models.engine_choice import serve

    assert isinstance(serve(target, "auto", max_seq_len=10, weights="model_dtype"), Engine)
    assert serve(target, "hf", max_seq_len=10, weights="model_dtype") is target
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    assert serve(gpt2, "auto", max_seq_len=10, weights="model_dtype") is gpt2
    with pytest.raises(ValueError, match="serves \\['qwen2', 'qwen3', 'llama'\\] models, not 'gpt2'"):
        serve(gpt2, "native", max_seq_len=10, weights="model_dtype")
    assert serve(target, "native", max_seq_len=300, weights="model_dtype").max_seq_len == 512


def test_a_proposal_fed_two_tokens_equals_one_fed_them_one_at_a_time(draft, engines):
    """After a fully accepted proposal the draft gets two new tokens; the proposal graph takes both in its
    first step instead of a separate draft step (and takes one new token with the cached one before it): same
    proposal, same cache length, same next proposal."""
    prompt = torch.randint(0, 97, (12,), generator=torch.Generator().manual_seed(5)).tolist()
    runs = []
    for split in (10, 11):  # two pending tokens, or one
        session = engines[1].open_session(64)
        session.forward(prompt[:split], 1)
        first = session.propose_greedy(prompt[split:], 4)
        runs.append((first.tolist(), session.length, session.propose_greedy(first[-1:], 3).tolist()))
    assert runs[0] == runs[1]
    one_token = engines[1].open_session(64)  # nothing cached before the one token: a plain step first
    assert one_token.propose_greedy(prompt[:1], 4).tolist() == hf_greedy(draft, prompt[:1], 4).tolist()


class HostWaits(TorchFunctionMode):
    """Counts the torch calls that make the host wait for a CUDA device. On a CPU nothing waits, so the calls
    are counted as they would act on a GPU: a tensor's values read on the host (item, tolist, int(), bool()
    ...), shapes that depend on values (nonzero, a boolean mask), and tensors built from host data
    (torch.tensor, as_tensor: a copy to the device that first waits for its queued work)."""

    WAITS = {"item", "tolist", "__int__", "__float__", "__bool__", "__index__", "cpu", "numpy", "nonzero",
             "argwhere", "masked_select", "unique", "multinomial", "tensor", "as_tensor"}

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        masked = name == "__getitem__" and any(isinstance(a, torch.Tensor) and a.dtype == torch.bool
                                               for a in args[1:])
        if name in self.WAITS or masked:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_speculative_greedy_waits_for_the_device_once_per_step(engines, k):
    """The step's proposal, verification input and verdict stay on the device; the host reads them once.
    Besides the steps, a generation reads its prompt (input_ids.tolist()) and builds its output tensor."""
    from specdraft.decoding.speculative import Timeline

    twin = Engine(engines[0].decoder, max_seq_len=128)  # accepts everything: two new tokens for the draft
    for draft, prompt_len in ((engines[1], 5), (engines[1], 20), (twin, 1), (twin, 20)):  # graph-sized or eager
        prompt = torch.randint(0, 97, (1, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
        with HostWaits() as waits:
            out = speculative_generate(engines[0], draft, prompt, num_speculative_tokens=k, max_new_tokens=MAX_NEW,
                                       timeline=Timeline())
        assert out.stats.num_steps >= 5
        assert len(waits.calls) <= out.stats.num_steps + 2, waits.calls


def test_plain_greedy_waits_for_the_device_once_per_token(engines):
    prompt = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(0))
    with HostWaits() as waits:
        out = autoregressive_generate(engines[0], prompt, max_new_tokens=MAX_NEW)
    assert len(waits.calls) <= len(out) + 2, waits.calls


def test_host_waits_are_counted(engines):
    """The counts above can fail: a session fed a host list, a token read back and a data-dependent shape
    are each counted."""
    session = engines[0].open_session(10)
    with HostWaits() as waits:
        token = int(session.forward([1, 2, 3], 1).argmax())
        (torch.arange(3) != token).nonzero()
    assert waits.calls == ["tensor", "__int__", "nonzero"]


def test_a_long_forward_outside_inference_mode_after_a_generation():
    """The session's eager prefill path runs in inference mode, as its graph steps do: the cache, allocated
    by a first generation inside it, can be written by a later call from outside."""
    engine = Engine.from_hf(tiny_qwen2(0), max_seq_len=256)
    autoregressive_generate(engine, torch.tensor([[1, 2, 3]]), max_new_tokens=2)
    session = engine.open_session(64)
    logits = session.forward(list(range(1, 21)), 1)  # 20 tokens > MAX_GRAPH_TOKENS: the eager path
    assert logits.shape == (1, engine.vocab_size)


def test_the_hugging_face_reference_attends_to_every_prompt_token():
    """`hf_greedy` (every engine test's reference) continues a prompt holding token 0 (the pad id it passes)
    as Hugging Face's own full forward does: the first token is that forward's argmax. The case measured on
    the H200: this prompt and model, whose top-2 logit gap is 6.5e-3, where `generate` without an attention
    mask took the 0 for padding and chose the runner-up."""
    from specdraft.engine.quant import dequantized_copy
    from tests.test_engine_int4 import int4_qwen2

    reference = dequantized_copy(int4_qwen2(0), "int4")
    prompt = [93, 75, 92, 13, 76, 32, 6, 74, 0, 17, 29, 11, 74, 21, 58, 56, 11, 12, 39, 62]
    with torch.no_grad():
        logits = reference(torch.tensor([prompt])).logits[0, -1]
    top = logits.topk(2)
    assert float(top.values[0] - top.values[1]) > 1e-3  # no near tie: the choice is not rounding's
    assert int(hf_greedy(reference, prompt, 1)[0]) == int(top.indices[0])
