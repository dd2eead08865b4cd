"""Request and response bodies of the serving API, and how request bodies are read.

Bodies are read by :func:`read_json_body`, not by FastAPI's automatic parsing, so every bad
request gets our own JSON error naming what is wrong: a body over ``serving.max_body_bytes``
(413, counted while streaming, whatever ``Content-Length`` claims), bytes that are not UTF-8,
malformed JSON, and wrong types (422). The schemas still appear in the OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from driftloop.config import ServingConfig
from driftloop.errors import InvalidInputError
from driftloop.errors import InvalidTextError as InvalidTextError  # the old import path
from driftloop.errors import LimitError as LimitError  # the old import path

if TYPE_CHECKING:
    from starlette.requests import Request

    from driftloop.serving.errors import ErrorDetail as ErrorDetail
    from driftloop.serving.errors import ErrorResponse as ErrorResponse


def __getattr__(name: str) -> Any:
    """``ErrorDetail`` and ``ErrorResponse`` by their old import path, imported on first use
    (the feedback store reads these bodies in processes that build no app)."""
    if name in {"ErrorDetail", "ErrorResponse"}:
        from driftloop.serving import errors

        return getattr(errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Body = TypeVar("Body", bound=BaseModel)


class StrictBody(BaseModel):
    """A request body: unknown fields are refused, values are not coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PredictRequest(StrictBody):
    """``{"texts": [...]}`` or ``{"text": "..."}``."""

    texts: list[StrictStr] | None = Field(None, description="texts to classify")
    text: StrictStr | None = Field(None, description="one text to classify")

    def all_texts(self) -> list[str]:
        if (self.texts is None) == (self.text is None):
            raise InvalidInputError("send exactly one of 'texts' (a list) or 'text' (a string)")
        texts = self.texts if self.texts is not None else [self.text or ""]
        if not texts:
            raise InvalidInputError("'texts' is empty: send at least one text")
        return texts


class Prediction(BaseModel):
    id: str = Field(description="prediction id, for feedback")
    class_: str = Field(alias="class", description="the most probable class")
    confidence: float
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    model: str
    version: int
    predictions: list[Prediction]


class DeployRequest(StrictBody):
    version: StrictInt = Field(ge=1, le=2**31 - 1)  # the store's INTEGER column


class FeedbackItem(StrictBody):
    prediction_id: StrictStr = Field(min_length=1, max_length=64)
    label: StrictStr = Field(min_length=1, max_length=256)
    text: StrictStr | None = Field(
        None,
        min_length=1,
        description="the predicted text: stored with its label as a production sample that a "
        "model with merge_feedback learns from at its next retrain",
    )

    @field_validator("prediction_id", "label", "text")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # stored as text: PostgreSQL refuses NUL in a string
        if value is not None and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value


class FeedbackRequest(StrictBody):
    feedback: list[FeedbackItem] = Field(min_length=1)


class FeedbackResponse(BaseModel):
    accepted: int
    """Labels stored (every item)."""
    matched: int
    """Labels whose prediction the prediction log holds."""
    relabelled: int = 0
    """Labels that replaced an earlier label of the same prediction (stored, not reported as a
    second ``prediction_correct``)."""


class ModelStatusResponse(BaseModel):
    name: str
    ready: bool
    version: int | None
    content_hash: str | None
    labels: list[str]
    loaded_at: str | None
    created_at: str | None
    deployed_at: str | None
    error: str | None
    output: str | None = Field(None, description="classification or regression")
    inputs: dict[str, Any] | None = Field(
        None,
        description="what one input is: {'kind': 'text'} or {'kind': 'record', "
        "'features': [{'name', 'type', 'optional', 'categories'}]}",
    )


class ModelListResponse(BaseModel):
    models: list[ModelStatusResponse]


def request_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body that the endpoint reads itself (nested models
    inlined, so the schema stands alone in the OpenAPI document)."""
    schema = model.model_json_schema()
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return inline(definitions[reference.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


async def read_json_body(request: Request, max_bytes: int) -> Any:
    """The parsed JSON body; 413 past ``max_bytes``, 422 for non-UTF-8 or malformed JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise LimitError(
            f"request body of {declared} bytes exceeds serving.max_body_bytes ({max_bytes})",
            "serving.max_body_bytes",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise LimitError(
                f"request body exceeds serving.max_body_bytes ({max_bytes} bytes)",
                "serving.max_body_bytes",
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidInputError("the request body is empty: send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"the request body is not valid UTF-8 (byte {exc.start}): send UTF-8 JSON"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise InvalidInputError("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # an integer past Python's 4,300 digits
        raise InvalidInputError(f"malformed JSON: {exc}") from None


def parse_body(model: type[Body], data: Any) -> Body:
    """Validate parsed JSON against a request model; 422 naming each bad field."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for item in exc.errors():
            location = ".".join(str(part) for part in item["loc"]) or "<body>"
            message = item["msg"]
            if item["type"] == "extra_forbidden":
                message = "unknown field"
            problems.append(f"{location}: {message}")
        raise InvalidInputError("invalid request: " + "; ".join(problems)) from None


def check_texts(
    texts: list[str], settings: ServingConfig, names: Sequence[str] | None = None
) -> None:
    """Apply ``serving.max_texts_per_request`` (413) and ``serving.max_text_chars`` (422);
    ``names`` says what each text is in the request (default: ``text <index>``)."""
    if len(texts) > settings.max_texts_per_request:
        raise LimitError(
            f"{len(texts)} texts in one request exceed serving.max_texts_per_request "
            f"({settings.max_texts_per_request})",
            "serving.max_texts_per_request",
        )
    for index, text in enumerate(texts):
        name = f"text {index}" if names is None else names[index]
        if len(text) > settings.max_text_chars:
            raise InvalidTextError(
                f"{name} has {len(text)} characters, more than serving.max_text_chars "
                f"({settings.max_text_chars})",
                "serving.max_text_chars",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError(
                f"{name} contains an unpaired surrogate escape: not valid Unicode"
            ) from None
