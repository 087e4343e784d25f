"""keyguard.integrations.n8n against a real n8n 2.8.4 on loopback (skipped if not installed)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from keyguard.errors import PolicyViolation
from keyguard.integrations.n8n import (
    AsyncN8nClient,
    BasicAuth,
    HeaderAuth,
    JwtAuth,
    N8nClient,
    N8nError,
)
from keyguard.policy import Policy
from keyguard.sources import EnvSource
from keyguard.store import SecretStore
from tests.fake_gemini import strings_in
from tests.fakes import jwt, rand
from tests.n8n_server import N8nServer, n8n, webhook_workflow  # noqa: F401

pytestmark = pytest.mark.n8n


def setup(
    server: N8nServer, *, hosts: list[str] | None = None, extra: dict[str, str] | None = None
) -> tuple[SecretStore, Policy, dict[str, str]]:
    host = server.base_url.removeprefix("http://")
    keys = {
        "N8N_API_KEY": server.api_key,
        "N8N_WEBHOOK_TOKEN": "whk_" + rand(32),
        "N8N_WEBHOOK_PASSWORD": "pw_" + rand(24),
        **(extra or {}),
    }
    hosts = hosts if hosts is not None else [host]
    policy = Policy.from_dict(
        {
            "version": 1,
            "secrets": {name: {"inject": {"hosts": hosts}} for name in keys},
            "tools": {"default": {"secrets": list(keys)}},
        }
    )
    store = SecretStore(sources=[EnvSource(environ=keys)], policy=policy)
    return store, policy, keys


def retry_404(call: Callable[[], Any]) -> Any:
    # n8n registers a production webhook as part of activation; allow it a moment.
    for _ in range(20):
        try:
            return call()
        except N8nError as exc:
            if exc.status != 404:
                raise
            time.sleep(0.25)
    return call()


def test_public_api_with_the_key_injected_at_the_edge(n8n: N8nServer) -> None:  # noqa: F811
    store, policy, keys = setup(n8n)
    name = f"kg-{uuid.uuid4().hex[:8]}"
    with N8nClient(n8n.base_url, store, policy) as client:
        created = client.create_workflow(webhook_workflow(name, f"p-{uuid.uuid4().hex}", None))
        wid = created["id"]
        assert client.get_workflow(wid)["name"] == name
        assert wid in [w["id"] for w in client.list_workflows()]
        assert client.activate_workflow(wid)["active"] is True
        assert wid in [w["id"] for w in client.list_workflows(active=True)]
        assert client.deactivate_workflow(wid)["active"] is False
        assert wid not in [w["id"] for w in client.list_workflows(active=True)]
        assert not [s for s in strings_in(client) if keys["N8N_API_KEY"] in s]
        client.delete_workflow(wid)


def test_webhook_header_auth_filled_at_the_edge_and_echo_redacted(n8n: N8nServer) -> None:  # noqa: F811
    store, policy, keys = setup(n8n)
    token = keys["N8N_WEBHOOK_TOKEN"]
    cred = n8n.create_header_auth_credential("X-Hook-Token", token)
    path = f"kg-{uuid.uuid4().hex}"
    with N8nClient(n8n.base_url, store, policy) as client:
        wid = client.create_workflow(webhook_workflow("kg-header", path, cred))["id"]
        client.activate_workflow(wid)
        auth = HeaderAuth("N8N_WEBHOOK_TOKEN", header="X-Hook-Token")
        echo = retry_404(lambda: client.trigger_webhook(path, json={"question": 42}, auth=auth))
        # n8n accepted the real token (header auth passed) and echoed its headers back:
        assert echo["body"] == {"question": 42}
        assert echo["headers"]["x-hook-token"] == "[REDACTED:N8N_WEBHOOK_TOKEN]"
        assert token not in str(echo)
        assert "x-n8n-api-key" not in echo["headers"]  # the API key stays on API calls

        with pytest.raises(N8nError) as err:
            client.trigger_webhook(path, json={"question": 1})
        assert err.value.status == 403 and "Authorization" in str(err.value)

        executions = client.list_executions(workflow_id=wid)
        assert executions and all(e["workflowId"] == wid for e in executions)
        client.deactivate_workflow(wid)


def test_webhook_basic_auth(n8n: N8nServer) -> None:  # noqa: F811
    store, policy, keys = setup(n8n)
    password = keys["N8N_WEBHOOK_PASSWORD"]
    cred = n8n.create_basic_auth_credential("hook-user", password)
    path = f"kg-{uuid.uuid4().hex}"
    with N8nClient(n8n.base_url, store, policy) as client:
        wid = client.create_workflow(webhook_workflow("kg-basic", path, cred, auth="basicAuth"))[
            "id"
        ]
        client.activate_workflow(wid)
        echo = retry_404(
            lambda: client.trigger_webhook(
                path, json={"a": 1}, auth=BasicAuth("hook-user", "N8N_WEBHOOK_PASSWORD")
            )
        )
        assert echo["body"] == {"a": 1}
        assert password not in str(echo)
        with pytest.raises(N8nError) as err:
            client.trigger_webhook(
                path, json={}, auth=BasicAuth("someone-else", "N8N_WEBHOOK_PASSWORD")
            )
        assert err.value.status == 403 and password not in str(err.value)
        client.deactivate_workflow(wid)


def test_webhook_jwt_auth(n8n: N8nServer) -> None:  # noqa: F811
    passphrase = "jwt-" + rand(32)
    token = _hs256({"sub": "keyguard", "iat": int(time.time())}, passphrase)
    store, policy, _ = setup(n8n, extra={"N8N_WEBHOOK_JWT": token})
    cred = n8n.create_jwt_auth_credential(passphrase)
    path = f"kg-{uuid.uuid4().hex}"
    with N8nClient(n8n.base_url, store, policy) as client:
        wid = client.create_workflow(webhook_workflow("kg-jwt", path, cred, auth="jwtAuth"))["id"]
        client.activate_workflow(wid)
        echo = retry_404(
            lambda: client.trigger_webhook(path, json={"j": 1}, auth=JwtAuth("N8N_WEBHOOK_JWT"))
        )
        assert echo["body"] == {"j": 1}
        assert echo["headers"]["authorization"] == "Bearer [REDACTED:N8N_WEBHOOK_JWT]"
        assert token not in str(echo)
        client.deactivate_workflow(wid)
    # a token n8n cannot verify is refused (and fake tokens never reach the output)
    other = jwt()
    store, policy, _ = setup(n8n, extra={"N8N_WEBHOOK_JWT": other})
    with N8nClient(n8n.base_url, store, policy) as client:
        client.activate_workflow(wid)
        with pytest.raises(N8nError) as err:
            retry_404(
                lambda: client.trigger_webhook(path, json={}, auth=JwtAuth("N8N_WEBHOOK_JWT"))
            )
        assert err.value.status == 403 and other not in str(err.value)
        client.deactivate_workflow(wid)


def _hs256(claims: dict[str, Any], key: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_n8n_errors_are_clear_and_carry_no_value(n8n: N8nServer) -> None:  # noqa: F811
    store, policy, keys = setup(n8n)
    with N8nClient(n8n.base_url, store, policy) as client:
        with pytest.raises(N8nError) as err:
            client.get_workflow("does-not-exist")
    assert err.value.status == 404
    assert "GET /api/v1/workflows/does-not-exist" in str(err.value)
    assert keys["N8N_API_KEY"] not in str(err.value)


def test_a_host_outside_the_policy_gets_nothing(n8n: N8nServer) -> None:  # noqa: F811
    store, policy, keys = setup(n8n, hosts=["n8n.example.com"])
    with N8nClient(n8n.base_url, store, policy) as client, pytest.raises(PolicyViolation) as err:
        client.list_workflows()
    assert "N8N_API_KEY" in str(err.value) and keys["N8N_API_KEY"] not in str(err.value)


def test_async_client(n8n: N8nServer) -> None:  # noqa: F811
    store, policy, keys = setup(n8n)
    token = keys["N8N_WEBHOOK_TOKEN"]
    cred = n8n.create_header_auth_credential("X-Hook-Token", token)
    path = f"kg-{uuid.uuid4().hex}"

    async def run() -> tuple[list[dict[str, Any]], Any]:
        async with AsyncN8nClient(n8n.base_url, store, policy) as client:
            wid = (await client.create_workflow(webhook_workflow("kg-async", path, cred)))["id"]
            await client.activate_workflow(wid)
            auth = HeaderAuth("N8N_WEBHOOK_TOKEN", header="X-Hook-Token")
            echo = None
            for _ in range(20):
                try:
                    echo = await client.trigger_webhook(path, json={"x": token}, auth=auth)
                    break
                except N8nError as exc:
                    if exc.status != 404:
                        raise
                    await asyncio.sleep(0.25)
            workflows = await client.list_workflows(active=True)
            await client.deactivate_workflow(wid)
            return workflows, echo

    workflows, echo = asyncio.run(run())
    assert workflows
    assert echo is not None and echo["headers"]["x-hook-token"] == "[REDACTED:N8N_WEBHOOK_TOKEN]"
    # the token in the JSON body went to an allowed host, and its echo came back redacted
    assert echo["body"] == {"x": "[REDACTED:N8N_WEBHOOK_TOKEN]"}
