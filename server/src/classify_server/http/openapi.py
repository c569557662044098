"""Shared pieces of the OpenAPI description: request bodies declared by model, the error body."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

SCHEMA_REF = "#/components/schemas/{model}"


class ErrorBody(BaseModel):
    """Every failure of every HTTP API."""

    error: str = Field(description="What was wrong and what was expected (the gRPC API's message)")
    code: str = Field(description="The gRPC status the same failure has over gRPC, e.g. INVALID_ARGUMENT")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Invalid request (INVALID_ARGUMENT): the message says what was expected",
        401: "Missing or invalid bearer token (UNAUTHENTICATED)",
        404: "Unknown model or version (NOT_FOUND)",
        413: "Body over --max-message-bytes, or more rows or longer texts than the server accepts",
        429: "Server or model queue busy (RESOURCE_EXHAUSTED); retry after Retry-After seconds",
        503: "Model loading or unloaded (UNAVAILABLE); retry after Retry-After seconds",
    }.items()
}


def json_request_body(model: type[BaseModel], description: str, **other_content: Any) -> dict[str, Any]:
    """``openapi_extra`` declaring a route's JSON body as ``model`` (app.py adds the model's schema)."""
    content = {"application/json": {"schema": {"$ref": SCHEMA_REF.format(model=model.__name__)}}}
    return {"requestBody": {"required": True, "description": description, "content": content | other_content}}
