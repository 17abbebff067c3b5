"""Batched speculative decoding on the native engine (CPU, float32): every row as if it ran alone."""

import pytest
import torch

from specdraft.decoding.batched import autoregressive_generate_batch, speculative_generate_batch
from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
from specdraft.engine import Engine
from specdraft.decoding.verification import rejection_sample_batch, sample_inverse_cdf, verify_greedy_batch
from tests.sampling_marginals import WARP, exact_marginals, peaked_pair, total_variation

MAX_NEW = 24
LENGTHS = (1, 2, 9, 4, 13, 3, 7, 5, 11, 6, 1, 8, 2, 10, 12, 3, 9, 4, 6, 14)  # 20 prompts: rows get refilled


@pytest.fixture(scope="module")
def engines(target, draft):
    return (Engine.from_hf(target, max_seq_len=128, max_batch_size=16),
            Engine.from_hf(draft, max_seq_len=128, max_batch_size=16))


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(7)
    return [torch.randint(0, 97, (n,), generator=g).tolist() for n in LENGTHS]


@pytest.fixture(scope="module")
def eos_and_references(engines, prompts):
    """An eos the target produces at different steps in different rows, and each row's batch-1 greedy
    output with it."""
    plain = [autoregressive_generate(engines[0], torch.tensor([p]), max_new_tokens=MAX_NEW).tolist()
             for p in prompts]
    counts = torch.bincount(torch.tensor([t for row in plain for t in row[:-2]]), minlength=97)
    eos = int(counts.argmax())
    references = [autoregressive_generate(engines[0], torch.tensor([p]), max_new_tokens=MAX_NEW,
                                          eos_token_id=eos).tolist() for p in prompts]
    stops = {len(r) for r in references if r[-1] == eos}
    assert len(stops) >= 3 and any(len(r) == MAX_NEW and r[-1] != eos for r in references)
    return eos, references


@pytest.mark.parametrize("concurrency", [2, 5, 16])
def test_every_row_equals_its_batch_one_greedy_output(engines, prompts, eos_and_references, concurrency):
    eos, references = eos_and_references
    for k in (1, 3):
        outputs = speculative_generate_batch(*engines, prompts, num_speculative_tokens=k, max_new_tokens=MAX_NEW,
                                             concurrency=concurrency, eos_token_id=eos)
        assert [o.token_ids.tolist() for o in outputs] == references
        alone = [speculative_generate(*engines, torch.tensor([p]), num_speculative_tokens=k, max_new_tokens=MAX_NEW,
                                      eos_token_id=eos).stats for p in prompts]
        assert [o.stats for o in outputs] == alone  # the same proposals, verdicts and steps as batch 1
        assert sum(o.stats.num_accepted for o in outputs) < sum(o.stats.num_proposed for o in outputs)
    plain = autoregressive_generate_batch(engines[0], prompts, max_new_tokens=MAX_NEW, concurrency=concurrency,
                                          eos_token_id=eos)
    assert [o.token_ids.tolist() for o in plain] == references


def test_timings_are_ordered_and_rows_wait_for_a_free_row(engines, prompts):
    outputs = speculative_generate_batch(*engines, prompts, num_speculative_tokens=2, max_new_tokens=8,
                                         concurrency=4)
    for o in outputs:
        assert 0 <= o.timing.admitted_s <= o.timing.first_token_s <= o.timing.finished_s
    # The first four start at once, the rest when a row frees up.
    assert all(o.timing.admitted_s == outputs[0].timing.admitted_s for o in outputs[:4])
    assert all(o.timing.admitted_s >= outputs[0].timing.first_token_s for o in outputs[4:])


def test_an_identical_draft_is_always_accepted_in_every_row(engines, prompts):
    twin = Engine(engines[0].decoder, max_seq_len=128, max_batch_size=16)  # same weights, its own cache
    outputs = speculative_generate_batch(engines[0], twin, prompts, num_speculative_tokens=4,
                                         max_new_tokens=MAX_NEW, concurrency=5)
    assert all(o.stats.acceptance_rate == 1.0 for o in outputs)
    assert all(o.stats.num_steps == -(-MAX_NEW // 5) for o in outputs)


def test_batched_decoding_refuses_hugging_face_models_and_too_long_rows(target, draft, engines):
    with pytest.raises(ValueError, match="native engine"):
        speculative_generate_batch(target, draft, [[1, 2]], num_speculative_tokens=2, max_new_tokens=4,
                                   concurrency=2)
    with pytest.raises(ValueError, match="max_seq_len"):
        speculative_generate_batch(*engines, [[1] * 100], num_speculative_tokens=4, max_new_tokens=24,
                                   concurrency=2)
    with pytest.raises(ValueError, match="max_batch_size"):
        autoregressive_generate_batch(Engine.from_hf(target, max_seq_len=64, max_batch_size=2), [[1]] * 3,
                                      max_new_tokens=4, concurrency=3)


def test_batched_greedy_verifier_finds_each_rows_first_disagreement():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, 9, generator=g)  # [B, k+1, V]
    draft_ids = logits[:, :3].argmax(-1)
    draft_ids[1, 0], draft_ids[2, 2], draft_ids[3, 1] = (draft_ids[1, 0] + 1) % 9, (draft_ids[2, 2] + 1) % 9, 0
    num_accepted, next_token = verify_greedy_batch(draft_ids, logits)
    target_ids = logits.argmax(-1).tolist()
    for row in range(6):
        n = next((i for i in range(3) if draft_ids[row, i] != target_ids[row][i]), 3)
        assert (int(num_accepted[row]), int(next_token[row])) == (n, target_ids[row][n])
    assert num_accepted[:3].tolist() == [3, 0, 2]


def test_batched_rejection_sampling_reproduces_the_target_distribution():
    """Leviathan et al. per row: each row's first emitted token follows its own target distribution,
    whatever its draft's; an identical draft is always accepted; a token the target rules out never is."""
    vocab, rows, trials = 5, 3, 20000
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(rows, 2, vocab, generator=g) * 2, dim=-1)  # [B, k+1, V], k = 1
    q = torch.softmax(torch.randn(rows, 1, vocab, generator=g) * 2, dim=-1)
    counts = torch.zeros(rows, vocab)
    for _ in range(trials // 100):
        draft_ids = torch.multinomial(q[:, 0].repeat(100, 1), 1, generator=g)  # [100 B, 1]
        n, token = rejection_sample_batch(draft_ids, q.repeat(100, 1, 1), p.repeat(100, 1, 1), g)
        first = torch.where(n > 0, draft_ids[:, 0], token).view(100, rows)
        counts += torch.nn.functional.one_hot(first, vocab).sum(0)
    assert (counts / trials - p[:, 0]).abs().max() < 0.015
    assert (q[:, 0] - p[:, 0]).abs().max() > 0.1  # the draft alone would fail the check above
    ids = torch.multinomial(p[:, 0], 1, generator=g)
    assert rejection_sample_batch(ids, p[:, :1], p, g)[0].tolist() == [1] * rows
    ruled_out = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])
    n, token = rejection_sample_batch(torch.tensor([[0]]), torch.tensor([[[1.0, 0.0, 0.0]]]), ruled_out)
    assert (int(n), int(token)) == (0, 1)


def test_inverse_cdf_sampling_follows_the_distribution_and_skips_zero_mass():
    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    u = torch.rand(40000, generator=torch.Generator().manual_seed(0))
    u[:3] = torch.tensor([0.0, 0.5, 1 - 2**-24])  # the edges of [0, 1)
    tokens = sample_inverse_cdf(probs.expand(len(u), -1), u)
    freq = torch.bincount(tokens, minlength=6) / len(u)
    assert (freq - probs).abs().max() < 0.01 and freq[probs == 0].sum() == 0


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weights", ["model_dtype", "int8"])  # model_dtype: float32 here
@pytest.mark.parametrize("batched", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["batched", "batch-1"])
def test_sampling_follows_the_target_distribution_end_to_end(device, weights, batched, request):
    """Two prompts, temperature 0.8 and top-p 0.9, decoded 16 rows at a time or one at a time: the first and
    second tokens of each prompt follow the target's exact marginals (of its int8 weights with
    weights='int8'), not the draft's. On a GPU through CUDA graphs and every Triton kernel (forced: split-K
    matmuls, split-KV attention, proposals with dependent launches)."""
    from specdraft.engine.quant import dequantized_copy

    if device == "cuda":
        request.getfixturevalue("triton_kernels_forced")
    target, draft = (m.to(device) for m in peaked_pair())
    reference = dequantized_copy(target, weights)  # what the engine computes (model_dtype: the model itself)
    prompts = [[3, 1, 4], [2, 7, 1, 8, 2]]
    runs = 1500
    engines = [Engine.from_hf(m, max_seq_len=32, max_batch_size=16, weights=weights) for m in (target, draft)]
    generator = torch.Generator(device).manual_seed(0)
    if batched:
        outputs = speculative_generate_batch(*engines, prompts * runs, num_speculative_tokens=2, max_new_tokens=2,
                                             concurrency=16, generator=generator, **WARP)
    else:
        outputs = [speculative_generate(*engines, torch.tensor([p], device=device), num_speculative_tokens=2,
                                        max_new_tokens=2, generator=generator, **WARP) for p in prompts * runs]

    for j, prompt in enumerate(prompts):
        ids = torch.stack([o.token_ids.cpu() for o in outputs[j::2]])  # [runs, 2]
        first, second = (torch.bincount(ids[:, i], minlength=12) / runs for i in (0, 1))
        target_first, target_second = exact_marginals(reference, prompt)
        assert total_variation(first, target_first) < 0.05 and total_variation(second, target_second) < 0.05
        assert total_variation(target_first, exact_marginals(draft, prompt)[0]) > 0.2  # the draft alone would fail


def test_batched_sampling_is_reproducible_with_a_generator(engines, prompts):
    def run(seed):
        outputs = speculative_generate_batch(*engines, prompts, num_speculative_tokens=3, max_new_tokens=12,
                                             concurrency=5, temperature=1.0, top_p=0.9,
                                             generator=torch.Generator().manual_seed(seed))
        return [o.token_ids.tolist() for o in outputs]

    assert run(0) == run(0) and run(0) != run(1)
