"""Reads ``OutcomePredictor.to_bytes()`` in plain Python, so tests can check
the learned weights numerically without trusting the core's own decoder.

The bytes are the learned-state frame (8-byte magic, u32 format version,
u64 payload length, u32 CRC-32, all little-endian) around a postcard
encoding of ``PredictorState`` (rust/src/learned.rs): integers as LEB128
varints, f64 as 8 little-endian bytes, strings and sequences as a varint
length and their items, structs and tuples as their fields in order.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["LearnedState", "ModelWeights", "decode_learned_state"]

_HEADER = struct.Struct("<8sIQI")


@dataclass(frozen=True)
class ModelWeights:
    """One model's part of the state; weights are index -> value (non-zero only)."""

    weights: dict[int, float]
    overall: tuple[int, int]
    latency_weights: dict[int, float]
    latency_seen: int


@dataclass(frozen=True)
class LearnedState:
    version: int
    feature_dim: int
    params: tuple[float, float, float, float]
    models: dict[str, ModelWeights]
    categories: list[tuple[str, list[tuple[str, tuple[int, int]]]]]
    updates: int


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def f64(self) -> float:
        (value,) = struct.unpack_from("<d", self.data, self.at)
        self.at += 8
        return float(value)

    def string(self) -> str:
        length = self.varint()
        text = self.data[self.at : self.at + length].decode()
        self.at += length
        return text

    def pair(self) -> tuple[int, int]:
        return self.varint(), self.varint()

    def sparse(self) -> dict[int, float]:
        entries = [(self.varint(), self.f64()) for _ in range(self.varint())]
        return dict(entries)


def decode_learned_state(data: bytes) -> LearnedState:
    """The state ``data`` holds; ValueError for a damaged frame or trailing bytes."""
    _magic, _format, length, checksum = _HEADER.unpack_from(data)
    payload = data[_HEADER.size :]
    if len(payload) != length or zlib.crc32(payload) != checksum:
        raise ValueError(f"damaged learned state: {len(payload)} of {length} payload bytes")
    read = _Reader(payload)
    version, feature_dim = read.varint(), read.varint()
    params = (read.f64(), read.f64(), read.f64(), read.f64())
    models: dict[str, ModelWeights] = {}
    for _ in range(read.varint()):
        name = read.string()
        weights = read.sparse()
        overall = read.pair()
        models[name] = ModelWeights(weights, overall, read.sparse(), read.varint())
    categories = [
        (read.string(), [(read.string(), read.pair()) for _ in range(read.varint())])
        for _ in range(read.varint())
    ]
    updates = read.varint()
    if read.at != len(payload):
        raise ValueError(f"learned state: {len(payload) - read.at} bytes left after the state")
    return LearnedState(version, feature_dim, params, models, categories, updates)
