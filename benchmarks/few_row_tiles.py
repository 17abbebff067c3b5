"""The target's int8 matmuls at the few rows a verification multiplies (k + 1 tokens of one sequence), as a
decode step calls them (norm, bias, GLU, residual folded in): the tuned choice at those rows and at one row
(the one-token step's), every tensor-core tile of `linear_kernel.CANDIDATES`, and a grid of tiles in both
operand orders (`Config.swap`: the converted weight as the MMA's first operand, which Hopper's wgmma takes from
registers). Every timed output is checked against `quant.linear`'s torch path in float32 (a tile off by more
than gemv_forms.TOLERANCE counts as failed). Times are CUDA-graph replays over weight copies larger than L2
(median of 5); the floor is reading the weight once at the copy bandwidth measured in the same run.

    python benchmarks/few_row_tiles.py --rows 6 --out few_row_tiles.json
    python benchmarks/few_row_tiles.py --rows 1,6 --tiles "64,256,1,4,3;64,256,1,4,2" --no-swap   # these tiles only
    python benchmarks/few_row_tiles.py --fold none --matrices qkv,lm_head   # nothing folded in: what the fusions cost
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from engine_speed import copy_bandwidth
from gemv_forms import checked_replay, float32_reference, folded_inputs
from linear_kernels import FORMS, SHAPES, replay_us

# (block_n, block_k, split_k, num_warps, num_stages), each timed unswapped and swapped (block_m 16).
GRID = ((32, 256, 1, 4, 4), (32, 256, 2, 4, 4), (64, 128, 1, 4, 4), (64, 128, 2, 4, 4), (64, 128, 4, 4, 5),
        (64, 256, 1, 4, 3), (64, 256, 1, 4, 4), (64, 256, 2, 4, 4), (64, 512, 1, 4, 3), (128, 64, 1, 4, 4),
        (128, 128, 1, 4, 3), (128, 128, 1, 8, 4), (128, 128, 2, 8, 3), (128, 256, 1, 8, 3), (256, 128, 1, 8, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="few_row_tiles.json")
    parser.add_argument("--rows", default="6", help="row counts, comma-separated (at most 16)")
    parser.add_argument("--matrices", default="qkv,o,gate_up,down,lm_head")
    parser.add_argument("--tiles", help="tiles to time instead of CANDIDATES' and GRID's: "
                        "'block_n,block_k,split_k,num_warps,num_stages;...'")
    parser.add_argument("--no-swap", action="store_true", help="the unswapped operand order only")
    parser.add_argument("--placement", choices=["inside", "prepass"], default="inside",
                        help="where each tile's norm runs: inside its loop, or in `norm_prepass` before it")
    parser.add_argument("--fold", help="which of norm, bias, residual to fold in where the step folds it "
                        "(comma-separated, or 'none'; default: all, as a decode step calls each); GLU is always kept")
    args = parser.parse_args()

    from specdraft.engine.linear_kernel import CANDIDATES, Config, fused_linear, launch_with_norm
    from specdraft.engine.quant import quantize_int8

    device = torch.device("cuda")
    bandwidth = copy_bandwidth(device, 2 * 1024**3)
    started = time.time()
    tiles = (sorted({tuple(int(v) for v in t.split(",")) for t in args.tiles.split(";")}) if args.tiles else
             sorted({tuple(c)[:5] for c in CANDIDATES if c.dot} | set(GRID)))
    swaps = (False,) if args.no_swap else (False, True)
    placement = dict(fuse_norm=False, norm_prepass=True) if args.placement == "prepass" else {}
    results = {"command": "python " + " ".join(sys.argv), "gpu": torch.cuda.get_device_name(device),
               "torch": torch.__version__, "copy_bandwidth_bytes_per_s": bandwidth,
               "conditions": "bf16 activations, int8 weights (a scale per row), random weights, the shipped kernel "
                             "table for the tuned choices; CUDA-graph replays, median of 5"
                             + ("; as a decode step calls each" if args.fold is None else
                                f"; folded in where the step folds them: {args.fold} (GLU kept)")
                             + f"; the norm {args.placement}",
               "matrices": {}}
    for name in args.matrices.split(","):
        n, k, count = SHAPES["target"][name]
        form = {key: v for key, v in FORMS[name].items() if key == "glu" or args.fold is None
                or key in args.fold.split(",")}
        glu = form.get("glu", False)
        out_n = n // 2 if glu else n
        copies = max(2, min(32, math.ceil(512 * 1024**2 / (n * k))))
        g = torch.Generator(device=device).manual_seed(0)
        q, s = zip(*(quantize_int8(torch.randn(n, k, device=device, dtype=torch.bfloat16, generator=g) / 30,
                                   torch.bfloat16) for _ in range(copies)))
        for m in [int(r) for r in args.rows.split(",")]:
            x = torch.randn(m, k, device=device, dtype=torch.bfloat16, generator=g)
            extra = folded_inputs(form, m, n, k, device, x.dtype)
            one = {key: (v[:1] if key == "residual" and v is not None else v) for key, v in extra.items()}
            reference = float32_reference(x, q[0], s[0], glu=glu, **extra)
            out = torch.empty((m, out_n), dtype=x.dtype, device=device)
            row = {"N": n, "K": k, "M": m, "per_step": count, "floor_us": n * k / bandwidth * 1e6,
                   "tuned_us": replay_us(lambda i: fused_linear(x, q[i], s[i], glu=glu, **extra), copies),
                   "tuned_one_row_us": replay_us(lambda i: fused_linear(x[:1], q[i], s[i], glu=glu, **one), copies),
                   "tiles": {}}

            def time_tile(config):
                def call(i):
                    launch_with_norm(config, x, q[i], s[i], extra["bias"], extra["residual"], extra["norm_weight"],
                                     1e-6, glu, out)
                return checked_replay(call, copies, out, reference)

            for tile in tiles:
                for swap in swaps:
                    row["tiles"][f"{tile} swap={swap}"] = time_tile(Config(*tile, swap=swap, **placement))
            timed = {t: v["us"] for t, v in row["tiles"].items() if isinstance(v, dict)}
            for swap in swaps:
                mine = {t: us for t, us in timed.items() if t.endswith(f"swap={swap}")}
                if mine:
                    best = min(mine, key=mine.get)
                    row[f"best_swap_{swap}"] = {"tile": best, "us": mine[best]}
            row["verification_overhead_tuned"] = row["tuned_us"] / row["tuned_one_row_us"] - 1
            if timed:
                row["verification_overhead_best"] = min(timed.values()) / row["tuned_one_row_us"] - 1
            results["matrices"][f"target.{name}.M{m}"] = row
            print(f"target.{name} M={m} [{n}x{k}] floor {row['floor_us']:.1f} us, one row {row['tuned_one_row_us']:.1f},"
                  f" tuned {row['tuned_us']:.1f}; "
                  + "; ".join(f"swap={sw} {row[f'best_swap_{sw}']['us']:.1f} {row[f'best_swap_{sw}']['tile']}"
                              for sw in swaps if f"best_swap_{sw}" in row), flush=True)
            with open(args.out, "w") as f:  # after each matrix: a run cut short keeps what it measured
                json.dump(results, f, indent=1)
        del q, s
    for m in [int(r) for r in args.rows.split(",")]:
        rows = [r for key, r in results["matrices"].items() if key.endswith(f".M{m}")]
        if len(rows) == len(args.matrices.split(",")):
            step = {what: sum(r["per_step"] * r[what] for r in rows) / 1000 for what in ("tuned_us", "tuned_one_row_us")}
            best = sum(r["per_step"] * min(r["tuned_us"], *(v["us"] for v in r["tiles"].values()
                                                            if isinstance(v, dict))) for r in rows) / 1000
            results[f"step_matmuls_M{m}_ms"] = {"tuned": step["tuned_us"], "one_row_tuned": step["tuned_one_row_us"],
                                                "best_of_tiles_or_tuned": best}
            print(f"matmuls of a step, M={m}: tuned {step['tuned_us']:.3f} ms, one row {step['tuned_one_row_us']:.3f}, "
                  f"best tile each {best:.3f}", flush=True)
    results["seconds"] = time.time() - started
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
