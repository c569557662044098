"""The optional settings file (``--config-file`` or ``CLASSIFY_CONFIG_FILE``): TOML or JSON.

The file must be known before the settings are built (it is one of their sources), so its path is read
from the raw command line and environment first and handed to the settings source in a context variable.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

FLAG = "--config-file"
ENV = "CLASSIFY_CONFIG_FILE"
PARSERS = {".toml": "TOML", ".json": "JSON"}

_current_file: ContextVar[Path | None] = ContextVar("config_file", default=None)


class ConfigFileError(Exception):
    """The config file cannot be read, parsed, or names settings that do not exist."""


def config_file_path(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> Path | None:
    """The file named by ``--config-file PATH`` / ``--config-file=PATH``, else by CLASSIFY_CONFIG_FILE."""
    for position, argument in enumerate(argv):
        if argument == FLAG and position + 1 < len(argv):
            return Path(argv[position + 1])
        if argument.startswith(FLAG + "="):
            return Path(argument.split("=", 1)[1])
    configured = environ.get(ENV)
    return Path(configured) if configured else None


@contextmanager
def reading_config_file(path: Path | None) -> Iterator[None]:
    token = _current_file.set(path)
    try:
        yield
    finally:
        _current_file.reset(token)


def read_config_file(path: Path, known: set[str]) -> dict[str, Any]:
    """The file's settings keyed by field name; kebab-case keys (as the flags spell them) are accepted."""
    kind = PARSERS.get(path.suffix.lower())
    if kind is None:
        raise ConfigFileError(f"config file {path}: expected a .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigFileError(f"config file {path} is not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {path}: expected a table of settings at the top level")
    settings = {str(key).replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigFileError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"known settings: {', '.join(sorted(known))}"
        )
    return settings


class ConfigFileSource(PydanticBaseSettingsSource):
    """Settings from the file being read (see ``reading_config_file``); nothing when there is none."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = _current_file.get()
        known = set(settings_cls.model_fields)
        self._values = read_config_file(path, known) if path is not None else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)
