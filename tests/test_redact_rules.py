"""Pattern rules: a positive and a negative example per rule, generated at test time."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import string
import uuid
from collections.abc import Callable

import pytest

from keyguard.redact import Redactor, get_rule, load_rules
from keyguard.redact.engine import available_engines
from keyguard.redact.rules import RuleError
from tests.fakes import (
    ALNUM,
    HEX,
    URLSAFE,
    anthropic_key,
    e2b_api_key,
    github_classic,
    github_fine_grained,
    google_api_key,
    jwt,
    n8n_api_key,
    openai_key,
    rand,
)

UPPER_NUM = string.ascii_uppercase + string.digits
LETTERS = string.ascii_letters
B64 = ALNUM + "+/"
DIGITS = string.digits


def _pem() -> str:
    body = base64.b64encode(secrets.token_bytes(600)).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{lines}\n-----END RSA PRIVATE KEY-----"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _secret_with_digits(n: int = 32) -> str:
    return rand(n - 4) + rand(4, DIGITS)


def _database_url() -> tuple[str, str, str]:
    pw = rand(20)
    return (
        f"DATABASE_URL=postgresql://app:{pw}@db.internal:5432/app",
        pw,
        "postgresql://app:password@db.example.com:5432/app",
    )


@pytest.mark.parametrize(
    "code",
    [
        'url = f"postgresql://app:{pw}@db.internal:5432/app"',
        'url = "mysql://root:{password}@localhost/db".format(password=pw)',
        "DATABASE_URL=postgres://app:$DB_PASSWORD@db/app",
        'dsn = "postgres://u:%(pw)s@db/x" % {"pw": pw}',
    ],
)
def test_database_url_template_slots_are_not_secrets(code: str) -> None:
    assert Redactor().findings(code) == []


# rule id -> (positive text, secret part, negative text). The secret part is what gets
# replaced; negatives are near misses (too short, wrong prefix, low entropy, ...).
Case = tuple[str, str, str]


def _cases() -> dict[str, Callable[[], Case]]:
    def simple(value: str, negative: str) -> Callable[[], Case]:
        return lambda: (value, value, negative)

    def gen(make: Callable[[], str], neg: Callable[[], str]) -> Callable[[], Case]:
        def f() -> Case:
            v = make()
            return v, v, neg()

        return f

    def assign(prefix: str, secret: Callable[[], str], neg: Callable[[], str]):
        def f() -> Case:
            s = secret()
            return f"{prefix}{s}", s, neg()

        return f

    return {
        "google-api-key": gen(google_api_key, lambda: "AIza" + rand(20, URLSAFE)),
        "google-oauth-client-secret": gen(
            lambda: "GOCSPX-" + rand(28, URLSAFE), lambda: "GOCSPX-" + rand(10)
        ),
        "google-oauth-access-token": gen(
            lambda: "ya29." + rand(60, URLSAFE), lambda: "ya29." + rand(10)
        ),
        "github-pat": gen(github_classic, lambda: "ghp_" + rand(20)),
        "github-fine-grained-pat": gen(github_fine_grained, lambda: "github_pat_" + rand(30)),
        "github-oauth": gen(lambda: github_classic("gho"), lambda: "gho_" + rand(12)),
        "github-app-token": gen(lambda: github_classic("ghs"), lambda: "ghx_" + rand(36)),
        "github-refresh-token": gen(lambda: github_classic("ghr"), lambda: "ghr_" + rand(30)),
        "gitlab-pat": gen(lambda: "glpat-" + rand(20, URLSAFE), lambda: "glpat-" + rand(8)),
        "gitlab-pipeline-trigger-token": gen(
            lambda: "glptt-" + rand(40, HEX), lambda: "glptt-" + rand(40, "ghijkl")
        ),
        "gitlab-runner-token": gen(lambda: "glrt-" + rand(24, URLSAFE), lambda: "glrt-" + rand(5)),
        "gitlab-deploy-token": gen(lambda: "gldt-" + rand(24, URLSAFE), lambda: "gldt-abc"),
        "e2b-api-key": gen(e2b_api_key, lambda: "e2b_" + rand(40, "ghijklmnop")),
        "n8n-api-key": gen(n8n_api_key, lambda: jwt({"sub": rand(8), "iss": "someone-else"})),
        "jwt": gen(
            lambda: jwt({"sub": rand(8), "iss": "auth.example.com"}),
            lambda: "eyJ" + rand(20) + ".eyJ" + rand(20),
        ),
        "anthropic-api-key": gen(anthropic_key, lambda: "sk-ant-api03-" + rand(20)),
        "openai-api-key": gen(
            lambda: openai_key(project=True), lambda: "sk-" + "a" * 20 + "b" * 20
        ),
        "aws-access-key-id": gen(
            lambda: "AKIA" + rand(16, UPPER_NUM), lambda: "AKIA" + rand(10, UPPER_NUM)
        ),
        "aws-secret-access-key": assign(
            "aws_secret_access_key = ", lambda: rand(40, B64), lambda: "aws_secret_access_key = x"
        ),
        "slack-bot-token": gen(
            lambda: f"xoxb-{rand(11, DIGITS)}-{rand(12, DIGITS)}-{rand(24)}",
            lambda: f"xoxb-{rand(3, DIGITS)}-{rand(24)}",
        ),
        "slack-user-token": gen(
            lambda: f"xoxp-{rand(11, DIGITS)}-{rand(11, DIGITS)}-{rand(12, DIGITS)}-{rand(32)}",
            lambda: f"xoxp-{rand(11, DIGITS)}-{rand(8)}",
        ),
        "slack-app-token": gen(
            lambda: f"xapp-1-{rand(10, UPPER_NUM)}-{rand(13, DIGITS)}-{rand(64, HEX)}",
            lambda: f"xapp-1-{rand(10, UPPER_NUM)}",
        ),
        "slack-webhook-url": gen(
            lambda: "https://hooks.slack.com/services/" + rand(44, ALNUM),
            lambda: "https://hooks.slack.com/services/short",
        ),
        "stripe-secret-key": gen(lambda: "sk_live_" + rand(24), lambda: "sk_prod_" + rand(24)),
        "stripe-restricted-key": gen(lambda: "rk_test_" + rand(24), lambda: "rk_test_abc"),
        "stripe-webhook-secret": gen(lambda: "whsec_" + rand(32), lambda: "whsec_" + rand(8)),
        "huggingface-token": gen(lambda: "hf_" + rand(34, LETTERS), lambda: "hf_" + rand(10)),
        "huggingface-org-token": gen(
            lambda: "api_org_" + rand(34, LETTERS), lambda: "api_org_" + rand(5)
        ),
        "npm-token": gen(lambda: "npm_" + rand(36), lambda: "npm_" + rand(10)),
        "pypi-token": gen(
            lambda: "pypi-AgEIcHlwaS5vcmc" + rand(60, URLSAFE), lambda: "pypi-" + rand(30)
        ),
        "sendgrid-api-key": gen(
            lambda: f"SG.{rand(22, URLSAFE)}.{rand(43, URLSAFE)}", lambda: f"SG.{rand(10)}"
        ),
        "twilio-api-key": gen(lambda: "SK" + rand(32, HEX), lambda: "SK" + rand(32, "xyz")),
        "digitalocean-pat": gen(lambda: "dop_v1_" + rand(64, HEX), lambda: "dop_v1_" + rand(8)),
        "digitalocean-oauth-token": gen(
            lambda: "doo_v1_" + rand(64, HEX), lambda: "doo_v2_" + rand(64, HEX)
        ),
        "groq-api-key": gen(lambda: "gsk_" + rand(52), lambda: "gsk_" + rand(20)),
        "hashicorp-vault-token": gen(lambda: "hvs." + rand(90, URLSAFE), lambda: "hvs." + rand(10)),
        "terraform-cloud-token": gen(
            lambda: f"{rand(14)}.atlasv1.{rand(66, URLSAFE)}", lambda: f"{rand(14)}.atlasv1.abc"
        ),
        "mailgun-api-key": gen(lambda: "key-" + rand(32, HEX), lambda: "key-" + rand(12, HEX)),
        "mailchimp-api-key": gen(
            lambda: rand(32, HEX) + "-us" + rand(2, DIGITS), lambda: rand(32, HEX) + "-eu1"
        ),
        "shopify-token": gen(lambda: "shpat_" + rand(32, HEX), lambda: "shpat_" + rand(8, HEX)),
        "linear-api-key": gen(lambda: "lin_api_" + rand(40), lambda: "lin_api_" + rand(10)),
        "notion-token": gen(
            lambda: "ntn_" + rand(11, DIGITS) + rand(35), lambda: "ntn_" + rand(12)
        ),
        "replicate-api-token": gen(lambda: "r8_" + rand(37), lambda: "r8_" + rand(9)),
        "databricks-token": gen(lambda: "dapi" + rand(32, HEX), lambda: "dapi" + rand(8, HEX)),
        "pulumi-token": gen(lambda: "pul-" + rand(40, HEX), lambda: "pul-" + rand(12, HEX)),
        "doppler-token": gen(lambda: "dp.st." + rand(40), lambda: "dp.xx." + rand(40)),
        "telegram-bot-token": gen(
            lambda: rand(9, DIGITS) + ":AA" + rand(33, URLSAFE),
            lambda: rand(9, DIGITS) + ":BB" + rand(33, URLSAFE),
        ),
        "grafana-service-account-token": gen(
            lambda: f"glsa_{rand(32)}_{rand(8, HEX)}", lambda: f"glsa_{rand(10)}"
        ),
        "newrelic-user-api-key": gen(
            lambda: "NRAK-" + rand(27, UPPER_NUM), lambda: "NRAK-" + rand(9, UPPER_NUM)
        ),
        "age-secret-key": gen(
            lambda: "AGE-SECRET-KEY-1" + rand(58, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"),
            lambda: "AGE-SECRET-KEY-1" + rand(20, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"),
        ),
        "postman-api-key": gen(
            lambda: f"PMAK-{rand(24, HEX)}-{rand(34, HEX)}", lambda: f"PMAK-{rand(10, HEX)}"
        ),
        "azure-storage-account-key": assign(
            "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=",
            lambda: base64.b64encode(secrets.token_bytes(64)).decode(),
            lambda: "AccountKey=" + rand(20),
        ),
        "private-key": gen(
            _pem,
            lambda: "-----BEGIN PUBLIC KEY-----\n" + rand(64, B64) + "\n-----END PUBLIC KEY-----",
        ),
        "database-url": _database_url,
        "generic-secret": assign(
            'api_key = "', _secret_with_digits, lambda: 'password = "hunter2hunter2hunter2"'
        ),
    }


CASES = _cases()
RULES = load_rules()
ENGINES = available_engines()


def test_every_packaged_rule_has_examples_and_there_are_at_least_40() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) >= 40 and len(ids) == len(set(ids))
    assert sorted(ids) == sorted(CASES)
    for required in (
        "google-api-key github-pat github-fine-grained-pat github-oauth github-app-token "
        "github-refresh-token e2b-api-key n8n-api-key jwt openai-api-key anthropic-api-key "
        "aws-access-key-id slack-bot-token stripe-secret-key hashicorp-vault-token generic-secret"
    ).split():
        assert get_rule(required) is not None, required


@pytest.fixture(scope="module", params=ENGINES)
def redactor(request: pytest.FixtureRequest) -> Redactor:
    return Redactor(engine=request.param)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_positive_and_negative(redactor: Redactor, rule_id: str) -> None:
    positive, secret, negative = CASES[rule_id]()
    text = f"log line: {positive}\nnext line"
    out = redactor.redact(text)
    assert secret not in out
    assert f"[REDACTED:{rule_id}]" in out, out
    fs = redactor.findings(text)
    assert [f.name for f in fs] == [rule_id]
    assert text[fs[0].start : fs[0].end] == secret
    assert secret not in repr(fs)
    assert redactor.redact(out) == out  # idempotent

    neg_text = f"log line: {negative}\nnext line"
    assert rule_id not in {f.name for f in redactor.findings(neg_text)}

    rule = get_rule(rule_id)
    assert rule is not None
    assert rule.validate(secret)
    assert not rule.validate(secret + " trailing")
    if " " not in negative and "\n" not in negative:
        assert not rule.validate(negative)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_pragma_suppresses_pattern_hits_on_its_line(redactor: Redactor, rule_id: str) -> None:
    positive, secret, _ = CASES[rule_id]()
    if "\n" in positive:
        pytest.skip("multi-line value")
    text = f"fixture = {positive!r}  # keyguard:allow\nother {positive}"
    out = redactor.redact(text)
    first, second = out.split("\n")
    assert secret in first
    assert secret not in second


def test_pragma_does_not_protect_known_values() -> None:
    r = Redactor()
    value = rand(30)
    r.add_secret("KNOWN", value)
    assert r.redact(f"{value} # keyguard:allow") == "[REDACTED:KNOWN] # keyguard:allow"


def test_must_not_redact_hashes_uuids_identifiers_images() -> None:
    r = Redactor()
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
    samples = [
        f"commit {secrets.token_hex(20)} Merge branch 'main'",
        f"Request-Id: {uuid.uuid4()} trace {uuid.uuid4().hex}",
        f'"integrity": "sha512-{_b64(hashlib.sha512(os.urandom(8)).digest())}"',
        f"{hashlib.sha256(os.urandom(8)).hexdigest()}  dist/app.tar.gz",
        f"sha512: {hashlib.sha512(os.urandom(8)).hexdigest()}",
        f'token = "{secrets.token_hex(20)}"',
        f"token_sha256 = {hashlib.sha256(os.urandom(8)).hexdigest()}",
        "def get_api_key_from_environment_variable(self, token_counter_value): pass",
        "password = os.environ.get('DATABASE_PASSWORD')",
        "const secret = process.env.STRIPE_SECRET_KEY_NAME;",
        f"![plot](data:image/png;base64,{base64.b64encode(png).decode()})",
        json.dumps({"type": "image/png", "data": base64.b64encode(png).decode()}),
        "The task was to ask the desk for a risky sketch; monkey keys everywhere.",
    ]
    for text in samples:
        assert r.findings(text) == [], text
        assert r.redact(text) == text


def test_known_value_inside_an_image_is_still_redacted() -> None:
    r = Redactor()
    value = rand(32)
    r.add_secret("LEAKED", value)
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(500) + value.encode() + os.urandom(500)
    text = f"data:image/png;base64,{base64.b64encode(png).decode()}"
    out = r.redact(text)
    assert "[REDACTED:LEAKED]" in out


def test_user_rule_file_adds_and_overrides(tmp_path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text(
        "[[rules]]\n"
        'id = "acme-token"\n'
        'description = "ACME internal token"\n'
        "regex = '''acme_[0-9a-f]{24}'''\n"
        'keywords = ["acme_"]\n'
        "allowlist = { regexes = ['''^acme_0{24}$'''] }\n"
    )
    r = Redactor(rules=[f])
    tok = "acme_" + rand(24, HEX)
    assert r.redact(f"t={tok}") == "t=[REDACTED:acme-token]"
    assert r.redact("t=acme_" + "0" * 24) == "t=acme_" + "0" * 24
    assert "google-api-key" in {x.id for x in r.rules}


def test_bad_rule_file_names_file_and_rule(tmp_path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[[rules]]\nid = \"broken\"\nregex = '''([a-z'''\n")
    with pytest.raises(RuleError) as exc:
        Redactor(rules=[f])
    assert "bad.toml" in str(exc.value) and "broken" in str(exc.value)
    f.write_text("[[rules]]\nid = \"x\"\nregex = 'a'\ncolour = 'red'\n")
    with pytest.raises(RuleError, match="colour"):
        Redactor(rules=[f])


def test_engines_agree_on_a_mixed_corpus() -> None:
    parts = []
    for make in CASES.values():
        pos, _, neg = make()
        parts += [f"a {pos} b", f"c {neg} d", "ordinary words and ids_like_this"]
    text = "\n".join(parts)
    results = {e: Redactor(engine=e).redact(text) for e in ENGINES}
    first = next(iter(results.values()))
    assert all(v == first for v in results.values())
