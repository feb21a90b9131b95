"""`fit`: one run from a validated config into a run folder, whatever the recipe.

The one place that chooses between fine-tuning (staged Keras training, `keras_transfer.training`)
and feature extraction (a linear probe or another classifier on frozen features,
`keras_transfer.features`), resolves `training.recipe: auto` first, and finishes the run the same
way for both: the error analysis and report.html, then the configured exports.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from keras_transfer.config import ConfigError, RunConfig
from keras_transfer.core.files import check_writable, optional_output
from keras_transfer.core.run_dir import RunDir
from keras_transfer.core.timing import TimeBudget


def fit(config: RunConfig, run_dir: str | os.PathLike | RunDir, *, resume: bool = False,
        named: Sequence[str] = (), insights: bool = True, log: Callable[[str], None] = print):
    """Train `config` into `run_dir` and return the run's `RunResult` (model, data, metrics, history).

    `recipe: auto` is measured here (`named` lists config keys the user set explicitly, which the
    measurement must not overrule), so the config.yaml saved in the run is what ran. A
    `model.head.type` other than `dense` trains a classifier on frozen features; `dense` runs the
    fine-tuning stages, continuing the last checkpoint when `resume`. Insights and the exports in
    `export.formats` follow; a figure that fails to draw is one logged line, never a lost model.
    `insights=False` skips the error analysis, Grad-CAM and report.html (seconds per run), for
    sweeps that compare many runs by their metrics.

    `training.time_limit` counts from here: `recipe: auto` picks a cheaper recipe when the
    fine-tuning stages clearly would not fit in it, and training stops at the limit with the model
    so far; scoring it, the insights and the exports follow the limit, not within it.
    """
    budget = TimeBudget(config.training.time_limit)
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    refuse_run_inside_data(run.path, config)
    check_writable(run.path)  # before the data is loaded and the model built
    if resume:
        check_writable(run.checkpoints_dir)
    if config.training.recipe == "auto":
        from keras_transfer.features.advisor import resolve_recipe

        config = resolve_recipe(config, named=tuple(named), log=log, budget=budget)
    if config.model.head.type != "dense":
        # No epochs to resume: a rerun reads the features from the cache.
        from keras_transfer.features.solution import run_feature_classifier

        result = run_feature_classifier(config, run.path, log=log)
    else:
        from keras_transfer.training import run as train_stages

        result = train_stages(config, run.path, resume=resume, log=log, budget=budget)
    if not result.chief:
        return result  # a multi-worker run: only the chief writes what follows
    if insights:
        from keras_transfer.interpret.insights import write_run_insights

        optional_output("the error analysis and report.html", log, write_run_insights, run.path, result.model,
                        result.data, result.metrics, result.history, log)
    extra = [fmt for fmt in config.export.formats if fmt != "keras"]  # model.keras is always written
    if extra:
        from keras_transfer.deploy import export_run

        export_run(run.path, extra, model=result.model, data=result.data, log=log)
    return result


def refuse_run_inside_data(run_dir: Path, config: RunConfig) -> None:
    """Refuse, before anything is created, a run folder inside the data folder it trains on.

    `cd photos && keras-transfer train .` would put `runs/` among the class folders, where every
    later scan of the data finds it as a class.
    """
    from keras_transfer.config import source_kind

    kind, argument = source_kind(config.data.source)
    if kind != "folder":
        return
    data = Path(argument).expanduser().resolve()
    if Path(run_dir).expanduser().resolve().is_relative_to(data):
        raise ConfigError(f"the run folder {run_dir} would lie inside the data folder {argument}, where it "
                          "would be read as a class; run from outside it, or pass --output-dir elsewhere")
