"""List n8n workflows and call a webhook, with keys filled in at the edge.

    N8N_BASE_URL=http://localhost:5678 N8N_API_KEY=... python examples/n8n_webhook.py [path]

With a webhook path, the webhook is called with Header Auth from the secret
N8N_WEBHOOK_TOKEN (header N8N_WEBHOOK_HEADER, default X-Webhook-Token) when the policy
declares that secret. Whatever n8n answers is printed redacted.
"""

from __future__ import annotations

import json
import os
import sys

from keyguard import Policy, SecretStore
from keyguard.integrations.n8n import HeaderAuth, N8nClient


def main() -> None:
    policy = Policy.load(os.environ.get("KEYGUARD_POLICY", "policies/keyguard.yaml"))
    store = SecretStore.from_policy(policy)
    base_url = os.environ.get("N8N_BASE_URL", "http://localhost:5678")
    with N8nClient(base_url, store, policy, tool="n8n_workflows") as n8n:
        for wf in n8n.list_workflows():
            print(f"{wf['id']}  {'active  ' if wf['active'] else 'inactive'}  {wf['name']}")
        if len(sys.argv) > 1:
            auth = None
            if "N8N_WEBHOOK_TOKEN" in policy.secrets:
                header = os.environ.get("N8N_WEBHOOK_HEADER", "X-Webhook-Token")
                auth = HeaderAuth("N8N_WEBHOOK_TOKEN", header=header)
            answer = n8n.trigger_webhook(sys.argv[1], json={"from": "keyguard"}, auth=auth)
            print(json.dumps(answer, indent=2))


if __name__ == "__main__":
    main()
