"""Refuse a SavedModel whose functions would touch files or run code before TensorFlow runs them.

A SavedModel is a program: its signatures may call any registered op, and `tf.io.write_file` in a
signature writes a file the moment the model serves. Before loading a user's SavedModel we read
`saved_model.pb` as a protobuf (nothing executes) and collect the op types of every function the
signatures and the init op reach, following nested calls (`f`, `then_branch`, `body`, ...) through
the function library. The refused op types are taken from TensorFlow's own op registry at run
time (`denied_ops`), by the families that reach outside the tensor world: files, readers and
file-backed datasets, Python callbacks, summaries, printing (which can write to a file), debug
and network ops. TensorFlow has no op that starts a process; Python callbacks are its only way.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

# Families by op name in the registry (see `denied_ops`); every match is refused but ALLOWED.
_DENIED_PATTERN = re.compile(
    r"File|Reader|PyFunc|Summary|Print|Dataset|Iterator|Snapshot|Save|Restore|MergeV2Checkpoints"
    r"|Sharded|Debug|Send|Recv|Rpc|Collective|TPU|LMDB|Sql|DataService|Record|LoadAndRemapMatrix")
# Reads the labels asset into the lookup table that names the classes: the path is the model's
# own asset, resolved inside its folder at load time.
ALLOWED = frozenset({"InitializeTableFromTextFile", "InitializeTableFromTextFileV2"})
# Variables restore through these, but only in functions the signatures do not reach.
_CHECKPOINT_OPS = re.compile(r"^(Save|SaveV2|SaveSlices|Restore|RestoreV2|RestoreSlice|MergeV2Checkpoints|ShardedFilename)$")


class UnsafeModelError(ValueError):
    """A SavedModel's functions hold an op that touches files or runs code."""


@functools.lru_cache(maxsize=1)
def denied_ops() -> frozenset[str]:
    """Every registered TensorFlow op type we refuse in a user's SavedModel, from the live op registry."""
    import tensorflow as tf

    names = {name for name in dir(tf.raw_ops) if not name.startswith("_")}
    return frozenset(name for name in names if _DENIED_PATTERN.search(name) and name not in ALLOWED)


def _called_functions(node) -> list[str]:
    names = []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        if value.HasField("list"):
            names.extend(f.name for f in value.list.func)
    return names


def saved_model_ops(path: str | os.PathLike) -> tuple[dict[str, set[str]], set[str]]:
    """(op type -> where it runs, op types found anywhere) for a SavedModel, read without executing it.

    "Where" names the signature or the library function; reached functions are followed through
    every function-valued attribute, so a `tf.cond` or `tf.map_fn` inside a signature is covered.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    reached: dict[str, set[str]] = {}
    anywhere: set[str] = set()
    for meta in proto.meta_graphs:
        library = {f.signature.name: f for f in meta.graph_def.library.function}
        for function in library.values():
            anywhere.update(node.op for node in function.node_def)
        nodes = {node.name: node for node in meta.graph_def.node}
        for key, signature in meta.signature_def.items():
            roots = [info.name.split(":")[0] for info in signature.outputs.values()]
            seen_nodes, seen_functions = set(), set()
            while roots:  # the top-level nodes this signature (or the init op) depends on
                name = roots.pop().lstrip("^").split(":")[0]
                if name in seen_nodes or name not in nodes:
                    continue
                seen_nodes.add(name)
                node = nodes[name]
                reached.setdefault(node.op, set()).add(f"signature {key!r}")
                roots.extend(node.input)
                pending = _called_functions(node)
                while pending:
                    fname = pending.pop()
                    if fname in seen_functions or fname not in library:
                        continue
                    seen_functions.add(fname)
                    for inner in library[fname].node_def:
                        reached.setdefault(inner.op, set()).add(f"signature {key!r} (function {fname})")
                        pending.extend(_called_functions(inner))
    return reached, anywhere


def check_saved_model(path: str | os.PathLike) -> None:
    """Raise `UnsafeModelError` (one line) if the SavedModel at `path` holds a file-system or process op.

    Refused: a denied op reached from any signature or the init op, and a denied op other than the
    checkpoint save/restore ops anywhere in the function library.
    """
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{path} is not a SavedModel folder (no saved_model.pb)")
    reached, anywhere = saved_model_ops(path)
    denied = denied_ops()
    bad = sorted(op for op in reached if op in denied)
    if bad:
        where = min(reached[bad[0]])
        raise UnsafeModelError(f"{path}: refusing to run this SavedModel: {where} calls {', '.join(bad)} "
                               "(file-system or process ops); only tensor computations are allowed")
    bad = sorted(op for op in anywhere if op in denied and not _CHECKPOINT_OPS.match(op))
    if bad:
        raise UnsafeModelError(f"{path}: refusing to run this SavedModel: its function library holds "
                               f"{', '.join(bad)} (file-system or process ops)")
