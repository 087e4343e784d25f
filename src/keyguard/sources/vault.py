"""Vault / OpenBao KV v2 through hvac (imported lazily: the ``keyguard[vault]`` extra).

Authentication is a token (explicit, ``VAULT_TOKEN`` or ``VAULT_TOKEN_FILE``) or an
AppRole login. The token's TTL is tracked: a renewable token is renewed (``renew_self``)
once less than a third of its TTL is left; an expired AppRole token is replaced by a
fresh login; an expired plain token is re-read from ``VAULT_TOKEN_FILE`` (a Vault agent
sink rewrites it) or reported as expired. Errors name the reference, never a value or
a token.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from keyguard.errors import (
    AccessDenied,
    BackendUnavailable,
    KeyguardError,
    SecretNotFound,
    SourceError,
)
from keyguard.secret import Reference, Secret, mask
from keyguard.sources.base import Fetched
from keyguard.sources.files import read_secret_file

if TYPE_CHECKING:
    import hvac

__all__ = ["VaultSource"]

Credential = str | Secret | Callable[[], "str | Secret"]

# Renew once less than this share of the token's TTL is left (Vault agent renews at ~2/3).
RENEW_WHEN_LEFT = 1 / 3


def _plain(value: Credential | None) -> str | None:
    if callable(value) and not isinstance(value, Secret):
        value = value()
    if isinstance(value, Secret):
        return value.reveal()
    return value


class VaultSource:
    """Serves ``vault://<mount>/<path>#<field>`` from a KV v2 engine.

    Bare names are served only when ``names_path`` is set (e.g. ``"keyguard/{name}"``,
    read under ``mount`` with field ``names_field``); otherwise Vault answers only
    explicit references.
    """

    name = "vault"

    def __init__(
        self,
        addr: str | None = None,
        *,
        token: Credential | None = None,
        auth: str | None = None,
        role_id: str | None = None,
        secret_id: Credential | None = None,
        approle_mount: str = "approle",
        mount: str = "secret",
        names_path: str | None = None,
        names_field: str = "value",
        verify: bool | str = True,
        namespace: str | None = None,
        timeout: float = 5.0,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        env = os.environ if environ is None else environ
        self.addr = (addr or env.get("VAULT_ADDR") or env.get("VAULT_URL") or "").rstrip("/")
        self._shown_addr = _shown_addr(self.addr)
        self._env = env
        self._token_arg = token
        self.role_id = role_id or env.get("VAULT_ROLE_ID") or None
        self._secret_id = secret_id
        self.auth = auth or ("approle" if self.role_id else "token")
        if self.auth not in ("token", "approle"):
            raise SourceError(f"unknown vault auth method {self.auth!r}: use token or approle")
        self.approle_mount = approle_mount
        self.mount = mount
        self.names_path = names_path
        self.names_field = names_field
        if verify is True and env.get("VAULT_CACERT"):
            verify = env["VAULT_CACERT"]
        self.verify = verify
        self.namespace = namespace or env.get("VAULT_NAMESPACE") or None
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.RLock()
        self._client: hvac.Client | None = None
        self._token: str | None = None
        self._expires_at: float | None = None  # None: no expiry known (root tokens)
        self._ttl: float | None = None
        self._renewable = False
        self.logins = 0  # AppRole logins performed, for diagnostics
        self.renewals = 0

    def describe(self) -> str:
        return f"vault ({self._shown_addr or 'no address'})"

    # -- fetching --------------------------------------------------------------

    def fetch(self, ref: Reference) -> Fetched | None:
        if ref.scheme == "name":
            if not self.names_path:
                return None
            path = self.names_path.format(name=ref.target).strip("/")
            ref = Reference("vault", f"{self.mount}/{path}", self.names_field)
            return self._read(ref, missing_ok=True)
        if ref.scheme != "vault":
            return None
        return self._read(ref, missing_ok=False)

    def _read(self, ref: Reference, *, missing_ok: bool) -> Fetched | None:
        with self._lock:
            client = self._ensure_token(ref)
            try:
                response = self._call(ref, client, retry_auth=True)
            except SecretNotFound:
                if missing_ok:
                    return None
                raise
        data = (response.get("data") or {}).get("data") or {}
        metadata = (response.get("data") or {}).get("metadata") or {}
        if ref.field not in data:
            fields = ", ".join(sorted(data)) or "none"
            raise SecretNotFound(f"{ref}: the secret has no field {ref.field!r} (fields: {fields})")
        value = data[ref.field]
        if isinstance(value, dict | list) or value is None:
            raise SourceError(f"{ref}: field {ref.field!r} is not a string")
        if not isinstance(value, str):
            value = json.dumps(value)
        lease = response.get("lease_duration") or None
        return Fetched(
            value,
            str(ref),
            version=metadata.get("version"),
            lease_seconds=float(lease) if lease else None,
        )

    def _call(self, ref: Reference, client: hvac.Client, *, retry_auth: bool) -> dict[str, Any]:
        import hvac.exceptions as hexc

        try:
            return client.secrets.kv.v2.read_secret_version(
                path=ref.path, mount_point=ref.mount, raise_on_deleted_version=True
            )
        except (hexc.Forbidden, hexc.Unauthorized):
            pass
        except Exception as exc:
            raise _mapped(exc, str(ref), self._shown_addr) from None
        # 403 is both "this token may not read that" and "this token is no more".
        if not self._token_alive(client):
            if retry_auth and self._reauthenticate(ref):
                return self._call(ref, self._ensure_token(ref), retry_auth=False)
            raise AccessDenied(f"{ref}: the vault token is invalid or has expired{self._hint()}")
        raise AccessDenied(f"{ref}: permission denied (the vault token's policies do not allow it)")

    # -- authentication ----------------------------------------------------------

    def _hint(self) -> str:
        if self.auth == "approle":
            return ""
        return " (renew it, or use AppRole auth so keyguard can log in again)"

    def _new_client(self) -> hvac.Client:
        try:
            import hvac
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise SourceError(
                "vault:// references need hvac: pip install 'keyguard[vault]'"
            ) from None
        if not self.addr:
            raise SourceError("no Vault address configured: set VAULT_ADDR or sources.vault.addr")
        return hvac.Client(
            url=self.addr, verify=self.verify, timeout=self.timeout, namespace=self.namespace
        )

    def _ensure_token(self, ref: Reference | None = None) -> hvac.Client:
        """Return a client whose token is valid for now (log in, renew, re-read)."""
        what = str(ref) if ref else "vault"
        if self._client is None:
            self._client = self._new_client()
        if self._token is None:
            self._authenticate(what)
        elif self._expires_at is not None:
            left = self._expires_at - self._clock()
            if left <= 0:
                if not self._reauthenticate(ref):
                    raise AccessDenied(f"{what}: the vault token has expired{self._hint()}")
            elif self._renewable and self._ttl and left < self._ttl * RENEW_WHEN_LEFT:
                self._renew(what)
        return self._client

    def _authenticate(self, what: str) -> None:
        assert self._client is not None
        if self.auth == "approle":
            self._login_approle(what)
            return
        token = self._read_token(what)
        self._client.token = token
        self._token = token
        self._lookup(what)

    def _read_token(self, what: str) -> str:
        token = _plain(self._token_arg)
        if not token:
            token = self._env.get("VAULT_TOKEN") or None
        if not token and self._env.get("VAULT_TOKEN_FILE"):
            token = read_secret_file(self._env["VAULT_TOKEN_FILE"], what="VAULT_TOKEN_FILE")
        if not token:
            raise AccessDenied(
                f"{what}: no vault token: set VAULT_TOKEN or VAULT_TOKEN_FILE, or use AppRole"
            )
        return token

    def _login_approle(self, what: str) -> None:
        assert self._client is not None
        secret_id = _plain(self._secret_id)
        if not secret_id:
            secret_id = self._env.get("VAULT_SECRET_ID") or None
        if not secret_id and self._env.get("VAULT_SECRET_ID_FILE"):
            secret_id = read_secret_file(
                self._env["VAULT_SECRET_ID_FILE"], what="VAULT_SECRET_ID_FILE"
            )
        if not self.role_id or not secret_id:
            raise AccessDenied(
                f"{what}: AppRole login needs a role_id and a secret_id "
                "(VAULT_ROLE_ID, VAULT_SECRET_ID / VAULT_SECRET_ID_FILE)"
            )
        import hvac.exceptions as hexc

        try:
            response = self._client.auth.approle.login(
                role_id=self.role_id, secret_id=secret_id, mount_point=self.approle_mount
            )
        except (hexc.InvalidRequest, hexc.Forbidden, hexc.Unauthorized):
            raise AccessDenied(
                f"{what}: AppRole login refused (wrong role_id/secret_id, or the "
                f"secret_id expired) at auth/{self.approle_mount}"
            ) from None
        except Exception as exc:
            raise _mapped(exc, f"{what} (AppRole login)", self._shown_addr) from None
        auth = response.get("auth") or {}
        self._token = auth.get("client_token")
        self._client.token = self._token
        self.logins += 1
        self._set_ttl(auth.get("lease_duration") or None, auth.get("renewable"))

    def _lookup(self, what: str) -> None:
        """Learn the token's remaining TTL; a token that may not look itself up is
        treated as non-expiring until the server says otherwise."""
        assert self._client is not None
        import hvac.exceptions as hexc

        try:
            data = self._client.auth.token.lookup_self().get("data") or {}
        except (hexc.Forbidden, hexc.Unauthorized):
            self._set_ttl(None, False)
            return
        except Exception as exc:
            raise _mapped(exc, what, self._shown_addr) from None
        # A token that never expires (root) has no expire_time; a short one may already
        # report ttl 0 (whole seconds, rounded down) and still be valid for a moment.
        never = data.get("expire_time") is None and not data.get("ttl")
        self._set_ttl(None if never else data.get("ttl") or 0, data.get("renewable"))

    def _set_ttl(self, ttl: float | None, renewable: bool | None) -> None:
        if ttl is not None:
            self._ttl = float(ttl)
            self._expires_at = self._clock() + float(ttl)
        else:
            self._ttl = None
            self._expires_at = None
        self._renewable = bool(renewable)

    def _renew(self, what: str) -> None:
        assert self._client is not None
        import hvac.exceptions as hexc

        try:
            auth = self._client.auth.token.renew_self().get("auth") or {}
        except (hexc.Forbidden, hexc.Unauthorized, hexc.InvalidRequest):
            # Not renewable after all (or past its max TTL): use it while it lasts.
            self._renewable = False
            return
        except Exception as exc:
            raise _mapped(exc, what, self._shown_addr) from None
        self.renewals += 1
        granted = auth.get("lease_duration")
        if granted:
            self._expires_at = self._clock() + float(granted)
        self._renewable = bool(auth.get("renewable")) and bool(granted)

    def _reauthenticate(self, ref: Reference | None) -> bool:
        """Get a new token after the old one died; False when there is no way to."""
        what = str(ref) if ref else "vault"
        old = self._token
        if self.auth == "approle":
            self._token = None
            self._login_approle(what)
            return True
        try:
            token = self._read_token(what)
        except KeyguardError:
            return False
        if token == old:
            return False
        self._token = token
        assert self._client is not None
        self._client.token = token
        self._lookup(what)
        return True

    def _token_alive(self, client: hvac.Client) -> bool:
        import hvac.exceptions as hexc

        try:
            client.auth.token.lookup_self()
        except (hexc.Forbidden, hexc.Unauthorized):
            return False
        except Exception:
            # Cannot tell: report the original 403 as a permission problem.
            return True
        return True

    def token_info(self) -> dict[str, Any]:
        """What keyguard knows about its token (never the token itself)."""
        with self._lock:
            left = None if self._expires_at is None else self._expires_at - self._clock()
            return {
                "auth": self.auth,
                "have_token": self._token is not None,
                "ttl_left": left,
                "renewable": self._renewable,
                "logins": self.logins,
                "renewals": self.renewals,
            }


def _shown_addr(addr: str) -> str:
    """The Vault address as messages show it: without user info, query or fragment (a
    token pasted into VAULT_ADDR must not reach an error or ``describe``)."""
    if not addr:
        return addr
    if "://" not in addr:  # not an address hvac can use: it may be a pasted token
        return mask(addr)
    try:
        parts = urlsplit(addr)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return mask(addr)
    if not host or any(c.isspace() for c in addr):
        return mask(addr)
    if ":" in host:
        host = f"[{host}]"
    scheme = f"{parts.scheme}://" if parts.scheme else ""
    path = parts.path.rstrip("/")
    return f"{scheme}{host}{port}{path if len(path) < 40 else mask(path)}"


def _mapped(exc: Exception, what: str, addr: str) -> KeyguardError:
    """Translate an hvac / requests error; the message names ``what`` and the server."""
    import hvac.exceptions as hexc
    import requests

    if isinstance(exc, KeyguardError):
        return exc
    if isinstance(exc, hexc.InvalidPath):
        return SecretNotFound(f"{what}: no such secret in vault (or it was deleted)")
    if isinstance(exc, hexc.Forbidden | hexc.Unauthorized):
        return AccessDenied(f"{what}: permission denied by vault")
    if isinstance(exc, hexc.VaultDown):
        return BackendUnavailable(f"{what}: vault at {addr} is sealed or in maintenance (503)")
    if isinstance(exc, hexc.VaultNotInitialized):
        return BackendUnavailable(f"{what}: vault at {addr} is not initialized")
    if isinstance(exc, hexc.InternalServerError | hexc.BadGateway | hexc.RateLimitExceeded):
        return BackendUnavailable(f"{what}: vault at {addr} answered {type(exc).__name__}")
    if isinstance(exc, requests.exceptions.SSLError):
        return BackendUnavailable(
            f"{what}: TLS verification of {addr} failed; point VAULT_CACERT or "
            "sources.vault.verify at the CA bundle"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return BackendUnavailable(f"{what}: vault at {addr} did not answer in time")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return BackendUnavailable(f"{what}: cannot connect to vault at {addr}")
    if isinstance(exc, hexc.InvalidRequest):
        return SourceError(f"{what}: vault rejected the request (is the mount a KV v2 engine?)")
    if isinstance(exc, hexc.VaultError | requests.exceptions.RequestException):
        return BackendUnavailable(f"{what}: vault request failed ({type(exc).__name__})")
    return SourceError(f"{what}: unexpected vault error ({type(exc).__name__})")
