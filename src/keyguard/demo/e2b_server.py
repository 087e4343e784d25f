"""A loopback stand-in for E2B: the control plane and a code-interpreter "sandbox".

Used by ``keyguard demo`` and by the tests (``tests/fake_e2b.py`` re-exports it). It is
NOT a sandbox: ``/execute`` runs the code it is sent as a local child process, so it
listens on 127.0.0.1 only and is meant for code its own caller (the demo, a test) sends.

Two servers, so a test (and a policy) can tell them apart by port:

* ``FakeE2B.api`` - the control plane (``api_url``): ``POST /v2/sandboxes`` (what
  ``Sandbox.create`` calls; checks ``X-API-KEY``), ``GET /sandboxes/{id}``,
  ``POST /sandboxes/{id}/timeout``, ``DELETE /sandboxes/{id}`` (``kill``).
* ``FakeE2B.sandbox`` - the sandbox (``sandbox_url``): ``POST /execute``, answering
  newline-delimited JSON events (``stdout``, ``stderr``, ``result``, ``error``,
  ``number_of_executions``), and ``POST /contexts``.

``/execute`` really runs the Python code, in a child process whose environment is only
the sandbox's ``envs`` (from create) plus the call's ``env_vars`` (and ``PATH``), so a
test can see exactly what a sandbox would have been given. If the code's last
statement is an expression, its ``repr`` is the main result, as in Jupyter. Set
``FakeE2B.events = callable(code, envs) -> list[dict]`` to answer with hand-made events
instead (e.g. an HTML or PNG result).

Both servers record every request (``keyguard.demo.gemini_server.RecordingServer``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, Self

from keyguard.demo.gemini_server import Recorded, RecordingServer
from keyguard.demo.loopback import Running

__all__ = ["FakeE2B"]

# Runs in the child: exec the code, eval a trailing expression, report an exception the
# way Jupyter does. The result and error travel on a pipe of their own (fd in argv[1]), so
# they never mix with stdout.
_RUNNER = r"""
import ast, json, os, sys, traceback
out = os.fdopen(int(sys.argv[1]), "w")
code = sys.stdin.read()
try:
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    ns = {"__name__": "__main__"}
    exec(compile(tree, "<cell>", "exec"), ns)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), ns)
        if value is not None:
            out.write(json.dumps({"type": "result", "text": repr(value),
                                  "is_main_result": True}) + "\n")
except BaseException as exc:
    out.write(json.dumps({"type": "error", "name": type(exc).__name__, "value": str(exc),
                          "traceback": traceback.format_exc()}) + "\n")
sys.stdout.flush()
"""


class _Plane(RecordingServer):
    """One of the two servers; its state lives in the ``FakeE2B`` that owns it."""

    def __init__(self, owner: FakeE2B) -> None:
        super().__init__()
        self.owner = owner


class _ControlPlane(_Plane):
    def handle(self, handler: Any, rec: Recorded) -> None:
        owner = self.owner
        if owner.api_key is not None and rec.headers.get("x-api-key") != owner.api_key:
            handler.send_json(401, {"code": 401, "message": "Invalid API key"})
            return
        parts = rec.path.strip("/").split("/")
        if rec.method == "POST" and parts == ["v2", "sandboxes"]:
            body = rec.json() or {}
            sandbox_id = "sbx" + uuid.uuid4().hex[:12]
            owner.sandboxes[sandbox_id] = {
                "template": body.get("templateID"),
                "envs": dict(body.get("envVars") or {}),
                "metadata": body.get("metadata") or {},
            }
            handler.send_json(
                201,
                {
                    "templateID": body.get("templateID", "code-interpreter-v1"),
                    "sandboxID": sandbox_id,
                    "clientID": "fake-client",
                    "envdVersion": "0.2.4",
                    "envdAccessToken": owner.envd_access_token,
                },
            )
        elif len(parts) >= 2 and parts[0] == "sandboxes" and parts[1] in owner.sandboxes:
            sandbox_id = parts[1]
            if rec.method == "DELETE" and len(parts) == 2:
                owner.killed.append(sandbox_id)
                del owner.sandboxes[sandbox_id]
                handler.send_response(204)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
            elif rec.method == "POST" and parts[2:] == ["timeout"]:
                handler.send_response(204)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
            else:
                handler.send_json(
                    200,
                    {
                        "templateID": owner.sandboxes[sandbox_id]["template"],
                        "sandboxID": sandbox_id,
                        "clientID": "fake-client",
                        "envdVersion": "0.2.4",
                        "state": "running",
                        "startedAt": "2026-01-01T00:00:00Z",
                        "endAt": "2026-01-01T01:00:00Z",
                        "cpuCount": 2,
                        "memoryMB": 512,
                        "diskSizeMB": 1024,
                        "metadata": owner.sandboxes[sandbox_id]["metadata"],
                    },
                )
        else:
            handler.send_json(404, {"code": 404, "message": f"no route {rec.method} {rec.path}"})


class _SandboxPlane(_Plane):
    def handle(self, handler: Any, rec: Recorded) -> None:
        owner = self.owner
        sandbox_id = rec.headers.get("e2b-sandbox-id", "")
        if sandbox_id not in owner.sandboxes:
            handler.send_json(404, {"message": f"sandbox {sandbox_id!r} not found"})
            return
        if rec.method == "POST" and rec.path == "/contexts":
            body = rec.json() or {}
            handler.send_json(
                200,
                {"id": uuid.uuid4().hex, "language": body.get("language", "python"), "cwd": "/"},
            )
            return
        if rec.method != "POST" or rec.path != "/execute":
            handler.send_json(404, {"message": f"no route {rec.method} {rec.path}"})
            return
        body = rec.json() or {}
        envs = {**owner.sandboxes[sandbox_id]["envs"], **(body.get("env_vars") or {})}
        code = body.get("code", "")
        owner.executions += 1
        events = owner.events(code, envs) if owner.events else owner.run_python(code, envs)
        events.append({"type": "number_of_executions", "execution_count": owner.executions})
        lines = [json.dumps(e).encode() + b"\n" for e in events]
        handler.send_chunks(200, "application/x-ndjson", lines)


class FakeE2B(Running):
    """Control plane + sandbox stand-ins; ``api_key`` is the key the control plane accepts
    (``None``: any)."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.envd_access_token = "envd-" + uuid.uuid4().hex
        self.sandboxes: dict[str, dict[str, Any]] = {}
        self.killed: list[str] = []
        self.executions = 0
        self.events: Callable[[str, dict[str, str]], list[dict[str, Any]]] | None = None
        self.api = _ControlPlane(self)
        self.sandbox = _SandboxPlane(self)

    @property
    def api_url(self) -> str:
        return self.api.base_url

    @property
    def sandbox_url(self) -> str:
        return self.sandbox.base_url

    def run_python(self, code: str, envs: dict[str, str]) -> list[dict[str, Any]]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **envs}
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-c", _RUNNER, str(write_fd)],
                input=code,
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
        with os.fdopen(read_fd) as side:
            side_events = [json.loads(line) for line in side.read().splitlines() if line]
        now = time.time_ns()
        events: list[dict[str, Any]] = [
            {"type": "stdout", "text": line, "timestamp": now}
            for line in proc.stdout.splitlines(keepends=True)
        ]
        events += [
            {"type": "stderr", "text": line, "timestamp": now}
            for line in proc.stderr.splitlines(keepends=True)
        ]
        return events + side_events

    def seen_by_api(self, value: str) -> bool:
        return self.api.seen(value)

    def seen_by_sandbox(self, value: str) -> bool:
        return self.sandbox.seen(value)

    def start(self) -> Self:
        self.api.start()
        self.sandbox.start()
        return self

    def stop(self) -> None:
        self.api.stop()
        self.sandbox.stop()
