"""Run code in an E2B sandbox as the tool `code_interpreter`, guarded by keyguard.

    E2B_API_KEY=... python examples/e2b_code_tool.py "print(6 * 7)"

The E2B key goes only to the control plane (injected at the edge); the sandbox gets
only the secrets the policy lists under tools.code_interpreter.sandbox_env, and all
output comes back redacted. E2B_API_URL / E2B_SANDBOX_URL (read by the e2b SDK) point
it at the loopback stand-in in the tests.
"""

from __future__ import annotations

import os
import sys

from keyguard import Policy, SecretStore
from keyguard.integrations import e2b

DEFAULT_CODE = (
    "import os\nprint('secrets visible here:', sorted(k for k in os.environ if 'KEY' in k))\n6 * 7"
)


def main() -> None:
    policy = Policy.load(os.environ.get("KEYGUARD_POLICY", "policies/keyguard.yaml"))
    store = SecretStore.from_policy(policy)
    code = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_CODE
    with e2b.Sandbox.create(store, policy, tool="code_interpreter") as sandbox:
        execution = sandbox.run_code(code, on_stdout=lambda m: print("stdout:", m.line, end=""))
    for result in execution.results:
        print("result:", result.text)
    if execution.error:
        print("error:", execution.error.name, execution.error.value)


if __name__ == "__main__":
    main()
