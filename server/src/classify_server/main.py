"""Entry point of ``classify-server``."""

from __future__ import annotations

import asyncio
import logging
import sys

from pydantic import ValidationError
from pydantic_settings import CliApp

from .repository import ModelSpecError
from .settings import ServerSettings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = CliApp.run(ServerSettings, cli_args=sys.argv[1:] if argv is None else argv)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        print(f"classify-server: invalid settings: {problems}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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


async def _serve(settings: ServerSettings) -> None:
    from .app import serve  # imported here so `--help` does not wait for TensorFlow and grpc set-up

    await serve(settings)


if __name__ == "__main__":
    sys.exit(main())
