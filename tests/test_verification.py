import pytest
import torch

from specdraft.decoding.verification import rejection_sample_batch, verify_greedy_batch


def one_hot_logits(ids, vocab=6):
    logits = torch.zeros(len(ids), vocab)
    logits[torch.arange(len(ids)), torch.tensor(ids)] = 5.0
    return logits


@pytest.mark.parametrize("draft, target, accepted, next_token", [
    ([1, 2, 3], [1, 2, 3, 4], 3, 4),   # all accepted: bonus token
    ([1, 2, 3], [1, 5, 3, 4], 1, 5),   # first rejection at position 1: recovered token
    ([1, 2, 3], [0, 2, 3, 4], 0, 0),   # rejected at once
    ([], [2], 0, 2),                   # no proposal: the target's own next token
])
def test_verify_greedy(draft, target, accepted, next_token):
    n, token = verify_greedy_batch(torch.tensor([draft], dtype=torch.long), one_hot_logits(target)[None])
    assert (n.tolist(), token.tolist()) == ([accepted], [next_token])


@pytest.mark.slow
def test_rejection_sampling_reproduces_the_target_distribution():
    """The emitted tokens follow the target's distribution whatever the draft's (Leviathan et al. 2023,
    Theorem 1). Checked on the first two emitted positions, as vLLM's rejection sampler tests do."""
    vocab, k, trials = 5, 2, 30000
    g = torch.Generator().manual_seed(0)
    p1 = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])          # target at position 1
    p2_given = torch.softmax(torch.randn(vocab, vocab, generator=g), dim=-1)  # target at position 2 | token 1
    q1 = torch.tensor([0.1, 0.1, 0.2, 0.3, 0.3])            # a poor draft
    q2 = torch.full((vocab,), 1 / vocab)
    first, second = torch.zeros(vocab), torch.zeros(vocab, vocab)
    for _ in range(trials):
        d1 = int(torch.multinomial(q1, 1, generator=g))
        d2 = int(torch.multinomial(q2, 1, generator=g))
        p3 = torch.full((vocab,), 1 / vocab)
        target_probs = torch.stack([p1, p2_given[d1], p3])
        n, token = rejection_sample_batch(torch.tensor([[d1, d2]]), torch.stack([q1, q2])[None], target_probs[None], g)
        emitted = [d1, d2][: int(n)] + [int(token)]
        first[emitted[0]] += 1
        if len(emitted) > 1:
            second[emitted[0], emitted[1]] += 1
    assert (first / trials - p1).abs().max() < 0.015
    for t in range(vocab):  # the second token given the first follows the target's conditional
        if second[t].sum() > 2000:
            assert (second[t] / second[t].sum() - p2_given[t]).abs().max() < 0.04


def test_rejection_sampling_accepts_an_identical_draft():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(4, 7, generator=g), dim=-1)
    for _ in range(200):
        ids = torch.multinomial(probs[:3], 1, generator=g)[:, 0]
        n, _ = rejection_sample_batch(ids[None], probs[None, :3], probs[None], g)
        assert int(n) == 3


def test_rejection_sampling_never_accepts_a_token_the_target_rules_out():
    p = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    q = torch.tensor([[1.0, 0.0, 0.0]])
    n, token = rejection_sample_batch(torch.tensor([[0]]), q[None], p[None])
    assert (int(n), int(token)) == (0, 1)


def test_top_p_keeps_the_smallest_nucleus_reaching_p():
    from specdraft.decoding.verification import probabilities

    logits = torch.tensor([[0.5, 0.25, 0.15, 0.1]]).log()
    assert torch.allclose(probabilities(logits, 1.0, top_p=0.7), torch.tensor([[2 / 3, 1 / 3, 0, 0]]))
    assert torch.allclose(probabilities(logits, 1.0, top_p=0.75), torch.tensor([[2 / 3, 1 / 3, 0, 0]]))
    assert torch.allclose(probabilities(logits, 1.0, top_p=0.76), torch.tensor([[0.5, 0.25, 0.15, 0]]) / 0.9)
    assert torch.allclose(probabilities(logits, 1.0, top_p=0.1), torch.tensor([[1.0, 0, 0, 0]]))
    assert torch.allclose(probabilities(logits, 1.0), torch.tensor([[0.5, 0.25, 0.15, 0.1]]))


@pytest.mark.slow
def test_speculative_sampling_follows_the_target_distribution_end_to_end():
    """Two generated tokens from tiny models (vocabulary 12), temperature 0.8 and top-p 0.9: the marginals
    of the first and second token match the target's, computed exactly, and not the draft's."""
    from specdraft.decoding.speculative import speculative_generate
    from tests.sampling_marginals import WARP, exact_marginals, peaked_pair, total_variation

    target, draft = peaked_pair()
    prompt = torch.tensor([[3, 1, 4]])

    first, second = torch.zeros(12), torch.zeros(12)
    g, runs = torch.Generator().manual_seed(0), 2000
    for _ in range(runs):
        out = speculative_generate(target, draft, prompt, num_speculative_tokens=2, max_new_tokens=2, generator=g,
                                   **WARP)
        first[out.token_ids[0]] += 1
        second[out.token_ids[1]] += 1

    target_first, target_second = exact_marginals(target, [3, 1, 4])
    draft_first, _ = exact_marginals(draft, [3, 1, 4])
    assert total_variation(first / runs, target_first) < 0.04 and total_variation(second / runs, target_second) < 0.04
    assert total_variation(target_first, draft_first) > 0.2  # the draft alone would fail the test above
