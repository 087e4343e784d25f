"""The secret store: resolves names and references through sources, caches, rotates.

Every value the store loads or rotates is published to subscribers; ``store.redactor``
is one of them, so a value is redacted everywhere from the moment it is loaded,
without anyone registering it by hand.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from keyguard.errors import (
    BackendUnavailable,
    InvalidReference,
    KeyguardError,
    PolicyError,
    SecretNotFound,
)
from keyguard.secret import Reference, Secret, mask, parse_placeholder
from keyguard.sources.base import Fetched, Source, describe

if TYPE_CHECKING:
    from keyguard.policy import Policy
    from keyguard.redact import Redactor

__all__ = ["Event", "SecretStore", "Subscriber"]

Event = Literal["loaded", "rotated", "removed"]
Subscriber = Callable[[str, Secret, "Secret | None"], object]

_log = logging.getLogger(__name__)

# A leased secret is re-read when this share of its lease is used up.
LEASE_REFRESH_AT = 0.75
# How long a rotated-out value stays redacted: output produced just before the
# rotation may still be on its way out.
ROTATION_GRACE = 300.0


@dataclass(slots=True)
class _Entry:
    secret: Secret
    ref: Reference
    origin: str
    expires_at: float


def _shown(text: str) -> str:
    """``text`` quoted for a message, masked if it looks like a pasted value."""
    # Imported here: the redaction package is only needed on this error path.
    from keyguard.redact import shown

    masked = shown(text)
    if masked != text:
        return f"'{masked}' (masked: it looks like a secret value, not a name)"
    return repr(text)


def _shown_ref(ref: Reference) -> str:
    """``ref`` as a message may show it: its target and field through ``shown``."""
    from keyguard.redact import shown

    if ref.scheme == "name":
        return shown(ref.target)
    field = f"#{shown(ref.field)}" if ref.field is not None else ""
    return f"{ref.scheme}://{shown(ref.target)}{field}"


# Every ``get`` resolves its name to a reference; for what the policy declares (its
# ``from:`` texts and secret names, never a caller's free text, which could be a pasted
# value) the parse is done once. ``Reference`` is frozen, so sharing it is safe.
_policy_ref = functools.lru_cache(maxsize=1024)(Reference.parse)


@functools.lru_cache(maxsize=1024)
def _declared_ref(name: str) -> Reference:
    ref = Reference.parse(name)
    if ref.scheme != "name":  # pragma: no cover - "://" was routed to get_ref
        raise InvalidReference(f"invalid secret name {name!r}")
    return ref


def _name_for(ref: Reference) -> str:
    """The name a secret loaded by reference goes by (placeholders need an identifier)."""
    if ref.scheme in ("env", "name"):
        raw = ref.target
    elif ref.scheme == "file":
        raw = Path(ref.target).name
    else:
        raw = f"{ref.path.rsplit('/', 1)[-1]}_{ref.field}"
    name = re.sub(r"[^A-Za-z0-9_]", "_", raw).upper() or "SECRET"
    return name if not name[0].isdigit() else f"_{name}"


class SecretStore:
    """Secrets by name, from ``sources`` in order; see the module docstring.

    ``sources`` is the order bare names are looked up in; ``ref_sources`` are further
    sources consulted only for explicit references (``file://``, ``vault://``...).
    ``clock`` is injectable so TTL behaviour can be tested without sleeping.
    ``serve_stale``: when a refresh finds the backend unavailable, keep serving the
    value already held (and try again at the next ``get``) instead of failing.
    """

    def __init__(
        self,
        sources: Sequence[Source] | None = None,
        *,
        ttl: float = 300.0,
        policy: Policy | None = None,
        audit: Any = None,
        ref_sources: Sequence[Source] = (),
        serve_stale: bool = True,
        rotation_grace: float = ROTATION_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sources is None:
            from keyguard.sources import DotenvSource, EnvSource, FilesSource

            sources = [EnvSource(), DotenvSource(), FilesSource()]
        self.sources: list[Source] = list(sources)
        self._ref_sources: list[Source] = [*self.sources, *ref_sources]
        self.ttl = float(ttl)
        self.policy = policy
        self.serve_stale = serve_stale
        self.rotation_grace = rotation_grace
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._name_locks: dict[str, threading.RLock] = {}
        self._subscribers: list[Subscriber] = []
        self._redactor: Redactor | None = None
        self.audit = audit
        if audit is not None:
            audit.watch(self)

    # -- construction from a policy -------------------------------------------------

    @classmethod
    def from_policy(
        cls,
        path_or_policy: str | os.PathLike[str] | Policy,
        *,
        project_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> SecretStore:
        """A store whose sources, order and TTL come from the policy's ``sources:``."""
        from keyguard.policy import Policy
        from keyguard.sources import DotenvSource, EnvSource, FilesSource
        from keyguard.sources.vault import VaultSource

        if isinstance(path_or_policy, Policy):
            policy = path_or_policy
        else:
            policy = Policy.load(path_or_policy, project_dir=project_dir)
        spec = policy.sources
        base = Path(project_dir) if project_dir is not None else Path(policy.project_dir)
        store: SecretStore
        vspec = spec.vault

        def secret_id() -> Secret:
            # Resolved by the store itself, so the secret_id is redacted like any value.
            if not vspec.secret_id_ref:
                raise PolicyError("sources.vault.secret_id_ref is not set")
            return store.get_ref(vspec.secret_id_ref, name="VAULT_SECRET_ID")

        if vspec.secret_id_ref and Reference.parse(vspec.secret_id_ref).scheme == "vault":
            raise PolicyError(
                "sources.vault.secret_id_ref cannot be a vault:// reference "
                "(it is what logs in to vault); use env://, file:// or a name"
            )
        built: dict[str, Source] = {
            "env": EnvSource(),
            "dotenv": DotenvSource(spec.dotenv, base_dir=base),
            "files": FilesSource(spec.secrets_dir),
            "vault": VaultSource(
                vspec.addr,
                auth=vspec.auth,
                role_id=vspec.role_id,
                secret_id=secret_id if vspec.secret_id_ref else None,
                mount=vspec.mount,
                verify=vspec.verify,
                namespace=vspec.namespace,
            ),
        }
        ordered = [built[n] for n in spec.order]
        rest = [s for n, s in built.items() if n not in spec.order]
        kwargs.setdefault("ttl", spec.ttl)
        store = cls(ordered, policy=policy, ref_sources=rest, **kwargs)
        return store

    # -- reading ------------------------------------------------------------------

    def get(self, name: str) -> Secret:
        """The secret called ``name`` (a policy name, a bare name, or a reference)."""
        if "://" in name:
            return self.get_ref(name)
        return self._get(name, self._ref_for(name), force=False)

    def get_ref(self, ref: str | Reference, *, name: str | None = None) -> Secret:
        """The secret at ``ref``; ``name`` defaults to the policy secret declared
        ``from:`` that reference, else a name derived from it."""
        parsed = ref if isinstance(ref, Reference) else Reference.parse(ref)
        if name is None:
            name = self._policy_name_for(parsed) or _name_for(parsed)
        return self._get(name, parsed, force=False)

    def try_get(self, name: str) -> Secret | None:
        """Like ``get`` but ``None`` when no source holds it (other errors still raise:
        an unreachable or refusing backend is not the same as an absent secret)."""
        try:
            return self.get(name)
        except SecretNotFound:
            return None

    def refresh(self, name: str | None = None) -> None:
        """Re-read ``name`` (or every loaded secret) now, whatever the TTL says."""
        if name is not None:
            with self._lock:
                entry = self._entries.get(name)
            ref = entry.ref if entry else self._ref_for(name)
            self._get(name, ref, force=True)
            return
        with self._lock:
            targets = [(n, e.ref) for n, e in self._entries.items()]
        errors: list[KeyguardError] = []
        for n, ref in targets:
            try:
                self._get(n, ref, force=True)
            except SecretNotFound:
                continue  # already published as "removed"
            except KeyguardError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def loaded(self) -> list[Secret]:
        """The secrets currently held."""
        with self._lock:
            return [e.secret for e in self._entries.values()]

    def names(self) -> list[str]:
        """Names the policy declares, then any other name loaded, sorted."""
        declared = set(self.policy.secrets) if self.policy is not None else set()
        with self._lock:
            declared.update(self._entries)
        return sorted(declared)

    def origin(self, name: str) -> str:
        """Where ``name`` came from, e.g. ``.env:3`` or ``vault://secret/x#k`` (loads it
        if it is not held yet)."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:
                return entry.origin
        secret = self.get(name)
        with self._lock:
            entry = self._entries.get(secret.name)
            return entry.origin if entry is not None else str(secret.source)

    def secret_for_placeholder(self, text: str) -> Secret | None:
        """The secret a placeholder minted by this process stands for, else ``None``."""
        name = parse_placeholder(text)
        if name is None:
            return None
        return self.get(name)

    # -- subscribers ----------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Subscriber:
        """Call ``callback(event, secret, old)`` on "loaded", "rotated", "removed".

        Returns the callback (usable as a decorator). A failing subscriber is logged
        (by name and error type) and does not fail the ``get`` that triggered it.
        """
        with self._lock:
            self._subscribers = [*self._subscribers, callback]
        return callback

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers = [s for s in self._subscribers if s is not callback]

    @property
    def redactor(self) -> Redactor:
        """A ``Redactor`` that knows every value this store has loaded or will load."""
        redactor = self._redactor
        if redactor is not None:  # set once, never unset: no lock on the request path
            return redactor
        with self._lock:
            if self._redactor is None:
                from keyguard.redact import Redactor

                redactor = Redactor()
                for entry in self._entries.values():
                    self._register(redactor, entry.secret)
                self._redactor = redactor
                self._subscribers = [self._redactor_hook, *self._subscribers]
            return self._redactor

    def _redactor_hook(self, event: str, secret: Secret, old: Secret | None) -> None:
        redactor = self._redactor
        if redactor is None:
            return
        if event in ("rotated", "removed"):
            # The outgoing value stays redacted for a while: text produced with it may
            # still be in flight.
            redactor.remove_secret(secret.name, grace=self.rotation_grace)
        if event in ("loaded", "rotated"):
            self._register(redactor, secret)

    @staticmethod
    def _register(redactor: Redactor, secret: Secret) -> None:
        redactor.add_placeholder(secret.placeholder)
        try:
            redactor.add_secret(secret.name, secret)
        except ValueError as exc:
            # A value too short to redact safely (it would mangle ordinary text).
            _log.warning("secret %s is not redacted: %s", secret.name, type(exc).__name__)

    # -- internals ------------------------------------------------------------------

    def _ref_for(self, name: str) -> Reference:
        spec = self.policy.secrets.get(name) if self.policy is not None else None
        if spec is not None and spec.from_ref:
            return _policy_ref(spec.from_ref)
        if spec is not None:
            return _declared_ref(name)
        ref = Reference.parse(name)
        if ref.scheme != "name":  # pragma: no cover - "://" was routed to get_ref
            raise InvalidReference(f"invalid secret name {name!r}")
        return ref

    def _policy_name_for(self, ref: Reference) -> str | None:
        if self.policy is None:
            return None
        for secret_name, spec in self.policy.secrets.items():
            if spec.from_ref:
                try:
                    if _policy_ref(spec.from_ref) == ref:
                        return secret_name
                except InvalidReference:
                    continue
        return None

    def _name_lock(self, name: str) -> threading.RLock:
        with self._lock:
            lock = self._name_locks.get(name)
            if lock is None:
                lock = self._name_locks[name] = threading.RLock()
            return lock

    def _fresh(self, name: str, ref: Reference) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(name)
            if (
                entry is not None
                and (entry.ref is ref or entry.ref == ref)
                and self._clock() < entry.expires_at
            ):
                return entry
            return None

    def _get(self, name: str, ref: Reference, *, force: bool) -> Secret:
        if not force:
            entry = self._fresh(name, ref)
            if entry is not None:
                return entry.secret
        # One fetch per name at a time; other names are not held up by a slow backend.
        with self._name_lock(name):
            if not force:
                entry = self._fresh(name, ref)
                if entry is not None:  # another thread fetched it meanwhile
                    return entry.secret
            with self._lock:
                old = self._entries.get(name)
            try:
                fetched = self._fetch(name, ref)
            except SecretNotFound:
                if old is not None:
                    self._drop(name, old)
                raise
            except BackendUnavailable as exc:
                if old is None or not self.serve_stale or old.ref != ref:
                    raise
                _log.warning(
                    "secret %s: %s; serving the value loaded earlier", name, type(exc).__name__
                )
                return old.secret
            return self._install(name, ref, fetched, old)

    def _fetch(self, name: str, ref: Reference) -> Fetched:
        candidates = self.sources if ref.scheme == "name" else self._ref_sources
        for source in candidates:
            fetched = source.fetch(ref)
            if fetched is not None:
                return fetched
        looked = ", ".join(describe(s) for s in candidates) or "no sources configured"
        if ref.scheme == "name":
            raise SecretNotFound(f"secret {_shown(name)} not found (looked in: {looked})")
        where = _shown_ref(ref)
        if where != str(ref) and name == _name_for(ref):
            # The name was made of the reference (a value upper-cased is still the value).
            label = f"'{mask(name)}'"
        else:
            label = _shown(name)
        raise SecretNotFound(f"secret {label} not found at {where} (looked in: {looked})")

    def _install(self, name: str, ref: Reference, fetched: Fetched, old: _Entry | None) -> Secret:
        now = self._clock()
        life = self.ttl
        if fetched.lease_seconds:
            life = min(life, fetched.lease_seconds * LEASE_REFRESH_AT)
        event: Event | None
        if old is not None and old.secret == fetched.value:
            secret, event = old.secret, None
            secret.version = fetched.version
        else:
            secret = Secret(name, fetched.value, source=fetched.origin, version=fetched.version)
            event = "loaded" if old is None else "rotated"
        with self._lock:
            self._entries[name] = _Entry(secret, ref, fetched.origin, now + life)
        if event is not None:
            self._publish(event, secret, old.secret if old is not None else None)
        return secret

    def _drop(self, name: str, old: _Entry) -> None:
        with self._lock:
            if self._entries.get(name) is old:
                del self._entries[name]
        self._publish("removed", old.secret, None)

    def _publish(self, event: Event, secret: Secret, old: Secret | None) -> None:
        with self._lock:
            subscribers = self._subscribers
        for callback in subscribers:
            try:
                callback(event, secret, old)
            except Exception as exc:
                _log.warning(
                    "keyguard store subscriber %r failed on %s of %s: %s",
                    getattr(callback, "__qualname__", callback),
                    event,
                    secret.name,
                    type(exc).__name__,
                )

    def __repr__(self) -> str:
        with self._lock:
            count = len(self._entries)
        sources = ", ".join(describe(s) for s in self.sources)
        return f"<SecretStore sources=[{sources}] loaded={count}>"
