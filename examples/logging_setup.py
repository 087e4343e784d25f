"""Logging that cannot leak a key: every handler's records are redacted.

    python examples/logging_setup.py

Install the filter after logging is configured: it attaches to the root logger's
handlers, so records from every library (httpx, urllib3, your own) are scrubbed.
"""

from __future__ import annotations

import logging
import os

from keyguard import Policy, SecretStore
from keyguard.integrations.logging import install


def main() -> None:
    policy = Policy.load(os.environ.get("KEYGUARD_POLICY", "policies/keyguard.yaml"))
    store = SecretStore.from_policy(policy)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    install(store.redactor)

    log = logging.getLogger("example")
    key = store.get("GEMINI_API_KEY")
    log.info("loaded %s from %s", key.name, store.origin(key.name))
    # A careless line: the real value, as an argument and inside an exception.
    log.warning("calling Gemini with key=%s", key.reveal())
    try:
        raise RuntimeError(f"HTTP 400 for ?key={key.reveal()}")
    except RuntimeError:
        log.exception("request failed")


if __name__ == "__main__":
    main()
