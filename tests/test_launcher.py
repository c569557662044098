"""The server launcher's own contract: the command it builds and the log a failed start reports.

Starting, waiting for and stopping a healthy server is exercised by every end-to-end test through
conftest.py's fixtures; these are the parts those never reach.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from classify_server.launcher import ServerLauncher, ServerLaunchError, running_server


def test_the_command_carries_the_repository_port_metrics_flag_and_extra_flags(tmp_path: Path) -> None:
    launcher = ServerLauncher(tmp_path, "--max-batch-size", "32", port=12345)
    assert launcher.target == "127.0.0.1:12345"
    assert launcher.command()[1:] == [
        "--model-repository", str(tmp_path), "--port", "12345", "--metrics-port", "0",
        "--max-batch-size", "32",
    ]  # fmt: skip
    quiet = ServerLauncher(None, "--config-file", "c.toml", port=12345, metrics_port=None)
    assert quiet.command()[1:] == ["--port", "12345", "--config-file", "c.toml"]
    assert quiet.log_path is None and "log_dir" in quiet.log_tail()


def test_a_server_that_exits_during_start_up_raises_with_its_log(tmp_path: Path) -> None:
    launcher = ServerLauncher(tmp_path / "nowhere", log_dir=tmp_path).start()
    with pytest.raises(ServerLaunchError, match="exited 2 during start-up") as raised:
        launcher.wait_ready(timeout=120)
    assert "nowhere is not a folder" in str(raised.value)
    assert launcher.log_path == tmp_path / f"server-{launcher.port}.log"
    assert launcher.stop() == 2  # already gone: its exit code, no signal sent


def test_waiting_before_starting_and_with_blocks_that_fail_to_start_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="start"):
        ServerLauncher(tmp_path).wait_ready()
    with pytest.raises(ServerLaunchError), running_server(tmp_path / "nowhere", log_dir=tmp_path):
        pytest.fail("the block must not run when the server did not start")
