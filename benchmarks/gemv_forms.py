"""One-row int8 matmuls as a decode step calls them (norm, bias, GLU, residual folded in), each matrix of the
seed's target and draft: the tuned choice against the GEMV form's tiles, with the products summed over K
after the loop or in every round (SUM_AFTER), int8 converted by integer ops or by the conversion
instruction (FAST_INT8), the epilogue's scale, bias and residual read after or before the loop
(`Config.early_epilogue`), and each round's tiles loaded in the round or a round ahead (`Config.loads_ahead`);
the two single changes are timed at the best tile of both, and cuBLAS on bf16
weights of the same shape is the peer. Every timed output is checked against a float32 reference (a tile
that differs by more than TOLERANCE counts as failed). Times are CUDA-graph replays over weight copies of
512 MB or 32 of them (the draft's qkv and o then fit in L2); the floor is reading the weight once at the
copy bandwidth measured in the same run.

    python benchmarks/gemv_forms.py --out gemv_forms.json
    python benchmarks/gemv_forms.py --weights bf16 --out gemv_forms_bf16.json   # bf16 weights: the table's
                                                      # GEMV tiles in both forms, and cuBLAS
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from engine_speed import copy_bandwidth
from linear_kernels import FORMS, SHAPES, replay_us

# (block_n, block_k, split_k, num_warps, num_stages) of the GEMV form: at most 16K products a program holds.
GEMV_TILES = ((4, 1024, 1, 4, 3), (8, 1024, 1, 4, 2), (8, 1024, 1, 4, 3), (8, 512, 1, 4, 3), (8, 512, 1, 4, 4),
              (16, 512, 1, 4, 3), (16, 512, 1, 8, 3), (16, 256, 1, 4, 4), (32, 256, 1, 8, 4), (16, 1024, 1, 8, 2),
              (32, 512, 1, 8, 3), (8, 512, 2, 4, 3), (16, 512, 2, 4, 3), (4, 2048, 1, 4, 2), (8, 2048, 1, 8, 2))
BF16_TABLE_TILES = ((8, 1024, 1, 4, 2), (4, 1024, 1, 4, 3))  # the GEMV choices the H200 table holds for bf16
VARIANTS = {"sum_after+fast_int8": dict(sum_after=True, fast_int8=True),  # launch_linear's GEMV form
            # and the same with scale, bias and residual read before the loop (`Config.early_epilogue`), then
            # also each round's tiles a round ahead (`Config.loads_ahead`): the tuner's candidate
            # (sum_after None: after the loop for int8 weights, every round for bf16, as the tuner's launches)
            "sum_after+fast_int8+early_epilogue": dict(sum_after=None, fast_int8=True, early_epilogue=True),
            "sum_after+fast_int8+early_epilogue+loads_ahead": dict(sum_after=None, fast_int8=True,
                                                                   early_epilogue=True, loads_ahead=True),
            "sum_after": dict(sum_after=True, fast_int8=False),
            "sum_each_round+fast_int8": dict(sum_after=False, fast_int8=True),
            "sum_each_round (before)": dict(sum_after=False, fast_int8=False)}


TOLERANCE = 2e-2  # bf16 outputs: a few of bf16's 3.9e-3 steps; a wrong sum is off by far more


def float32_reference(x, w, scale, norm_weight, bias, residual, glu):
    """`quant.linear`'s torch path (the kernels' reference) in float32, the Triton kernels switched off."""
    from specdraft.engine import tuner as tuning
    from specdraft.engine.quant import linear

    as32 = {key: None if v is None else v.float() for key, v in
            dict(bias=bias, residual=residual, norm_weight=norm_weight).items()}
    with tuning.use(tuning.KernelTuner(launch=tuning.LaunchOptions(families=frozenset()))):
        return linear(x.float(), w if scale is not None else w.float(), None if scale is None else scale.float(),
                      eps=1e-6, glu=glu, **as32)


def folded_inputs(form: dict, rows: int, n: int, k: int, device: torch.device, dtype: torch.dtype) -> dict:
    """The norm weight, bias and residual a matrix of `FORMS` folds in (None where it folds none), random."""
    out_n = n // 2 if form.get("glu") else n
    return dict(norm_weight=torch.rand(k, device=device, dtype=dtype) + 0.5 if form.get("norm") else None,
                bias=torch.randn(n, device=device, dtype=dtype) if form.get("bias") else None,
                residual=torch.randn(rows, out_n, device=device, dtype=dtype) if form.get("residual") else None)


def checked_replay(call, copies: int, out: torch.Tensor, reference: torch.Tensor) -> dict | str:
    """{"us", "max_rel_diff_to_float32"} of call(i), which writes `out`, replayed from a graph and then checked
    against `reference`; or why it failed (a tile this GPU rejects, or one further than TOLERANCE off)."""
    try:
        us = replay_us(call, copies)
        call(0)
        error = float((out.float() - reference).abs().max() / reference.abs().max())
        if error > TOLERANCE:
            raise AssertionError(f"differs from the float32 reference by {error:.1e} of its largest value")
        return {"us": us, "max_rel_diff_to_float32": error}
    except Exception as e:  # noqa: BLE001  a tile this GPU rejects
        return f"failed: {type(e).__name__}: {e}"[:200]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gemv_forms.json")
    parser.add_argument("--models", default="target,draft")
    parser.add_argument("--weights", choices=["int8", "bf16"], default="int8")
    args = parser.parse_args()

    from specdraft.engine.linear_kernel import Config, fused_linear, launch_linear
    from specdraft.engine.quant import quantize_int8

    device = torch.device("cuda")
    bandwidth = copy_bandwidth(device, 2 * 1024**3)  # as engine_speed.py measures its floor
    started = time.time()
    results = {"command": "python " + " ".join(sys.argv), "gpu": torch.cuda.get_device_name(device),
               "torch": torch.__version__, "copy_bandwidth_bytes_per_s": bandwidth,
               "conditions": f"batch 1, bf16 activations, {args.weights} weights (int8: a scale per row; FAST_INT8 "
                             "changes nothing for bf16), random weights, the shipped kernel table for the tuned "
                             "choice; CUDA-graph replays, median of 5",
               "matrices": {}}
    for model in args.models.split(","):
        for name, (n, k, count) in SHAPES[model].items():
            form = FORMS[name]
            glu = form.get("glu", False)
            copies = max(2, min(32, math.ceil(512 * 1024**2 / (n * k))))
            g = torch.Generator(device=device).manual_seed(0)
            weights = [torch.randn(n, k, device=device, dtype=torch.bfloat16, generator=g) / 30 for _ in range(copies)]
            if args.weights == "int8":
                q, s = zip(*(quantize_int8(w, torch.bfloat16) for w in weights))
            else:
                q, s = weights, [None] * copies
            del weights
            x = torch.randn(1, k, device=device, dtype=torch.bfloat16, generator=g)
            out_n = n // 2 if glu else n
            extra = folded_inputs(form, 1, n, k, device, x.dtype)
            out = torch.empty((1, out_n), dtype=x.dtype, device=device)
            reference = float32_reference(x, q[0], s[0], glu=glu, **extra)
            row = {"N": n, "K": k, "per_step": count, "form": {**{key: v is not None for key, v in extra.items()},
                                                              "glu": glu},
                   "floor_us": n * k * q[0].element_size() / bandwidth * 1e6,
                   "tuned_us": replay_us(lambda i: fused_linear(x, q[i], s[i], glu=glu, **extra), copies),
                   "tiles": {}}

            def time_tile(tile, variant):
                flags = dict(VARIANTS[variant])
                config = Config(*tile, dot=False, early_epilogue=flags.pop("early_epilogue", False),
                                loads_ahead=flags.pop("loads_ahead", False))

                def call(i):
                    launch_linear(config, x, q[i], s[i], extra["bias"], extra["residual"], extra["norm_weight"],
                                  1e-6, glu, out, **flags)
                row["tiles"].setdefault(str(tile), {})[variant] = checked_replay(call, copies, out, reference)

            new, before = "sum_after+fast_int8", "sum_each_round (before)"
            if args.weights == "int8":  # cuBLAS, the peer, on bf16 weights of the same shape
                bf16 = [torch.randn(n, k, device=device, dtype=torch.bfloat16, generator=g) / 30 for _ in range(copies)]
            else:
                bf16 = q
            row["cublas_bf16_us"] = replay_us(lambda i: torch.nn.functional.linear(x, bf16[i]), copies)
            del bf16
            tiles = GEMV_TILES if args.weights == "int8" else BF16_TABLE_TILES
            for tile in tiles:  # every tile in the new form, the one before it, and with its loads issued early
                time_tile(tile, new)
                time_tile(tile, before)
                time_tile(tile, "sum_after+fast_int8+early_epilogue")
                time_tile(tile, "sum_after+fast_int8+early_epilogue+loads_ahead")
            timed = [(v["us"], t) for t, vs in row["tiles"].items() for var, v in vs.items()
                     if var == new and isinstance(v, dict)]
            if timed and args.weights == "int8":  # each change on its own, at the new form's best tile
                for variant in ("sum_after", "sum_each_round+fast_int8"):
                    time_tile({str(t): t for t in tiles}[min(timed)[1]], variant)
            timed = [(v["us"], t, var) for t, vs in row["tiles"].items() for var, v in vs.items() if isinstance(v, dict)]
            best = {var: min((us, t) for us, t, vv in timed if vv == var) for var in VARIANTS
                    if any(vv == var for _, _, vv in timed)}
            row["best"] = {var: {"tile": t, "us": us, "fraction_of_floor": row["floor_us"] / us}
                           for var, (us, t) in best.items()}
            row["tuned_fraction_of_floor"] = row["floor_us"] / row["tuned_us"]
            results["matrices"][f"{model}.{name}"] = row
            print(f"{model}.{name} [{n}x{k}] floor {row['floor_us']:.1f} us, tuned {row['tuned_us']:.1f}, "
                  f"cuBLAS bf16 {row['cublas_bf16_us']:.1f}; "
                  + "; ".join(f"{var} {us:.1f} {t}" for var, (us, t) in best.items()), flush=True)
            with open(args.out, "w") as f:  # after each matrix: a run cut short keeps what it measured
                json.dump(results, f, indent=1)
    results["seconds"] = time.time() - started
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
