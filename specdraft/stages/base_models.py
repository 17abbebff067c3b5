"""The demo's base models: a small BPE tokenizer and two Qwen2 models standing in for Qwen2.5-14B/0.5B-Instruct
(same template, the target's vocabulary padded larger), pretrained briefly on CoT chats so the baseline writes CoT."""

from __future__ import annotations

import logging
import math
import os

import torch

from specdraft.plumbing.atomic import atomic_path
from specdraft.plumbing.config import DataConfig, ModelShape, TinyConfig
from specdraft.data.sources import load_problems
from specdraft.data.styles import cot_solution
from specdraft.plumbing.logs import Progress
from specdraft.data.prompts import chat_messages

log = logging.getLogger(__name__)

PRETRAIN_WINDOW = 256

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2.5's template without the tool-calling branches.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts`, with Qwen's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHAT_TEMPLATE, clean_up_tokenization_spaces=False,
    )


def build_model(shape: ModelShape, num_tokens: int, max_position_embeddings: int, seed: int):
    """A randomly initialised Qwen2 causal LM whose vocabulary is `num_tokens` padded to `shape.vocab_multiple`."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=math.ceil(num_tokens / shape.vocab_multiple) * shape.vocab_multiple,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=None,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)


def pretraining_conversations(data: DataConfig) -> list[list[dict[str, str]]]:
    """Chat-formatted Chain of Thought conversations over every bundled training problem."""
    conversations = []
    for dataset, source in (("gsm8k", data.gsm8k), ("math", data.math)):
        problems, _ = load_problems(dataset, "train", source)
        conversations += [chat_messages(p.problem, "cot", cot_solution(p, dataset)) for p in problems]
    return conversations


def pretrain(model, tokenizer, conversations: list[list[dict]], tiny: TinyConfig, seed: int,
             what: str = "pretrain") -> list[float]:
    """Full-parameter next-token training on random windows of the conversations; the loss of every step.
    A plain loop, not TRL: at these sizes TRL's per-step bookkeeping outweighs the step itself."""
    text_ids = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=False) for c in conversations]
    stream = torch.tensor([t for ids in text_ids for t in ids])  # [num_tokens]
    window = min(PRETRAIN_WINDOW, tiny.max_position_embeddings, len(stream) - 1)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tiny.pretrain_learning_rate, weight_decay=0.01)
    warmup = max(1, tiny.pretrain_steps // 20)

    def lr_lambda(step: int) -> float:  # linear warm-up, then cosine decay to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, tiny.pretrain_steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    model.train()
    losses = []
    progress = Progress(what, tiny.pretrain_steps)
    for step in range(tiny.pretrain_steps):
        starts = torch.randint(0, len(stream) - window, (tiny.pretrain_batch_size,), generator=generator)
        batch = torch.stack([stream[s : s + window] for s in starts.tolist()])  # [batch, window]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        progress.update(step + 1, loss=losses[-1])
    model.eval()
    return losses


def build_base_models(tiny: TinyConfig, data: DataConfig, seed: int, target_dir: str | os.PathLike,
                      draft_dir: str | os.PathLike) -> None:
    """Train the tokenizer, build and pretrain target and draft, and save each with the tokenizer."""
    conversations = pretraining_conversations(data)
    texts = [m["content"] for conversation in conversations for m in conversation]
    tokenizer = train_tokenizer(texts, tiny.vocab_size)
    log.info("tokenizer: %d tokens", len(tokenizer))
    for role, shape, out_dir in (("target", tiny.target, target_dir), ("draft", tiny.draft, draft_dir)):
        model = build_model(shape, len(tokenizer), tiny.max_position_embeddings, seed)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        losses = pretrain(model, tokenizer, conversations, tiny, seed, what=f"pretrain {role}")
        log.info("%s: %d parameters, vocabulary %d, loss %.3f -> %.3f", role, model.num_parameters(),
                 model.config.vocab_size, losses[0], losses[-1])
        with atomic_path(out_dir, directory=True) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
