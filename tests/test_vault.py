"""VaultSource and the store against a real OpenBao dev server."""

from __future__ import annotations

import secrets
import time

import pytest

from keyguard.errors import AccessDenied, BackendUnavailable, SecretNotFound, SourceError
from keyguard.secret import Reference
from keyguard.sources import EnvSource
from keyguard.sources.vault import VaultSource
from keyguard.store import SecretStore
from tests.conftest import OpenBao, free_port, start_openbao
from tests.fakes import e2b_api_key, google_api_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def write(openbao: OpenBao, path: str, **data: str) -> int:
    response = openbao.client().secrets.kv.v2.create_or_update_secret(
        path=path, secret=data, mount_point="secret"
    )
    return response["data"]["version"]


def assert_clean(message: str, *values: str) -> None:
    for value in values:
        assert value not in message


@pytest.fixture(scope="module")
def approle(openbao: OpenBao) -> dict[str, str]:
    """AppRole enabled, a policy reading only ``secret/data/app/*``, and a role using it."""
    client = openbao.client()
    if "approle/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("approle")
    client.sys.create_or_update_policy(
        "keyguard-app", 'path "secret/data/app/*" { capabilities = ["read"] }'
    )
    client.auth.approle.create_or_update_approle(
        "keyguard", token_policies=["keyguard-app"], token_ttl="1h"
    )
    client.auth.approle.create_or_update_approle(
        "keyguard-short", token_policies=["keyguard-app"], token_ttl="2s", token_max_ttl="2s"
    )
    creds = {}
    for role in ("keyguard", "keyguard-short"):
        role_id = client.auth.approle.read_role_id(role)["data"]["role_id"]
        secret_id = client.auth.approle.generate_secret_id(role)["data"]["secret_id"]
        creds[role] = {"role_id": role_id, "secret_id": secret_id}
    return creds


def test_kv2_read_with_root_token(openbao: OpenBao, clean_env: pytest.MonkeyPatch) -> None:
    path = unique("api-keys/gemini")
    value = google_api_key()
    write(openbao, path, api_key=value)
    source = VaultSource(openbao.addr, token=openbao.root_token)
    fetched = source.fetch(Reference.parse(f"vault://secret/{path}#api_key"))
    assert fetched is not None
    assert fetched.value == value
    assert fetched.version == 1
    assert fetched.origin == f"vault://secret/{path}#api_key"
    assert fetched.lease_seconds is None
    assert value not in repr(fetched)


def test_token_from_environment_and_token_file(
    openbao: OpenBao, clean_env: pytest.MonkeyPatch, tmp_path
) -> None:
    path = unique("env-token")
    value = e2b_api_key()
    write(openbao, path, key=value)
    ref = Reference.parse(f"vault://secret/{path}#key")

    from_env = VaultSource(environ={"VAULT_ADDR": openbao.addr, "VAULT_TOKEN": openbao.root_token})
    assert from_env.fetch(ref).value == value

    token_file = tmp_path / "vault_token"
    token_file.write_text(openbao.root_token + "\n")
    from_file = VaultSource(
        environ={"VAULT_ADDR": openbao.addr, "VAULT_TOKEN_FILE": str(token_file)}
    )
    assert from_file.fetch(ref).value == value


def test_non_string_fields_and_missing_field(openbao: OpenBao, clean_env) -> None:
    path = unique("mixed")
    client = openbao.client()
    client.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"port": 8080, "nested": {"a": "b"}}, mount_point="secret"
    )
    source = VaultSource(openbao.addr, token=openbao.root_token)
    assert source.fetch(Reference.parse(f"vault://secret/{path}#port")).value == "8080"
    with pytest.raises(SourceError, match="not a string"):
        source.fetch(Reference.parse(f"vault://secret/{path}#nested"))
    with pytest.raises(SecretNotFound) as err:
        source.fetch(Reference.parse(f"vault://secret/{path}#api_key"))
    assert "api_key" in str(err.value) and "nested, port" in str(err.value)


def test_missing_path_is_secret_not_found(openbao: OpenBao, clean_env) -> None:
    source = VaultSource(openbao.addr, token=openbao.root_token)
    ref = f"vault://secret/{unique('nothing')}#key"
    with pytest.raises(SecretNotFound) as err:
        source.fetch(Reference.parse(ref))
    assert ref in str(err.value)
    assert_clean(str(err.value), openbao.root_token)


def test_approle_login_and_read(openbao: OpenBao, approle, clean_env) -> None:
    path = unique("app/n8n")
    value = google_api_key()
    write(openbao, path, api_key=value)
    creds = approle["keyguard"]
    source = VaultSource(openbao.addr, role_id=creds["role_id"], secret_id=creds["secret_id"])
    assert source.auth == "approle"
    fetched = source.fetch(Reference.parse(f"vault://secret/{path}#api_key"))
    assert fetched.value == value
    assert source.logins == 1
    info = source.token_info()
    assert info["have_token"] and 3000 < info["ttl_left"] <= 3600


def test_approle_from_environment_variables(openbao, approle, clean_env, tmp_path) -> None:
    path = unique("app/env")
    value = e2b_api_key()
    write(openbao, path, key=value)
    creds = approle["keyguard"]
    secret_file = tmp_path / "secret_id"
    secret_file.write_text(creds["secret_id"])
    source = VaultSource(
        environ={
            "VAULT_ADDR": openbao.addr,
            "VAULT_ROLE_ID": creds["role_id"],
            "VAULT_SECRET_ID_FILE": str(secret_file),
        }
    )
    assert source.fetch(Reference.parse(f"vault://secret/{path}#key")).value == value


def test_approle_wrong_secret_id_is_access_denied(openbao, approle, clean_env) -> None:
    wrong = secrets.token_hex(18)
    source = VaultSource(openbao.addr, role_id=approle["keyguard"]["role_id"], secret_id=wrong)
    with pytest.raises(AccessDenied, match="AppRole login refused") as err:
        source.fetch(Reference.parse("vault://secret/app/x#key"))
    assert_clean(str(err.value), wrong, approle["keyguard"]["role_id"])


def test_path_outside_policy_is_access_denied(openbao, approle, clean_env) -> None:
    path = unique("forbidden/stripe")
    value = google_api_key()
    write(openbao, path, key=value)
    creds = approle["keyguard"]
    source = VaultSource(openbao.addr, role_id=creds["role_id"], secret_id=creds["secret_id"])
    ref = f"vault://secret/{path}#key"
    with pytest.raises(AccessDenied) as err:
        source.fetch(Reference.parse(ref))
    message = str(err.value)
    assert ref in message and "permission denied" in message
    assert_clean(message, value, creds["secret_id"], source._token)
    # Through the store too: the error reaches the caller unchanged.
    store = SecretStore([EnvSource({})], ref_sources=[source])
    with pytest.raises(AccessDenied):
        store.get_ref(ref)
    assert store.loaded() == []


def test_server_down_is_backend_unavailable(clean_env) -> None:
    token = "s." + secrets.token_hex(12)
    addr = f"http://127.0.0.1:{free_port()}"
    source = VaultSource(addr, token=token, timeout=2)
    ref = "vault://secret/api-keys/gemini#api_key"
    with pytest.raises(BackendUnavailable) as err:
        source.fetch(Reference.parse(ref))
    message = str(err.value)
    assert ref in message and addr in message
    assert_clean(message, token)
    assert err.value.__suppress_context__  # no chained traceback with request details

    store = SecretStore([EnvSource({})], ref_sources=[source])
    with pytest.raises(BackendUnavailable) as err:
        store.get_ref(ref)
    assert_clean(str(err.value), token)


def test_sealed_server_is_backend_unavailable(tmp_path, clean_env) -> None:
    server = start_openbao(tmp_path / "sealed.log")
    try:
        value = google_api_key()
        write(server, "sealed/key", key=value)
        source = VaultSource(server.addr, token=server.root_token)
        ref = Reference.parse("vault://secret/sealed/key#key")
        assert source.fetch(ref).value == value
        server.client().sys.seal()
        with pytest.raises(BackendUnavailable, match="sealed") as err:
            source.fetch(ref)
        assert_clean(str(err.value), value, server.root_token)
    finally:
        server.stop()


def test_no_address_is_a_clear_error(clean_env) -> None:
    source = VaultSource(environ={})
    with pytest.raises(SourceError, match="VAULT_ADDR"):
        source.fetch(Reference.parse("vault://secret/x#y"))
    # Bare names are not served from vault unless asked: no error, just "not here".
    assert source.fetch(Reference.parse("GEMINI_API_KEY")) is None


def test_no_token_is_a_clear_error(openbao, clean_env) -> None:
    source = VaultSource(environ={"VAULT_ADDR": openbao.addr})
    with pytest.raises(AccessDenied, match="VAULT_TOKEN"):
        source.fetch(Reference.parse("vault://secret/x#y"))


def test_bare_names_through_names_path(openbao, clean_env) -> None:
    value = e2b_api_key()
    folder = unique("names")
    write(openbao, f"{folder}/E2B_API_KEY", value=value)
    source = VaultSource(openbao.addr, token=openbao.root_token, names_path=folder + "/{name}")
    assert source.fetch(Reference.parse("E2B_API_KEY")).value == value
    assert source.fetch(Reference.parse("OTHER_KEY")) is None


def test_rotation_store_returns_new_version_after_ttl(openbao, clean_env) -> None:
    path = unique("rotate")
    first, second = google_api_key(), google_api_key()
    write(openbao, path, api_key=first)
    clock = FakeClock()
    source = VaultSource(openbao.addr, token=openbao.root_token)
    store = SecretStore([EnvSource({})], ref_sources=[source], ttl=30, clock=clock)
    events = []
    store.subscribe(lambda event, secret, old: events.append((event, secret, old)))
    ref = f"vault://secret/{path}#api_key"

    secret = store.get_ref(ref, name="GEMINI_API_KEY")
    assert secret.reveal() == first and secret.version == 1
    assert [e[0] for e in events] == ["loaded"]

    assert write(openbao, path, api_key=second) == 2
    clock.advance(10)
    assert store.get_ref(ref, name="GEMINI_API_KEY").reveal() == first  # still cached

    clock.advance(25)
    rotated = store.get_ref(ref, name="GEMINI_API_KEY")
    assert rotated.reveal() == second and rotated.version == 2
    assert [e[0] for e in events] == ["loaded", "rotated"]
    _, new, old = events[-1]
    assert new.reveal() == second and old.reveal() == first
    assert store.origin("GEMINI_API_KEY") == ref


def test_deleted_secret_is_removed_from_store(openbao, clean_env) -> None:
    path = unique("deleted")
    write(openbao, path, key=e2b_api_key())
    store = SecretStore(
        [EnvSource({})], ref_sources=[VaultSource(openbao.addr, token=openbao.root_token)]
    )
    events = []
    store.subscribe(lambda event, secret, old: events.append(event))
    ref = f"vault://secret/{path}#key"
    store.get_ref(ref, name="E2B_API_KEY")
    openbao.client().secrets.kv.v2.delete_metadata_and_all_versions(path, mount_point="secret")
    with pytest.raises(SecretNotFound):
        store.refresh("E2B_API_KEY")
    assert events == ["loaded", "removed"]
    assert store.loaded() == []


def test_store_serves_stale_value_while_vault_is_down(tmp_path, clean_env) -> None:
    server = start_openbao(tmp_path / "flaky.log")
    try:
        value = e2b_api_key()
        write(server, "flaky", key=value)
        clock = FakeClock()
        source = VaultSource(server.addr, token=server.root_token, timeout=2)
        store = SecretStore([EnvSource({})], ref_sources=[source], ttl=5, clock=clock)
        ref = "vault://secret/flaky#key"
        assert store.get_ref(ref).reveal() == value
    finally:
        server.stop()
    clock.advance(10)
    assert store.get_ref(ref).reveal() == value  # the backend is down: last known value
    strict = SecretStore([EnvSource({})], ref_sources=[source], serve_stale=False)
    with pytest.raises(BackendUnavailable):
        strict.get_ref(ref)


def _short_token(openbao: OpenBao, *, ttl: str, renewable: bool) -> str:
    openbao.client().sys.create_or_update_policy(
        "keyguard-short", 'path "secret/data/short/*" { capabilities = ["read"] }'
    )
    response = openbao.client().auth.token.create(
        policies=["keyguard-short"], ttl=ttl, explicit_max_ttl="1h", renewable=renewable
    )
    return response["auth"]["client_token"]


def test_renewable_short_ttl_token_is_renewed_before_expiry(openbao, clean_env) -> None:
    value = e2b_api_key()
    write(openbao, "short/renew", key=value)
    token = _short_token(openbao, ttl="6s", renewable=True)
    clock = FakeClock()
    source = VaultSource(openbao.addr, token=token, clock=clock)
    ref = Reference.parse("vault://secret/short/renew#key")
    assert source.fetch(ref).value == value
    assert source.renewals == 0
    assert source.token_info()["renewable"]

    clock.advance(4.5)  # less than a third of the TTL left
    assert source.fetch(ref).value == value
    assert source.renewals == 1
    lookup = openbao.client().auth.token.lookup(token)["data"]
    assert lookup["last_renewal_time"]  # the server saw the renewal


def test_expired_token_is_a_clear_error(openbao, clean_env) -> None:
    value = e2b_api_key()
    write(openbao, "short/expire", key=value)
    token = _short_token(openbao, ttl="1s", renewable=False)
    ref = Reference.parse("vault://secret/short/expire#key")

    # keyguard's own clock says the token is past its TTL.
    clock = FakeClock()
    source = VaultSource(openbao.addr, token=token, clock=clock)
    assert source.fetch(ref).value == value
    clock.advance(5)
    with pytest.raises(AccessDenied, match="expired") as err:
        source.fetch(ref)
    assert_clean(str(err.value), token, value)

    # The server says so (keyguard's clock has not moved): same clear error. A 2 s
    # token, so that its looked-up TTL (whole seconds, rounded down) is not already 0.
    token = _short_token(openbao, ttl="2s", renewable=False)
    stale = VaultSource(openbao.addr, token=token, clock=FakeClock())
    assert stale.fetch(ref).value == value
    assert stale.token_info()["ttl_left"] > 0
    time.sleep(2.2)
    with pytest.raises(AccessDenied, match="invalid or has expired") as err:
        stale.fetch(ref)
    assert_clean(str(err.value), token, value)


def test_expired_approle_token_logs_in_again(openbao, approle, clean_env) -> None:
    path = unique("app/relogin")
    value = google_api_key()
    write(openbao, path, key=value)
    creds = approle["keyguard-short"]
    ref = Reference.parse(f"vault://secret/{path}#key")

    clock = FakeClock()
    source = VaultSource(
        openbao.addr, role_id=creds["role_id"], secret_id=creds["secret_id"], clock=clock
    )
    assert source.fetch(ref).value == value and source.logins == 1
    clock.advance(5)  # past the 2 s token TTL by keyguard's clock
    assert source.fetch(ref).value == value and source.logins == 2

    # Server-side expiry with keyguard's clock standing still: the 403 triggers a login.
    stale = VaultSource(
        openbao.addr, role_id=creds["role_id"], secret_id=creds["secret_id"], clock=FakeClock()
    )
    assert stale.fetch(ref).value == value
    time.sleep(2.2)
    assert stale.fetch(ref).value == value and stale.logins == 2


def test_tls_verification_is_on_by_default(clean_env) -> None:
    assert VaultSource("https://vault.example", token="x").verify is True
    assert VaultSource("https://v", environ={"VAULT_CACERT": "/ca.pem"}).verify == "/ca.pem"


def test_rewritten_token_file_is_picked_up(openbao, clean_env, tmp_path) -> None:
    """A Vault agent sink rewrites VAULT_TOKEN_FILE; a dead token is replaced from it."""
    value = e2b_api_key()
    write(openbao, "short/agent", key=value)
    token_file = tmp_path / "token"
    token_file.write_text(_short_token(openbao, ttl="1s", renewable=False))
    source = VaultSource(
        environ={"VAULT_ADDR": openbao.addr, "VAULT_TOKEN_FILE": str(token_file)},
        clock=FakeClock(),
    )
    ref = Reference.parse("vault://secret/short/agent#key")
    assert source.fetch(ref).value == value
    time.sleep(1.6)
    token_file.write_text(_short_token(openbao, ttl="1h", renewable=True))
    assert source.fetch(ref).value == value


def _policy_file(tmp_path, body: str):
    (tmp_path / "policies").mkdir()
    path = tmp_path / "policies" / "keyguard.yaml"
    path.write_text(body)
    return path


def test_from_policy_with_vault_token(openbao, clean_env, tmp_path) -> None:
    path = unique("api-keys/gemini")
    value = google_api_key()
    write(openbao, path, api_key=value)
    clean_env.setenv("VAULT_TOKEN", openbao.root_token)
    policy = _policy_file(
        tmp_path,
        f"""
version: 1
sources:
  vault: {{addr: "{openbao.addr}"}}
secrets:
  GEMINI_API_KEY:
    from: vault://secret/{path}#api_key
""",
    )
    store = SecretStore.from_policy(policy)
    secret = store.get("GEMINI_API_KEY")
    assert secret.reveal() == value and secret.version == 1
    assert store.origin("GEMINI_API_KEY") == f"vault://secret/{path}#api_key"
    out = store.redactor.redact(f"the key is {value}")
    assert value not in out and "[REDACTED:GEMINI_API_KEY]" in out


def test_from_policy_with_approle_secret_id_ref(openbao, approle, clean_env, tmp_path) -> None:
    path = unique("app/github")
    value = google_api_key()
    write(openbao, path, token=value)
    creds = approle["keyguard"]
    (tmp_path / "secret_id").write_text(creds["secret_id"] + "\n")
    policy = _policy_file(
        tmp_path,
        f"""
version: 1
sources:
  vault:
    addr: "{openbao.addr}"
    auth: approle
    role_id: "{creds["role_id"]}"
    secret_id_ref: file://{tmp_path}/secret_id
secrets:
  GITHUB_PERSONAL_ACCESS_TOKEN:
    from: vault://secret/{path}#token
""",
    )
    store = SecretStore.from_policy(policy)
    redactor = store.redactor
    assert store.get("GITHUB_PERSONAL_ACCESS_TOKEN").reveal() == value
    # The secret_id came through the store, so it is a known value like any other.
    assert "VAULT_SECRET_ID" in store.names()
    out = redactor.redact(f"id={creds['secret_id']} token={value}")
    assert creds["secret_id"] not in out and value not in out
