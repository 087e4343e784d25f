"""Prometheus counters of injections, denials and redactions, by secret and tool.

``prometheus-client`` is an optional extra (``keyguard[metrics]``) imported only here,
only when metrics are asked for. The guide's switches are honoured:
``CACHE_METRICS_ENABLED=true`` serves ``/metrics`` on ``CACHE_METRICS_PORT`` (9090),
bound to ``CACHE_METRICS_ADDR`` (``127.0.0.1``: metrics name secrets, keep them local).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyguard.audit import AuditEvent

__all__ = ["Metrics", "default_metrics", "from_env", "serve"]

DEFAULT_PORT = 9090
DEFAULT_ADDR = "127.0.0.1"

# audit event -> (counter attribute, its help text)
_COUNTED = {
    "injected": ("injections", "Secrets put on the wire by the edge"),
    "denied": ("denials", "Requests or env entries refused by the policy"),
    "redacted": ("redactions", "Secret occurrences scrubbed from responses and outputs"),
}


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "keyguard metrics need prometheus-client: pip install 'keyguard[metrics]'"
        ) from exc
    return prometheus_client


class Metrics:
    """An audit sink counting events into Prometheus counters (labels: secret, tool)."""

    injections: Any
    denials: Any
    redactions: Any

    def __init__(self, registry: Any = None, *, namespace: str = "keyguard") -> None:
        prom = _prometheus()
        self.registry = prom.REGISTRY if registry is None else registry
        labels = ("secret", "tool")
        for attr, description in _COUNTED.values():
            counter = prom.Counter(
                attr, description, labels, namespace=namespace, registry=self.registry
            )
            setattr(self, attr, counter)

    def __call__(self, event: AuditEvent) -> None:
        counted = _COUNTED.get(event.event)
        if counted is None:
            return
        counter = getattr(self, counted[0])
        counter.labels(secret=event.secret or "", tool=event.tool or "").inc(event.count or 1)


_lock = threading.Lock()
_default: Metrics | None = None
_server: Any = None


def default_metrics() -> Metrics:
    """The counters in prometheus-client's default registry (created once per process)."""
    global _default
    with _lock:
        if _default is None:
            _default = Metrics()
        return _default


def serve(port: int | None = None, addr: str | None = None, registry: Any = None) -> Any:
    """Serve ``/metrics`` once per process; returns the server (its ``server_port`` is bound)."""
    global _server
    with _lock:
        if _server is None:
            prom = _prometheus()
            server, _thread = prom.start_http_server(
                DEFAULT_PORT if port is None else port,
                addr=addr or DEFAULT_ADDR,
                registry=prom.REGISTRY if registry is None else registry,
            )
            _server = server
        return _server


def from_env(environ: dict[str, str] | None = None) -> Metrics | None:
    """Counters plus a served endpoint when ``CACHE_METRICS_ENABLED=true``, else ``None``."""
    env = os.environ if environ is None else environ
    if env.get("CACHE_METRICS_ENABLED", "false").strip().lower() != "true":
        return None
    raw_port = env.get("CACHE_METRICS_PORT", str(DEFAULT_PORT)).strip()
    try:
        port = int(raw_port)
    except ValueError:
        raise ValueError(f"CACHE_METRICS_PORT must be a port number, got {raw_port!r}") from None
    metrics = default_metrics()
    serve(port, env.get("CACHE_METRICS_ADDR") or DEFAULT_ADDR)
    return metrics
