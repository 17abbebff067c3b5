"""The transfer matrix: every draft against every target's answers, each cell equal to speculative decoding."""

import csv

import pytest
import torch

from specdraft.analysis.offline_acceptance import TargetOutput, greedy_extended, write_outputs
from specdraft.decoding.speculative import speculative_generate
from specdraft.analysis.palette import STYLE_COLOURS, shade, style_colour
from specdraft.analysis.transfer import plot_transfer, transfer, transfer_rows
from tests.tiny_models import tiny_qwen2
from tests.test_acceptance import close_draft

KS = (2, 4)
MAX_NEW = 24
EOS = 7


@pytest.fixture(scope="module")
def pair():
    """Two targets (as if tuned on two styles) and a draft close to each."""
    targets = {"cot": tiny_qwen2(0), "cod": tiny_qwen2(2)}
    drafts = {style: close_draft(model, 0.5, i) for i, (style, model) in enumerate(targets.items())}
    return targets, drafts


def prompts():
    return [torch.randint(0, 97, (1, 6 + 4 * i), generator=torch.Generator().manual_seed(i)) for i in range(3)]


def target_outputs(target) -> list[TargetOutput]:
    outputs = []
    for i, input_ids in enumerate(prompts()):
        output_ids, num_new = greedy_extended(target, input_ids[0].tolist(), max_new_tokens=MAX_NEW,
                                              eos_token_id=EOS, extra=max(KS))
        outputs.append(TargetOutput(f"q{i}", input_ids[0].tolist(), output_ids, num_new))
    return outputs


def test_every_cell_equals_speculative_decoding(pair):
    targets, drafts = pair
    outputs = {style: target_outputs(model) for style, model in targets.items()}
    rows = []
    for draft_style, draft in drafts.items():
        rows += transfer_rows("easy", outputs, draft_style, draft, KS, MAX_NEW)
    assert {(r.target, r.draft, r.k) for r in rows} == {(t, d, k) for t in targets for d in drafts for k in KS}
    for row in rows:
        measured = [speculative_generate(targets[row.target], drafts[row.draft], p, num_speculative_tokens=row.k,
                                         max_new_tokens=MAX_NEW, eos_token_id=EOS).stats for p in prompts()]
        assert (row.num_proposed, row.num_accepted, row.num_steps) == (
            sum(s.num_proposed for s in measured), sum(s.num_accepted for s in measured),
            sum(s.num_steps for s in measured))
        assert row.num_tokens == sum(o.num_new_tokens for o in outputs[row.target])
    # A draft close to one target serves it better than the other target.
    cell = {(r.target, r.draft, r.k): r.acceptance_rate for r in rows}
    assert cell[("cot", "cot", 2)] > cell[("cod", "cot", 2)]
    assert cell[("cod", "cod", 2)] > cell[("cot", "cod", 2)]


def test_identical_draft_accepts_everything(pair):
    targets, _ = pair
    rows = transfer_rows("hard", {"cod": target_outputs(targets["cod"])}, "cod", targets["cod"], KS, MAX_NEW)
    assert all(r.acceptance_rate == 1.0 and r.agreement_rate == 1.0 for r in rows)


def test_transfer_stage_from_saved_models(pair, tmp_path):
    targets, drafts = pair
    paths, draft_dirs = {}, {}
    for style in targets:
        paths[style] = tmp_path / f"{style}_outputs.jsonl"
        write_outputs(paths[style], target_outputs(targets[style]))
        drafts[style].save_pretrained(tmp_path / f"{style}_draft")
        draft_dirs[style] = (str(tmp_path / f"{style}_draft"), None)
    paths["untrained"] = paths["cot"]
    draft_dirs["untrained"] = draft_dirs["cod"]
    table, plot = tmp_path / "transfer_easy.csv", tmp_path / "plots/transfer_easy.png"
    transfer("easy", {s: str(p) for s, p in paths.items()}, draft_dirs, ks=KS, max_new_tokens=MAX_NEW,
             vocab_size=97, table_path=str(table), plot_path=str(plot), engine="auto", dtype="float32",
             device="cpu", engine_weights="model_dtype")
    rows = list(csv.DictReader(open(table)))
    assert len(rows) == 3 * 3 * len(KS)
    by_cell = {(r["target"], r["draft"], r["k"]): r for r in rows}
    # The untrained pair here reuses cot's answers and cod's draft, so its cells repeat theirs.
    for k in KS:
        assert by_cell[("untrained", "untrained", str(k))]["acceptance_rate"] == \
            by_cell[("cot", "cod", str(k))]["acceptance_rate"]
    assert plot.stat().st_size > 0


def test_plot_of_a_single_cell(pair, tmp_path):
    targets, drafts = pair
    rows = transfer_rows("medium", {"cot": target_outputs(targets["cot"])}, "cot", drafts["cot"], (3,), MAX_NEW)
    plot_transfer(rows, str(tmp_path / "one.png"))
    assert (tmp_path / "one.png").stat().st_size > 0


def test_palette():
    from specdraft.analysis import plots

    assert plots.STYLE_COLOURS is STYLE_COLOURS  # every plot takes its colours from one place
    assert len({style_colour(s) for s in ("cot", "cod", "untrained")}) == 3
    cod = style_colour("cod")
    assert shade("cod", 2, 3) == pytest.approx(tuple(int(cod[i:i + 2], 16) / 255 for i in (1, 3, 5)))
    lighter = shade("cod", 0, 3)
    assert all(a > b for a, b in zip(lighter, shade("cod", 2, 3)))
    with pytest.raises(ValueError, match="known styles"):
        style_colour("cox")
