"""SecretStore: resolution order, TTL cache, rotation, leases, subscribers, threads."""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path

import pytest

from keyguard.errors import AccessDenied, BackendUnavailable, PolicyError, SecretNotFound
from keyguard.secret import Reference, Secret, placeholder_for
from keyguard.sources import DotenvSource, EnvSource, Fetched, FilesSource
from keyguard.store import SecretStore
from tests.fakes import e2b_api_key, github_classic, google_api_key, n8n_api_key, rand


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingSource:
    """A real in-memory source (the Source protocol) that counts reads and can fail."""

    name = "memory"

    def __init__(self, values: dict[str, str], *, lease: float | None = None) -> None:
        self.values = values
        self.lease = lease
        self.reads = 0
        self.error: Exception | None = None
        self.lock = threading.Lock()

    def fetch(self, ref: Reference) -> Fetched | None:
        with self.lock:
            self.reads += 1
        if self.error is not None:
            raise self.error
        value = self.values.get(ref.target)
        if value is None:
            return None
        return Fetched(value, f"memory:{ref.target}", lease_seconds=self.lease)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, event: str, secret: Secret, old: Secret | None) -> None:
        with self.lock:
            self.events.append(
                (event, secret.name, secret.reveal(), old.reveal() if old is not None else None)
            )

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


def test_bare_names_follow_source_order(clean_env, tmp_path) -> None:
    from_env, from_dotenv, from_file = google_api_key(), google_api_key(), e2b_api_key()
    (tmp_path / ".env").write_text(f"GEMINI_API_KEY={from_dotenv}\nE2B_API_KEY=\n")
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "e2b_api_key").write_text(from_file)
    environ = {"GEMINI_API_KEY": from_env}
    store = SecretStore(
        [EnvSource(environ), DotenvSource(base_dir=tmp_path), FilesSource(secrets_dir)]
    )
    assert store.get("GEMINI_API_KEY").reveal() == from_env
    assert store.origin("GEMINI_API_KEY") == "env://GEMINI_API_KEY"
    assert store.get("E2B_API_KEY").reveal() == from_file  # empty in .env: falls through
    assert store.origin("E2B_API_KEY") == str(secrets_dir / "e2b_api_key")

    reordered = SecretStore([DotenvSource(base_dir=tmp_path), EnvSource(environ)])
    assert reordered.get("GEMINI_API_KEY").reveal() == from_dotenv
    assert reordered.origin("GEMINI_API_KEY") == ".env:1"
    secret = reordered.get("GEMINI_API_KEY")
    assert secret.name == "GEMINI_API_KEY" and secret.source == ".env:1"


def test_not_found_lists_where_it_looked(clean_env, tmp_path) -> None:
    store = SecretStore([EnvSource({}), DotenvSource(base_dir=tmp_path)])
    with pytest.raises(SecretNotFound) as err:
        store.get("N8N_API_KEY")
    assert "'N8N_API_KEY'" in str(err.value)
    assert "environment" in str(err.value) and "dotenv (.env, .env.local)" in str(err.value)
    assert store.try_get("N8N_API_KEY") is None
    assert store.loaded() == []


def test_try_get_does_not_hide_real_failures(clean_env) -> None:
    source = CountingSource({})
    source.error = AccessDenied("memory: denied")
    store = SecretStore([source])
    with pytest.raises(AccessDenied):
        store.try_get("GEMINI_API_KEY")


def test_ttl_cache_and_rotation(clean_env) -> None:
    first, second = google_api_key(), google_api_key()
    source = CountingSource({"GEMINI_API_KEY": first})
    clock = FakeClock()
    store = SecretStore([source], ttl=10, clock=clock)
    recorder = store.subscribe(Recorder())

    secret = store.get("GEMINI_API_KEY")
    assert secret.reveal() == first and source.reads == 1
    source.values["GEMINI_API_KEY"] = second
    clock.advance(9.9)
    assert store.get("GEMINI_API_KEY") is secret and source.reads == 1  # cached

    clock.advance(0.2)
    rotated = store.get("GEMINI_API_KEY")
    assert rotated.reveal() == second and source.reads == 2
    assert recorder.events == [
        ("loaded", "GEMINI_API_KEY", first, None),
        ("rotated", "GEMINI_API_KEY", second, first),
    ]
    assert store.loaded() == [rotated]

    clock.advance(11)  # unchanged value after the TTL: same object, no event
    assert store.get("GEMINI_API_KEY") is rotated and source.reads == 3
    assert len(recorder.events) == 2


def test_refresh_rereads_now(clean_env) -> None:
    values = {"GEMINI_API_KEY": google_api_key(), "E2B_API_KEY": e2b_api_key()}
    source = CountingSource(values)
    store = SecretStore([source], ttl=1000, clock=FakeClock())
    recorder = store.subscribe(Recorder())
    store.get("GEMINI_API_KEY")
    store.get("E2B_API_KEY")
    new_gemini = google_api_key()
    values["GEMINI_API_KEY"] = new_gemini
    store.refresh("GEMINI_API_KEY")
    assert store.get("GEMINI_API_KEY").reveal() == new_gemini
    assert recorder.kinds() == ["loaded", "loaded", "rotated"]

    new_e2b = e2b_api_key()
    values["E2B_API_KEY"] = new_e2b
    del values["GEMINI_API_KEY"]
    store.refresh()  # all: one rotates, one disappears
    assert store.get("E2B_API_KEY").reveal() == new_e2b
    assert recorder.kinds()[3:] == ["removed", "rotated"] or recorder.kinds()[3:] == [
        "rotated",
        "removed",
    ]
    assert [s.name for s in store.loaded()] == ["E2B_API_KEY"]
    with pytest.raises(SecretNotFound):
        store.get("GEMINI_API_KEY")


def test_leased_secret_is_reread_before_lease_ends(clean_env) -> None:
    source = CountingSource({"DB_PASSWORD": rand(24)}, lease=8)
    clock = FakeClock()
    store = SecretStore([source], ttl=300, clock=clock)
    store.get("DB_PASSWORD")
    clock.advance(5.9)
    store.get("DB_PASSWORD")
    assert source.reads == 1
    clock.advance(0.2)  # 6.1 s of an 8 s lease: refresh now, not at the 300 s TTL
    store.get("DB_PASSWORD")
    assert source.reads == 2


def test_stale_value_served_while_backend_is_down(clean_env, caplog) -> None:
    value = github_classic()
    source = CountingSource({"GITHUB_PERSONAL_ACCESS_TOKEN": value})
    clock = FakeClock()
    store = SecretStore([source], ttl=5, clock=clock)
    store.get("GITHUB_PERSONAL_ACCESS_TOKEN")
    source.error = BackendUnavailable("memory: down")
    clock.advance(6)
    with caplog.at_level(logging.WARNING, logger="keyguard.store"):
        assert store.get("GITHUB_PERSONAL_ACCESS_TOKEN").reveal() == value
    assert "GITHUB_PERSONAL_ACCESS_TOKEN" in caplog.text and value not in caplog.text
    assert source.reads == 2
    store.get("GITHUB_PERSONAL_ACCESS_TOKEN")
    assert source.reads == 3  # still expired: every get tries the backend again

    strict = SecretStore([source], serve_stale=False)
    with pytest.raises(BackendUnavailable):
        strict.get("GITHUB_PERSONAL_ACCESS_TOKEN")


def test_failing_subscriber_does_not_break_get_nor_leak(clean_env, caplog) -> None:
    value = n8n_api_key()
    store = SecretStore([EnvSource({"N8N_API_KEY": value})])

    def broken(event: str, secret: Secret, old: Secret | None) -> None:
        raise RuntimeError(f"cannot handle {secret.reveal()}")

    recorder = Recorder()
    store.subscribe(broken)
    store.subscribe(recorder)
    with caplog.at_level(logging.WARNING, logger="keyguard.store"):
        assert store.get("N8N_API_KEY").reveal() == value
    assert recorder.kinds() == ["loaded"]
    assert "RuntimeError" in caplog.text and value not in caplog.text

    store.unsubscribe(recorder)
    store.refresh("N8N_API_KEY")
    assert recorder.kinds() == ["loaded"]


def test_get_ref_names_and_policyless_names(clean_env, tmp_path) -> None:
    value = e2b_api_key()
    (tmp_path / "e2b").write_text(value)
    store = SecretStore([EnvSource({})], ref_sources=[FilesSource(None, environ={})])
    secret = store.get_ref(f"file://{tmp_path}/e2b")
    assert secret.name == "E2B" and secret.reveal() == value
    assert store.get(f"file://{tmp_path}/e2b") is secret  # get() accepts references too
    named = store.get_ref(f"file://{tmp_path}/e2b", name="E2B_API_KEY")
    assert named.name == "E2B_API_KEY"
    assert store.names() == ["E2B", "E2B_API_KEY"]
    with pytest.raises(SecretNotFound):  # a bare name is not looked up in ref-only sources
        store.get("e2b")


def test_placeholder_round_trip(clean_env) -> None:
    value = google_api_key()
    store = SecretStore([EnvSource({"GEMINI_API_KEY": value})])
    placeholder = store.get("GEMINI_API_KEY").placeholder
    assert placeholder == placeholder_for("GEMINI_API_KEY")
    assert store.secret_for_placeholder(placeholder).reveal() == value
    assert store.secret_for_placeholder("kg_ph_GEMINI_API_KEY_" + "0" * 20) is None
    assert store.secret_for_placeholder("hello") is None


def test_store_repr_and_errors_hold_no_values(clean_env) -> None:
    value = google_api_key()
    store = SecretStore([EnvSource({"GEMINI_API_KEY": value})])
    store.get("GEMINI_API_KEY")
    assert value not in repr(store) and "loaded=1" in repr(store)
    assert value not in repr(store.loaded())


def test_thread_safety_smoke(clean_env) -> None:
    names = [f"KEY_{i}" for i in range(4)]
    values = {n: rand(24) for n in names}
    seen_values = {n: {values[n]} for n in names}
    source = CountingSource(values)
    clock = FakeClock()
    store = SecretStore([source], ttl=0.5, clock=clock)
    recorder = store.subscribe(Recorder())
    errors: list[BaseException] = []
    results: list[tuple[str, str]] = []
    start = threading.Barrier(9)

    def reader(k: int) -> None:
        start.wait()
        try:
            for i in range(300):
                name = names[(i + k) % len(names)]
                results.append((name, store.get(name).reveal()))
                if i % 50 == 0:
                    store.refresh(name)
        except BaseException as exc:
            errors.append(exc)

    def writer() -> None:
        start.wait()
        for i in range(200):
            name = names[i % len(names)]
            new = rand(24)
            seen_values[name].add(new)
            values[name] = new
            clock.advance(0.3)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(results) == 8 * 300
    assert all(value in seen_values[name] for name, value in results)
    # Every name loaded exactly once; every rotation moved from a value to a different one.
    assert sorted(e[1] for e in recorder.events if e[0] == "loaded") == names
    for event, _, new, old in recorder.events:
        if event == "rotated":
            assert new != old
    # Per name, each rotation starts from the value the previous event installed.
    for name in names:
        chain = [e for e in recorder.events if e[1] == name]
        for prev, cur in itertools.pairwise(chain):
            assert cur[3] == prev[2]


def test_redactor_knows_every_loaded_value(clean_env) -> None:
    gemini, github, new_gemini = google_api_key(), github_classic(), google_api_key()
    environ = {"GEMINI_API_KEY": gemini, "GITHUB_PERSONAL_ACCESS_TOKEN": github, "PIN": "1234"}
    clock = FakeClock()
    store = SecretStore([EnvSource(environ)], ttl=10, clock=clock)
    store.get("GEMINI_API_KEY")  # loaded before the redactor exists
    redactor = store.redactor
    assert store.redactor is redactor
    store.get("GITHUB_PERSONAL_ACCESS_TOKEN")  # loaded after
    store.get("PIN")  # too short to redact: still loads
    text = f"key={gemini} token={github}"
    out = redactor.redact(text)
    assert gemini not in out and github not in out
    assert "[REDACTED:GEMINI_API_KEY]" in out and "[REDACTED:GITHUB_PERSONAL_ACCESS_TOKEN]" in out
    placeholder = store.get("GEMINI_API_KEY").placeholder
    assert redactor.redact(f"use {placeholder}") == f"use {placeholder}"

    environ["GEMINI_API_KEY"] = new_gemini
    clock.advance(11)
    assert store.get("GEMINI_API_KEY").reveal() == new_gemini
    out = redactor.redact(f"old={gemini} new={new_gemini}")
    assert gemini not in out and new_gemini not in out  # the old one within its grace period


# -- from_policy ---------------------------------------------------------------------


def _project(tmp_path: Path, policy: str) -> Path:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "keyguard.yaml").write_text(policy)
    return tmp_path / "policies" / "keyguard.yaml"


def test_from_policy_sources_order_ttl_and_refs(clean_env, tmp_path, monkeypatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    gemini_dotenv, gemini_env, e2b_file = google_api_key(), google_api_key(), e2b_api_key()
    (project / ".env").write_text(f"GEMINI_API_KEY={gemini_dotenv}\n")
    (tmp_path / "e2b").write_text(e2b_file)
    clean_env.setenv("GEMINI_API_KEY", gemini_env)
    path = _project(
        project,
        f"""
version: 1
sources:
  order: [dotenv, env]
  ttl: 42
secrets:
  GEMINI_API_KEY: {{}}
  E2B_API_KEY:
    from: file://{tmp_path}/e2b
  N8N_API_KEY:
    required: false
""",
    )
    monkeypatch.chdir(tmp_path)  # .env is found relative to the project, not cwd
    store = SecretStore.from_policy(path)
    assert store.ttl == 42
    assert [s.name for s in store.sources] == ["dotenv", "env"]
    assert store.get("GEMINI_API_KEY").reveal() == gemini_dotenv
    assert store.origin("GEMINI_API_KEY") == ".env:1"
    # `from:` goes straight to its source even though files is not in the order.
    assert store.get("E2B_API_KEY").reveal() == e2b_file
    assert store.get_ref(f"file://{tmp_path}/e2b").name == "E2B_API_KEY"
    assert store.names() == ["E2B_API_KEY", "GEMINI_API_KEY", "N8N_API_KEY"]
    assert store.try_get("N8N_API_KEY") is None

    from keyguard.policy import Policy

    same = SecretStore.from_policy(Policy.load(path), ttl=1)
    assert same.ttl == 1 and same.get("GEMINI_API_KEY").reveal() == gemini_dotenv


def test_from_policy_rejects_vault_secret_id_ref(clean_env, tmp_path) -> None:
    path = _project(
        tmp_path,
        """
version: 1
sources:
  vault: {auth: approle, role_id: r, secret_id_ref: "vault://secret/x#y"}
secrets: {}
""",
    )
    with pytest.raises(PolicyError, match="secret_id_ref"):
        SecretStore.from_policy(path)


def test_audit_receives_events_without_values(clean_env) -> None:
    from keyguard.audit import Auditor

    records = []
    value = google_api_key()
    environ = {"GEMINI_API_KEY": value}
    clock = FakeClock()
    store = SecretStore(
        [EnvSource(environ)], audit=Auditor(sinks=[records.append]), ttl=1, clock=clock
    )
    secret = store.get("GEMINI_API_KEY")
    environ["GEMINI_API_KEY"] = google_api_key()
    clock.advance(2)
    store.get("GEMINI_API_KEY")
    assert [r.event for r in records] == ["loaded", "rotated"]
    assert records[0].secret == "GEMINI_API_KEY" and records[0].fingerprint == secret.fingerprint
    assert all(value not in r.to_json() for r in records)
