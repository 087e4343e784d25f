"""Cost of the transport edge: requests/s through a guarded client vs a plain one.

    python bench/edge_bench.py [--requests 500] [--rounds 15]

A minimal keep-alive HTTP/1.1 server (asyncio, no framework) runs in a separate
process on 127.0.0.1, so the server does not compete with the client for the GIL.
For httpx and httpx2, plain and guarded clients send the same JSON POST in
alternating rounds; the best round of each is compared (the machine is shared: the
best round is the least disturbed one). The guarded request carries a placeholder in
``x-goog-api-key`` (what google-genai sends when given ``api_key=placeholder``), and
the edge swaps in the value, checks the request for raw values, injects per policy
and scrubs the response through the stream redactor. Target: guard cost <= 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

HOST = "127.0.0.1"
_BODY = b'{"candidates":[{"content":{"parts":[{"text":"A short summary."}]}}]}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_BODY),
    _BODY,
)


# ------------------------------------------------------------------------- server


class _Http(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self.buf[:head_end].split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            total = head_end + 4 + length
            if len(self.buf) < total:
                return
            self.buf = self.buf[total:]
            self.transport.write(RESPONSE)


def serve() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Http, HOST, 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


# ------------------------------------------------------------------------- client


def run_round(client: Any, url: str, n: int, headers: dict[str, str], body: bytes) -> float:
    """Requests per second over ``n`` sequential requests on one keep-alive connection."""
    start = time.perf_counter()
    for _ in range(n):
        r = client.post(url, headers=headers, content=body)
        r.read()
        if r.status_code != 200:
            raise SystemExit(f"unexpected status {r.status_code}")
    return n / (time.perf_counter() - start)


def bench(requests: int, rounds: int) -> None:
    import httpx
    import httpx2

    from keyguard.edge import guarded_client
    from keyguard.edge import httpx2_transport as edge2
    from keyguard.policy import Policy
    from keyguard.sources import EnvSource
    from keyguard.store import SecretStore

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from tests import fakes

    keys = fakes.the_four()
    policy = Policy.loads(
        f"""
version: 1
secrets:
  GEMINI_API_KEY:
    inject: {{hosts: ["{HOST}"], header: x-goog-api-key}}
  GITHUB_PERSONAL_ACCESS_TOKEN:
    inject: {{hosts: [api.github.com], header: Authorization, template: "Bearer {{value}}"}}
  E2B_API_KEY:
    inject: {{hosts: ["*.e2b.app"], header: X-API-KEY}}
  N8N_API_KEY:
    inject: {{hosts: [n8n.example.com], header: X-N8N-API-KEY}}
tools:
  default:
    secrets: [GEMINI_API_KEY, GITHUB_PERSONAL_ACCESS_TOKEN, E2B_API_KEY, N8N_API_KEY]
""",
        "bench.yaml",
    )
    store = SecretStore(sources=[EnvSource(keys)], policy=policy)
    placeholder = store.get("GEMINI_API_KEY").placeholder
    body = json.dumps(
        {"contents": [{"role": "user", "parts": [{"text": "Summarise this text. " * 40}]}]}
    ).encode()

    guarded_headers = {"x-goog-api-key": placeholder}
    plain_headers = {"x-goog-api-key": "dummy"}
    server_cmd = [sys.executable, __file__, "--serve"]
    proc = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        url = f"http://{HOST}:{port}/v1beta/models/gemini:generateContent"
        print(
            f"{rounds} alternating rounds x {requests} sequential POSTs per client, "
            f"keep-alive, request body {len(body)} B, response {len(_BODY)} B"
        )
        print(
            f"{'client':<8}{'plain req/s':>12}{'guarded req/s':>14}{'ratio':>8}"
            f"{'guard cost':>12}{'(median rounds)':>17}{'guard alone':>13}"
        )
        for name, http, guarded in (
            ("httpx", httpx, guarded_client),
            ("httpx2", httpx2, edge2.guarded_client),
        ):
            with http.Client(verify=False) as plain, guarded(store, policy, verify=False) as guard:
                # warm-up: connections, the redactor's compiled matcher, caches
                run_round(plain, url, 200, plain_headers, body)
                run_round(guard, url, 200, guarded_headers, body)
                plain_rates, guard_rates = [], []
                for _ in range(rounds):
                    plain_rates.append(run_round(plain, url, requests, plain_headers, body))
                    guard_rates.append(run_round(guard, url, requests, guarded_headers, body))
            p, g = max(plain_rates), max(guard_rates)
            pm, gm = statistics.median(plain_rates), statistics.median(guard_rates)
            alone = guard_alone(http, guarded, store, policy, body, guarded_headers, plain_headers)
            print(
                f"{name:<8}{p:>12.0f}{g:>14.0f}{g / p:>8.3f}{cost(p, g):>12.1%}"
                f"{cost(pm, gm):>17.1%}{alone:>10.1f} µs"
            )
        print(
            "guard cost = (t_guarded - t_plain) / t_guarded, best round of each (median in\n"
            "parentheses); target <= 5%. 'guard alone': the edge's own time per request,\n"
            "measured in-process against a canned inner transport (no network)."
        )
    finally:
        proc.terminate()
        proc.wait()


def cost(plain_rate: float, guarded_rate: float) -> float:
    """Share of a guarded request's time spent in the guard."""
    return (1 / guarded_rate - 1 / plain_rate) * guarded_rate


def guard_alone(
    http: Any,
    guarded: Any,
    store: Any,
    policy: Any,
    body: bytes,
    guarded_headers: dict[str, str],
    plain_headers: dict[str, str],
) -> float:
    """µs per request the edge adds, with the network replaced by a canned response."""

    class Canned(http.BaseTransport):  # type: ignore[misc,name-defined]
        def handle_request(self, request: Any) -> Any:
            return http.Response(
                200,
                headers=[("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))],
                stream=http.ByteStream(_BODY),
            )

    url = f"http://{HOST}:8080/v1beta/models/gemini:generateContent"
    with (
        http.Client(transport=Canned()) as plain,
        guarded(store, policy, transport=Canned()) as guard,
    ):
        best_plain = best_guard = float("inf")
        for _ in range(7):
            best_plain = min(best_plain, 1 / run_round(plain, url, 500, plain_headers, body))
            best_guard = min(best_guard, 1 / run_round(guard, url, 500, guarded_headers, body))
    return (best_guard - best_plain) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
    else:
        bench(args.requests, args.rounds)


if __name__ == "__main__":
    main()
