"""Fake credentials, generated at test time so no real-looking key is ever committed.

Each generator returns a fresh value in the provider's shape; scanners and push
protection see only this code, never a literal key.
"""

from __future__ import annotations

import base64
import json
import secrets
import string

ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
HEX = "0123456789abcdef"
URLSAFE = ALNUM + "-_"


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def google_api_key() -> str:
    return "AIza" + rand(35, URLSAFE)


def github_classic(prefix: str = "ghp") -> str:
    return f"{prefix}_" + rand(36)


def github_fine_grained() -> str:
    return "github_pat_" + rand(22) + "_" + rand(59)


def e2b_api_key() -> str:
    return "e2b_" + rand(40, HEX)


def jwt(claims: dict | None = None) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims or {"sub": rand(8), "iss": "n8n", "aud": "public-api"}).encode())
    return f"{header}.{body}.{b64(secrets.token_bytes(32))}"


def n8n_api_key() -> str:
    return jwt()


def openai_key(project: bool = False) -> str:
    return ("sk-proj-" + rand(48, URLSAFE)) if project else ("sk-" + rand(48))


def anthropic_key() -> str:
    return "sk-ant-api03-" + rand(93, URLSAFE) + "AA"


def the_four() -> dict[str, str]:
    """The guide's four keys, freshly generated."""
    return {
        "GEMINI_API_KEY": google_api_key(),
        "GITHUB_PERSONAL_ACCESS_TOKEN": github_classic(),
        "E2B_API_KEY": e2b_api_key(),
        "N8N_API_KEY": n8n_api_key(),
    }
