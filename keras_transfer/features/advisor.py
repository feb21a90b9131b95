"""The strategy advisor: measure the target set, place it in the four situations, write a config.

The source material's four situations are small/large target sets that are similar/different
to the source. The advisor measures both axes on the user's data instead of asking:

- size: the median number of training examples per class, against `SMALL_PER_CLASS`;
- similarity, two signals; either one saying "different" places the set there:
  a linear probe of every block (see `probe_layers`): when an earlier, more generic block
  classifies the target better than the last block by more than `PROBE_MARGIN`, the top has
  specialised away from this domain; and the mean standardised shift of the target's
  activations against the backbone's BatchNorm statistics (`bn_shift`, when it has BatchNorm):
  above `BN_SHIFT_LIMIT` the network sees inputs unlike its source's.

On top of the placement, `decide` picks the recipe to run: feature extraction on the best-probed block,
the new head only, the head then the top blocks, or those then the whole network (the stages named
`head`, `top`, `full` of the packaged `photos` config). `keras-transfer advise` and
`training.recipe: auto` both call it. The thresholds and the experiments that set them are in the
README ("Choosing a strategy", "Which recipe"): `benchmarks/bench_advise.py` and
`benchmarks/bench_recipes.py`. With a time limit, `recipe_for_budget` cuts a fine-tuning recipe
that clearly would not fit to a shorter one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import yaml

from keras_transfer.config import RunConfig, StageConfig, from_dict, packaged_config, to_dict
from keras_transfer.core.timing import TimeBudget, format_duration
from keras_transfer.data import DataBundle
from keras_transfer.features.probe import ProbeResult, probe_layers
from keras_transfer.training.stage import activation_views, stage_passes

SMALL_PER_CLASS = 30
PROBE_MARGIN = 0.10
BN_SHIFT_LIMIT = 0.45


@dataclass
class Advice:
    """The measurements, the placement with its reasons, and the recommended config."""

    examples_per_class: float
    num_classes: int
    top_layer: str
    top_accuracy: float
    best_layer: str
    best_accuracy: float
    bn_shift: float | None
    size: str
    similarity: str
    recipe: str = "head"
    reasons: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def situation(self) -> str:
        """One of small_similar, small_different, large_similar, large_different."""
        return f"{self.size}_{self.similarity}"

    def explain(self) -> str:
        """The placement and the recipe in a few lines, with the measured numbers."""
        return "\n".join([f"situation: {self.situation.replace('_', ' and ')}; recipe: {describe_recipe(self.recipe)}",
                          *(f"  - {r}" for r in self.reasons)])


# The recipe threshold, from benchmarks/bench_recipes.py (docs/choosing.md): with 5, 20 and
# 126 training examples per class, feature extraction on the best-probed block matched or beat every
# fine-tuning recipe on both domains, in a fraction of their time; with 548 flower photos per class,
# fine-tuning the whole network won. Nothing was measured in between: the threshold sits near the
# geometric mean of 126 and 548 (263).
LINEAR_PROBE_BELOW = 260
# The stages each recipe runs, by name, from a config's stage list (the packaged `photos` one).
RECIPE_STAGES = {"head": ("head",), "top": ("head", "top"), "full": ("head", "top", "full")}
AUTO_CHOICES = ("linear_probe", *RECIPE_STAGES)  # what `recipe: auto` can pick


def describe_recipe(recipe: str) -> str:
    """A recipe's name in words."""
    if recipe == "linear_probe":
        return "feature extraction (a logistic regression on the cross-validated block's features)"
    return "stages " + " -> ".join(RECIPE_STAGES[recipe])


@dataclass
class Decision:
    """Where the data sits in the four situations, the recipe to run, and why, in numbers."""

    size: str
    similarity: str
    recipe: str
    reasons: list[str] = field(default_factory=list)

    @property
    def situation(self) -> str:
        """One of small_similar, small_different, large_similar, large_different."""
        return f"{self.size}_{self.similarity}"


def decide(examples_per_class: float, probe_gap: float | None, bn_shift: float | None) -> Decision:
    """The one decision of the advisor and of `recipe: auto`, from the three measurements.

    `probe_gap` is how much better (a fraction) the best earlier block's linear probe classifies
    than the top block's (None when not probed); `bn_shift` the mean BatchNorm shift (None without
    BatchNorm). The
    placement uses `SMALL_PER_CLASS`, `PROBE_MARGIN` and `BN_SHIFT_LIMIT`; the recipe uses
    `LINEAR_PROBE_BELOW`, all set by the benchmarks in the README. The recipe is picked by size
    alone because the benchmark found the same order on both domains; similarity shows in the
    block the probe picks for feature extraction.
    """
    size = "small" if examples_per_class < SMALL_PER_CLASS else "large"
    probe_says = probe_gap is not None and probe_gap > PROBE_MARGIN
    shift_says = bn_shift is not None and bn_shift > BN_SHIFT_LIMIT
    similarity = "different" if probe_says or shift_says else "similar"
    signals = [] if probe_gap is None else [f"probe gap {100 * probe_gap:+.1f} points (limit {100 * PROBE_MARGIN:g})"]
    if bn_shift is not None:
        signals.append(f"BatchNorm shift {bn_shift:.2f} (limit {BN_SHIFT_LIMIT:g})")
    reasons = [f"{examples_per_class:g} training examples per class (median)"
               + (f", {', '.join(signals)}" if signals else "") + f": {size} and {similarity}"]
    if examples_per_class < LINEAR_PROBE_BELOW:
        recipe = "linear_probe"
        reasons.append(f"fewer than {LINEAR_PROBE_BELOW} examples per class: a logistic regression on frozen "
                       "features (feature extraction) matched or beat fine-tuning on such sets, in a fraction of "
                       "the time; cross-validation picks the block"
                       + (", perhaps an earlier, more generic one for data unlike the source's"
                          if similarity == "different" else ""))
    else:
        recipe = "full"
        reasons.append(f"{LINEAR_PROBE_BELOW} or more examples per class: enough to fine-tune; the head, the top "
                       "blocks, then the whole network")
    return Decision(size, similarity, recipe, reasons)


def place(examples_per_class: float, probe: ProbeResult, bn_shift: float | None) -> tuple[str, str, list[str]]:
    """(size, similarity, reasons) from the measurements, by the documented thresholds (see `decide`)."""
    top, best = _top_and_best(probe)
    top_acc, best_acc = _block_accuracy(probe, top), _block_accuracy(probe, best)
    gap = best_acc - top_acc
    decision = decide(examples_per_class, gap, bn_shift)
    size, similarity = decision.size, decision.similarity
    reasons = [f"{examples_per_class:g} training examples per class (median) is "
               f"{'below' if size == 'small' else 'at or above'} the {SMALL_PER_CLASS} that makes a set large"]
    if gap > PROBE_MARGIN:
        reasons.append(f"a linear probe on {best.layer} ({100 * best_acc:.1f}%) beats the top block {top.layer} "
                       f"({100 * top_acc:.1f}%) by {100 * gap:.1f} points (limit {100 * PROBE_MARGIN:g}): the top "
                       "features are specialised away from this data")
    else:
        reasons.append(f"the top block {top.layer} classifies within {100 * PROBE_MARGIN:g} points of the best "
                       f"earlier block ({100 * top_acc:.1f}% vs {100 * best_acc:.1f}% at {best.layer})")
    if bn_shift is not None:
        shift_says = bn_shift > BN_SHIFT_LIMIT
        reasons.append(f"the activations sit {bn_shift:.2f} source standard deviations from the BatchNorm statistics "
                       f"(mean over layers; limit {BN_SHIFT_LIMIT:g}): the inputs look "
                       + ("unlike" if shift_says else "like") + " the source's")
    return size, similarity, reasons


def _top_and_best(probe: ProbeResult):
    """The top block's row and the best earlier block's row (the top itself when it is the only one).

    Only single blocks count (not the top blocks concatenated); a tie goes to the deeper block.
    """
    singles = [r for r in probe.rows if "+" not in r.layer]
    top = singles[-1]
    earlier = singles[:-1] or [top]
    return top, max(reversed(earlier), key=lambda r: _block_accuracy(probe, r))


def _block_accuracy(probe: ProbeResult, row) -> float:
    """A block's accuracy for the probe gap: cross-validated when every block was, else the nearest-class-mean proxy's for all."""
    singles = [r for r in probe.rows if "+" not in r.layer]
    if all(r.cv_accuracy is not None and not np.isnan(r.cv_accuracy) for r in singles):
        return float(row.cv_accuracy)
    if row.proxy_accuracy is not None:
        return float(row.proxy_accuracy)
    return probe.accuracy(row.layer)


# From this many training images per class auto's feature extraction runs two views instead of
# four: the image and its centred crop. At 100 per class (benchmarks/bench_auto.py, 3 seeds on
# three domains) the mirror added nothing (image + mirror scored as the image alone) while the
# crops added 0 to 3.4 points; each view costs a forward pass of every image. 50 sits between the
# 20 per class where four views were measured and those 100.
FEWER_VIEWS_FROM = 50


def auto_views(augment: Any, examples_per_class: float | None = None) -> tuple[str, ...]:
    """The fixed views auto's feature extraction trains and predicts on, from the data's augmentation.

    Below `FEWER_VIEWS_FROM` examples per class: the image, its mirror, a centred crop and its
    mirror where the augmentation mirrors images (`flip`), the image and the crop where it only
    zooms, else the image alone. From there on: the image and the crop where it zooms, the image
    and its mirror where it only mirrors, else the image. Each view costs one forward pass per
    image; four scored 1.7 points above one on average (-1.6 to +4.4) on flowers and satellite
    tiles at 5 images per class (benchmarks/bench_feature_scaling.py).
    """
    names = set(augment.keys() if isinstance(augment, dict) else augment or ())
    if examples_per_class is None or examples_per_class < FEWER_VIEWS_FROM:
        if "flip" in names:
            return ("full", "flip", "zoom", "flip_zoom")
        return ("full", "zoom") if "zoom" in names else ("full",)
    if "zoom" in names:
        return ("full", "zoom")
    return ("full", "flip") if "flip" in names else ("full",)


def bn_shift(backbone: keras.Model, data: DataBundle, split: str = "train", max_batches: int = 8) -> float | None:
    """Mean over BatchNorm layers of |target channel mean - moving mean| / moving std; None without BN.

    Near 0 the target's activations look like the source's; values of 1 and more mean the
    network sees inputs unlike the ones it was trained on.
    """
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return None
    means = [keras.layers.GlobalAveragePooling2D()(layer.input) if len(layer.input.shape) == 4 else layer.input
             for layer in norms]
    # Eager: tracing this many-output model took longer (3-10 s) than running the few batches it sees.
    statistics = keras.Model(backbone.input, means)
    sums, count = [0.0] * len(norms), 0
    for x, _ in data.dataset(split, training=False).take(max_batches):
        outs = statistics(x, training=False)
        for i, out in enumerate(outs if isinstance(outs, (list, tuple)) else [outs]):
            sums[i] = sums[i] + np.asarray(out, dtype=np.float64).sum(axis=0)
        count += int(x.shape[0])
    shifts = []
    for layer, total in zip(norms, sums):
        mean = total / count
        moving_mean = keras.ops.convert_to_numpy(layer.moving_mean)
        moving_std = np.sqrt(keras.ops.convert_to_numpy(layer.moving_variance) + layer.epsilon)
        shifts.append(float(np.mean(np.abs(mean - moving_mean) / moving_std)))
    return float(np.mean(shifts))


@dataclass
class Measurements:
    """What the advisor and `recipe: auto` measure: size, the probe of every block, the BatchNorm shift."""

    examples_per_class: float
    num_classes: int
    probe: ProbeResult
    bn_shift: float | None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def probe_gap(self) -> float:
        """How much better the best earlier block classifies than the top block (fraction, >= 0)."""
        top, best = _top_and_best(self.probe)
        return _block_accuracy(self.probe, best) - _block_accuracy(self.probe, top)


def measure_data(backbone: keras.Model, data: DataBundle, *, cache_dir: str | Path | None = None,
                 views: tuple[str, ...] = ("full",), prune: bool = False, seed: int = 0,
                 class_weight: str | None = None, log: Callable[[str], None] | None = None) -> Measurements:
    """Measure `data` against `backbone`: median training examples per class, a probe of every block
    (cross-validated, see `probe_layers`), the BatchNorm shift; `seconds` says what each part cost."""
    per_class = data.examples_per_class()
    per_class = float("inf") if per_class is None else per_class
    probe = probe_layers(backbone, data, "blocks", cache_dir=cache_dir, views=views, prune=prune,
                         score_splits=not prune, seed=seed, class_weight=class_weight, log=log)
    started = time.perf_counter()
    shift = bn_shift(backbone, data)
    seconds = {"features": probe.feature_seconds, **probe.seconds, "bn_shift": round(time.perf_counter() - started, 3)}
    return Measurements(per_class, data.num_classes, probe, shift, seconds)


def advise(config: RunConfig, backbone: keras.Model, data: DataBundle, *, cache_dir: str | Path | None = None,
           log: Callable[[str], None] | None = None) -> Advice:
    """Measure `data` against `backbone`, place it, pick the recipe (`decide`) and build the config to run.

    The recommended config is the packaged `photos` config's model and stages for the recipe (the
    benchmarked ones), with the user's data section, backbone and weights; for feature extraction it is a
    logistic head on the block (or top blocks) and C that cross-validation chose, with auto's views.
    """
    views = auto_views(config.data.augment, data.examples_per_class())
    m = measure_data(backbone, data, cache_dir=cache_dir, views=views, seed=config.training.seed, log=log)
    size, similarity, reasons = place(m.examples_per_class, m.probe, m.bn_shift)
    decision = decide(m.examples_per_class, m.probe_gap, m.bn_shift)
    top, _ = _top_and_best(m.probe)
    best = m.probe.best()
    advice = Advice(m.examples_per_class, data.num_classes, top.layer, m.probe.accuracy(top.layer), best.layer,
                    m.probe.accuracy(best.layer), m.bn_shift, size, similarity, decision.recipe,
                    reasons + decision.reasons[1:] + m.probe.reasons[:2])
    advice.config = recommended_config(config, advice, best.C, views)
    return advice


def recommended_config(config: RunConfig, advice: Advice, C: float | None = None,
                       views: tuple[str, ...] = ("full",)) -> dict[str, Any]:
    """The packaged `photos` recipe for `advice.recipe`, with the user's data, backbone, weights and cut point."""
    recommended = yaml.safe_load(packaged_config("photos").read_text())
    mine = to_dict(config)
    recommended["data"] = copy.deepcopy(mine["data"])
    model = recommended.setdefault("model", {})
    model["backbone"], model["weights"], model["cut_at"] = (mine["model"]["backbone"], mine["model"]["weights"],
                                                            mine["model"]["cut_at"])
    _apply_recipe(recommended, advice.recipe, advice.best_layer.split("+"), C, views)
    from_dict(recommended)  # the advice must itself be a valid config
    return recommended


def _apply_recipe(raw: dict[str, Any], recipe: str, layers: list[str], C: float | None = None,
                  views: tuple[str, ...] = ("full",)) -> None:
    """Set `raw` (a config mapping) up to run `recipe` as plain stages (`recipe: stages`)."""
    training = raw["training"]
    training["recipe"] = "stages"
    if recipe == "linear_probe":
        # A logistic regression on the chosen blocks' features, computed once per view: no epochs.
        head = {k: v for k, v in raw["model"].get("head", {}).items() if k in ("pooling",)}
        raw["model"]["head"] = {**head, "type": "logistic", "layers": list(layers), "views": list(views),
                                "C": None if C is None else float(C)}
        raw["data"]["augment"] = []
        training["stages"] = training["stages"][:1]
    else:
        training["stages"] = [s for s in training["stages"] if s.get("name", "head") in RECIPE_STAGES[recipe]]


def recipe_for_budget(recipe: str, stages: list[StageConfig], pass_seconds: float,
                      remaining: float, *, views: int = 1) -> tuple[str, str | None]:
    """The longest of `recipe`'s prefixes (full, top, head) whose estimate fits in `remaining`
    seconds, else feature extraction; and the one-line reason when that is not `recipe` itself.

    The estimate counts passes over the training images, `pass_seconds` each (`stage_passes`):
    a head-only stage costs one pass (its features cached) or, on augmented images, one per view
    (`views`); a stage that trains blocks one per epoch, or one per view on cached activations
    (`cache_activations: always`). It errs short, so a recipe is cut only when the budget is
    clearly too small: the pass is timed on the BatchNorm measurement, about 2.4x slower than
    training's compiled pass, while a training step costs about three forward passes. Feature
    extraction (a linear probe) needs one pass, no epochs.
    """
    def cost(name: str) -> float:
        chosen = [s for s in stages if s.name in RECIPE_STAGES[name]]
        return pass_seconds * sum(stage_passes(s, views) for s in chosen)

    prefixes = list(RECIPE_STAGES)[:list(RECIPE_STAGES).index(recipe) + 1]
    picked = next((name for name in reversed(prefixes) if cost(name) <= remaining), "linear_probe")
    if picked == recipe:
        return recipe, None
    instead = (f"{describe_recipe(picked)} (about {format_duration(cost(picked))})" if picked != "linear_probe"
               else "feature extraction: a logistic regression on the backbone's features, one pass")
    return picked, (f"time limit: {describe_recipe(recipe)} would take about {format_duration(cost(recipe))} "
                    f"(at {format_duration(pass_seconds)} per pass over the training images) and "
                    f"{format_duration(remaining)} remain, so auto runs {instead}")


def _timed_pass(backbone: keras.Model, data: DataBundle, max_batches: int) -> float:
    """Seconds an eager pass of `backbone` takes over the first `max_batches` training batches, as
    `bn_shift` runs it: the time limit's estimate for a backbone without BatchNorm."""
    started = time.perf_counter()
    for x, _ in data.dataset("train", training=False).take(max_batches):
        backbone(x, training=False)
    return time.perf_counter() - started


# What a user names that auto must not overrule: the head, the cut point, the stages.
NAMED_KEYS = ("model.head.type", "model.head.layers", "model.head.C", "model.head.views", "model.cut_at",
              "training.stages")


def resolve_recipe(config: RunConfig, *, named: tuple[str, ...] = (), cache_dir: str | Path | None = None,
                   log: Callable[[str], None] = print, budget: TimeBudget | None = None) -> RunConfig:
    """For `training.recipe: auto`, measure the data, say what was found and why, and return the config to run.

    The returned config runs the stages of the picked recipe (by name: `head`, `top`, `full`) or a
    logistic regression on the block (or top blocks), C and views that cross-validation chose,
    with `recipe: stages`; configs that are not `auto` come back unchanged. What the user named
    wins: a head type other than dense, a cut point, or any of `named` (the `NAMED_KEYS` given on
    the command line) runs as given, without the measurement. Data that is not one class per
    image (multilabel, regression) runs every stage. With a time limit (`budget`, else
    `training.time_limit` from now) a fine-tuning recipe that clearly would not fit is cut to a
    shorter one (`recipe_for_budget`).
    """
    if config.training.recipe != "auto":
        return config
    from keras_transfer.features.extract import backbone_and_data

    raw = to_dict(config)
    raw["training"]["recipe"] = "stages"
    named = tuple(named) + (("model.head.type",) if config.model.head.type != "dense" else ()) \
        + (("model.cut_at",) if config.model.cut_at else ())
    if named:
        log(f"recipe auto: you named {', '.join(sorted(set(named)))}, so the config runs as given, without the "
            "measurement")
        return from_dict(raw)
    if config.model.task in ("multilabel", "regression"):
        log(f"recipe auto: {config.model.task} data cannot be probed one class per image; running every stage")
        return from_dict(raw)
    started = time.perf_counter()
    backbone, data = backbone_and_data(config)
    if data.task != "multiclass":
        log(f"recipe auto: {data.task} data cannot be probed one class per image; running every stage")
        return from_dict(raw)
    counts = data.counts().get("train") or {}
    per_class = data.examples_per_class()
    per_class = float("inf") if per_class is None else per_class
    if per_class >= LINEAR_PROBE_BELOW:
        # Size alone picks fine-tuning here: probing every block would cost a pass over all the
        # images and change nothing but the placement's wording.
        started_shift = time.perf_counter()
        shift = bn_shift(backbone, data)
        decision = decide(per_class, None, shift)
        shift_seconds = time.perf_counter() - started_shift
        recipe, cut = decision.recipe, None
        budget = budget or TimeBudget(config.training.time_limit)
        if budget.limit is not None:
            images = sum(counts.values())
            seen = min(images, 8 * data.config.batch_size)  # what bn_shift ran
            seconds = shift_seconds if shift is not None else _timed_pass(backbone, data, 8)
            recipe, cut = recipe_for_budget(recipe, config.training.stages, seconds * images / seen,
                                            budget.remaining(), views=activation_views(config))
        _apply_recipe(raw, recipe, [], None)
        if recipe == "linear_probe":
            from keras_transfer.features.extract import hand_over

            hand_over(config, backbone)
        unlabeled = _plan_unlabeled(raw, config, data, recipe)
        described = "feature extraction (a logistic regression on the backbone's features)" if cut and \
            recipe == "linear_probe" else describe_recipe(recipe)
        log(f"recipe auto: {described} ({per_class:g} training examples per class; the "
            f"probe of every block is skipped{'' if cut else ', the recipe is fine-tuning whatever it finds'}; "
            f"BatchNorm shift measured in {shift_seconds:.1f} s)")
        for reason in decision.reasons + ([cut] if cut else []) + unlabeled:
            log(f"  - {reason}")
        return from_dict(raw)
    views = auto_views(config.data.augment, per_class)
    log(f"recipe auto: measuring {data.config.source} against {backbone.name} (examples per class, every block "
        f"cross-validated{' on ' + ' and '.join(views) + ' views' if len(views) > 1 else ''}, the BatchNorm shift)")
    m = measure_data(backbone, data, cache_dir=cache_dir, views=views, prune=True, seed=config.training.seed,
                     class_weight="balanced" if data.class_weight is not None else None)
    decision = decide(m.examples_per_class, m.probe_gap, m.bn_shift)
    best = m.probe.best()
    _apply_recipe(raw, decision.recipe, best.layer.split("+"), best.C, views)
    if decision.recipe == "linear_probe":
        from keras_transfer.features.extract import hand_over

        hand_over(config, backbone)  # the run extracts with the same frozen backbone
    unlabeled = _plan_unlabeled(raw, config, data, decision.recipe)
    total = time.perf_counter() - started
    costs = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in m.seconds.items())
    log(f"recipe auto: {describe_recipe(decision.recipe)}"
        + (f" on {best.layer}, C = {best.C:g}" if decision.recipe == "linear_probe" else "")
        + f" (measured in {total:.1f} s: {costs})")
    for reason in decision.reasons + (m.probe.reasons if decision.recipe == "linear_probe" else []) + unlabeled:
        log(f"  - {reason}")
    return from_dict(raw)


def _plan_unlabeled(raw: dict[str, Any], config: RunConfig, data: DataBundle, recipe: str) -> list[str]:
    """With `data.unlabeled`, set `raw` up to use it as `adaptation_plan` says (feature extraction
    only; what the config already names stays); the reasons, for the log."""
    if config.data.unlabeled is None:
        return []
    if recipe != "linear_probe":
        return [f"data.unlabeled is not used: {describe_recipe(recipe)} trains a dense head, and only feature "
                "extraction uses unlabelled images by itself (model.adapt: adabn re-estimates BatchNorm for any recipe)"]
    from keras_transfer.data.unlabeled import load_unlabeled
    from keras_transfer.features.align import adaptation_plan

    plan = adaptation_plan(len(load_unlabeled(config.data, data.class_names)), len(data.splits["train"]))
    kept = []
    if config.model.adapt == "none":
        raw["model"]["adapt"] = plan["adapt"]
    else:
        kept.append(f"model.adapt: {config.model.adapt} is kept as the config names it")
    if config.training.self_training is None:
        raw["training"]["self_training"] = plan["self_training"]
    else:
        kept.append("training.self_training is kept as the config names it")
    return plan["reasons"] + kept
