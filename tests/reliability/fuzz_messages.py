"""Hypothesis strategies for the request messages of every RPC the server speaks.

Each strategy draws a message the way a careless or hostile caller might build it: valid requests (so the
happy path is exercised between the bad ones), random shapes and dtypes, byte counts that almost fit,
NaN and infinities, empty and oversized batches, invalid UTF-8 where the field is bytes, giant strings,
and unknown fields appended to the serialized bytes (which a receiver must skip).
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Sequence

from hypothesis import strategies as st

from classify_client.wire.proto.classify.v1 import classify_pb2 as native
from classify_client.wire.proto.inference import grpc_predict_v2_pb2 as v2

PIXELS = 28 * 28
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
SPECIAL_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, 1.0000001, -1e-30, 3e38])
GIANT_SIZES = st.sampled_from([10_000, 100_001, 250_000])


def giant_text() -> st.SearchStrategy[str]:
    """A long string built by repetition: generating it character by character would take seconds."""
    return st.builds(lambda piece, size: (piece * size)[:size], st.text(min_size=1, max_size=3), GIANT_SIZES)


def texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just("a quiet, moving film"),
        st.just(""),
        st.just("   \n\t"),
        st.text(max_size=60),
        giant_text(),
    )


def raw_bytes() -> st.SearchStrategy[bytes]:
    """Bytes for bytes fields: text, invalid UTF-8 (lone continuation bytes, overlongs), anything."""
    return st.one_of(
        st.text(max_size=40).map(str.encode),
        st.sampled_from([b"\xff", b"\xc0\x80", b"caf\xe9", b"\x80abc", b"\xed\xa0\x80", b""]),
        st.binary(max_size=64),
    )


def names(real: Sequence[str]) -> st.SearchStrategy[str]:
    """Model names: mostly real ones (so the input is what gets tested), some strange ones."""
    return st.one_of(
        st.sampled_from(list(real)),
        st.sampled_from(list(real)),
        st.sampled_from(["", "MNIST-CNN", "../mnist-cnn", "mnist-cnn/1", "_unknown", "\x00", "\u202e"]),
        st.text(max_size=20),
        giant_text(),
    )


def versions() -> st.SearchStrategy[int]:
    return st.one_of(st.just(0), st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1))


def image_shape() -> st.SearchStrategy[list[int]]:
    """Mostly plausible shapes, then anything int64 can hold."""
    rows = st.one_of(st.integers(0, 5), st.sampled_from([4096, 4097]), st.integers(-(2**63), 2**63 - 1))
    return st.one_of(
        st.builds(lambda n: [n, 28, 28], rows),
        st.builds(lambda n: [n, 28, 28, 1], rows),
        st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6),
        st.lists(st.integers(-2, 30), max_size=5),
    )


def pixel_bytes_for(shape: list[int]) -> st.SearchStrategy[bytes]:
    """The exact byte count for ``shape`` (when it is small enough to build), or one that is off."""
    exact = math.prod(shape) if shape and all(d >= 0 for d in shape) else -1
    options: list[st.SearchStrategy[bytes]] = [st.binary(max_size=PIXELS + 3)]
    if 0 <= exact <= 4097 * PIXELS:
        # Random pixels from a seed: hypothesis would take far too long to draw megabytes byte by byte.
        noise = st.integers(0, 2**32 - 1).map(lambda seed: random.Random(seed).randbytes(exact))
        options += [st.just(bytes(exact)), noise]
        options.append(st.just(bytes(exact * 4)))  # float32 pixels sent as bytes: the classic mistake
    return st.one_of(options)


@st.composite
def image_batch(draw: st.DrawFn) -> native.ImageBatch:
    shape = draw(image_shape())
    return native.ImageBatch(data=draw(pixel_bytes_for(shape)), shape=shape)


@st.composite
def classify_request(draw: st.DrawFn, real: Sequence[str]) -> native.ClassifyRequest:
    request = native.ClassifyRequest(
        model=draw(names(real)),
        version=draw(versions()),
        top_k=draw(st.one_of(st.integers(0, 12), st.integers(0, 2**32 - 1))),
        return_probabilities=draw(st.booleans()),
        request_id=draw(st.one_of(st.just(""), st.text(max_size=10))),
    )
    kind = draw(st.sampled_from(["images", "texts", "none"]))
    if kind == "images":
        request.images.CopyFrom(draw(image_batch()))
    elif kind == "texts":
        request.texts.texts.extend(draw(st.lists(texts(), max_size=6)))
    return request


# -- KServe V2 -------------------------------------------------------------------------------------------

V2_DTYPES = ["UINT8", "FP32", "BYTES", "INT64", "FP16", "BOOL", "uint8", "", "FP64"]
V2_ITEMSIZE = {"UINT8": 1, "FP32": 4, "INT64": 8, "FP16": 2, "BOOL": 1, "FP64": 8}


@st.composite
def v2_tensor(draw: st.DrawFn) -> tuple[v2.ModelInferRequest.InferInputTensor, bytes | None]:
    """An input tensor and, sometimes, its raw contents (None: typed contents or none at all)."""
    name = draw(st.sampled_from(["images", "texts", "input", ""]))
    datatype = draw(st.sampled_from(V2_DTYPES))
    shape = draw(image_shape() if datatype in ("UINT8", "FP32") else st.lists(st.integers(-2, 6), max_size=3))
    tensor = v2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    count = math.prod(shape) if shape and all(d >= 0 for d in shape) else -1
    small = 0 <= count <= 6 * PIXELS
    mode = draw(st.sampled_from(["raw", "typed", "none"]))
    if mode == "raw":
        if datatype == "BYTES":
            values = draw(st.lists(raw_bytes(), max_size=5))
            raw = b"".join(struct.pack("<I", len(v)) + v for v in values)
            return tensor, draw(st.sampled_from([raw, raw[:-1] or b"\x01", raw + b"\xff\xff\xff\x7f"]))
        size = count * V2_ITEMSIZE.get(datatype, 1) if small else draw(st.integers(0, 100))
        if datatype == "FP32" and small and draw(st.booleans()):
            values = draw(st.lists(st.one_of(FLOATS, SPECIAL_FLOATS), min_size=count, max_size=count))
            return tensor, struct.pack(f"<{count}f", *values)
        return tensor, draw(st.sampled_from([bytes(size), bytes(size + 1), bytes(max(size - 1, 0))]))
    if mode == "typed":
        length = count if small and draw(st.booleans()) else draw(st.integers(0, 10))
        if datatype == "FP32":
            tensor.contents.fp32_contents.extend(
                draw(st.lists(st.one_of(FLOATS, SPECIAL_FLOATS), min_size=length, max_size=length))
            )
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                draw(st.lists(raw_bytes(), min_size=length, max_size=length))
            )
        else:
            tensor.contents.uint_contents.extend(
                draw(st.lists(st.integers(0, 2**32 - 1), min_size=length, max_size=length))
            )
    return tensor, None


@st.composite
def model_infer_request(draw: st.DrawFn, real: Sequence[str]) -> v2.ModelInferRequest:
    request = v2.ModelInferRequest(
        model_name=draw(names(real)),
        model_version=draw(st.sampled_from(["", "1", "0", "-1", "2", "latest", "99999999999999999999"])),
        id=draw(st.text(max_size=8)),
    )
    raws = []
    for tensor, raw in draw(st.lists(v2_tensor(), max_size=2)):
        request.inputs.append(tensor)
        if raw is not None:
            raws.append(raw)
    if raws and draw(st.booleans()):
        request.raw_input_contents.extend(raws)
    for _ in range(draw(st.integers(0, 2))):
        output = request.outputs.add(name=draw(st.sampled_from(["probabilities", "scores", ""])))
        choice = draw(st.sampled_from(["none", "int", "uint", "string", "bool"]))
        parameter = output.parameters["classification"]
        if choice == "int":
            parameter.int64_param = draw(st.integers(-(2**63), 2**63 - 1))
        elif choice == "uint":
            parameter.uint64_param = draw(st.integers(0, 2**64 - 1))
        elif choice == "string":
            parameter.string_param = draw(st.text(max_size=5))
        elif choice == "bool":
            parameter.bool_param = draw(st.booleans())
        else:
            del output.parameters["classification"]
    return request


# -- Wire-level additions --------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@st.composite
def unknown_fields(draw: st.DrawFn) -> bytes:
    """Well-formed fields with numbers no message here uses: every receiver must skip them."""
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        number = draw(st.integers(1000, 2**29 - 1))
        wire = draw(st.sampled_from([0, 1, 2, 5]))
        out += varint(number << 3 | wire)
        if wire == 0:
            out += varint(draw(st.integers(0, 2**64 - 1)))
        elif wire == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire == 5:
            out += draw(st.binary(min_size=4, max_size=4))
        else:
            payload = draw(st.one_of(st.binary(max_size=32), st.just(b"\x00" * 70_000)))
            out += varint(len(payload)) + payload
    return out


@st.composite
def wire_damage(draw: st.DrawFn) -> bytes:
    """Bytes that are not a valid message: a string field with invalid UTF-8, a cut length prefix."""
    return draw(
        st.sampled_from(
            [
                b"\x0a\x02\xff\xfe",  # field 1 (a string in every request here) holding invalid UTF-8
                b"\x0a\x05ab",  # field 1 declares 5 bytes, 2 follow
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a varint tag longer than 10 bytes
                b"\x00",  # field number 0 does not exist
            ]
        )
    )
