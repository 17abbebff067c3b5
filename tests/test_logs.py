"""What a person reads while a run goes on: progress lines with rate and ETA, in the log file and on the console."""

import io
import logging
import warnings

from specdraft.plumbing.logs import Progress, job_name, log_to


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_logs_first_every_few_seconds_and_last_with_rate_and_eta(caplog):
    clock = FakeClock()
    progress = Progress("pretrain target", 10, every=5.0, clock=clock)
    logged = []
    with caplog.at_level(logging.INFO, logger="specdraft.progress"):
        for step in range(1, 11):
            clock.now += 2.0  # 2 s a step: 0.5 step/s
            logged.append(progress.update(step, loss=1.0 / step))
    assert logged == [True, False, False, True, False, False, True, False, False, True]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[1] == "pretrain target: step 4/10 (40%), loss 0.25, 0.50 step/s, 8 s elapsed, ETA 12 s"
    assert lines[-1].endswith("20 s elapsed, done")


def test_step_log_goes_to_file_and_own_lines_to_console(tmp_path):
    path = tmp_path / "logs" / "train_target" / "cod_easy.log"
    path.parent.mkdir(parents=True)
    console = io.StringIO()
    with log_to(str(path), console=console):
        logging.getLogger("specdraft.progress").info("train: step 1/2")
        logging.getLogger("specdraft.models.engine_choice").warning("falling back")
        logging.getLogger("specdraft.stages.distill").info("distilled 4")
        logging.getLogger("some_library").warning("library chatter")
        print("printed by a library")
        warnings.warn("`gradient_checkpointing` is deprecated and will be removed in v6", FutureWarning)
        warnings.warn("something we should see", UserWarning)
    text = path.read_text()
    assert all(line in text for line in ("step 1/2", "falling back", "distilled 4", "library chatter", "printed by"))
    assert "something we should see" in text and "is deprecated" not in text  # the unfixable one filtered
    assert console.getvalue() == "[train_target/cod_easy] train: step 1/2\n[train_target/cod_easy] falling back\n"


def test_job_name():
    assert job_name("logs/bench/cod_hard.log") == "bench/cod_hard"
    assert job_name("logs/base_models.log") == "base_models"
