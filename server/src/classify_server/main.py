"""Entry point of ``classify-server``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from pydantic import ValidationError

from classify_server.config_file import ConfigFileError
from classify_server.logs import configure_logging
from classify_server.serving.repository import ModelSpecError
from classify_server.settings import ServerSettings, load_settings

log = logging.getLogger("classify_server")


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        print(f"classify-server: invalid settings: {problems}", file=sys.stderr)
        return 2
    except ConfigFileError as exc:
        print(f"classify-server: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.log_format == "json":
        # TensorFlow's C++ side writes plain lines to stderr, outside Python logging; keep its INFO chatter
        # out of a JSON stream (its warnings and errors still show). An explicit setting wins.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    changed = _summary(settings)
    log.info("settings: %s", changed, extra={"event": "settings", "settings": changed})
    try:
        asyncio.run(_serve(settings))
    except (ModelSpecError, RuntimeError) as exc:
        print(f"classify-server: {exc}", file=sys.stderr)
        return 1
    return 0


def _describe(error: dict) -> str:
    """Name a bad setting both ways a user can give it."""
    field = str(error["loc"][0]) if error["loc"] else ""
    if not field:
        return error["msg"]
    flag, env = "--" + field.replace("_", "-"), "CLASSIFY_" + field.upper()
    message = error["msg"]
    return f"{flag} (or {env}): {message[:1].lower()}{message[1:]}"


def _summary(settings: ServerSettings) -> dict[str, object]:
    """Every setting that differs from its default, with secrets masked: what this process runs with."""
    changed = settings.model_dump(mode="json", exclude_defaults=True)
    if "auth_tokens" in changed:
        changed["auth_tokens"] = f"<{len(settings.auth_tokens)} token(s)>"
    return changed


async def _serve(settings: ServerSettings) -> None:
    # Imported here so `--help` does not wait for TensorFlow and grpc set-up.
    from classify_server.app import serve

    await serve(settings)


if __name__ == "__main__":
    sys.exit(main())
