"""Training throughput and memory of the project's own training path (`specdraft.stages.train.sft_lora`: TRL's
SFTTrainer + PEFT LoRA) at the seed's shapes, random weights (models.source: random), synthetic examples of
exactly --max-length tokens.

    python benchmarks/train_mfu.py --out docs/rehearsal/train_mfu_h200.json            # every variant, ~5 min
    python benchmarks/train_mfu.py --variants target_bf16 --steps 6 --out /tmp/x.json
    python benchmarks/train_mfu.py --variants target_bf16 --num-gpus 2 --accumulation 2 --out /tmp/dp.json

--num-gpus N runs each variant data-parallel in N processes (torchrun, one GPU each), --accumulation A
micro-batches a step over them all (A / N a GPU): at the same A, runs with different N train at the same global
batch of batch_size x A examples, batch_size x max_length tokens a GPU a micro-step.

Variants (each in its own process, so that peaks and memory caps do not mix):
  target_bf16         14B, LoRA r=16 on all linear layers, gradient checkpointing, 4 x 1024 tokens a step
  target_bf16_no_gc   the same without gradient checkpointing (no recomputed forward: more memory, more MFU)
  target_bf16_no_gc_liger   and with Liger's RMSNorm / SwiGLU / RoPE kernels (train_*.liger_kernels)
  target_4bit_24gib   the same with the base in NF4 (QLoRA), the process capped at 24 GiB
  target_4bit_cap     QLoRA under configs/24gb.yaml's gpu.memory_gib (21.5 GiB; --memory-gib overrides)
  target_4bit_liger_cap   and with Liger's kernels, as configs/24gb.yaml trains the target
  draft_24gib         0.5B (vocabulary padded to the target's), r=32, 8 x 1024, capped at 24 GiB (24gb.yaml)
  target_tiny / draft_tiny   scaled-down shapes: a check that runs anywhere, a CPU included

MFU = tokens/s x 6N / peak, N = the base's parameters (embeddings included), the peak the dense bf16 tensor
peak of the GPU (H200: 989.4 TFLOP/s, the H100 SXM's; table in specdraft/plumbing/gpu_stats.py). Tokens are TRL's
count of non-padding tokens; "steady" leaves out the first optimizer step (allocation, kernel selection).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 128}
VARIANTS = {
    "target_bf16": dict(role="target", batch_size=4, r=16, quantization="none", gradient_checkpointing=True),
    "target_bf16_no_gc": dict(role="target", batch_size=4, r=16, quantization="none", gradient_checkpointing=False),
    "target_bf16_no_gc_liger": dict(role="target", batch_size=4, r=16, quantization="none",
                                    gradient_checkpointing=False, liger_kernels=True),
    "target_4bit_24gib": dict(role="target", batch_size=4, r=16, quantization="4bit", gradient_checkpointing=True,
                              memory_gib=24),
    "target_4bit_cap": dict(role="target", batch_size=4, r=16, quantization="4bit", gradient_checkpointing=True,
                            memory_gib=21.5),
    "target_4bit_liger_cap": dict(role="target", batch_size=4, r=16, quantization="4bit",
                                  gradient_checkpointing=True, liger_kernels=True, memory_gib=21.5),
    "draft_24gib": dict(role="draft", batch_size=8, r=32, quantization="none", gradient_checkpointing=True,
                        memory_gib=24),
    "target_tiny": dict(role="target", batch_size=4, r=16, quantization="none", gradient_checkpointing=True,
                        overrides=SMALL),
    "draft_tiny": dict(role="draft", batch_size=8, r=32, quantization="none", gradient_checkpointing=True,
                       overrides=SMALL),
}
GPU_VARIANTS = ["target_bf16", "target_bf16_no_gc", "target_bf16_no_gc_liger", "target_4bit_24gib", "draft_24gib"]
ARCHITECTURES = {"target": "Qwen/Qwen2.5-14B-Instruct", "draft": "Qwen/Qwen2.5-0.5B-Instruct"}


def synthetic_examples(num: int, seed: int) -> list[dict]:
    """Prompt-completion examples whose completion (digits: one Qwen token each) outruns any max_length."""
    from specdraft.data.prompts import prompt_messages
    from specdraft.stages.train import prompt_completion

    rng = random.Random(seed)
    return [prompt_completion(prompt_messages(f"What is {rng.randint(10, 99)} + {rng.randint(10, 99)}?", "cot"),
                              " ".join(str(rng.randint(100, 999)) for _ in range(1200)), enable_thinking=False)
            for _ in range(num)]


def run_variant(name: str, steps: int, max_length: int, seed: int, accumulation: int, num_gpus: int,
                memory_gib: float | None = None) -> dict:
    import torch

    from specdraft.plumbing.config import LoraConfig, TrainingConfig
    from specdraft.plumbing.data_parallel import process_device, this_process
    from specdraft.plumbing.gpu_stats import cap_memory
    from specdraft.models.loading import load_base_weights, load_tokenizer, pad_vocab, resolve_device, vocab_size_of
    from specdraft.models.random_weights import write_random_checkpoint
    from specdraft.stages.train import sft_lora

    spec = VARIANTS[name]
    device = process_device(resolve_device("auto"))
    if spec.get("memory_gib"):
        cap_memory(device, memory_gib if memory_gib is not None else spec["memory_gib"], 1.0)
    cfg = TrainingConfig(
        epochs=1, learning_rate=2e-4, batch_size=spec["batch_size"], gradient_accumulation_steps=accumulation,
        num_gpus=num_gpus,
        max_length=max_length, gradient_checkpointing=spec["gradient_checkpointing"],
        lora=LoraConfig(r=spec["r"], alpha=2 * spec["r"], dropout=0.05,
                        target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
        quantization=spec["quantization"], liger_kernels=spec.get("liger_kernels", False), padding_free=False,
        save_steps=0, mem_mb=16000)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for role, arch in ARCHITECTURES.items():
            write_random_checkpoint(arch, seed, tmp / role, spec.get("overrides"))
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        model = load_base_weights(tmp / spec["role"], dtype=dtype, device=device, quantization=cfg.quantization)
        if spec["role"] == "draft":
            pad_vocab(model, vocab_size_of(tmp / "target"))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        load_seconds = time.perf_counter() - start
        model.train()
        examples = synthetic_examples(steps * cfg.batch_size * accumulation, seed)
        sft_lora(model, load_tokenizer(tmp / spec["role"]), examples, cfg, tmp / "adapter", seed)
        if not this_process().is_main:  # rank 0 alone wrote the adapter and its figures
            return {}
        stats = json.loads((tmp / "adapter" / "train_stats.json").read_text())
        history = json.loads((tmp / "adapter" / "log_history.json").read_text())
    if spec.get("memory_gib") and memory_gib is not None:
        spec = {**spec, "memory_gib": memory_gib}
    return {"variant": name, **spec, "max_length": max_length, "steps": steps, "accumulation": accumulation,
            "num_gpus": num_gpus, "load_seconds": round(load_seconds, 2),
            "losses": [h["loss"] for h in history if "loss" in h], **stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=GPU_VARIANTS)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per variant")
    parser.add_argument("--max-length", type=int, default=1024, help="tokens per example")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gib", type=float, help="the cap of the capped variants (default: each its own)")
    parser.add_argument("--num-gpus", type=int, default=1, help="data-parallel processes, one GPU each")
    parser.add_argument("--accumulation", type=int, default=1,
                        help="micro-batches a step over all processes (a multiple of --num-gpus)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--run", choices=list(VARIANTS), help=argparse.SUPPRESS)  # one variant, in this process
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")

    if args.run:
        kwargs = dict(name=args.run, steps=args.steps, max_length=args.max_length, seed=args.seed,
                      accumulation=args.accumulation, num_gpus=args.num_gpus, memory_gib=args.memory_gib)
        if args.num_gpus > 1:
            import train_mfu  # this file by its module name, which the launched processes can import

            from specdraft.plumbing.data_parallel import launch

            print(json.dumps(launch(train_mfu.run_variant, kwargs, args.num_gpus, on_gpus=True)))
        else:
            print(json.dumps(run_variant(**kwargs)))
        return
    results = []
    for name in args.variants:
        command = [sys.executable, __file__, "--run", name, "--steps", str(args.steps), "--max-length",
                   str(args.max_length), "--seed", str(args.seed), "--num-gpus", str(args.num_gpus),
                   "--accumulation", str(args.accumulation), "--out", os.devnull,
                   *(["--memory-gib", str(args.memory_gib)] if args.memory_gib is not None else [])]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = round(time.perf_counter() - start, 1)
        if done.returncode == 0:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        else:  # an out-of-memory under the cap is a result too
            result = {"variant": name, **VARIANTS[name], "failed": True, "error": done.stderr.strip()[-1500:]}
        result["process_seconds"] = wall
        results.append(result)
        steady = result.get("steady", {})
        print(f"{name:20s} {steady.get('tokens_per_second')} tok/s  MFU {steady.get('mfu')}  "
              f"peak {result.get('peak_allocated_gib')} GiB allocated / {result.get('peak_reserved_gib')} reserved"
              f"{'  FAILED' if result.get('failed') else ''}  ({wall} s)", flush=True)
    record = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.node(),
              "conditions": {"steps": args.steps, "max_length": args.max_length, "seed": args.seed,
                             "num_gpus": args.num_gpus, "accumulation": args.accumulation,
                             "weights": "random (models.source: random), shipped Qwen2.5 configs",
                             "flops_per_token": "6N, N = base parameters incl. embeddings"},
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
