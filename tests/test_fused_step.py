"""The fused one-token step (`engine.fused_step`), under Triton's interpreter (TRITON_INTERPRET=1 with triton)
or on a CUDA device: its logits, argmax and cache writes equal the layer-by-layer engine's in float32, for
Qwen2 (qkv bias) and Qwen3 (per-head norms) shapes, model-dtype and int8 weights, one and several key splits,
one and two key blocks a split; and speculative decoding with a fused draft reproduces the target's greedy output."""

import inspect
import itertools
import os

import pytest
import torch

from specdraft.engine import Engine, fused_step
from specdraft.engine import tuner as tuning
from tests.test_engine import tiny_qwen3
from tests.tiny_models import hf_greedy, tiny_qwen2

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TORCH_PATH = tuning.LaunchOptions(families=frozenset())  # layer by layer in torch ops (FusedStep is called directly)
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                                reason="the Triton kernel needs a CUDA device or TRITON_INTERPRET=1 with triton")


def fused_against_layers(model, weights: str, kv_len: int, prompt_len: int, config=None):
    """(fused logits, argmax, key and value caches), then the same from the layer-by-layer decoder, for two
    tokens fed after a prompt of prompt_len (the second at offset 1, as a proposal feeds it)."""
    pytest.importorskip("triton")
    with tuning.use(tuning.KernelTuner(launch=TORCH_PATH)):  # the reference: no kernels to tune on a GPU
        return _fused_against_layers(model, weights, kv_len, prompt_len, config)


def _fused_against_layers(model, weights: str, kv_len: int, prompt_len: int, config):
    engine = Engine.from_hf(model.to(DEVICE), max_seq_len=kv_len, use_cuda_graphs=False, weights=weights)
    decoder, cache = engine.decoder, engine.session_runner().cache
    vocab = decoder.shape.vocab_size
    prompt = torch.randint(0, vocab, (1, prompt_len), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    pad, start = torch.zeros(1, dtype=torch.long, device=DEVICE), torch.tensor([prompt_len], device=DEVICE)
    decoder(prompt, torch.tensor([0], device=DEVICE), pad, cache, kv_len)
    before = cache.k_all.clone(), cache.v_all.clone()
    tokens = torch.tensor([[3, 11]], device=DEVICE)
    step = fused_step.FusedStep(decoder, config)
    logits, greedy = step(tokens, start, pad, cache, kv_len)
    fused = logits.clone(), greedy.clone(), cache.k_all.clone(), cache.v_all.clone()
    cache.k_all.copy_(before[0]), cache.v_all.copy_(before[1])
    reference = decoder(tokens, start, pad, cache, kv_len, last_only=True)[:, -1]
    return fused, (reference, reference.argmax(dim=-1, keepdim=True), cache.k_all, cache.v_all)


@pytest.mark.parametrize("weights", ["model_dtype", "int8"])
@pytest.mark.parametrize("make", [lambda: tiny_qwen2(0), lambda: tiny_qwen3(0)], ids=["qwen2", "qwen3"])
@pytest.mark.parametrize("kv_len, prompt_len", [(128, 40), (16, 5), (512, 300)],
                         ids=["eight-splits", "one-split", "two-blocks-a-split"])  # 512: 16 splits of 32 keys
def test_fused_step_equals_the_layer_by_layer_decoder(make, weights, kv_len, prompt_len):
    fused, reference = fused_against_layers(make(), weights, kv_len, prompt_len)
    torch.testing.assert_close(fused[0], reference[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(fused[1], reference[1])
    torch.testing.assert_close(fused[2], reference[2], atol=1e-6, rtol=1e-5)  # both tokens' keys written
    torch.testing.assert_close(fused[3], reference[3], atol=1e-6, rtol=1e-5)


# Several column blocks a program, of several K chunks (the last part-filled for hidden size 40) or of one.
SMALL_TILES = {"k-chunks": dict(programs=3, tile_elems=64, max_block_k=16, block_s=16),
               "one-chunk": dict(programs=3, tile_elems=128, max_block_k=64, block_s=16)}
LOADS_AHEAD_MODELS = {"qwen2": lambda: tiny_qwen2(0), "qwen2-hidden-40": lambda: tiny_qwen2(0, hidden_size=40),
                      "qwen3": lambda: tiny_qwen3(0)}


@pytest.mark.parametrize("weights", ["model_dtype", "int8"])
@pytest.mark.parametrize("model", LOADS_AHEAD_MODELS)
@pytest.mark.parametrize("tiles", SMALL_TILES)
def test_loads_a_round_ahead_equal_the_layer_by_layer_decoder(model, weights, tiles):
    """The form that loads each round's tiles (and the epilogue's scale, bias and residual) a round early
    computes what the layer-by-layer decoder does ("one-chunk": a block's epilogue is loaded with the previous
    block's round). On a GPU under the grid barrier, and bit for bit what the other form computes."""
    base = (fused_step.GPU_CONFIG if torch.cuda.is_available() else fused_step.INTERPRETER_CONFIG)._replace(
        **SMALL_TILES[tiles])
    fused, reference = fused_against_layers(LOADS_AHEAD_MODELS[model](), weights, 128, 40,
                                            base._replace(loads_ahead=fused_step.MATRICES))
    if torch.cuda.is_available():
        in_turn, _ = fused_against_layers(LOADS_AHEAD_MODELS[model](), weights, 128, 40, base)
        for a, b in zip(fused, in_turn):
            assert torch.equal(a, b)
    torch.testing.assert_close(fused[0], reference[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(fused[1], reference[1])
    torch.testing.assert_close(fused[2], reference[2], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused[3], reference[3], atol=1e-6, rtol=1e-5)


# (columns N, K, GLU) of each matrix's GEMV in a Qwen2 of hidden size 40: heads 4 of 10, KV heads 2, I = 80.
GEMV_OF = {"qkv": (80, 40, False), "o": (40, 40, False), "gate_up": (80, 40, True), "down": (40, 80, False),
           "lm_head": (97, 40, False)}


@pytest.mark.parametrize("ahead", [("gate_up",), ("qkv", "down", "lm_head"), ("o",)])
def test_loads_ahead_in_some_matrices_reach_their_own_phases(ahead, monkeypatch):
    """Loads a round ahead in the named matrices only: the ahead form runs for exactly their GEMVs (its
    calls recorded under the interpreter) and the step equals the layer-by-layer decoder."""
    if torch.cuda.is_available():
        pytest.skip("the ahead form's calls are recorded under the interpreter only")
    from specdraft.engine import triton_fused_gemv

    ahead_form, calls = triton_fused_gemv.gemv_columns_ahead, []
    names = list(inspect.signature(ahead_form.fn).parameters)

    def recording(*args):
        calls.append(tuple(getattr(args[names.index(n)], "handle", None) for n in ("N", "K")) + (
            args[names.index("GLU")],))
        return ahead_form(*args)

    monkeypatch.setattr(triton_fused_gemv, "gemv_columns_ahead", recording)
    config = fused_step.INTERPRETER_CONFIG._replace(**SMALL_TILES["k-chunks"], loads_ahead=ahead)
    fused, reference = fused_against_layers(tiny_qwen2(0, hidden_size=40), "int8", 128, 40, config)
    assert {(n.data.item(), k.data.item(), bool(glu)) for n, k, glu in calls} == {GEMV_OF[m] for m in ahead}
    torch.testing.assert_close(fused[0], reference[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(fused[1], reference[1])
    torch.testing.assert_close(fused[2], reference[2], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused[3], reference[3], atol=1e-6, rtol=1e-5)


def test_fused_argmax_breaks_ties_as_torch_does():
    """Equal largest logits in one program's columns and in different programs' (97 over 3 programs: 0..,
    32.., 64..): rows 40, 41 and 70 hold r, the rest -r, so those tie, or all others do; the first column wins,
    as torch.argmax's."""
    model = tiny_qwen2(0)
    with torch.no_grad():
        r = model.lm_head.weight[0].clone()
        model.lm_head.weight.copy_(-r)
        model.lm_head.weight[[40, 41, 70]] = r
    fused, reference = fused_against_layers(model, "model_dtype", 64, 9)
    assert fused[1].item() == reference[1].item() in (0, 40)


def test_speculative_decoding_with_a_fused_draft_reproduces_target_greedy(monkeypatch):
    """Proposals through the fused kernel (spied on: every one of them) leave the output the target's greedy
    one, and propose what the layer-by-layer draft proposes."""
    pytest.importorskip("triton")
    from specdraft.decoding.speculative import speculative_generate

    target, draft = tiny_qwen2(0).to(DEVICE), tiny_qwen2(1, hidden_size=16, num_hidden_layers=1).to(DEVICE)
    prompt = torch.randint(0, 97, (1, 21), generator=torch.Generator().manual_seed(0)).to(DEVICE)

    def run():
        result = speculative_generate(Engine.from_hf(target, max_seq_len=64), Engine.from_hf(draft, max_seq_len=64),
                                      prompt, num_speculative_tokens=3, max_new_tokens=14)
        return result.token_ids, result.stats.num_accepted_per_position

    with tuning.use(tuning.KernelTuner(launch=TORCH_PATH)):
        unfused = run()
    calls = []
    original = fused_step.FusedStep.__call__

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(fused_step, "fast_kernels", lambda x: True)
    monkeypatch.setattr(fused_step.FusedStep, "__call__", spy)
    with tuning.use(tuning.KernelTuner(launch=tuning.LaunchOptions(families=frozenset({"fused_step"})))):
        fused = run()
    assert len(calls) >= 6 and all(calls)
    assert torch.equal(fused[0].cpu(), hf_greedy(target, prompt, 14))
    assert torch.equal(fused[0], unfused[0]) and fused[1] == unfused[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the grid barrier runs on a GPU only")
@pytest.mark.parametrize("weights", ["model_dtype", "int8"])
def test_one_launch_with_grid_barriers_equals_one_launch_a_phase(weights):
    """On the GPU the persistent kernel (programs meeting at grid barriers, L2 prefetch on) computes what
    launching each phase on its own computes, bit for bit, and both equal the layer-by-layer decoder."""
    makes = (lambda: tiny_qwen2(0, hidden_size=64, num_hidden_layers=3), lambda: tiny_qwen3(0))
    ahead = [fused_step.GPU_CONFIG._replace(loads_ahead=m) for m in (fused_step.MATRICES, ("qkv", "o", "lm_head"))]
    for make, config in itertools.product(makes, [fused_step.GPU_CONFIG, *ahead]):
        barrier, reference = fused_against_layers(make(), weights, 256, 70, config)
        phases, _ = fused_against_layers(make(), weights, 256, 70, config._replace(barrier=False))
        for a, b in zip(barrier, phases):
            assert torch.equal(a, b)
        torch.testing.assert_close(barrier[0], reference[0], atol=1e-5, rtol=1e-5)
        assert torch.equal(barrier[1], reference[1])
