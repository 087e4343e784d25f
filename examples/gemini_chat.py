"""Ask Gemini one question through keyguard: the client never holds the key.

    GEMINI_API_KEY=... python examples/gemini_chat.py "What is a transport edge?"

The policy (KEYGUARD_POLICY, default policies/keyguard.yaml) says where the key may go;
GEMINI_BASE_URL points the client elsewhere (the tests use a loopback stand-in there).
The answer is streamed, redacted: a model that repeats the key shows [REDACTED:...].
"""

from __future__ import annotations

import os
import sys

from keyguard import Policy, SecretStore
from keyguard.integrations import gemini


def main() -> None:
    policy = Policy.load(os.environ.get("KEYGUARD_POLICY", "policies/keyguard.yaml"))
    store = SecretStore.from_policy(policy)
    base_url = os.environ.get("GEMINI_BASE_URL")
    client = gemini.client(
        store, policy, tool="gemini_chat", http_options={"base_url": base_url} if base_url else None
    )
    question = " ".join(sys.argv[1:]) or "Say hello in five words."
    model = os.environ.get("GEMINI_MODEL", "gemini-2.0-flash")
    for chunk in client.models.generate_content_stream(model=model, contents=question):
        print(chunk.text or "", end="", flush=True)
    print()


if __name__ == "__main__":
    main()
