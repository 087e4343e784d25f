"""A real n8n on loopback for the integration tests, as a pytest fixture.

n8n is installed once, outside the repository, by ``scripts/install_n8n.sh`` (cache dir
``$KEYGUARD_N8N_HOME``, default ``~/.cache/keyguard-n8n``). The ``n8n`` fixture starts it
on 127.0.0.1 with its own user folder, creates the owner, logs in, creates a public-API
key and yields an ``N8nServer`` (``base_url``, ``api_key``, ``rest``: a logged-in
``httpx.Client``). When n8n is not installed the tests using the fixture are skipped,
and the reason (with the install command) shows in ``pytest -ra``.

Use it from a test module with ``from tests.n8n_server import n8n  # noqa: F401``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

__all__ = ["N8N_VERSION", "N8nServer", "n8n", "n8n_binary", "n8n_home", "start_n8n"]

N8N_VERSION = "2.8.4"
INSTALL_HINT = "run scripts/install_n8n.sh (needs Node.js 20+, ~5 min, ~2.3 GB)"
# n8n takes ~7 s to become ready on an idle machine; CI shares 2 cores with other work.
READY_TIMEOUT = float(os.environ.get("KEYGUARD_N8N_READY_TIMEOUT", "180"))

# All scopes the public-API key needs for the tests. n8n 2.8.4 without an enterprise
# licence ignores them and grants the owner's scopes, but the request must name at
# least one (CreateApiKeyRequestDto: label 1-50 chars, scopes non-empty, expiresAt).
API_KEY_SCOPES = [
    "workflow:create",
    "workflow:read",
    "workflow:update",
    "workflow:delete",
    "workflow:list",
    "workflow:activate",
    "workflow:deactivate",
    "execution:read",
    "execution:list",
    "credential:create",
    "credential:delete",
]


def n8n_home() -> Path:
    return Path(
        os.environ.get("KEYGUARD_N8N_HOME") or Path.home() / ".cache" / "keyguard-n8n"
    ).expanduser()


def n8n_binary() -> tuple[Path | None, str]:
    """The installed n8n binary, or ``None`` and why not."""
    home = n8n_home()
    binary = home / "node_modules" / ".bin" / "n8n"
    if not binary.exists():
        return None, f"n8n {N8N_VERSION} is not installed in {home}: {INSTALL_HINT}"
    if not (home / f".installed-{N8N_VERSION}").exists():
        return None, f"n8n install in {home} is incomplete or not {N8N_VERSION}: {INSTALL_HINT}"
    if shutil.which("node") is None:
        return None, "node is not on PATH (n8n needs Node.js 20+)"
    return binary, ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class N8nServer:
    base_url: str
    api_key: str
    rest: httpx.Client  # logged in as the owner (cookie + browser-id)
    owner_email: str
    owner_password: str
    workdir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    created: dict[str, list[str]] = field(
        default_factory=lambda: {"workflows": [], "credentials": []}
    )

    def public(self) -> httpx.Client:
        """A plain client for the public API with the real key: for test setup only."""
        return httpx.Client(
            base_url=f"{self.base_url}/api/v1",
            headers={"X-N8N-API-KEY": self.api_key},
            timeout=30,
        )

    def create_credential(self, cred_type: str, data: dict[str, Any]) -> dict[str, Any]:
        """Create an n8n credential (test setup, plain client with the real key)."""
        with self.public() as api:
            resp = api.post(
                "/credentials",
                json={
                    "name": f"kg-{cred_type}-{uuid.uuid4().hex[:8]}",
                    "type": cred_type,
                    "data": data,
                },
            )
        resp.raise_for_status()
        cred = resp.json()
        self.created["credentials"].append(cred["id"])
        return cred

    def create_header_auth_credential(self, header: str, value: str) -> dict[str, Any]:
        return self.create_credential("httpHeaderAuth", {"name": header, "value": value})

    def create_basic_auth_credential(self, user: str, password: str) -> dict[str, Any]:
        return self.create_credential("httpBasicAuth", {"user": user, "password": password})

    def create_jwt_auth_credential(self, passphrase: str) -> dict[str, Any]:
        """JWT Auth verifying HS256 tokens signed with ``passphrase``."""
        data = {"keyType": "passphrase", "secret": passphrase, "algorithm": "HS256"}
        return self.create_credential("jwtAuth", data)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


_CREDENTIAL_KEYS = {
    "headerAuth": "httpHeaderAuth",
    "basicAuth": "httpBasicAuth",
    "jwtAuth": "jwtAuth",
}


def webhook_workflow(
    name: str,
    path: str,
    credential: dict[str, Any] | None,
    *,
    auth: str = "headerAuth",
    echo: bool = True,
) -> dict[str, Any]:
    """A workflow with one Webhook node (``auth``: headerAuth, basicAuth or jwtAuth with
    ``credential``; none without) that answers with what it received (headers, query,
    body) when ``echo`` is true."""
    node: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "name": "Webhook",
        "type": "n8n-nodes-base.webhook",
        "typeVersion": 2,
        "position": [0, 0],
        "webhookId": str(uuid.uuid4()),
        "parameters": {
            "httpMethod": "POST",
            "path": path,
            "authentication": auth if credential else "none",
            "responseMode": "lastNode" if echo else "onReceived",
            "responseData": "firstEntryJson",
            "options": {},
        },
    }
    if credential:
        node["credentials"] = {
            _CREDENTIAL_KEYS[auth]: {"id": credential["id"], "name": credential["name"]}
        }
    return {"name": name, "nodes": [node], "connections": {}, "settings": {"executionOrder": "v1"}}


def _env(port: int, broker_port: int, workdir: Path) -> dict[str, str]:
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    return {
        **keep,
        "HOME": str(workdir),
        "TMPDIR": str(tmp),
        "N8N_USER_FOLDER": str(workdir),
        "N8N_HOST": "127.0.0.1",
        "N8N_LISTEN_ADDRESS": "127.0.0.1",
        "N8N_PORT": str(port),
        "N8N_PROTOCOL": "http",
        "WEBHOOK_URL": f"http://127.0.0.1:{port}/",
        "N8N_RUNNERS_BROKER_PORT": str(broker_port),
        "N8N_RUNNERS_BROKER_LISTEN_ADDRESS": "127.0.0.1",
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_PERSONALIZATION_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
        "N8N_TEMPLATES_ENABLED": "false",
        "N8N_HIRING_BANNER_ENABLED": "false",
        "N8N_SECURE_COOKIE": "false",  # plain http on loopback
        "N8N_PUBLIC_API_DISABLED": "false",
        "N8N_PUBLIC_API_SWAGGERUI_DISABLED": "true",
        "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "true",
        "N8N_LOG_LEVEL": "warn",
        "N8N_LOG_OUTPUT": "console",
        "DB_TYPE": "sqlite",
        "EXECUTIONS_DATA_SAVE_ON_SUCCESS": "all",
        "NODE_ENV": "production",
        "NO_COLOR": "1",
    }


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"n8n exited with code {proc.returncode} while starting:\n{tail}"
                )
            try:
                # readiness turns 200 once the database is up, a moment before the REST
                # routes are registered: wait for both.
                if (
                    client.get(f"{base_url}/healthz/readiness").status_code == 200
                    and client.get(f"{base_url}/rest/settings").status_code == 200
                ):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"n8n was not ready within {READY_TIMEOUT:.0f}s:\n{tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # n8n starts the task runner as a child: signal its whole process group.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def start_n8n(binary: Path, workdir: Path) -> N8nServer:
    """Start n8n in ``workdir``, set up the owner, log in and create an API key."""
    port, broker_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = workdir / "n8n.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "start"],
            cwd=workdir,
            env=_env(port, broker_port, workdir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    rest = httpx.Client(
        base_url=f"{base_url}/rest", headers={"browser-id": str(uuid.uuid4())}, timeout=60
    )
    try:
        _wait_ready(base_url, proc, log_path)
        email = "owner@keyguard.test"
        password = "Kg" + secrets.token_hex(12) + "9"  # n8n wants a digit and an uppercase
        owner = {"email": email, "firstName": "Key", "lastName": "Guard", "password": password}
        _check(rest.post("/owner/setup", json=owner), "owner setup")
        rest.cookies.clear()
        _check(
            rest.post("/login", json={"emailOrLdapLoginId": email, "password": password}),
            "login",
        )
        body = {"label": "keyguard-tests", "scopes": API_KEY_SCOPES, "expiresAt": None}
        data = _check(rest.post("/api-keys", json=body), "API key creation")["data"]
        return N8nServer(
            base_url=base_url,
            api_key=data["rawApiKey"],
            rest=rest,
            owner_email=email,
            owner_password=password,
            workdir=workdir,
            process=proc,
            log_path=log_path,
        )
    except BaseException:
        rest.close()
        _stop(proc)
        raise


def _check(resp: httpx.Response, what: str) -> Any:
    if resp.status_code >= 400:
        # The body is n8n's error message; it never echoes passwords or keys.
        raise RuntimeError(f"n8n {what} failed: HTTP {resp.status_code}: {resp.text[:500]}")
    return resp.json()


_shared: dict[str, Any] = {"server": None, "users": 0, "tmp": None}


@pytest.fixture(scope="session")
def n8n() -> Iterator[N8nServer]:
    """One n8n per test session, shared by every module that imports this fixture
    (each import registers its own session fixture; they share the process)."""
    binary, reason = n8n_binary()
    if binary is None:
        pytest.skip(reason)
    if _shared["server"] is None:
        tmp = tempfile.TemporaryDirectory(prefix="keyguard-n8n-")
        try:
            _shared["server"] = start_n8n(binary, Path(tmp.name))
        except BaseException:
            tmp.cleanup()
            raise
        _shared["tmp"] = tmp
    _shared["users"] += 1
    try:
        yield _shared["server"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            server, tmp = _shared["server"], _shared["tmp"]
            _shared.update(server=None, tmp=None)
            server.rest.close()
            _stop(server.process)
            tmp.cleanup()
