"""The config owns the schema: checking a config builds no layer and imports neither TensorFlow nor
Keras, and the names it checks against (backbones, embedded datasets, augmentations) are the ones
the model and data layers register."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import keras_transfer.config as config_package
from keras_transfer.config import (
    AUGMENTATIONS,
    BACKBONE_NAMES,
    EMBEDDED_DATASETS,
    VIEWS,
    ConfigError,
    DataConfig,
    default_config_path,
    load_config,
)

CONFIG_DIR = Path(config_package.__file__).parent


def test_checking_a_config_as_a_command_imports_neither_tensorflow_nor_keras_nor_the_model_layers():
    # As the `keras-transfer` console script starts (a library user's `import keras_transfer`
    # registers the toolkit's Keras layers on purpose, for loading saved models).
    code = """if True:
        import sys
        sys.argv[:] = ["keras-transfer"]
        from keras_transfer.config import default_config_path, load_config
        load_config(default_config_path(), ["model.head.units=[8]", "data.augment={flip: null, contrast: 0.3}",
                                            "model.backbone=resnet50", "data.source=digits_0_4"])
        heavy = ("tensorflow", "keras", "keras_transfer.data", "keras_transfer.heads", "keras_transfer.core.layers",
                 "keras_transfer.backbones")
        print(sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy)))
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_the_config_package_imports_only_itself_light_core_yaml_and_the_standard_library_even_inside_functions():
    allowed = ("keras_transfer.config", "keras_transfer.core", "yaml", "__future__")
    for path in sorted(CONFIG_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{alias.name}" for alias in node.names]
                     if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                light = name.split(".")[0] in sys.stdlib_module_names or any(
                    name == a or name.startswith(a + ".") for a in allowed)
                assert light and not name.startswith("keras_transfer.core.layers"), f"{path.name} imports {name}"


def test_every_backbone_name_the_config_accepts_is_a_registered_family_in_the_same_order():
    from keras_transfer.backbones import FAMILIES

    assert tuple(FAMILIES) == BACKBONE_NAMES


def test_every_view_the_config_accepts_is_one_the_multiview_layer_implements():
    from keras_transfer.core import layers

    assert layers.VIEWS == VIEWS


def test_every_embedded_dataset_the_config_accepts_has_a_loader():
    from keras_transfer.data import EMBEDDED

    assert tuple(EMBEDDED) == EMBEDDED_DATASETS


def test_every_augmentation_the_config_accepts_builds_its_layers_at_the_strengths_it_accepts():
    from keras_transfer.data import augmentation_layers

    for name in AUGMENTATIONS:
        assert augmentation_layers([name]), name
    assert len(augmentation_layers({"contrast": 1.0, "brightness": -1.0})) == 2


def test_augmentation_strengths_are_checked_by_the_config_naming_the_key():
    for augment, message in (({"contrast": 5}, r"data\.augment\.contrast must be in \[0, 1\], got 5"),
                             ({"brightness": -2}, r"data\.augment\.brightness must be in \[-1, 1\]"),
                             ({"zoom": "a"}, r"data\.augment\.zoom must be a number"),
                             (["flipp"], r"unknown augmentation 'flipp' in data\.augment; did you mean 'flip'"),
                             ("flip", r"data\.augment must be a list")):
        with pytest.raises(ValueError, match=message):
            DataConfig(augment=augment)


def test_a_config_error_names_the_head_key_and_the_closest_choice():
    with pytest.raises(ConfigError, match=r"unknown value 'mean' in model\.head\.pooling; did you mean"):
        load_config(default_config_path(), ["model.head.pooling=mean"])
    with pytest.raises(ConfigError, match=r"unknown value 'ful' in model\.head\.views\.0"):
        load_config(default_config_path(), ["model.head.type=logistic", "model.head.views=[ful]"])
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet5' in model\.backbone"):
        load_config(default_config_path(), ["model.backbone=resnet5"])
