"""`engine_weights` reaches every stage that serves a model: with int8 the acceptance stage predicts the int8
bench exactly (its target outputs are the int8 target's greedy ones, not the float model's), and the
transfer stage serves its drafts in int8."""

import csv
import json

import pytest
import torch

from specdraft.analysis.offline_acceptance import acceptance, check_predictions, read_outputs, write_outputs
from specdraft.stages.bench import bench
from specdraft.plumbing.config import load_config
from specdraft.decoding.speculative import autoregressive_generate
from specdraft.models.engine_choice import serve
from specdraft.data.prompts import prompt_messages
from tests.tiny_models import tiny_qwen2
from tests.test_acceptance import close_draft

QUESTIONS = ["What is 48+24?", "Natalia sold 48/2 clips?", "What is 7*6?", "How many is 3+4+5?", "What is 9-2?",
             "Half of 48 is?"]
MAX_NEW = 24


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny target/draft pair and its tokenizer, saved as a hub model would be, and a test set."""
    from specdraft.stages.base_models import train_tokenizer

    tokenizer = train_tokenizer(["What is 48+24? 48+24=72 #### 72", "Natalia sold 48/2 = 24 clips."] * 10, 300)
    target = tiny_qwen2(0, vocab_size=320)  # random weights whose greedy output int8 changes on these prompts
    draft = close_draft(target, 0.5, 0)
    root = tmp_path_factory.mktemp("pair")
    for name, model in (("target", target), ("draft", draft)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    with open(root / "test.jsonl", "w") as f:
        for i, question in enumerate(QUESTIONS):
            messages = prompt_messages(question, "cod") + [{"role": "assistant", "content": ""}]
            f.write(json.dumps({"id": str(i), "scenario": "easy", "answer": "72", "messages": messages}) + "\n")
    return root, target


def test_acceptance_predicts_the_int8_bench(pair, tmp_path):
    root, target = pair
    cfg = load_config({"bench": {"num_problems": len(QUESTIONS), "num_speculative_tokens": [1, 3],
                                 "max_new_tokens": MAX_NEW}}).bench
    served = {"target_adapter": None, "draft_adapter": None, "engine": "native", "dtype": "float32",
              "device": "cpu", "engine_weights": "int8", "enable_thinking": False}
    bench(str(root / "target"), str(root / "draft"), str(root / "test.jsonl"), str(tmp_path / "benchmark.csv"), cfg,
          seed=0, gpu=load_config({}).gpu, **served)
    acceptance(str(root / "target"), str(root / "draft"), str(root / "test.jsonl"), cfg,
               outputs_path=str(tmp_path / "target_outputs.jsonl"), positions_path=str(tmp_path / "acceptance.csv"),
               predictions_path=str(tmp_path / "prediction.csv"), **served)

    rows = list(csv.DictReader(open(tmp_path / "benchmark.csv")))
    assert all(r["matches_target"] == "True" for r in rows)  # speculative == the int8 target's greedy output
    run = json.loads((tmp_path / "benchmark_run.json").read_text())
    assert run["throughput"] is None and run["repeat_mismatches"] == 0
    assert (run["conditions"]["engine"], run["conditions"]["engine_weights"], run["conditions"]["concurrency"]) == (
        "native", "int8", 1)
    check = check_predictions({("cod_easy", 0): (tmp_path / "prediction.csv", tmp_path / "benchmark.csv")}, 0.0)
    assert check.num_matching.tolist() == check.num_problems.tolist() == [len(QUESTIONS)] * 2

    # The acceptance stage's outputs are the int8 target's greedy answers; on these prompts the float
    # model's differ, so a stage serving the float weights could not pass the check above.
    int8_target, float_target = serve(target, "native", max_seq_len=256, weights="int8"), target
    num_differing = 0
    for output in read_outputs(str(tmp_path / "target_outputs.jsonl")):
        input_ids = torch.tensor([output.prompt_ids])
        answer = output.output_ids[: output.num_new_tokens]
        common = {"max_new_tokens": MAX_NEW, "eos_token_id": None}
        assert autoregressive_generate(int8_target, input_ids, **common).tolist()[: len(answer)] == answer
        num_differing += autoregressive_generate(float_target, input_ids, **common).tolist()[: len(answer)] != answer
    assert num_differing > 0


def test_transfer_serves_its_drafts_with_engine_weights(pair, tmp_path, monkeypatch):
    import specdraft.models.engine_choice
    from specdraft.analysis.offline_acceptance import TargetOutput
    from specdraft.analysis.transfer import transfer

    root, target = pair
    served_with = []

    def spy(model, engine, *, weights="model_dtype", **kwargs):
        served_with.append(weights)
        return serve(model, engine, weights=weights, **kwargs)

    monkeypatch.setattr(specdraft.models.engine_choice, "serve", spy)
    write_outputs(tmp_path / "outputs.jsonl", [TargetOutput("q", [1, 2, 3], [4, 5, 6, 7], 3)])
    transfer("easy", {"cod": str(tmp_path / "outputs.jsonl")}, {"cod": (str(root / "draft"), None)}, ks=(2,),
             max_new_tokens=4, vocab_size=target.config.vocab_size, table_path=str(tmp_path / "transfer.csv"),
             plot_path=str(tmp_path / "transfer.png"), engine="native", dtype="float32", device="cpu",
             engine_weights="int8")
    assert served_with == ["int8"]
