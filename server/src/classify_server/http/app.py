"""The FastAPI application: the three HTTP APIs, the request-id middleware, one error body, OpenAPI.

Request bodies are read and parsed by the routes themselves (guard.py: bounded in size and time, parsed
by pydantic from bytes, errors in the APIs' own format), so their schemas are declared to OpenAPI here
rather than inferred from handler parameters.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from classify_server import __version__
from classify_server.http import explain_rest, kserve_rest, native_json, tfserving_rest
from classify_server.http.guard import HttpContext, RequestIdMiddleware
from classify_server.http.openapi import SCHEMA_REF
from classify_server.http.playground import mount_playground

DESCRIPTION = (
    "Classify's models over HTTP/JSON, beside its gRPC API and over the same data plane and batcher: "
    "the KServe V2 / Open Inference Protocol REST API under /v2, TF Serving's REST API under /v1, and "
    "a native JSON API under /api/v1. With bearer tokens configured, send `Authorization: Bearer <token>` "
    '(health and these docs stay open). Errors are `{"error": message, "code": gRPC status name}`.'
)


def build_app(context: HttpContext) -> FastAPI:
    app = FastAPI(
        title="Classify",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "KServe V2", "description": kserve_rest.TAG_DESCRIPTION},
            {"name": "TF Serving", "description": tfserving_rest.TAG_DESCRIPTION},
            {"name": "Native", "description": native_json.TAG_DESCRIPTION},
            {"name": "Explain", "description": explain_rest.TAG_DESCRIPTION},
        ],
    )
    app.state.context = context
    app.include_router(kserve_rest.router(context))
    app.include_router(tfserving_rest.router(context))
    app.include_router(native_json.router(context))
    mount_playground(app)
    app.include_router(explain_rest.router(context))
    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_exception)
    request_models = [
        *kserve_rest.REQUEST_MODELS,
        *tfserving_rest.REQUEST_MODELS,
        *native_json.REQUEST_MODELS,
        *explain_rest.REQUEST_MODELS,
    ]
    app.openapi = lambda: _openapi(app, request_models)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, request_models: list[type[BaseModel]]) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    _, definitions = models_json_schema(
        [(model, "validation") for model in request_models], ref_template=SCHEMA_REF
    )
    components = schema.setdefault("components", {})
    for name, definition in definitions.get("$defs", {}).items():
        components.setdefault("schemas", {}).setdefault(name, definition)
    # Lets /docs send the token ("Authorize"); servers without --auth-tokens ignore the header.
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    schema["security"] = [{"bearer": []}, {}]
    app.openapi_schema = schema
    return schema


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Unknown paths and wrong methods, in the same error body as every other failure."""
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "NOT_FOUND", 405: "UNIMPLEMENTED"}
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        message = (
            f"no API at {request.method} {request.url.path}; see /docs for the routes "
            "(/v2: KServe V2, /v1/models: TF Serving, /api/v1: native JSON)"
        )
    elif exc.status_code == 405:
        message = f"{request.method} is not accepted at {request.url.path}; see /docs"
    return JSONResponse(
        {"error": message, "code": codes.get(exc.status_code, "INVALID_ARGUMENT")},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _validation_exception(request: Request, exc: Exception) -> JSONResponse:
    """Bad query parameters: 400 with what was wrong (FastAPI's default is a 422 with a list)."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return JSONResponse(
        {"error": f"{where}: {first.get('msg')}", "code": "INVALID_ARGUMENT"}, status_code=400
    )
