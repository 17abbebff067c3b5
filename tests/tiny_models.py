"""Tiny Qwen2 models built from config, and Hugging Face's greedy continuation as the reference output."""

from __future__ import annotations

import torch


def tiny_qwen2(seed: int, *, vocab_size: int = 97, hidden_size: int = 32, num_hidden_layers: int = 2):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=2 * hidden_size,
                         max_position_embeddings=256)
    return Qwen2ForCausalLM(config).eval()


def hf_greedy(model, prompt, max_new_tokens: int, eos_token_id=None) -> torch.Tensor:
    """Hugging Face's greedy continuation [new tokens] (on the host) of prompt (token ids: a list, [P] or
    [1, P]). The attention mask is given: without one, `generate` takes every token equal to pad_token_id
    for padding and masks it, and the tests' prompts hold token 0 (measured on the H200: a float32 engine
    test then parted from Hugging Face at a logit gap of 6.5e-3, docs/performance.md)."""
    ids = torch.as_tensor(prompt, device=model.device).reshape(1, -1)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=eos_token_id, pad_token_id=0, top_p=None, top_k=None, temperature=None)
    return out[0, ids.shape[1]:].cpu()
