"""TensorFlow Datasets (`tfds:NAME`): splits streamed as TFDS names them, never counted up front."""

from __future__ import annotations

import socket

import numpy as np

from keras_transfer.config import DataConfig
from keras_transfer.data.bundle import DataBundle, Examples


def from_tfds(config: DataConfig, name: str) -> DataBundle:
    """The bundle of TFDS dataset `name`: its own train, validation and test splits, or train cut by data.val_split."""
    import tensorflow_datasets as tfds

    if config.few_shot or config.balance in ("oversample", "undersample"):
        raise ValueError("data.few_shot and data.balance: oversample/undersample need a countable source; "
                         "for tfds use balance: class_weight, or export the examples to a folder")
    builder = tfds.builder(name, data_dir=config.data_dir)
    if config.download and not builder.is_prepared():
        _check_download_reachable(name, builder.data_dir)
    splits_available = set(builder.info.splits) if builder.info.splits else set()
    wanted = {"train": config.split}
    if "validation" in splits_available:
        wanted["val"] = "validation"
    if "test" in splits_available and config.split != "test":
        wanted["test"] = "test"
    if "val" not in wanted and config.val_split:
        v = int(round(config.val_split * 100))
        wanted["train"], wanted["val"] = f"{config.split}[{v}%:]", f"{config.split}[:{v}%]"
    loaded = tfds.load(name, split=list(wanted.values()), data_dir=config.data_dir, as_supervised=True,
                       download=config.download, with_info=False)
    label_feature = builder.info.features[builder.info.supervised_keys[1]]
    names = list(label_feature.names)
    splits = {key: Examples(np.zeros(0, dtype=np.int64), tfds=ds) for key, ds in zip(wanted, loaded)}
    return DataBundle(config, names, "multiclass", splits, [], None)


def _check_download_reachable(name: str, data_dir) -> None:
    """Fail in seconds, not after minutes of retries, when TFDS would have to download offline."""
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
    except OSError:
        raise ValueError(
            f"tfds:{name} is not prepared in {data_dir} and the download servers cannot be reached "
            "(no internet?). Prepare it once on a machine online (tfds build, or tfds.load) and copy the "
            "data_dir here, set data.download: false with data.data_dir pointing at it, or use "
            "folder:PATH with the images in class folders."
        ) from None
