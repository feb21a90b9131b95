"""The run layer: a run folder (`RunDir`) and the verbs on it, `fit` and `evaluate`.

Commands and notebooks call these; they choose between fine-tuning and feature extraction,
finish every run the same way, and read a run back through one description of its layout.
"""

from keras_transfer.core.run_dir import RunDir
from keras_transfer.runs.evaluate import Evaluation, choose_split, evaluate
from keras_transfer.runs.fit import fit, refuse_run_inside_data

__all__ = ["Evaluation", "RunDir", "choose_split", "evaluate", "fit", "refuse_run_inside_data"]
