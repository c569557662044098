"""Server settings: flags over environment over config file over defaults, and a --help that lists them all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_cli
from pydantic import ValidationError

from classify_server.config_file import ConfigFileError
from classify_server.settings import ServerSettings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read CLASSIFY_* variables: none from the caller's shell may leak into these tests."""
    for name in [name for name in __import__("os").environ if name.startswith("CLASSIFY_")]:
        monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_flags_beat_environment_beat_file_beat_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "classify.toml",
        f'model-repository = "{tmp_path}"\nmax_batch_size = 16\nmax_text_chars = 500\nport = 9000\n'
        'log-format = "json"\n[model_version_policies]\nmnist-cnn = "all"\n',
    )
    monkeypatch.setenv("CLASSIFY_MAX_TEXT_CHARS", "600")
    monkeypatch.setenv("CLASSIFY_PORT", "9100")
    settings = load_settings(["--config-file", str(config), "--port", "9200"])
    assert settings.port == 9200  # flag over environment and file
    assert settings.max_text_chars == 600  # environment over file
    assert settings.max_batch_size == 16  # file over default
    assert settings.log_format == "json"  # kebab-case keys, as the flags spell them
    assert settings.versions_for("mnist-cnn").kind == "all"  # tables for the dict settings
    assert settings.max_request_rows == 4096  # default
    assert settings.model_repository == tmp_path


def test_the_config_file_may_come_from_the_environment_and_be_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "c.json", json.dumps({"model_repository": str(tmp_path), "max_concurrent_requests": 7})
    )
    monkeypatch.setenv("CLASSIFY_CONFIG_FILE", str(config))
    assert load_settings([]).max_concurrent_requests == 7
    assert (
        load_settings([f"--config-file={config}", "--max-concurrent-requests", "9"]).max_concurrent_requests
        == 9
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "typo.toml",
            "max_batch_sise = 3\n",
            r"unknown setting\(s\) max_batch_sise; known settings: .*max_batch_size",
        ),
        ("broken.toml", "max_batch_size = \n", r"is not valid TOML"),
        ("list.json", "[1, 2]", r"expected a table of settings"),
        ("settings.yaml", "port: 1\n", r"expected a .toml or .json file"),
        ("missing.toml", None, r"cannot read config file .*missing.toml"),
    ],
)
def test_bad_config_files_say_what_is_wrong(
    tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    path = tmp_path / name if text is None else write(tmp_path / name, text)
    with pytest.raises(ConfigFileError, match=message):
        load_settings(["--config-file", str(path), "--model-repository", str(tmp_path)])


def test_a_bad_value_in_the_file_is_a_validation_error(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "max_concurrent_requests = -1\n")
    with pytest.raises(ValidationError, match="max_concurrent_requests"):
        load_settings(["--config-file", str(config), "--model-repository", str(tmp_path)])


def test_the_server_refuses_a_bad_config_file_with_exit_code_2(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", "colour = 'blue'\n")
    result = run_cli("classify-server", "--config-file", config, "--model-repository", tmp_path, check=False)
    assert result.returncode == 2
    assert "unknown setting(s) colour" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_every_setting_with_its_flag_environment_variable_and_doc() -> None:
    help_text = " ".join(run_cli("classify-server", "--help", timeout=60).stdout.split())
    for name, field in ServerSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        assert flag in help_text, flag
        assert f"CLASSIFY_{name.upper()}" in help_text, name
        assert field.description, f"{name} has no description"
        # The first words of its doc appear after the flag (argparse may wrap lines anywhere).
        first_words = " ".join(field.description.split()[:3])
        assert re.search(re.escape(first_words), help_text), first_words
    assert "environment over the file" in help_text


def test_log_level_is_checked_and_case_insensitive(tmp_path: Path) -> None:
    assert load_settings(["--model-repository", str(tmp_path), "--log-level", "debug"]).log_level == "DEBUG"
    with pytest.raises(ValidationError, match="log_level"):
        load_settings(["--model-repository", str(tmp_path), "--log-level", "chatty"])
