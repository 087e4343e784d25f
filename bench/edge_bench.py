"""Cost of the transport edge: requests/s through a guarded client vs a plain one.

    python bench/edge_bench.py [--requests 500] [--rounds 15]

A minimal keep-alive HTTP/1.1 server (blocking sockets, one thread per connection,
no framework: a few µs per request, so the server does not pad the denominator) runs
in a separate process on 127.0.0.1. For httpx and httpx2, a plain and a guarded client
send the same JSON POST:

* rounds: ``--rounds`` alternating rounds of ``--requests`` sequential POSTs per
  client (the order flips every round); requests/s is the median round of each;
* interleaved: plain and guarded requests alternate one by one (order flipping), and
  the median latency of each is compared: both see the same machine at the same time,
  which is the steadier figure on a shared machine.

The guarded request carries a placeholder in ``x-goog-api-key`` (what google-genai
sends when given ``api_key=placeholder``), and the edge swaps in the value, checks the
request for raw values, injects per policy and scrubs the response. Target: guard
cost <= 5%. "guard alone" is the edge's own time per request in-process, against a
canned inner transport (no network).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

HOST = "127.0.0.1"
_BODY = b'{"candidates":[{"content":{"parts":[{"text":"A short summary."}]}}]}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_BODY),
    _BODY,
)
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


# ------------------------------------------------------------------------- server


def _connection(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                m = _LENGTH.search(buf, 0, head_end)
                total = head_end + 4 + (int(m.group(1)) if m else 0)
                if len(buf) < total:
                    break
                buf = buf[total:]
                conn.sendall(RESPONSE)


def serve() -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, 0))
    srv.listen(16)
    print(srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_connection, args=(conn,), daemon=True).start()


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


def interleaved(pair: list[tuple[Any, dict[str, str]]], url: str, n: int, body: bytes) -> list:
    """Per-request latencies (s) of each client, requests alternating one by one."""
    times: list[list[float]] = [[], []]
    clock = time.perf_counter
    for i in range(n):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for k in order:
            client, headers = pair[k]
            start = clock()
            r = client.post(url, headers=headers, content=body)
            r.read()
            times[k].append(clock() - start)
            if r.status_code != 200:
                raise SystemExit(f"unexpected status {r.status_code}")
    return times


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
            f"{rounds} alternating rounds x {requests} sequential POSTs per client, then "
            f"{rounds * requests} interleaved pairs; keep-alive, request body {len(body)} B, "
            f"response {len(_BODY)} B"
        )
        print(
            f"{'client':<8}{'plain req/s':>12}{'guarded req/s':>14}{'ratio':>7}{'cost':>7}"
            f"{'plain µs':>10}{'guarded µs':>11}{'cost':>7}{'guard alone':>13}"
        )
        for name, http, guarded in (
            ("httpx", httpx, guarded_client),
            ("httpx2", httpx2, edge2.guarded_client),
        ):
            with http.Client(verify=False) as plain, guarded(store, policy, verify=False) as guard:
                # warm-up: connections, the redactor's compiled matchers, caches
                run_round(plain, url, 300, plain_headers, body)
                run_round(guard, url, 300, guarded_headers, body)
                plain_rates, guard_rates = [], []
                for i in range(rounds):
                    first, second = (plain, guard) if i % 2 == 0 else (guard, plain)
                    for client in (first, second):
                        h = plain_headers if client is plain else guarded_headers
                        rate = run_round(client, url, requests, h, body)
                        (plain_rates if client is plain else guard_rates).append(rate)
                pairs = [(plain, plain_headers), (guard, guarded_headers)]
                lat_p, lat_g = interleaved(pairs, url, rounds * requests, body)
            p, g = statistics.median(plain_rates), statistics.median(guard_rates)
            mp, mg = statistics.median(lat_p) * 1e6, statistics.median(lat_g) * 1e6
            alone = guard_alone(http, guarded, store, policy, body, guarded_headers, plain_headers)
            print(
                f"{name:<8}{p:>12.0f}{g:>14.0f}{g / p:>7.3f}{cost(p, g):>7.1%}"
                f"{mp:>10.1f}{mg:>11.1f}{(mg - mp) / mg:>7.1%}{alone:>10.1f} µs"
            )
        print(
            "req/s: median round of each; cost = (t_guarded - t_plain) / t_guarded, the share\n"
            "of a guarded request's time spent in the guard; µs: median latency of\n"
            "interleaved requests; target <= 5%. 'guard alone': the edge's own time per\n"
            "request, in-process against a canned inner transport (no network)."
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
        plain_t, guard_t = [], []
        for _ in range(9):
            plain_t.append(1 / run_round(plain, url, 500, plain_headers, body))
            guard_t.append(1 / run_round(guard, url, 500, guarded_headers, body))
    return (statistics.median(guard_t) - statistics.median(plain_t)) * 1e6


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
