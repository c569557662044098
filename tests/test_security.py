"""TLS, mutual TLS and bearer tokens against a real server: the right client gets in, the wrong ones not.

Certificates are made per test session with the openssl command line (a CA, a server certificate for
127.0.0.1, a client certificate, and a second CA nobody trusts).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import ServerProcess, copy_model, run_cli

from classify_client import ClassifyError, Client, UnauthenticatedError
from classify_client.settings import tls_credentials

DIGITS = np.zeros((2, 28, 28), dtype=np.uint8)


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", key, "-out", cert)  # fmt: skip
    return cert, key


def make_signed(folder: Path, name: str, ca: tuple[Path, Path], extension: str) -> tuple[Path, Path]:
    key, request, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    ext = folder / f"{name}.ext"
    ext.write_text(extension)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", key, "-out", request)
    openssl("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "2",
            "-extfile", ext, "-out", cert)  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder, "classify-test-ca")
    rogue_ca = make_ca(folder, "rogue-ca")
    server = make_signed(folder, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    client = make_signed(folder, "client", ca, "extendedKeyUsage=clientAuth\n")
    rogue = make_signed(folder, "rogue-client", rogue_ca, "extendedKeyUsage=clientAuth\n")
    return {
        "ca": ca[0],
        "server_cert": server[0],
        "server_key": server[1],
        "client_cert": client[0],
        "client_key": client[1],
        "rogue_cert": rogue[0],
        "rogue_key": rogue[1],
    }


@pytest.fixture(scope="module")
def small_repository(quick_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("secure-models")
    copy_model(quick_repository, "mnist-softmax", repository)
    return repository


def start_ready(
    private_server: Callable[..., ServerProcess], repository: Path, *args: str, **client
) -> ServerProcess:
    started = private_server(repository, *args)
    with Client(started.target, **client) as probe:
        probe.wait_until_ready(timeout=180)
    return started


def classify_with(target: str, **client) -> int:
    with Client(target, timeout=10, **client) as connection:
        return len(connection.classify("mnist-softmax", images=DIGITS).predictions)


def test_tls_serves_a_client_that_trusts_the_ca_and_refuses_plaintext(
    pki: dict[str, Path], small_repository: Path, private_server
) -> None:
    trusted = {"credentials": tls_credentials(pki["ca"])}
    started = start_ready(
        private_server, small_repository,
        "--tls-cert-file", str(pki["server_cert"]), "--tls-key-file", str(pki["server_key"]), **trusted,
    )  # fmt: skip
    assert classify_with(started.target, **trusted) == 2
    with pytest.raises(ClassifyError):
        classify_with(started.target)  # plaintext against a TLS port
    listed = run_cli("classify", "--tls-ca", pki["ca"], "models", "--target", started.target)
    assert "mnist-softmax" in listed.stdout


def test_mutual_tls_requires_a_client_certificate_from_the_trusted_ca(
    pki: dict[str, Path], small_repository: Path, private_server
) -> None:
    good = {"credentials": tls_credentials(pki["ca"], pki["client_cert"], pki["client_key"])}
    started = start_ready(
        private_server, small_repository,
        "--tls-cert-file", str(pki["server_cert"]), "--tls-key-file", str(pki["server_key"]),
        "--tls-client-ca-file", str(pki["ca"]), **good,
    )  # fmt: skip
    assert classify_with(started.target, **good) == 2
    with pytest.raises(ClassifyError):
        classify_with(started.target, credentials=tls_credentials(pki["ca"]))  # no client certificate
    with pytest.raises(ClassifyError):
        classify_with(
            started.target, credentials=tls_credentials(pki["ca"], pki["rogue_cert"], pki["rogue_key"])
        )
    health = run_cli(
        "classify", "--tls-ca", pki["ca"], "--tls-cert", pki["client_cert"], "--tls-key", pki["client_key"],
        "health", "--target", started.target,
    )  # fmt: skip
    assert health.stdout.strip() == "SERVING"


def test_bearer_tokens_let_the_right_caller_in_and_keep_health_open(
    small_repository: Path, tmp_path: Path, private_server
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# one token per line\nsecret-one\n\nsecret-two\n")
    started = start_ready(private_server, small_repository, "--auth-tokens-file", str(tokens))
    assert classify_with(started.target, token="secret-two") == 2
    with pytest.raises(UnauthenticatedError, match="missing credentials"):
        classify_with(started.target)
    with pytest.raises(UnauthenticatedError, match="invalid token"):
        classify_with(started.target, token="secret-three")
    with pytest.raises(UnauthenticatedError, match="malformed"):
        classify_with(started.target, headers={"authorization": "Basic c2VjcmV0"})
    with Client(started.target) as anonymous:
        assert anonymous.health() == "SERVING"  # probes need no secret
        with pytest.raises(UnauthenticatedError):
            anonymous.models()
    refused = run_cli("classify", "models", "--target", started.target, check=False)
    assert refused.returncode == 2
    assert "UNAUTHENTICATED" in refused.stderr
    allowed = run_cli(
        "classify",
        "models",
        "--target",
        started.target,
        env={"CLASSIFY_TOKEN": "secret-one", "PATH": "/usr/bin:/bin"},
    )
    assert "mnist-softmax" in allowed.stdout


def test_tls_settings_are_checked_before_start(tmp_path: Path, pki: dict[str, Path]) -> None:
    result = run_cli(
        "classify-server", "--model-repository", tmp_path, "--tls-cert-file", pki["server_cert"], check=False
    )
    assert result.returncode == 2
    assert "--tls-cert-file and --tls-key-file go together" in result.stderr
