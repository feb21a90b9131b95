"""See what a model learned and where it fails: mistakes, Grad-CAM, block patches, TTA, report.html."""

from keras_transfer.interpret.gradcam import (
    GradCAM,
    NoGradientError,
    feature_layer,
    gradcam,
    overlay,
    plot_gradcam,
    predicted_classes,
)
from keras_transfer.interpret.insights import write_gradcam_plot, write_run_insights
from keras_transfer.interpret.mistakes import (
    Mistake,
    Predictions,
    collect_predictions,
    find_mistakes,
    mistakes_csv,
    plot_mistakes,
    write_error_analysis,
)
from keras_transfer.interpret.patches import (
    ReceptiveField,
    block_outputs,
    plot_top_patches,
    receptive_fields,
    top_patches,
)
from keras_transfer.interpret.report_html import render_report, write_report_html
from keras_transfer.interpret.tta import (
    TTA_VIEWS,
    augmented_views,
    default_views,
    tta_forward,
    tta_predict,
)

__all__ = [
    "TTA_VIEWS",
    "GradCAM",
    "Mistake",
    "NoGradientError",
    "Predictions",
    "ReceptiveField",
    "augmented_views",
    "block_outputs",
    "collect_predictions",
    "default_views",
    "feature_layer",
    "find_mistakes",
    "gradcam",
    "mistakes_csv",
    "overlay",
    "plot_gradcam",
    "plot_mistakes",
    "plot_top_patches",
    "predicted_classes",
    "receptive_fields",
    "render_report",
    "top_patches",
    "tta_forward",
    "tta_predict",
    "write_error_analysis",
    "write_gradcam_plot",
    "write_report_html",
    "write_run_insights",
]
