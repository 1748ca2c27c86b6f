"""A GGUF file read and rewritten at the byte level: what the restricted output layer needs of one.

``GGUFFile(path)`` reads the header (metadata entries and tensor infos with their byte spans) and maps the
tensor data; ``rows(name, ids)`` gives rows of a 2-D tensor as float32 (gguf-py's dequantisation) and
``row_blocks`` their raw bytes; ``write_with_rows(out, keep, extra)`` writes a copy whose vocabulary is the
rows ``keep`` of the token table (and of ``output.weight`` where the model has one) and no tokenizer, every
other entry and tensor copied byte for byte.

Why not gguf-py's ``GGUFReader``: it builds a numpy array per token string and took 16 s to open Gemma's
262,144-token vocabulary on this 2-core machine; this reader skips the tokenizer's arrays in about 0.2 s.
(gguf-py still supplies the tensor types' block sizes and their dequantisation.)
"""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_INTEGERS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 10: "<u8", 11: "<i8"}
_STRING, _ARRAY = 8, 9
_DEFAULT_ALIGNMENT = 32


class GGUFFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._data = np.memmap(self.path, dtype=np.uint8, mode="r")
        buf = self._data
        if bytes(buf[:4]) != b"GGUF":
            raise ValueError(f"{self.path}: not a GGUF file")
        self.version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        at = 24
        self.kv: dict[str, tuple[int, int, object]] = {}   # key -> (start, end, value; an array: _Array or None)
        for _ in range(n_kv):
            start = at
            key, at = _string(buf, at)
            (vtype,), at = struct.unpack_from("<I", buf, at), at + 4
            value, at = _skip_value(buf, at, vtype)
            self.kv[key] = (start, at, value)
        self.tensors: dict[str, tuple[list[int], int, int]] = {}   # name -> (dims, ggml type, offset)
        for _ in range(n_tensors):
            name, at = _string(buf, at)
            (n_dims,), at = struct.unpack_from("<I", buf, at), at + 4
            dims = list(struct.unpack_from(f"<{n_dims}Q", buf, at))
            at += 8 * n_dims
            ggml_type, offset = struct.unpack_from("<IQ", buf, at)
            at += 12
            self.tensors[name] = (dims, ggml_type, offset)
        self.alignment = int(self.value("general.alignment", _DEFAULT_ALIGNMENT))
        self.data_start = -(-at // self.alignment) * self.alignment

    def value(self, key: str, default=None):
        entry = self.kv.get(key)
        return default if entry is None or entry[2] is None or isinstance(entry[2], _Array) else entry[2]

    def int_array(self, key: str) -> list[int] | None:
        """A metadata array of integers, or None."""
        entry = self.kv.get(key)
        if entry is None or not isinstance(entry[2], _Array):
            return None
        etype, count, at = entry[2]
        if etype not in _INTEGERS:
            return None
        return np.frombuffer(self._data, dtype=_INTEGERS[etype], count=count, offset=at).tolist()

    # -- tensors -----------------------------------------------------------------------------------
    def nbytes(self, name: str) -> int:
        dims, ggml_type, _ = self.tensors[name]
        return _row_bytes(dims[0], ggml_type) * int(np.prod(dims[1:], dtype=np.int64))

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as (rows, bytes a row), a view of the mapped file."""
        dims, ggml_type, offset = self.tensors[name]
        start = self.data_start + offset
        rows = int(np.prod(dims[1:], dtype=np.int64))
        return self._data[start:start + self.nbytes(name)].reshape(rows, _row_bytes(dims[0], ggml_type))

    def tensor_type(self, name: str) -> int:
        return self.tensors[name][1]

    def rows(self, name: str, ids: Sequence[int]) -> np.ndarray:
        """Rows ``ids`` of a 2-D tensor as float32, dequantised as ggml does (d * q for q8_0)."""
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        raw = self.raw(name)[np.asarray(ids, dtype=np.int64)]
        qtype = GGMLQuantizationType(self.tensor_type(name))
        if qtype == GGMLQuantizationType.F32:
            return raw.view(np.float32).reshape(len(raw), -1)
        return dequantize(raw, qtype).reshape(len(raw), -1).astype(np.float32, copy=False)

    # -- writing -----------------------------------------------------------------------------------
    def write_with_rows(self, out: str | Path, keep: Sequence[int], drop_prefix: str = "tokenizer.",
                        extra: dict[str, tuple[int, object]] | None = None) -> Path:
        """A copy at ``out`` (written whole or not at all) whose token table and output layer hold only rows
        ``keep`` (in that order), without the metadata entries starting with ``drop_prefix``; ``extra``:
        entries to add, key -> (GGUF value type, value), arrays as (9, (element type, values))."""
        keep = np.asarray(keep, dtype=np.int64)
        vocab_tensors = {"token_embd.weight", "output.weight"}
        kv = [(k, span) for k, span in self.kv.items() if not k.startswith(drop_prefix) and k not in (extra or {})]
        encoded = [_encode_kv(k, vtype, v) for k, (vtype, v) in (extra or {}).items()]
        infos, sizes, offset = [], [], 0
        for name, (dims, ggml_type, _) in self.tensors.items():
            dims = [dims[0], len(keep)] if name in vocab_tensors else dims
            size = _row_bytes(dims[0], ggml_type) * int(np.prod(dims[1:], dtype=np.int64))
            infos.append(_encode_string(name) + struct.pack(f"<I{len(dims)}Q", len(dims), *dims)
                         + struct.pack("<IQ", ggml_type, offset))
            sizes.append(size)
            offset += -(-size // self.alignment) * self.alignment
        out = Path(out)
        fd, tmp = tempfile.mkstemp(prefix=out.name, suffix=".partial", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"GGUF" + struct.pack("<IQQ", self.version, len(self.tensors), len(kv) + len(encoded)))
                for _, (start, end, _) in kv:
                    f.write(self._data[start:end].tobytes())
                for entry in encoded:
                    f.write(entry)
                for info in infos:
                    f.write(info)
                _pad(f, self.alignment)
                with open(self.path, "rb") as source:
                    for (name, (_, _, offset)), size in zip(self.tensors.items(), sizes):
                        if name in vocab_tensors:   # the rows kept (only their pages of the map are read)
                            f.write(self.raw(name)[keep].tobytes())
                        else:   # copied file to file: never mapped here, so never counted in this process's memory
                            f.flush()
                            _copy(source, f, self.data_start + offset, size)
                        _pad(f, self.alignment)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return out


class _Array(tuple):
    """Where a metadata array of numbers lies: (element type, count, offset)."""


def _row_bytes(n: int, ggml_type: int) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    return n // block * size


def _string(buf, at: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, at)
    return bytes(buf[at + 8:at + 8 + n]).decode("utf-8", errors="replace"), at + 8 + n


def _skip_value(buf, at: int, vtype: int):
    """The value at ``at`` (None for an array, which is only skipped) and where the next entry starts."""
    if vtype in _SCALARS:
        fmt = "<" + _SCALARS[vtype]
        return struct.unpack_from(fmt, buf, at)[0], at + struct.calcsize(fmt)
    if vtype == _STRING:
        return _string(buf, at)
    if vtype == _ARRAY:
        etype, count = struct.unpack_from("<IQ", buf, at)
        at += 12
        if etype in _SCALARS:
            return _Array((etype, count, at)), at + count * struct.calcsize("<" + _SCALARS[etype])
        for _ in range(count):   # strings (the tokenizer's pieces): lengths only
            (n,) = struct.unpack_from("<Q", buf, at)
            at += 8 + n
        return None, at
    raise ValueError(f"unknown GGUF value type {vtype}")


def _encode_string(s: str) -> bytes:
    data = s.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _encode_kv(key: str, vtype: int, value) -> bytes:
    head = _encode_string(key) + struct.pack("<I", vtype)
    if vtype == _STRING:
        return head + _encode_string(value)
    if vtype == _ARRAY:
        etype, values = value
        return head + struct.pack(f"<IQ{len(values)}{_SCALARS[etype]}", etype, len(values), *values)
    return head + struct.pack("<" + _SCALARS[vtype], value)


def _copy(source, target, offset: int, size: int) -> None:
    """``size`` bytes of ``source`` from ``offset`` appended to ``target`` (in the kernel where it can)."""
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(source.fileno(), target.fileno(), size - done, offset + done)
        except (AttributeError, OSError):   # no copy_file_range here (another OS, a file system without it)
            source.seek(offset + done)
            n = target.write(source.read(min(size - done, 1 << 24)))
        if n <= 0:
            raise OSError(f"could not copy {size} bytes from {source.name}")
        done += n
    target.seek(0, os.SEEK_END)


def _pad(f, alignment: int) -> None:
    f.write(b"\0" * (-f.tell() % alignment))
