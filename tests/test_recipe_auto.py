"""`training.recipe: auto`: one decision (shared with the advisor) from measured data, the stages it
keeps, and the places an unresolved or impossible auto config is refused."""

from __future__ import annotations

import copy

import pytest
import yaml

from keras_transfer.config import ConfigError, from_dict, load_config
from keras_transfer.features import advisor
from keras_transfer.features.advisor import (
    BN_SHIFT_LIMIT,
    PROBE_MARGIN,
    RECIPE_STAGES,
    LINEAR_PROBE_BELOW,
    decide,
    resolve_recipe,
)
from tests.support import tiny_config

SIMILAR = {"probe_gap": PROBE_MARGIN / 2, "bn_shift": BN_SHIFT_LIMIT / 2}
DIFFERENT_BY_PROBE = {"probe_gap": PROBE_MARGIN + 0.05, "bn_shift": BN_SHIFT_LIMIT / 2}
DIFFERENT_BY_SHIFT = {"probe_gap": 0.0, "bn_shift": BN_SHIFT_LIMIT + 0.05}
STAGES = [{"name": "head", "train": "head", "epochs": 1, "learning_rate": 0.05},
          {"name": "top", "train": "top:1", "epochs": 1, "learning_rate": 0.001},
          {"name": "full", "train": "all", "epochs": 1, "learning_rate": 0.0001}]


def _auto(tmp_path, **data) -> dict:
    raw = tiny_config(tmp_path, copy.deepcopy(STAGES), **data)
    raw["training"]["recipe"] = "auto"
    return raw


@pytest.mark.parametrize("signal", [SIMILAR, DIFFERENT_BY_PROBE, DIFFERENT_BY_SHIFT],
                         ids=["similar", "different by probe gap", "different by bn shift"])
def test_fewer_examples_than_the_threshold_get_linear_probe_and_more_fine_tune_everything(signal):
    assert decide(5, **signal).recipe == "linear_probe"
    assert decide(LINEAR_PROBE_BELOW - 1, **signal).recipe == "linear_probe"
    assert decide(LINEAR_PROBE_BELOW, **signal).recipe == "full"


def test_similarity_places_the_data_but_only_the_size_picks_the_recipe():
    similar, different = decide(20, **SIMILAR), decide(20, **DIFFERENT_BY_PROBE)
    assert (similar.similarity, different.similarity) == ("similar", "different")
    assert similar.recipe == different.recipe
    assert "earlier, more generic" in different.reasons[-1] and "earlier" not in similar.reasons[-1]


def test_the_decision_states_its_numbers():
    decision = decide(7, probe_gap=0.123, bn_shift=0.51)
    assert "7 training examples per class" in decision.reasons[0]
    assert "+12.3 points" in decision.reasons[0] and "0.51" in decision.reasons[0]
    assert decision.situation == "small_different"


def test_auto_views_keep_the_crop_for_larger_pools_and_never_mirror_unmirrored_data():
    photos = {"flip": None, "rotation": 0.05, "zoom": 0.1}
    assert advisor.auto_views(photos, 5) == ("full", "flip", "zoom", "flip_zoom")
    assert advisor.auto_views(photos, advisor.FEWER_VIEWS_FROM - 1) == ("full", "flip", "zoom", "flip_zoom")
    assert advisor.auto_views(photos, advisor.FEWER_VIEWS_FROM) == ("full", "zoom")
    assert advisor.auto_views(["zoom"], 5) == ("full", "zoom") == advisor.auto_views(["zoom"], 100)
    assert advisor.auto_views(["flip"], 100) == ("full", "flip")
    assert advisor.auto_views([], 5) == ("full",) == advisor.auto_views([], 100)


@pytest.mark.parametrize("recipe", ["head", "top", "full", "linear_probe"])
def test_resolving_auto_keeps_the_picked_stages_by_name_or_switches_to_linear_probe(tmp_path, monkeypatch, recipe):
    monkeypatch.setattr(advisor, "decide", lambda *a: advisor.Decision("small", "similar", recipe, ["because"]))
    lines = []
    config = resolve_recipe(from_dict(_auto(tmp_path, few_shot=5)), log=lines.append)
    assert config.training.recipe == "stages"
    if recipe == "linear_probe":
        assert config.model.head.type == "logistic" and config.model.cut_at is None
        assert set(config.model.head.layers) <= {"conv1", "conv2", "conv3"} and config.model.head.C > 0
        assert config.data.augment == ()
    else:
        assert tuple(s.name for s in config.training.stages) == RECIPE_STAGES[recipe]
        assert config.model.head.type == "dense"
    assert any(line.startswith("recipe auto: measuring digits") for line in lines)
    assert "  - because" in lines


def test_resolving_measures_the_data_and_follows_decide(tmp_path):
    lines = []
    raw = _auto(tmp_path, few_shot=3)
    config = resolve_recipe(from_dict(raw), log=lines.append)
    said = next(line for line in lines if "training examples per class" in line)
    assert "3 training examples per class" in said
    expected = decide(3, *_measured(tmp_path, raw))
    if expected.recipe == "linear_probe":
        assert config.model.head.type == "logistic"
    else:
        assert tuple(s.name for s in config.training.stages) == RECIPE_STAGES[expected.recipe]


def _measured(tmp_path, raw):
    from keras_transfer.features.extract import backbone_and_data

    config = from_dict(raw)
    backbone, data = backbone_and_data(config)
    m = advisor.measure_data(backbone, data, views=advisor.auto_views(config.data.augment), prune=True)
    return m.probe_gap, m.bn_shift


def test_explicit_stages_are_run_as_listed(tmp_path):
    config = from_dict(tiny_config(tmp_path, copy.deepcopy(STAGES)))
    assert config.training.recipe == "stages"
    assert resolve_recipe(config, log=pytest.fail) is config


def test_auto_without_a_head_stage_is_refused_with_the_fix(tmp_path):
    raw = _auto(tmp_path)
    raw["training"]["stages"][0]["name"] = "dense"
    with pytest.raises(ConfigError, match="training.recipe: auto .* 'dense', 'top', 'full'.*recipe: stages"):
        from_dict(raw)


def test_an_unknown_recipe_names_the_choices(tmp_path):
    raw = _auto(tmp_path)
    raw["training"]["recipe"] = "automatic"
    with pytest.raises(ConfigError, match="training.recipe.*'auto'"):
        from_dict(raw)


def test_training_refuses_an_auto_config_that_was_not_resolved(tmp_path):
    from keras_transfer.training import run

    with pytest.raises(ConfigError, match="resolve_recipe"):
        run(from_dict(_auto(tmp_path)), tmp_path / "run", log=lambda _: None)
    assert not (tmp_path / "run").exists()


def test_the_train_command_saves_the_resolved_config_so_resume_repeats_it(tmp_path, capsys):
    from keras_transfer.cli.train import main

    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(_auto(tmp_path, few_shot=3)))
    assert main(["--config", str(path), "--output-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "recipe auto: " in out
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.training.recipe == "stages"
    assert (tmp_path / "run" / "model.keras").is_file()
