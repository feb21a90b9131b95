"""How long, and a time budget: `--time-limit` reads durations, a run past its limit still ends with
a model, each long phase says once how long it has left, and `recipe: auto` cuts a recipe that
clearly would not fit."""

from __future__ import annotations

import dataclasses

import json
import re

import pytest

from keras_transfer.cli import train as train_cli
from keras_transfer.config import ConfigError, StageConfig, from_dict
from keras_transfer.core.progress import with_progress
from keras_transfer.core.timing import Eta, TimeBudget, format_duration, parse_duration
from keras_transfer.features.advisor import recipe_for_budget
from keras_transfer.runs import RunDir, fit
from tests.support import tiny_config

@pytest.fixture
def every_phase_is_long(monkeypatch):
    """Tiny test phases take well under the 10 s from which a phase says how long it has left."""
    from keras_transfer.core import timing

    monkeypatch.setattr(timing, "ETA_MIN_SECONDS", 0.0)


HEAD_THEN_TOP = [{"name": "head", "train": "head", "epochs": 3, "learning_rate": 0.05},
                 {"name": "top", "train": "top:1", "epochs": 2, "learning_rate": 0.001}]


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("1.5h", 5400), (" 2M ", 120)])
def test_the_time_limit_reads_seconds_minutes_and_hours(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10", "10 minutes", "1d", "-5m", "0s", "m", "1h30m"])
def test_a_time_limit_it_cannot_read_is_one_line_naming_the_option_and_an_example(text):
    with pytest.raises(ConfigError, match=r"^--time-limit .*e\.g\. --time-limit 10m") as caught:
        train_cli.main(["digits", f"--time-limit={text}"])
    assert "\n" not in str(caught.value)


def test_the_time_limit_is_a_config_key_in_seconds():
    assert from_dict({"training": {"time_limit": 600}}).training.time_limit == 600
    with pytest.raises(ConfigError, match="training.time_limit must be > 0"):
        from_dict({"training": {"time_limit": 0}})
    with pytest.raises(ConfigError, match="training.time_limit: the workers of a multi_worker run"):
        from_dict({"training": {"time_limit": 60, "strategy": "multi_worker"}})


def test_durations_read_the_way_people_say_them():
    assert [format_duration(s) for s in (0.52, 36, 180, 6300)] == ["0.52 s", "36 s", "3 min", "1 h 45 min"]
    assert TimeBudget(None).remaining() == float("inf") and not TimeBudget(None).spent
    assert TimeBudget(1e-9).spent


def test_a_long_phase_says_once_how_long_it_has_left(every_phase_is_long):
    lines: list[str] = []
    items = list(with_progress(range(40), 40, "batch", at_least=20, eta=lines.append, phase="feature extraction (train)"))
    assert items == list(range(40))
    assert len(lines) == 1 and re.fullmatch(r"feature extraction \(train\): about .+ left \(34 more batches at ~.+\)",
                                            lines[0]), lines
    quiet: list[str] = []
    list(with_progress(range(10), 10, "batch", at_least=20, eta=quiet.append))  # a short phase says nothing
    clock = Eta("pass", 7, "batch", quiet.append)
    for done in range(1, 8):
        clock.step(done)  # nearly done when it could say: nothing
    assert quiet == []


def test_a_run_past_its_time_limit_stops_skips_later_stages_and_still_saves_its_model(tmp_path):
    raw = tiny_config(tmp_path, HEAD_THEN_TOP)
    raw["training"]["time_limit"] = 0.001
    lines: list[str] = []
    result = fit(from_dict(raw), tmp_path / "run", insights=False, log=lines.append)
    run = RunDir(result.run_dir)
    assert [row["stage"] for row in result.history] == ["head"]  # stopped in its first epoch
    assert "time limit: 0.001 s spent; stage 'head' stopped after batch 1 of epoch 1" in lines
    assert "time limit: 0.001 s spent; skipping stage 'top' (--resume continues from there)" in lines
    assert run.model_path.is_file() and run.load_model() is not None
    metrics = json.loads(run.metrics_path.read_text())
    assert {"val", "test"} <= set(metrics)


def test_each_training_stage_says_how_long_it_has_left(tmp_path, every_phase_is_long):
    # 32 images a batch: the head's epoch is long, so it estimates from its first batches; at 256
    # the top stage's epoch is short, so it estimates after its first epoch.
    lines: list[str] = []
    fit(from_dict(tiny_config(tmp_path, HEAD_THEN_TOP)), tmp_path / "run", insights=False, log=lines.append)
    head = [line for line in lines if line.startswith("stage 'head': about")]
    assert len(head) == 1 and re.search(r"left \(3 epochs at ~.+\)$", head[0]), lines
    assert len([line for line in lines if line.startswith("stage 'top': about")]) == 1
    short: list[str] = []
    fit(from_dict(tiny_config(tmp_path, HEAD_THEN_TOP[:1], batch_size=256)), tmp_path / "short", insights=False,
        log=short.append)
    assert any(re.fullmatch(r"stage 'head': about .+ left \(2 more epochs at ~.+\)", line) for line in short), short


STAGES = [StageConfig(name="head", train="head", epochs=5), StageConfig(name="top", train="top:2", epochs=5),
          StageConfig(name="full", train="all", epochs=3)]


def test_auto_cuts_fine_tuning_that_clearly_would_not_fit_in_the_time_left():
    # 10 s per pass: head 1 pass, top 5 passes, full 3 passes.
    assert recipe_for_budget("full", STAGES, 10.0, 1000) == ("full", None)
    recipe, why = recipe_for_budget("full", STAGES, 10.0, 70)
    assert recipe == "top" and why.startswith("time limit: stages head -> top -> full would take about 2 min")
    assert recipe_for_budget("full", STAGES, 10.0, 30)[0] == "head"
    recipe, why = recipe_for_budget("full", STAGES, 10.0, 5)
    assert recipe == "linear_probe" and "feature extraction" in why and "\n" not in why


def test_the_estimate_counts_the_views_a_cached_stage_computes_instead_of_its_epochs():
    # Augmented, 3 views: the head's views cost 3 passes, not 1; top:2 on cached activations 3, not 5.
    assert recipe_for_budget("full", STAGES, 10.0, 75, views=3)[0] == "head"  # head + top: 30 + 50 s
    assert recipe_for_budget("full", STAGES, 10.0, 75)[0] == "top"  # unaugmented: 10 + 50 s fits
    cached = [STAGES[0], dataclasses.replace(STAGES[1], cache_activations="always"), STAGES[2]]
    assert recipe_for_budget("full", cached, 10.0, 95, views=3) == ("full", None)  # 30 + 30 + 30 s
    on_images = [dataclasses.replace(STAGES[0], cache_activations="never"), *STAGES[1:]]
    recipe, why = recipe_for_budget("full", on_images, 10.0, 95, views=3)
    assert recipe == "head" and "would take about 2 min" in why  # 50 + 50 + 30 s; head alone 50 s


def test_feature_extraction_says_how_long_its_frozen_pass_has_left(tmp_path, every_phase_is_long):
    from keras_transfer.features import extract_features
    from tests.support import digit_images, tiny_source

    images = digit_images(800)
    lines: list[str] = []
    extract_features(str(tiny_source(tmp_path / "tiny.keras")), (images, [i % 10 for i in range(len(images))]),
                     cache=False, batch_size=16, runtime="keras", log=lines.append)
    said = [line for line in lines if line.startswith("feature extraction (train): about")]
    assert len(said) == 1 and said[0].endswith(")"), lines


def test_a_phase_with_little_left_says_nothing():
    lines: list[str] = []
    list(with_progress(range(40), 40, "batch", at_least=20, eta=lines.append))  # 40 batches in microseconds
    assert lines == []


def test_auto_with_no_time_left_for_fine_tuning_runs_feature_extraction_and_says_why(tmp_path, monkeypatch):
    from keras_transfer.features import advisor

    monkeypatch.setattr(advisor, "LINEAR_PROBE_BELOW", 10)  # digits' ~126 per class: fine-tuning territory
    stages = [*HEAD_THEN_TOP, {"name": "full", "train": "all", "epochs": 2, "learning_rate": 0.001}]
    raw = tiny_config(tmp_path, stages)
    raw["training"].update(time_limit=0.001, recipe="auto")
    lines: list[str] = []
    result = fit(from_dict(raw), tmp_path / "run", insights=False, log=lines.append)
    why = [line for line in lines if "time limit: stages head -> top -> full would take about" in line]
    assert len(why) == 1 and why[0].endswith("so auto runs feature extraction: a logistic regression on the "
                                             "backbone's features, one pass"), lines
    run = RunDir(result.run_dir)
    assert run.model_path.is_file() and "test" in json.loads(run.metrics_path.read_text())


class _Clock:
    """time.monotonic for the accuracy-per-minute callback: each epoch takes `minutes`."""

    def __init__(self, minutes: float):
        self.now, self.minutes = 0.0, minutes

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += 60 * self.minutes


def _epochs(callback, clock, accuracies) -> list[int]:
    """Run `callback` over epochs scoring `accuracies`; the epochs (from 1) after which it stopped."""
    import types

    callback.set_model(types.SimpleNamespace(stop_training=False))
    stops = []
    for epoch, accuracy in enumerate(accuracies):
        callback.on_epoch_begin(epoch)
        clock.tick()
        callback.on_epoch_end(epoch, {"val_accuracy": accuracy})
        if callback.model.stop_training:
            stops.append(epoch + 1)
            callback.model.stop_training = False
    return stops


def test_a_stage_stops_after_an_epoch_whose_accuracy_gain_did_not_pay_for_its_minutes(monkeypatch):
    from keras_transfer.training import timing

    clock = _Clock(minutes=2.0)
    monkeypatch.setattr(timing.time, "monotonic", clock)
    said: list[str] = []
    # The run's best so far 0.80; epochs of 2 minutes. The stage's first epoch (a dip) is not
    # weighed; then +4 points (2 per minute) pays, +1 point (0.5 per minute) does not.
    gain = timing.GainPerMinute("full", 1.0, 0.80, said.append)
    assert _epochs(gain, clock, [0.70, 0.84, 0.85]) == [3]
    gain.on_train_end()
    assert said == ["stage 'full': epoch 3 moved the best validation accuracy by +1.0 points in 2 min (0.50 per "
                    "minute, below min_gain_per_minute 1), so the stage stops"]
    # A lower bar keeps the paying epochs; without a score before it, no epoch is weighed against nothing.
    assert _epochs(timing.GainPerMinute("full", 0.25, 0.80, said.append), clock, [0.84, 0.85, 0.86]) == []
    assert _epochs(timing.GainPerMinute("head", 1.0, None, said.append), clock, [0.10, 0.10]) == [2]


def test_min_gain_per_minute_ends_a_stage_in_a_run_and_the_log_says_why(tmp_path):
    stages = [HEAD_THEN_TOP[0], {**HEAD_THEN_TOP[1], "epochs": 3,
                                 "early_stopping": {"patience": 5, "min_gain_per_minute": 1e9}}]
    said: list[str] = []
    result = fit(from_dict(tiny_config(tmp_path, stages)), tmp_path / "run", insights=False, log=said.append)
    top = [row for row in result.history if row["stage"] == "top"]
    assert len(top) == 2, top  # the first epoch is not weighed; no second gains a billion points a minute
    assert any(line.startswith("stage 'top': epoch 2 moved the best validation accuracy") for line in said), said
    with pytest.raises(ConfigError, match=r"training.stages.top.early_stopping.min_gain_per_minute .* regression"):
        raw = tiny_config(tmp_path, stages)
        from_dict({**raw, "model": {**raw["model"], "task": "regression"}})
