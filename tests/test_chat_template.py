"""Chat templates render as the seed rendered them: Qwen3's real template, with thinking off everywhere."""

import pytest

from specdraft.decoding.generation import chat_prompt_ids
from specdraft.data.prompts import prompt_messages
from specdraft.models.random_weights import MODEL_CONFIGS, TOKENIZER_DIR

QWEN3_TEMPLATE = MODEL_CONFIGS / "qwen3-chat-template.jinja"
NON_THINKING = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


@pytest.fixture(scope="module")
def qwen3_tokenizer():
    """The shipped Qwen2.5 BPE (Qwen3 keeps its vocabulary) with Qwen3's own chat template."""
    from specdraft.models.loading import load_tokenizer

    tokenizer = load_tokenizer(TOKENIZER_DIR)
    tokenizer.chat_template = QWEN3_TEMPLATE.read_text()
    return tokenizer


def test_qwen3_prompt_is_the_non_thinking_one(qwen3_tokenizer):
    messages = prompt_messages("What is 48+24?", "cod")
    text = qwen3_tokenizer.decode(chat_prompt_ids(qwen3_tokenizer, messages, enable_thinking=False))
    assert text.startswith("<|im_start|>system\nThink step by step, but only keep a minimum draft")
    assert text.endswith("<|im_start|>user\nWhat is 48+24?<|im_end|>\n" + NON_THINKING)
    # The switch is what makes the difference: left on, the template leaves the model to open <think>.
    thinking = qwen3_tokenizer.decode(chat_prompt_ids(qwen3_tokenizer, messages, enable_thinking=True))
    assert thinking.endswith("<|im_start|>user\nWhat is 48+24?<|im_end|>\n<|im_start|>assistant\n")
    assert "<think>" not in thinking


def test_qwen3_training_sequence_extends_the_inference_prompt(qwen3_tokenizer):
    """TRL renders an example's prompt and prompt + completion with its chat_template_kwargs: the completion
    must follow the very prompt bench and distill decode from, empty think block included."""
    from specdraft.stages.train import prompt_completion

    example = prompt_completion(prompt_messages("What is 48+24?", "cod"), "48+24=72 #### 72", enable_thinking=False)
    prompt = qwen3_tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=False,
                                                 **example["chat_template_kwargs"])
    full = qwen3_tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False,
                                               **example["chat_template_kwargs"])
    assert prompt.endswith(NON_THINKING)
    assert full == prompt + "48+24=72 #### 72<|im_end|>\n"
    inference = qwen3_tokenizer.decode(chat_prompt_ids(qwen3_tokenizer, example["prompt"], enable_thinking=False))
    assert inference == prompt


def test_templates_without_the_switch_ignore_it():
    """The Qwen2.5 template (the demo's and the seed's default pair) renders the same either way."""
    from specdraft.models.loading import load_tokenizer

    tokenizer = load_tokenizer(TOKENIZER_DIR)
    messages = prompt_messages("What is 48+24?", "cot")
    assert chat_prompt_ids(tokenizer, messages, enable_thinking=False) == \
        chat_prompt_ids(tokenizer, messages, enable_thinking=True)
