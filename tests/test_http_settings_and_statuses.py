"""--http-port as every other setting (flag, environment, config file), and the gRPC → HTTP status map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classify_server.errors import (
    InvalidInputError,
    ModelNotFoundError,
    OverloadedError,
    TooLargeError,
    UnauthenticatedError,
    UnavailableError,
)
from classify_server.http.errors import BodyTimeoutError, BodyTooLargeError, error_response
from classify_server.settings import load_settings


def test_http_port_from_flag_environment_and_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = ["--model-repository", str(tmp_path)]
    assert load_settings(repository).http_port == 8501
    assert load_settings([*repository, "--http-port", "-1"]).http_port == -1
    monkeypatch.setenv("CLASSIFY_HTTP_PORT", "9001")
    assert load_settings(repository).http_port == 9001
    monkeypatch.delenv("CLASSIFY_HTTP_PORT")
    config = tmp_path / "server.json"
    config.write_text(json.dumps({"http-port": 9002, "http_body_timeout_seconds": 2.5}))
    from_file = load_settings([*repository, "--config-file", str(config)])
    assert (from_file.http_port, from_file.http_body_timeout_seconds) == (9002, 2.5)
    with pytest.raises(ValueError, match="greater than or equal to -1"):
        load_settings([*repository, "--http-port", "-2"])


@pytest.mark.parametrize(
    ("error", "status", "headers"),
    [
        (InvalidInputError("bad shape"), 400, {}),
        (ModelNotFoundError("model 'x' not found"), 404, {}),
        (UnavailableError("model 'x' is loading; retry shortly"), 503, {"retry-after": "1"}),
        (OverloadedError("queue full"), 429, {"retry-after": "1"}),
        (
            UnauthenticatedError("invalid token"),
            401,
            {"www-authenticate": 'Bearer realm="classify", error="invalid_token"'},
        ),
        (TooLargeError("batch of 9 items exceeds this server's limit"), 413, {}),
        (BodyTooLargeError("the request body is 9 bytes"), 413, {"connection": "close"}),
        (BodyTimeoutError("the request body did not arrive"), 408, {"connection": "close"}),
        (RuntimeError("a bug"), 500, {}),
    ],
)
def test_grpc_codes_map_to_http_statuses_with_the_same_message(error, status, headers) -> None:
    response = error_response(error, "x")
    assert response.status_code == status
    body = json.loads(response.body)
    if status == 500:
        assert body == {
            "error": "internal server error (RuntimeError); see the server log",
            "code": "INTERNAL",
        }
    else:
        assert body["error"] == str(error)
    for key, value in headers.items():
        assert response.headers[key] == value
