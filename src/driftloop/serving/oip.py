"""The Open Inference Protocol (KServe's and MLServer's "V2" REST API) for every served model.

::

    GET  /v2                               server metadata (no key)
    GET  /v2/health/live  /v2/health/ready liveness, readiness of every model (no key)
    GET  /v2/models/{name}/ready           readiness of one model (no key)
    GET  /v2/models/{name}                 model metadata (``predict`` scope)
    POST /v2/models/{name}/infer           inference (``predict`` scope)

An inference request is answered exactly like ``POST /v1/models/{name}/predict``: the same
API key and scope, micro-batching, canary and shadow, insights, prediction log and hot swap
(:func:`driftloop.serving.predict_api.answer_request`); only the encoding differs.

Inputs. A text model takes one tensor ``text`` of datatype ``BYTES`` and shape ``[N]`` (or
``[N, 1]``). A record model takes one tensor per feature, named after it, each of shape
``[N]`` (or ``[N, 1]``): the columnar mapping MLServer's pandas codec uses. A ``number`` is
``FP64`` (any ``FP*`` or ``INT*`` tensor is taken), an ``integer`` ``INT64`` (any ``INT*`` or
``UINT*``), a ``boolean`` ``BOOL``, a ``category`` or ``string`` ``BYTES``; the tensor of an
optional feature may be left out (the feature is then missing in every record). Tensor data
may be JSON (flat or nested) or the binary tensor data extension (``binary_data_size``, what
``tritonclient`` sends by default). Every record is then checked like a /v1 record.

Outputs. A classifier answers ``class`` (``BYTES [N]``), ``confidence`` (``FP64 [N]``),
``probabilities`` (``FP64 [N, K]``, its ``parameters.labels`` naming the K columns) and
``prediction_id`` (``BYTES [N]``, for ``POST /v1/models/{name}/feedback``); a regression model
``value`` (``FP64 [N]``), ``interval`` (``FP64 [N, 2]``, when the model gives one) and
``prediction_id``. A request's ``outputs`` picks some of them; ``binary_data_output`` (or an
output's ``binary_data``) asks for them in the binary extension.

Errors. Every error of a ``/v2`` route is the protocol's ``{"error": "<message>"}`` with the
status of its :class:`~driftloop.errors.DriftloopError` (422 for an invalid request, 401/403
for the key, 404 for an unknown model, 503 while not loaded, 500 naming model and version when
the model's own code fails), plus driftloop's ``type`` (and ``limit``) beside it
(:mod:`driftloop.serving.errors`).
"""

from __future__ import annotations

import json
import math
import struct
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from driftloop._version import __version__
from driftloop.errors import InvalidInputError
from driftloop.predictors import Feature, InputSchema, Predictor
from driftloop.serving.auth import PredictKey
from driftloop.serving.errors import ERROR_RESPONSES
from driftloop.serving.predict_api import (
    HASH_HEADER,
    SERVER_TIMING_HEADER,
    VERSION_HEADER,
    answer_request,
)
from driftloop.serving.probes import readiness
from driftloop.serving.schemas import parse_body
from driftloop.serving.state import serving_state

V2_PREFIX = "/v2"
HEADER_LENGTH = "Inference-Header-Content-Length"
"""The binary tensor data extension: the length of the JSON part of a body."""
TEXT_INPUT = "text"
SERVER_NAME = "driftloop"

_FEATURE_DATATYPE = {
    "number": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
    "category": "BYTES",
    "string": "BYTES",
}
_INTEGER_TYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
_FLOAT_TYPES = ("FP16", "FP32", "FP64")
_ACCEPTED = {
    "number": _FLOAT_TYPES + _INTEGER_TYPES,
    "integer": _INTEGER_TYPES,
    "boolean": ("BOOL",),
    "category": ("BYTES",),
    "string": ("BYTES",),
}
_NUMPY_TYPE = {
    "BOOL": "?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InferTensor(_Strict):
    name: str
    shape: list[NonNegativeInt]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestedOutput(_Strict):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(_Strict):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


def oip_router() -> APIRouter:
    """The Open Inference Protocol's routes. Long because it is a router factory: each nested
    function is one short route of the protocol."""
    router = APIRouter(prefix=V2_PREFIX, tags=["open inference protocol"])

    @router.get("", summary="Server metadata (Open Inference Protocol)")
    async def server_metadata() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": ["binary_tensor_data"]}

    @router.get("/health/live", summary="Liveness (Open Inference Protocol)")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get(
        "/health/ready",
        summary="Readiness of every model (Open Inference Protocol)",
        responses={503: {"description": "a model is not loaded"}},
    )
    async def ready(request: Request) -> Response:
        ready = serving_state(request).manager.ready
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @router.get(
        "/models/{name}/ready",
        summary="Readiness of one model (Open Inference Protocol)",
        responses={
            503: {"description": "the model is not loaded"},
            404: {"description": "no such model"},
        },
    )
    async def model_ready(name: str, request: Request) -> Response:
        body = {"name": name, **readiness(serving_state(request).manager.get(name))}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @router.get(
        "/models/{name}",
        summary="Model metadata (Open Inference Protocol)",
        responses=ERROR_RESPONSES,
    )
    async def model_metadata(name: str, request: Request, key: PredictKey) -> dict[str, Any]:
        slot = serving_state(request).manager.get(name).current()
        return model_metadata_body(name, slot.version, slot.predictor)

    @router.post(
        "/models/{name}/infer",
        summary="Inference (Open Inference Protocol)",
        responses=ERROR_RESPONSES,
    )
    async def infer(name: str, request: Request, key: PredictKey) -> Response:
        started = time.perf_counter()
        state = serving_state(request)
        infer_request, binary = _read_request(request.headers, await request.body())
        settings = state.config.serving
        answer = await answer_request(
            state,
            name,
            lambda inputs: request_items(inputs, infer_request, binary, settings),
            started,
        )
        outputs = response_outputs(answer.body["predictions"], answer.slot.predictor)
        body, raw, header_length = encode_response(
            {
                "model_name": name,
                "model_version": str(answer.slot.version),
                **({"id": infer_request.id} if infer_request.id is not None else {}),
            },
            select_outputs(outputs, infer_request),
        )
        total_ms = (time.perf_counter() - started) * 1000.0
        headers = {
            VERSION_HEADER: str(answer.slot.version),
            HASH_HEADER: answer.slot.content_hash,
            SERVER_TIMING_HEADER: f"model;dur={answer.model_seconds * 1000.0:.3f}, "
            f"total;dur={total_ms:.3f}",
        }
        if header_length is None:
            return Response(body, media_type="application/json", headers=headers)
        headers[HEADER_LENGTH] = str(header_length)
        return Response(body + raw, media_type="application/octet-stream", headers=headers)

    return router


# --- metadata ------------------------------------------------------------------------------


def model_metadata_body(name: str, version: int, predictor: Predictor) -> dict[str, Any]:
    """The protocol's model metadata: the version served, the input tensors the model takes
    and the output tensors it answers."""
    if predictor.inputs.is_text:
        inputs = [_tensor(TEXT_INPUT, "BYTES", [-1])]
    else:
        inputs = [
            _tensor(feature.name, _FEATURE_DATATYPE[feature.type], [-1])
            for feature in predictor.inputs.features
        ]
    if predictor.output == "classification":
        outputs = [
            _tensor("class", "BYTES", [-1]),
            _tensor("confidence", "FP64", [-1]),
            _tensor("probabilities", "FP64", [-1, len(predictor.labels)]),
        ]
    else:
        outputs = [_tensor("value", "FP64", [-1]), _tensor("interval", "FP64", [-1, 2])]
    outputs.append(_tensor("prediction_id", "BYTES", [-1]))
    return {
        "name": name,
        "versions": [str(version)],
        "platform": f"driftloop-{__version__}",
        "inputs": inputs,
        "outputs": outputs,
    }


def _tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


# --- requests ------------------------------------------------------------------------------


def _read_request(headers: Any, raw: bytes) -> tuple[InferRequest, bytes]:
    """The request's JSON part, validated, and the binary tensor data after it (if any)."""
    declared = headers.get(HEADER_LENGTH.lower())
    if declared is None:
        json_part, binary = raw, b""
    else:
        if not declared.isdigit() or int(declared) > len(raw):
            raise InvalidInputError(
                f"{HEADER_LENGTH} {declared!r} is not a length within the body ({len(raw)} bytes)"
            )
        json_part, binary = raw[: int(declared)], raw[int(declared) :]
    if not json_part.strip():
        raise InvalidInputError("the request body is empty: send an inference request")
    try:
        data = json.loads(json_part)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"the request is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise InvalidInputError("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # an integer past Python's 4,300 digits
        raise InvalidInputError(f"malformed JSON: {exc}") from None
    return parse_body(InferRequest, data), binary


def request_items(
    inputs: InputSchema, request: InferRequest, binary: bytes, settings: Any
) -> list[Any]:
    """The request's texts or records for a model taking ``inputs``, checked exactly as a /v1
    request's (limits, types, categories)."""
    from driftloop.serving.model_io import parse_inputs

    columns = _columns(request, binary)
    if inputs.is_text:
        unknown = sorted(set(columns) - {TEXT_INPUT})
        if unknown or TEXT_INPUT not in columns:
            raise InvalidInputError(
                f"this text model takes one input {TEXT_INPUT!r} (BYTES); got {sorted(columns)}"
            )
        tensor, values = columns[TEXT_INPUT]
        _check_datatype(tensor, ("BYTES",))
        return parse_inputs(inputs, {"texts": values}, settings)
    features = {feature.name: feature for feature in inputs.features}
    unknown = sorted(set(columns) - set(features))
    if unknown:
        raise InvalidInputError(f"unknown inputs {unknown}; this model takes {sorted(features)}")
    missing = sorted(f.name for f in inputs.features if not f.optional and f.name not in columns)
    if missing:
        raise InvalidInputError(f"missing inputs {missing} (required features)")
    sizes = {name: len(values) for name, (_, values) in columns.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidInputError(f"every input needs the same number of rows; got {sizes}")
    rows = next(iter(sizes.values()))
    for name, (tensor, _) in columns.items():
        _check_datatype(tensor, _ACCEPTED[features[name].type])
    records = [
        {name: _feature_value(features[name], values[row]) for name, (_, values) in columns.items()}
        for row in range(rows)
    ]
    return parse_inputs(inputs, {"records": records}, settings)


def _feature_value(feature: Feature, value: Any) -> Any:
    if feature.type == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _check_datatype(tensor: InferTensor, accepted: Sequence[str]) -> None:
    if tensor.datatype not in accepted:
        raise InvalidInputError(
            f"input {tensor.name!r} has datatype {tensor.datatype}; it "
            f"takes {' or '.join(accepted)}"
        )


def _columns(request: InferRequest, binary: bytes) -> dict[str, tuple[InferTensor, list[Any]]]:
    """Each input tensor's values, one per row, from its JSON data or its binary data."""
    columns: dict[str, tuple[InferTensor, list[Any]]] = {}
    offset = 0
    for tensor in request.inputs:
        if tensor.name in columns:
            raise InvalidInputError(f"input {tensor.name!r} is sent twice")
        if tensor.datatype not in _NUMPY_TYPE and tensor.datatype != "BYTES":
            raise InvalidInputError(
                f"input {tensor.name!r} has unknown datatype {tensor.datatype!r}"
            )
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidInputError(
                f"input {tensor.name!r} has shape {tensor.shape}; send "
                "[N] or [N, 1] (one value per row)"
            )
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if tensor.data is not None:
                raise InvalidInputError(f"input {tensor.name!r} has both data and binary_data_size")
            if (
                not isinstance(size, int)
                or isinstance(size, bool)
                or size < 0
                or offset + size > len(binary)
            ):
                raise InvalidInputError(
                    f"input {tensor.name!r}: binary_data_size {size!r} "
                    f"is not within the {len(binary)} binary bytes"
                )
            values = _decode_binary(tensor, binary[offset : offset + size])
            offset += size
        elif tensor.data is None:
            raise InvalidInputError(f"input {tensor.name!r} has no data")
        else:
            values = _json_values(tensor)
        if len(values) != math.prod(tensor.shape):
            raise InvalidInputError(
                f"input {tensor.name!r} has {len(values)} values for shape {tensor.shape}"
            )
        columns[tensor.name] = (tensor, values)
    if offset != len(binary):
        raise InvalidInputError(f"{len(binary) - offset} binary bytes belong to no input")
    return columns


def _json_values(tensor: InferTensor) -> list[Any]:
    """The tensor's JSON data, flattened one level, each element of the datatype's JSON
    type."""
    assert tensor.data is not None
    values = [v for item in tensor.data for v in (item if isinstance(item, list) else [item])]
    expected: tuple[type, ...]
    if tensor.datatype == "BYTES":
        expected, what = (str,), "a string"
    elif tensor.datatype == "BOOL":
        expected, what = (bool,), "true or false"
    elif tensor.datatype in _INTEGER_TYPES:
        expected, what = (int,), "an integer"
    else:
        expected, what = (int, float), "a number"
    for index, value in enumerate(values):
        if not isinstance(value, expected) or (
            isinstance(value, bool) and tensor.datatype != "BOOL"
        ):
            raise InvalidInputError(
                f"input {tensor.name!r} value {index}: expected {what} "
                f"({tensor.datatype}), got {type(value).__name__}"
            )
    return values


def _decode_binary(tensor: InferTensor, raw: bytes) -> list[Any]:
    if tensor.datatype != "BYTES":
        itemsize = np.dtype(_NUMPY_TYPE[tensor.datatype]).itemsize
        if len(raw) % itemsize:
            raise InvalidInputError(
                f"input {tensor.name!r}: {len(raw)} binary bytes are not "
                f"whole {tensor.datatype} values"
            )
        values: list[Any] = np.frombuffer(raw, dtype=_NUMPY_TYPE[tensor.datatype]).tolist()
        return values
    texts: list[Any] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInputError(f"input {tensor.name!r}: truncated BYTES element")
        (length,) = struct.unpack_from("<I", raw, offset)
        element = raw[offset + 4 : offset + 4 + length]
        if len(element) != length:
            raise InvalidInputError(f"input {tensor.name!r}: truncated BYTES element")
        try:
            texts.append(element.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInputError(
                f"input {tensor.name!r} element {len(texts)} is not UTF-8 text"
            ) from None
        offset += 4 + length
    return texts


# --- responses -----------------------------------------------------------------------------


def response_outputs(
    predictions: list[dict[str, Any]], predictor: Predictor
) -> list[dict[str, Any]]:
    """The /v1 answers of one request as the protocol's output tensors."""
    rows = len(predictions)
    ids = _output("prediction_id", "BYTES", [rows], [p["id"] for p in predictions])
    if predictor.output == "classification":
        labels = list(predictor.labels)
        probabilities = [p["probabilities"][label] for p in predictions for label in labels]
        return [
            _output("class", "BYTES", [rows], [p["class"] for p in predictions]),
            _output("confidence", "FP64", [rows], [p["confidence"] for p in predictions]),
            {
                **_output("probabilities", "FP64", [rows, len(labels)], probabilities),
                "parameters": {"labels": labels},
            },
            ids,
        ]
    outputs = [_output("value", "FP64", [rows], [p["value"] for p in predictions])]
    if predictions and "interval" in predictions[0]:
        outputs.append(
            _output(
                "interval",
                "FP64",
                [rows, 2],
                [bound for p in predictions for bound in p["interval"]],
            )
        )
    return [*outputs, ids]


def _output(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def select_outputs(
    outputs: list[dict[str, Any]], request: InferRequest
) -> list[tuple[dict[str, Any], bool]]:
    """The outputs the request asks for (all by default), each with whether it wants it as
    binary data."""
    binary_default = bool((request.parameters or {}).get("binary_data_output", False))
    if request.outputs is None:
        return [(output, binary_default) for output in outputs]
    by_name = {output["name"]: output for output in outputs}
    unknown = sorted({wanted.name for wanted in request.outputs} - set(by_name))
    if unknown:
        raise InvalidInputError(f"unknown outputs {unknown}; this model answers {sorted(by_name)}")
    return [
        (by_name[wanted.name], bool((wanted.parameters or {}).get("binary_data", binary_default)))
        for wanted in request.outputs
    ]


def encode_response(
    head: dict[str, Any], outputs: list[tuple[dict[str, Any], bool]]
) -> tuple[bytes, bytes, int | None]:
    """The response's JSON part, its binary part, and the JSON part's length when there is a
    binary part (``None`` otherwise)."""
    encoded: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output, binary in outputs:
        if not binary:
            encoded.append(output)
            continue
        chunk = _encode_binary(output["datatype"], output["data"])
        chunks.append(chunk)
        encoded.append(
            {key: value for key, value in output.items() if key != "data"}
            | {"parameters": {**output.get("parameters", {}), "binary_data_size": len(chunk)}}
        )
    body = json.dumps({**head, "outputs": encoded}, separators=(",", ":")).encode()
    return body, b"".join(chunks), len(body) if chunks else None


def _encode_binary(datatype: str, data: list[Any]) -> bytes:
    if datatype == "BYTES":
        parts = [value.encode("utf-8") for value in data]
        return b"".join(struct.pack("<I", len(part)) + part for part in parts)
    return np.asarray(data, dtype=_NUMPY_TYPE[datatype]).tobytes()
