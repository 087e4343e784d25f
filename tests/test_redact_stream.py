"""StreamRedactor: any chunking gives exactly ``redact(whole)``; holds back little."""

from __future__ import annotations

import base64
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyguard.redact import Redactor
from keyguard.redact.engine import available_engines
from tests.fakes import e2b_api_key, github_classic, google_api_key, jwt, n8n_api_key, rand

ENGINES = available_engines()


def run(r: Redactor, chunks: list[str]) -> str:
    s = r.stream()
    return "".join(s.feed(c) for c in chunks) + s.flush()


def chunkings(text: str, rng: random.Random) -> list[list[str]]:
    out = [[text], list(text), [text[i : i + 20] for i in range(0, len(text), 20)]]
    for _ in range(6):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 40))))
        out.append([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)])
    return out


@pytest.fixture(params=ENGINES)
def redactor(request: pytest.FixtureRequest) -> Redactor:
    r = Redactor(engine=request.param)
    r.add_secret("GEMINI_API_KEY", google_api_key())
    r.add_secret("E2B_API_KEY", e2b_api_key())
    r.add_secret("PASSWORD", "pä$$wörd-" + rand(12))
    return r


def corpus(r: Redactor) -> str:
    values = {n: r._secrets[n] for n in r.names()}
    g = values["GEMINI_API_KEY"]
    return (
        f"héllo {g} and {base64.b64encode(('user:' + g).encode()).decode()}\n"
        f"token = 'a{rand(20)}9' # keyguard:allow {github_classic()}\n"
        f"gh {github_classic()} jwt {jwt()} n8n {n8n_api_key()}\n"
        f"pw {values['PASSWORD']} € ✓ {values['E2B_API_KEY'].upper()} {values['E2B_API_KEY']}\n"
        "-----BEGIN PRIVATE KEY-----\n"
        + "\n".join(rand(64) for _ in range(5))
        + "\n-----END PRIVATE KEY-----\n"
        f"url postgres://u:{rand(16)}@db/x and kg_ph_X_{'0' * 20} end"
    )


def test_any_chunking_equals_redact(redactor: Redactor) -> None:
    rng = random.Random(7)
    text = corpus(redactor)
    expected = redactor.redact(text)
    assert expected != text
    for chunks in chunkings(text, rng):
        assert run(redactor, chunks) == expected


def test_value_split_across_chunks_does_not_leak(redactor: Redactor) -> None:
    value = redactor._secrets["GEMINI_API_KEY"]
    s = redactor.stream()
    emitted = ""
    for ch in ["prefix ", value[:10], value[10:25], value[25:], " suffix"]:
        emitted += s.feed(ch)
        assert value[:10] not in emitted
    emitted += s.flush()
    assert emitted == "prefix [REDACTED:GEMINI_API_KEY] suffix"


def test_holds_back_only_what_it_must() -> None:
    r = Redactor()
    r.add_secret("K", rand(20))  # longest form: hex, 40 chars
    s = r.stream()
    line = "an ordinary log line without anything in it, " * 10 + "\n"
    out = s.feed(line)
    longest = max(len(f) for f in r._snapshot().literals)
    assert len(line) - len(out) <= longest - 1
    assert s.pending == len(line) - len(out)
    assert out + s.flush() == line


def test_unfinished_pattern_is_held_then_released() -> None:
    r = Redactor()
    token = jwt({"sub": rand(8), "iss": "auth.example.com"})
    s = r.stream()
    out = s.feed("x " * 100 + token[:-10])
    assert token[:12] not in out
    out += s.feed(token[-10:] + " done " + "y " * 40)
    out += s.flush()
    assert token not in out and "[REDACTED:jwt]" in out


def test_pragma_later_on_the_line_is_honoured() -> None:
    r = Redactor()
    key = github_classic()
    s = r.stream()
    out = s.feed(f"fixture {key} ")
    out += s.feed("padding " * 30)
    out += s.feed("# keyguard:allow\n")
    out += s.flush()
    assert key in out
    assert out == r.redact(f"fixture {key} " + "padding " * 30 + "# keyguard:allow\n")


def test_secret_added_mid_stream_is_used() -> None:
    r = Redactor()
    s = r.stream()
    value = rand(30)
    out = s.feed("start ")
    r.add_secret("LATE", value)
    out += s.feed(f"{value} end") + s.flush()
    assert value not in out and "[REDACTED:LATE]" in out


def test_stream_is_reusable_after_flush() -> None:
    r = Redactor()
    r.add_secret("K", "0123456789abcdef")
    s = r.stream()
    assert s.feed("a 0123456789abcdef") + s.flush() == "a [REDACTED:K]"
    assert s.feed("b 0123456789abcdef") + s.flush() == "b [REDACTED:K]"
    with pytest.raises(TypeError):
        s.feed(b"bytes")  # type: ignore[arg-type]


def test_without_the_regex_module_the_stream_is_conservative_but_exact(
    redactor: Redactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyguard.redact import stream as stream_mod

    monkeypatch.setattr(stream_mod, "_regex", None)
    rng = random.Random(11)
    text = corpus(redactor)
    expected = redactor.redact(text)
    for chunks in chunkings(text, rng):
        assert run(redactor, chunks) == expected


@pytest.mark.parametrize("partial", [True, False])
def test_match_starting_before_an_earlier_keyword(
    partial: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "sk" (another rule's keyword) appears before the terraform token's own keyword,
    # whose match starts 14 characters earlier: neither may let the start slip out.
    from keyguard.redact import stream as stream_mod
    from tests.fakes import URLSAFE

    if not partial:
        monkeypatch.setattr(stream_mod, "_regex", None)
    token = "ab" + "sk" + rand(10) + ".atlasv1." + rand(66, URLSAFE)
    r = Redactor()
    text = f"{token} tail " + "x" * 60
    assert (
        run(r, list(text)) == r.redact(text) == "[REDACTED:terraform-cloud-token] tail " + "x" * 60
    )


# ------------------------------------------------------------- a text cut inside a value


@pytest.mark.parametrize("cut", [8, 9, 25, 38])
def test_stream_ending_inside_a_value_redacts_the_prefix(redactor: Redactor, cut: int) -> None:
    value = redactor._secrets["GEMINI_API_KEY"]
    text = "the reply was cut: " + value[:cut]
    expected = "the reply was cut: [REDACTED:GEMINI_API_KEY]"
    assert redactor.redact(text) == expected
    rng = random.Random(cut)
    for chunks in chunkings(text, rng):
        assert run(redactor, chunks) == expected


def test_a_cut_encoded_form_and_bytes_agree(redactor: Redactor) -> None:
    value = redactor._secrets["PASSWORD"]  # non-ASCII: byte and character counts differ
    b64 = base64.b64encode(value.encode()).decode()
    for text in (f"x {b64[:12]}", f"x {value[:9]}", f"x {value.encode().hex()[:30]}"):
        out = redactor.redact(text)
        assert out == "x [REDACTED:PASSWORD]"
        assert redactor.redact_bytes(text.encode()) == out.encode()
        assert not redactor.certainly_clean(text.encode()) or not text.isascii()
        assert [f.kind for f in redactor.findings(text)] == ["known"]


def test_short_or_inner_prefixes_are_left_alone(redactor: Redactor) -> None:
    value = redactor._secrets["GEMINI_API_KEY"]
    for text in (f"ends with {value[:7]}", f"{value[:20]} then more text", f"{value[:20]}\n"):
        assert redactor.redact(text) == text
        assert run(redactor, list(text)) == text
    # the earliest start wins: a prefix that contains the start of another prefix
    text = "k=" + value[:30]
    assert redactor.redact(text) == "k=[REDACTED:GEMINI_API_KEY]"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    engine=st.sampled_from(ENGINES),
    value=st.text(alphabet=string.ascii_letters + string.digits + "+/-_é", min_size=8, max_size=60),
    before=st.text(alphabet=string.printable + "é€", max_size=40),
    which=st.integers(0, 50),
    cut=st.integers(8, 200),
    cuts=st.lists(st.integers(0, 300), max_size=8),
)
def test_cut_form_property(
    engine: str, value: str, before: str, which: int, cut: int, cuts: list[int]
) -> None:
    from keyguard.redact.forms import forms

    r = Redactor(engine=engine)
    r.add_secret("V", value)
    all_forms = forms(value)
    form = all_forms[which % len(all_forms)]
    text = before + form[: max(8, min(cut, len(form) - 1))]
    whole = r.redact(text)
    assert whole.endswith("]")  # the cut form (8+ characters) at the end is replaced
    points = sorted({c for c in cuts if 0 < c < len(text)})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert run(r, chunks) == whole
    assert r.redact_bytes(text.encode("utf-8", "surrogatepass")).decode() == whole


# ------------------------------------------------------------------ idle release


def run_releasing(r: Redactor, chunks: list[str], after: set[int]) -> str:
    """Feed ``chunks``, calling ``release()`` after each chunk index in ``after``."""
    s = r.stream()
    out = []
    for i, chunk in enumerate(chunks):
        out.append(s.feed(chunk))
        if i in after:
            out.append(s.release())
    out.append(s.flush())
    return "".join(out)


def test_release_lets_a_prompt_out_whole(redactor: Redactor) -> None:
    s = redactor.stream()
    out = s.feed("Enter your name: ")
    assert out != "Enter your name: "  # held back by feed: it could be a key's start
    out += s.release()
    assert out == "Enter your name: " and s.pending == 0
    assert out + s.feed("Ada\n") + s.flush() == "Enter your name: Ada\n"
    assert s.release() == "" and s.flush() == ""


def _split_with_release(r: Redactor, head: str, value: str, k: int, tail: str) -> str:
    """``head + value + tail`` with the value cut after ``k`` characters and released
    there (twice, and once more after a few characters of the rest): no more than 3 of
    its characters may show at any point."""
    s = r.stream()
    shown = s.feed(head + value[:k]) + s.release()
    shown += s.release()
    assert shown == head + (value[:k] if k < 4 else "")
    shown += s.feed(value[k : k + 2]) + s.release()
    assert shown == head + value[: _shown(k)]
    return shown + s.feed(value[k + 2 :] + tail) + s.flush()


def _shown(k: int) -> int:
    """How much of a value cut at ``k``, released, fed 2 more and released, shows."""
    return k + 2 if k + 2 < 4 else (k if k < 4 else 0)


@pytest.mark.parametrize("k", [1, 3, 4, 9, 30])
def test_release_inside_a_known_value(redactor: Redactor, k: int) -> None:
    value = redactor._secrets["GEMINI_API_KEY"]
    out = _split_with_release(redactor, "key is ", value, k, " ok\n")
    # a 1-3 character prefix is ordinary text
    assert out == f"key is {value[: _shown(k)]}[REDACTED:GEMINI_API_KEY] ok\n"


@pytest.mark.parametrize("k", [2, 3, 5, 17])
def test_release_inside_a_base64_form(redactor: Redactor, k: int) -> None:
    value = redactor._secrets["E2B_API_KEY"]
    b64 = base64.b64encode(value.encode()).decode()
    out = _split_with_release(redactor, "auth: ", b64, k, "\n")
    assert out == f"auth: {b64[: _shown(k)]}[REDACTED:E2B_API_KEY]\n"


@pytest.mark.parametrize("k", [2, 3, 4, 6, 20])
def test_release_inside_an_unknown_token(redactor: Redactor, k: int) -> None:
    token = github_classic()
    s = redactor.stream()
    shown = s.feed("token " + token[:k]) + s.release()
    # The keyword's head may go out, never a character of the token after it.
    assert shown == "token " + (token[:k] if k < 4 else "")
    shown += s.feed(token[k : k + 3]) + s.release()
    assert token[4:] not in shown and token[:k] + token[k : k + 3] not in shown
    out = shown + s.feed(token[k + 3 :] + " used\n") + s.flush()
    assert out == f"token {token[:k] if k < 4 else ''}[REDACTED:github-pat] used\n"


def test_release_keeps_an_unfinished_generic_secret(redactor: Redactor) -> None:
    secret = rand(24)
    while redactor.redact(f"Password: {secret}") == f"Password: {secret}":
        secret = rand(24)  # the rule wants some entropy
    s = redactor.stream()
    shown = s.feed("Password: ") + s.release()
    assert shown == "Password: "  # the prompt shows ...
    shown += s.feed(secret[:6]) + s.release()
    assert shown == "Password: "  # ... the start of what follows does not
    out = shown + s.feed(secret[6:] + " next\n") + s.flush()
    assert out == redactor.redact(f"Password: {secret} next\n")
    assert secret not in out and "[REDACTED:generic-secret]" in out


def test_release_then_flush_inside_a_value(redactor: Redactor) -> None:
    value = redactor._secrets["GEMINI_API_KEY"]
    s = redactor.stream()
    out = s.feed("cut " + value[:3]) + s.release() + s.feed(value[3:12]) + s.flush()
    assert out == f"cut {value[:3]}[REDACTED:GEMINI_API_KEY]"


PLANTED = google_api_key()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    engine=st.sampled_from(ENGINES),
    value=st.text(alphabet=string.ascii_letters + string.digits + "+/-_", min_size=8, max_size=40),
    parts=st.lists(
        st.one_of(st.text(alphabet=string.printable + "é€", max_size=30), st.integers(0, 40)),
        max_size=8,
    ),
    cuts=st.lists(st.integers(1, 400), max_size=12),
    after=st.sets(st.integers(0, 12)),
)
def test_release_property(
    engine: str, value: str, parts: list[str | int], cuts: list[int], after: set[int]
) -> None:
    from keyguard.redact.forms import forms

    r = Redactor(engine=engine)
    r.add_secret("V", value)
    r.add_secret("G", PLANTED)
    labels = "".join(f"[REDACTED:{x}]" for x in ["V", "G", *(rule.id for rule in r.rules)])
    planted = []
    text = ""
    for part in parts:
        if isinstance(part, int):  # a known value in one of its forms
            form = (forms(value) + forms(PLANTED))[part % (len(forms(value)) + 3)]
            planted.append(form)
            text += form
        else:
            text += part
    points = sorted({c for c in cuts if 0 < c < len(text)})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    out = run_releasing(r, chunks, after)
    if r.redact(text) == text:
        # No secret: releasing changes when text goes out, never what goes out.
        assert out == text == run(r, chunks)
    for form in planted:
        if form not in labels:
            assert form not in out
    if value not in labels:
        assert value not in out
