"""The engine's CUDA-graph paths on a GPU (skipped without one), in float32.

Different kernels (one token or k+1 at a time, Hugging Face's attention or ours) round differently even
in float32, so outputs may part where the reference's two best logits are nearly tied; they may part
nowhere else. Graph replay and eager execution run the same kernels and must agree exactly.
"""

import pytest
import torch

from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
from specdraft.engine import Engine
from tests.tiny_models import hf_greedy, tiny_qwen2

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
NEAR_TIE = 1e-3  # top-2 logit gap under which kernels' rounding may pick either token


@pytest.fixture(scope="module")
def models():
    return tiny_qwen2(0).cuda(), tiny_qwen2(1, hidden_size=16, num_hidden_layers=1).cuda()


def assert_agree_but_for_near_ties(out, reference, model, prompt):
    mismatch = (out != reference).nonzero()
    if not len(mismatch):
        return
    i = int(mismatch[0])
    with torch.no_grad():
        logits = model(torch.cat([prompt[0].cpu(), reference[:i]])[None].cuda()).logits[0, -1].float()
    top = logits.topk(2).values
    below = float(top[0] - logits[int(out[i])])  # how far below the reference's best the token it got lies
    assert float(top[0] - top[1]) < NEAR_TIE, (f"outputs part at {i} where the reference is not a near-tie: "
                                               f"token {int(out[i])} lies {below:.3g} below the best")


def assert_quantized_pair_agrees_with_the_dequantized_model(target, draft, reference, weights: str):
    """Engines of `weights` built from target and draft: greedy plain, speculative (k = 1, 5) and batched
    output of the target agree with `reference` (the target over its dequantized weights) but for near
    ties. Returns the target's engine."""
    engine_target = Engine.from_hf(target, max_seq_len=512, weights=weights)
    engine_draft = Engine.from_hf(draft, max_seq_len=512, weights=weights)
    prompt = torch.randint(0, 97, (1, 20), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    hf = hf_greedy(reference, prompt, 300)
    plain = autoregressive_generate(engine_target, prompt, max_new_tokens=300)
    assert_agree_but_for_near_ties(plain, hf, reference, prompt)
    for k in (1, 5):
        out = speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=k, max_new_tokens=300)
        assert_agree_but_for_near_ties(out.token_ids, plain, reference, prompt)
    outputs = engine_target.generate_batch([prompt[0].tolist(), prompt[0, :7].tolist()], max_new_tokens=40)
    assert_agree_but_for_near_ties(torch.tensor(outputs[0]), plain[:40], reference, prompt)
    return engine_target


def test_graphs_replay_exactly_what_eager_execution_computes(models):
    target, draft = models
    prompt = torch.randint(0, 97, (1, 20), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    # 300 new tokens cross the 256-column boundary: two attention lengths per shape.
    graphs = Engine.from_hf(target, max_seq_len=512)
    eager = Engine.from_hf(target, max_seq_len=512, use_cuda_graphs=False)
    assert torch.equal(autoregressive_generate(graphs, prompt, max_new_tokens=300),
                       autoregressive_generate(eager, prompt, max_new_tokens=300))
    assert graphs.session_runner().num_graphs >= 2


@pytest.mark.parametrize("weights", ["model_dtype", "int8"])
def test_a_prefill_graph_replays_what_the_eager_padded_prefill_computes(models, weights):
    """One graph serves every prompt length of its PREFILL_BLOCK: each replay equals that prompt's eager run."""
    graphs = Engine.from_hf(models[0], max_seq_len=512, weights=weights)
    eager = Engine.from_hf(models[0], max_seq_len=512, weights=weights, use_cuda_graphs=False)
    for num_tokens in (20, 30, 17, 130):
        prompt = torch.randint(0, 97, (num_tokens,), device="cuda",
                               generator=torch.Generator("cuda").manual_seed(num_tokens))
        replayed = graphs.open_session(num_tokens + 1).forward(prompt, 6).clone()
        assert torch.equal(replayed, eager.open_session(num_tokens + 1).forward(prompt, 6))
    assert sum(key[0] == "prefill" for key in graphs.session_runner()._graphs) == 2  # widths 32 and 160


def test_speculative_and_plain_agree_with_hf_but_for_near_ties(models):
    target, draft = models
    engine_target, engine_draft = Engine.from_hf(target, max_seq_len=512), Engine.from_hf(draft, max_seq_len=512)
    prompt = torch.randint(0, 97, (1, 20), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    hf = hf_greedy(target, prompt, 300)
    plain = autoregressive_generate(engine_target, prompt, max_new_tokens=300)
    assert_agree_but_for_near_ties(plain, hf, target, prompt)
    for k in (1, 3, 6):
        out = speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=k, max_new_tokens=300)
        assert_agree_but_for_near_ties(out.token_ids, plain, target, prompt)
    assert engine_draft.session_runner().num_graphs >= 3  # the draft's k-token proposals are graphs too


def synchronisations(fn) -> tuple[object, int]:
    """fn()'s result and how many times it made the host wait for the GPU (torch's sync debug mode)."""
    import warnings

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return result, sum("synchronizing CUDA operation" in str(w.message) for w in caught)


def test_greedy_decoding_synchronises_once_per_step(models):
    """What tests/test_engine.py's HostWaits counts on a CPU, counted by CUDA itself: greedy speculative
    decoding waits for the GPU once per step, plain decoding once per token, the timeline adding nothing
    (and a generation reads its prompt once)."""
    from specdraft.decoding.speculative import Timeline

    engine_target, engine_draft = (Engine.from_hf(m, max_seq_len=512) for m in models)
    prompt = torch.randint(0, 97, (1, 20), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    common = {"num_speculative_tokens": 4, "max_new_tokens": 100}
    speculative_generate(engine_target, engine_draft, prompt, **common)  # captures graphs, tunes kernels
    out, syncs = synchronisations(lambda: speculative_generate(engine_target, engine_draft, prompt,
                                                               timeline=Timeline(), **common))
    assert 0 < syncs <= out.stats.num_steps + 1
    plain, syncs = synchronisations(lambda: autoregressive_generate(engine_target, prompt, max_new_tokens=100))
    assert 0 < syncs <= len(plain) + 1


def test_batched_graph_generation_matches_hf_but_for_near_ties(models):
    target, _ = models
    engine = Engine.from_hf(target, max_seq_len=256, max_batch_size=8)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (5, 17, 9)]
    outputs = engine.generate_batch(prompts, max_new_tokens=40)
    for p, out in zip(prompts, outputs):
        prompt = torch.tensor([p], device="cuda")
        hf = hf_greedy(target, prompt, 40)
        assert_agree_but_for_near_ties(torch.tensor(out), hf, target, prompt)
    assert engine.batch_runner().num_graphs >= 1


def test_batched_speculative_graphs_replay_eager_and_agree_with_hf_but_for_near_ties(models):
    """Ragged rows through the proposal and verification graphs (two attention lengths, rows refilled):
    exactly what eager execution computes, greedy and sampled; greedy rows agree with Hugging Face."""
    from specdraft.decoding.batched import autoregressive_generate_batch, speculative_generate_batch

    target, _ = models
    graphs = [Engine.from_hf(m, max_seq_len=512, max_batch_size=8) for m in models]
    eager = [Engine.from_hf(m, max_seq_len=512, max_batch_size=8, use_cuda_graphs=False) for m in models]
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (5, 30, 9, 1, 17, 12, 3, 24, 8, 14)]
    for k in (1, 4):
        runs = [speculative_generate_batch(*e, prompts, num_speculative_tokens=k, max_new_tokens=250, concurrency=6)
                for e in (graphs, eager)]
        assert [o.token_ids.tolist() for o in runs[0]] == [o.token_ids.tolist() for o in runs[1]]
        assert [o.stats for o in runs[0]] == [o.stats for o in runs[1]]
        sampled = [speculative_generate_batch(*e, prompts, num_speculative_tokens=k, max_new_tokens=60,
                                              concurrency=6, temperature=0.8, top_p=0.9,
                                              generator=torch.Generator("cuda").manual_seed(0))
                   for e in (graphs, eager)]
        assert [o.token_ids.tolist() for o in sampled[0]] == [o.token_ids.tolist() for o in sampled[1]]
    plain = autoregressive_generate_batch(graphs[0], prompts, max_new_tokens=250, concurrency=6)
    for p, out, spec in zip(prompts, plain, runs[0]):  # one token or k+1 at a time: different kernels
        assert_agree_but_for_near_ties(spec.token_ids, out.token_ids, target, torch.tensor([p], device="cuda"))
    for p, out in zip(prompts[:4], plain):
        prompt = torch.tensor([p], device="cuda")
        hf = hf_greedy(target, prompt, 250)
        assert_agree_but_for_near_ties(out.token_ids, hf, target, prompt)
    assert graphs[0].batch_runner().num_graphs >= 4 and graphs[1].batch_runner().num_graphs >= 4


@pytest.mark.parametrize("choice", ["timed", "forced"])  # forced: tests/conftest.py's triton_kernels_forced
def test_int8_engine_through_triton_agrees_with_the_dequantized_model_but_for_near_ties(models, choice, request):
    """weights='int8' on a GPU runs the Triton int8 kernel in every graph step (the reference path only in
    prefills); greedy plain and speculative output agree with the dequantized model's, batched rows too."""
    from specdraft.engine.quant import dequantized_copy

    if choice == "forced":
        request.getfixturevalue("triton_kernels_forced")

    target, draft = models
    assert_quantized_pair_agrees_with_the_dequantized_model(target, draft, dequantized_copy(target, "int8"), "int8")


@pytest.mark.parametrize("choice", ["timed", "forced"])
def test_int4_engine_through_triton_agrees_with_the_dequantized_model_but_for_near_ties(choice, request):
    """weights='int4' on a GPU runs the Triton kernel on packed int4 weights in every graph step (unpacked and
    scaled with the reference's rounding: only the order of the sums differs); greedy plain and speculative
    output agree with the dequantized model's, batched rows too. Models whose inputs are multiples of 128."""
    from specdraft.engine.quant import dequantized_copy
    from tests.test_engine_int4 import int4_qwen2

    if choice == "forced":
        request.getfixturevalue("triton_kernels_forced")

    target, draft = int4_qwen2(0).cuda(), int4_qwen2(1, num_hidden_layers=1).cuda()
    engine_target = assert_quantized_pair_agrees_with_the_dequantized_model(target, draft, dequantized_copy(target, "int4"),
                                                                            "int4")
    assert engine_target.decoder.layers[0].gate_up.weight.dtype == torch.uint8
    from specdraft.engine import tuner as tuning

    if choice == "timed":  # the tuner chose a kernel for packed int4 weights (forced, it always does)
        assert any(key[4] == torch.uint8 and config is not None
                   for key, config in tuning.current().tuned_configs().items())


def test_the_engine_is_built_from_a_host_model_without_a_device_copy_of_it(tmp_path):
    """load_served on a GPU: the Hugging Face model stays in host memory (a random base drawn on the GPU
    module by module), so the GPU's peak is the engine's own weights, not the model's plus the engine's."""
    from specdraft.models.engine_choice import load_served
    from specdraft.models.random_weights import write_random_checkpoint

    path = tmp_path / "base"
    write_random_checkpoint("Qwen2.5-0.5B-Instruct", 0, path)  # the real draft's shape: 0.99 GB in bf16
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    engine = load_served(str(path), adapter=None, engine="native", weights="model_dtype", dtype="bfloat16", device="cuda",
                         max_seq_len=256)
    held = torch.cuda.memory_allocated() - before
    engine_bytes = sum(t.numel() * t.element_size() for t in engine.decoder.parameters())
    assert isinstance(engine, Engine) and held >= engine_bytes
    assert torch.cuda.max_memory_allocated() - before < 1.25 * engine_bytes  # a second copy would be 2x


@pytest.mark.parametrize("weights", ["model_dtype", "int8"])
def test_proposals_with_dependent_launches_compute_what_plain_ones_do(models, weights, monkeypatch):
    """A proposal graph captured with programmatic dependent launches (each kernel starting while the one
    before it ends) proposes what the plainly launched one does, and speculative decoding over it steps
    alike: every kernel waits for its input. Other graphs never take dependent launches."""
    from specdraft.engine import runner
    from specdraft.engine.launch import pdl_supported

    if not pdl_supported():
        pytest.skip("this GPU has no programmatic dependent launch")
    target, draft = models
    prompt = torch.randint(0, 97, (1, 20), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    outputs = {}
    for dependent in (False, True):  # the timing that picks a graph, rigged to pick one way
        monkeypatch.setattr(runner._Graph, "_replay_ms", lambda self, graph, d=dependent: float(
            (graph is self.graph) == d))  # the plain graph is self.graph while both are timed
        engine_target = Engine.from_hf(target, max_seq_len=512, weights=weights)
        engine_draft = Engine.from_hf(draft, max_seq_len=512, weights=weights)
        session = engine_draft.open_session(400)
        session.forward(prompt[0, :-1], 1)
        proposals, pending = [], prompt[0, -1:]
        for _ in range(40):  # the draft's own greedy continuation, 8 tokens a proposal graph
            proposal = session.propose_greedy(pending, 8)
            proposals.append(proposal.clone())
            pending = proposal[-1:]
        out = speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=5, max_new_tokens=200)
        choices = engine_draft.session_runner().launch_choices()
        assert choices and all(key.startswith("('propose_rows'") and choice["dependent"] == dependent
                               for key, choice in choices.items())
        assert engine_target.session_runner().launch_choices() == {}
        outputs[dependent] = (torch.cat(proposals), out.token_ids, out.stats.num_accepted_per_position)
    assert torch.equal(outputs[True][0], outputs[False][0]) and torch.equal(outputs[True][1], outputs[False][1])
    assert outputs[True][2] == outputs[False][2]


@pytest.mark.parametrize("weights", ["model_dtype", "int8"])
def test_a_chain_of_dependent_launches_computes_what_plain_launches_do(weights):
    """Forty fused matmuls, each reading the one before it's output (residual, norm and GLU forms in turn),
    launched back to back in a CUDA graph with dependent launches, equal bit for bit the same chain launched
    plainly: a kernel that read its input before the one writing it had finished would show here."""
    from specdraft.engine import tuner as tuning
    from specdraft.engine.launch import pdl_supported
    from specdraft.engine.quant import linear, quantize_int8

    if not pdl_supported():
        pytest.skip("this GPU has no programmatic dependent launch")
    g = torch.Generator("cuda").manual_seed(0)
    hidden, inner = 896, 4864
    layers = []
    for _ in range(10):
        mats = [torch.randn(n, k, device="cuda", generator=g, dtype=torch.bfloat16) / k**0.5
                for n, k in ((hidden, hidden), (2 * inner, hidden), (hidden, inner))]
        if weights == "int8":
            mats = [quantize_int8(w, torch.bfloat16) for w in mats]
        else:
            mats = [(w, None) for w in mats]
        layers.append((mats, torch.rand(hidden, device="cuda", generator=g, dtype=torch.bfloat16) + 0.5))
    x0 = torch.randn(1, hidden, device="cuda", generator=g, dtype=torch.bfloat16)

    def chain(x):
        for (o, gate_up, down), norm in layers:
            x = linear(x, *o, residual=x)
            act = linear(x, *gate_up, norm_weight=norm, glu=True)
            x = linear(act, *down, residual=x)
            x = linear(x, *o, norm_weight=norm)
        return x

    outputs = []
    for dependent in (False, True):
        chain(x0)  # tunes and compiles outside the capture
        with tuning.current().launch.dependent(dependent):
            chain(x0)  # compiles this launch kind's variants
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = chain(x0)
        for _ in range(50):  # replays race differently from run to run if they race at all
            graph.replay()
            outputs.append((dependent, out.clone()))
    reference = outputs[0][1]
    assert all(torch.equal(out, reference) for _, out in outputs)
