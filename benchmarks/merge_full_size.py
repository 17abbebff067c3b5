"""The merge stage at full size, checked: a LoRA adapter on the random Qwen2.5-14B (models.source: random), merged
by `specdraft.stages.merge.merge_adapter` under a memory cap, then reloaded with plain transformers and its logits
compared with the adapter model's (`specdraft.stages.merge.check_merged`), both measured against the adapter model
computed in float32 on the same bf16 weights (59 GB: the check runs uncapped).

    PYTHONPATH=$PWD/h200_site:$PWD python benchmarks/merge_full_size.py --out $OUT/merge_full_size.json

The adapter (r=16 on every linear layer) gets B ~ N(0, --lora-std), so that it moves the logits well past
bf16's rounding: a merge that dropped it would fail the check. The merged model (29.5 GB) is written to --work.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPTS = ["Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
           "What is 48 + 24? Answer with the number only.", "Solve for x: 3x + 5 = 20."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--architecture", default="Qwen/Qwen2.5-14B-Instruct")
    parser.add_argument("--memory-gib", type=float, default=21.5, help="the allocator's cap while merging")
    parser.add_argument("--lora-std", type=float, default=2e-2)
    parser.add_argument("--work", type=Path, default=None, help="where base, adapter and merged model go")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model

    from specdraft.plumbing.gpu_stats import GIB, cap_memory, reset_peak_memory
    from specdraft.stages.merge import check_merged, merge_adapter
    from specdraft.models.loading import load_base_weights, resolve_device, resolve_dtype
    from specdraft.models.random_weights import TOKENIZER_DIR, TOKENIZER_FILES, write_random_checkpoint

    dev = resolve_device(args.device)
    dtype = "bfloat16" if dev.type == "cuda" else "float32"
    work = args.work or Path(tempfile.mkdtemp(prefix="merge_full_size-"))
    base, adapter, merged = work / "base", work / "adapter", work / "merged"
    timings = {}

    start = time.perf_counter()
    write_random_checkpoint(args.architecture, 0, base)
    model = load_base_weights(base, dtype=resolve_dtype(dtype, dev), device=dev)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                           "up_proj", "down_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    generator = torch.Generator(device=dev).manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, args.lora_std, generator=generator)
    peft_model.save_pretrained(adapter)
    for file in TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_DIR / file, adapter / file)
    del model, peft_model
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    timings["adapter_seconds"] = round(time.perf_counter() - start, 1)

    cap = cap_memory(dev, args.memory_gib, 1.0) if dev.type == "cuda" else None
    reset_peak_memory(dev)
    start = time.perf_counter()
    merge_adapter(base, adapter, merged, dtype=dtype, device=str(dev))
    timings["merge_seconds"] = round(time.perf_counter() - start, 1)
    merge_peak = round(torch.cuda.max_memory_allocated() / GIB, 3) if dev.type == "cuda" else None
    if dev.type == "cuda":
        torch.cuda.set_per_process_memory_fraction(1.0)  # the check holds one 14B at a time, past a 24 GB cap

    start = time.perf_counter()
    check = check_merged(base, adapter, merged, PROMPTS, dtype=dtype, device=str(dev),
                         reference_dtype="float32" if dtype != "float32" else None)
    timings["check_seconds"] = round(time.perf_counter() - start, 1)
    shards = {p.name: p.stat().st_size for p in merged.glob("*.safetensors")}
    record = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.node(),
              "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "torch": torch.__version__,
              "conditions": {"architecture": args.architecture, "dtype": dtype, "lora_r": 16,
                             "lora_std": args.lora_std, "merge_memory_cap_gib": cap, "prompts": PROMPTS},
              "merge_peak_allocated_gib": merge_peak, "shard_bytes": shards, **timings, "check": check.as_dict()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    if not check.passed:
        sys.exit(f"merge check failed: {check.as_dict()}")


if __name__ == "__main__":
    main()
