"""Hostile and unlucky inputs to the data and weights readers: tensors outside their storage,
decompression bombs, CSV paths outside their folder, files that only the training decoder rejects,
and a disk cache that must never hand back another ordering's examples."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_transfer.backbones.torch_state import CorruptCheckpointError, read_legacy_state_dict

# --- crafted legacy .pth files, written opcode by opcode (no torch needed) -----------------------


def _int(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1: any size, any sign


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor_pickle(name: str, numel: int, offset, shape, stride) -> bytes:
    """The pickle of {name: tensor} as torch's legacy writer lays it out, from the allowed globals only."""
    storage = _tuple([_str("storage"), b"ctorch\nFloatStorage\n", _str("0"), _str("cpu"), _int(numel)]) + b"Q"
    args = _tuple([storage, _int(offset), _tuple([_int(n) for n in shape]), _tuple([_int(s) for s in stride]),
                   b"\x89", b"ccollections\nOrderedDict\n)R"])
    tensor = b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"
    return b"\x80\x02ccollections\nOrderedDict\n)R(" + _str(name) + tensor + b"u."


def _legacy_pth(path: Path, numel: int, offset, shape, stride, data: np.ndarray | None = None) -> Path:
    data = np.arange(numel, dtype="<f4") if data is None else data
    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(_tensor_pickle("w", numel, offset, shape, stride))
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", data.size) + data.astype("<f4").tobytes())
    path.write_bytes(out.getvalue())
    return path


def test_a_crafted_pth_within_its_storage_reads_as_the_strided_tensor(tmp_path):
    state = read_legacy_state_dict(_legacy_pth(tmp_path / "ok.pth", 12, 2, (2, 3), (1, 2)))
    np.testing.assert_array_equal(state["w"], np.arange(12, dtype=np.float32)[2:][np.array([[0, 2, 4], [1, 3, 5]])])


@pytest.mark.parametrize("offset, shape, stride, why", [
    (0, (4, 4), (4, 1), "shape beyond the storage"),
    (0, (2, 3), (1_000_000_000, 1), "stride beyond the storage"),
    (10, (4,), (1,), "offset plus extent beyond the storage"),
    (-4, (2,), (1,), "negative offset"),
    (0, (2, 2), (-1, 1), "negative stride"),
    (0, (-2, 2), (1, 1), "negative shape"),
    (0, (2**62, 2**62), (2**62, 1), "sizes that overflow 64 bits"),
    (0, (10**9,), (0,), "a stride-0 broadcast larger than the storage"),
    (12, (), (), "a scalar past the end"),
    (0, (2, 2), (1,), "a stride shorter than the shape"),
])
def test_a_tensor_outside_its_storage_is_refused_with_one_line(tmp_path, offset, shape, stride, why):
    path = _legacy_pth(tmp_path / "crafted.pth", 12, offset, shape, stride)
    with pytest.raises(CorruptCheckpointError, match=r"crafted\.pth.*tensor w") as raised:
        read_legacy_state_dict(path)
    assert isinstance(raised.value, ValueError) and "\n" not in str(raised.value), why


def test_a_storage_longer_than_the_file_is_refused_before_reading(tmp_path):
    path = _legacy_pth(tmp_path / "short.pth", 12, 0, (12,), (1,))
    raw = bytearray(path.read_bytes())
    raw[-48 - 8:-48] = struct.pack("<q", 2**60)  # the element count in front of the 12 floats
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match="more than the file holds"):
        read_legacy_state_dict(path)


def test_a_crafted_pth_never_crashes_the_process(tmp_path):
    """The reported crash: a stride beyond the storage segfaulted (exit 139); now it is exit 0 with an error."""
    path = _legacy_pth(tmp_path / "segv.pth", 4, 0, (64, 64), (1 << 30, 1))  # segfaulted before
    code = ("from keras_transfer.backbones.torch_state import read_legacy_state_dict as r\n"
            f"try:\n    r({str(path)!r})\nexcept ValueError as e:\n    print('refused', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("refused"), (done.returncode, done.stderr[-500:])
