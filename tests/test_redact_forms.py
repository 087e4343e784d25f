"""Known values: every encoded form, overlaps, short values, grace periods, placeholders."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import quote, quote_plus

import pytest

from keyguard.redact import Redactor
from keyguard.redact.engine import available_engines
from keyguard.redact.forms import base64_cores, forms
from keyguard.secret import Secret, placeholder_for
from tests.fakes import URLSAFE, google_api_key, rand

ENGINES = available_engines()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def make(engine: str, **kw: object) -> Redactor:
    return Redactor(engine=engine, **kw)  # type: ignore[arg-type]


PLAIN = rand(40)
SPECIAL = "p@ss/w+rd " + rand(12) + " \"q\" 's' \\ é€"


def encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "exact": value,
        "b64": base64.b64encode(raw).decode(),
        "b64-unpadded": base64.b64encode(raw).decode().rstrip("="),
        "b64url": base64.urlsafe_b64encode(raw).decode(),
        "b64url-unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "quote": quote(value, safe=""),
        "quote-slash": quote(value),
        "quote_plus": quote_plus(value),
        "json": json.dumps(value)[1:-1],
        "json-unicode": json.dumps(value, ensure_ascii=False)[1:-1],
        "repr": repr(value)[1:-1],
    }


@pytest.mark.parametrize("value", [PLAIN, SPECIAL], ids=["plain", "special"])
@pytest.mark.parametrize("form", list(encodings(PLAIN)))
def test_each_form_is_redacted(engine: str, value: str, form: str) -> None:
    r = make(engine, default_rules=False)
    r.add_secret("API_TOKEN", value)
    encoded = encodings(value)[form]
    text = f"before <{encoded}> after"
    out = r.redact(text)
    assert out == "before <[REDACTED:API_TOKEN]> after"
    assert r.contains_known(text) == ["API_TOKEN"]
    assert r.redact_bytes(text.encode()) == out.encode()


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:", "a-longer-user-name:"])
def test_value_inside_a_larger_base64_blob_at_every_alignment(engine: str, prefix: str) -> None:
    value = google_api_key()
    r = make(engine, default_rules=False)
    r.add_secret("GEMINI_API_KEY", value)
    for suffix in ("", "x", "xy", ":tail"):
        blob = base64.b64encode((prefix + value + suffix).encode()).decode()
        header = f"Authorization: Basic {blob}"
        out = r.redact(header)
        assert "[REDACTED:GEMINI_API_KEY]" in out
        for core in base64_cores(value.encode()):
            assert core.decode() not in out
        assert r.contains_known(header) == ["GEMINI_API_KEY"]


def test_urls_query_and_userinfo(engine: str) -> None:
    value = "s3cr3t/val+ue=" + rand(10)
    r = make(engine, default_rules=False)
    r.add_secret("KEY", value)
    for url in (
        f"https://api.example.com/v1?key={value}&x=1",
        f"https://api.example.com/v1?key={quote_plus(value)}&x=1",
        f"https://user:{quote(value, safe='')}@host.example.com/path",
        f"https://user:{value}@host.example.com/path",
    ):
        out = r.redact(url)
        assert "[REDACTED:KEY]" in out and value not in out
        assert quote(value, safe="") not in out


def test_every_occurrence_and_overlaps(engine: str) -> None:
    r = make(engine, default_rules=False)
    a, b = "AAAAbbbbCCCC1111", "CCCC1111ddddEEEE"  # overlap "CCCC1111"
    r.add_secret("A", a)
    r.add_secret("B", b)
    assert r.redact(f"{a} and {a}") == "[REDACTED:A] and [REDACTED:A]"
    # overlapping: the union is replaced, labelled by the longest member
    assert r.redact("xx AAAAbbbbCCCC1111ddddEEEE yy") == "xx [REDACTED:A] yy"
    longer = "ZZ" + a
    r.add_secret("LONGER", longer)
    assert r.redact(f"<{longer}>") == "<[REDACTED:LONGER]>"
    # adjacent values: both gone
    out = r.redact(a + b)
    assert a not in out and b not in out and "1111" not in out


def test_short_values_refused_unless_forced(engine: str) -> None:
    r = make(engine, default_rules=False)
    with pytest.raises(ValueError) as exc:
        r.add_secret("SHORTY", "abc123")
    assert "SHORTY" in str(exc.value) and "abc123" not in str(exc.value)
    with pytest.raises(ValueError):
        r.add_secret("EMPTY", "", force=True)
    r.add_secret("SHORTY", "abc123", force=True)
    assert r.redact("x abc123 y") == "x [REDACTED:SHORTY] y"


def test_accepts_secret_objects(engine: str) -> None:
    r = make(engine, default_rules=False)
    value = rand(24)
    r.add_secret("S", Secret("S", value))
    assert r.redact(value) == "[REDACTED:S]"


def test_remove_and_rotation_keep_old_value_for_grace(engine: str) -> None:
    r = make(engine, default_rules=False)
    old, new = rand(20), rand(20)
    r.add_secret("K", old)
    r.remove_secret("K", grace=0.3)
    assert r.redact(old) == "[REDACTED:K]"
    assert r.names() == []
    time.sleep(0.35)
    assert r.redact(old) == old

    r.add_secret("K", old)
    r.add_secret("K", new)  # rotation: old one retired with the default grace
    assert r.redact(f"{old} {new}") == "[REDACTED:K] [REDACTED:K]"
    r.remove_secret("K", grace=0)
    assert r.redact(new) == new


def test_placeholders_are_never_redacted_nor_reported(engine: str) -> None:
    r = make(engine)
    ph = placeholder_for("GEMINI_API_KEY")
    text = f'api_key = "{ph}"\nAuthorization: Bearer {ph}'
    assert r.redact(text) == text
    assert r.findings(text) == []
    custom = "CUSTOM_PLACEHOLDER_" + rand(20, "0123456789abcdef")
    r.add_secret("X", custom[:30])  # a known value inside a registered placeholder
    r.add_placeholder(custom)
    assert r.redact(custom) == custom
    assert r.contains_known(custom) == []


def test_findings_offsets_and_no_values(engine: str) -> None:
    r = make(engine)
    value = rand(32)
    r.add_secret("TOKEN", value)
    text = f"héllo wörld € {value} ✓ {value}"
    fs = r.findings(text)
    assert [(f.start, f.end) for f in fs] == [
        (text.index(value), text.index(value) + len(value)),
        (text.rindex(value), len(text)),
    ]
    for f in fs:
        assert f.kind == "known" and f.name == "TOKEN"
        assert value not in repr(f) and value not in json.dumps(f.to_dict())
    raw = text.encode()
    fb = r.findings(raw)
    assert raw[fb[0].start : fb[0].end] == value.encode()


def test_forms_function_is_deduplicated_and_exact_first() -> None:
    value = rand(30, URLSAFE)
    fs = forms(value)
    assert fs[0] == value and len(fs) == len(set(fs))
    assert value.encode().hex() in fs and base64.b64encode(value.encode()).decode() in fs


def test_engine_selection_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYGUARD_ENGINE", "python")
    assert Redactor().engine == "python"
    monkeypatch.setenv("KEYGUARD_ENGINE", "nonsense")
    with pytest.raises(ValueError, match="KEYGUARD_ENGINE"):
        Redactor().redact("x")


def test_concurrent_use_from_threads(engine: str) -> None:
    import threading

    r = make(engine)
    values = [rand(24) for _ in range(4)]
    for i, v in enumerate(values):
        r.add_secret(f"S{i}", v)
    errors: list[str] = []

    def work(i: int) -> None:
        text = f"x {values[i]} y".encode()
        for _ in range(200):
            if r.redact_bytes(text) != f"x [REDACTED:S{i}] y".encode():
                errors.append(f"S{i}")
            if r.contains_known(text) != [f"S{i}"]:
                errors.append(f"S{i} contains")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_allow_patterns_suppress_pattern_hits_only(engine: str) -> None:
    from tests.fakes import github_classic

    gh = github_classic()
    r = make(engine, allow=[r"^ghp_"])
    value = rand(20)
    r.add_secret("K", value)
    assert r.redact(f"{gh} {value}") == f"{gh} [REDACTED:K]"


def test_bytes_that_are_not_utf8(engine: str) -> None:
    r = make(engine)
    value = rand(24)
    r.add_secret("K", value)
    data = b"\xff\xfe\x00 " + value.encode() + b" \xc3\x28 " + value.encode().hex().encode()
    assert r.redact_bytes(data) == b"\xff\xfe\x00 [REDACTED:K] \xc3\x28 [REDACTED:K]"
    assert r.contains_known(data) == ["K"]


def test_rule_hit_offsets_after_multibyte_text(engine: str) -> None:
    r = make(engine)
    key = google_api_key()
    text = f"日本語 😀 é {key} ✓"
    (f,) = r.findings(text)
    assert text[f.start : f.end] == key and f.kind == "pattern"
    (fb,) = r.findings(text.encode())
    assert text.encode()[fb.start : fb.end] == key.encode()
