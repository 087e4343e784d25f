"""The environment validator: every problem at once, named by secret and rule, no values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyguard.policy import Policy, SecretSpec
from keyguard.secret import Secret
from keyguard.sources import DotenvSource, EnvSource
from keyguard.store import SecretStore
from keyguard.validate import (
    Problem,
    check_environment,
    check_secret,
    environment_view,
    looks_like_secret_name,
)
from tests.fakes import (
    e2b_api_key,
    github_classic,
    github_fine_grained,
    google_api_key,
    jwt,
    n8n_api_key,
    rand,
    the_four,
)

POLICY = {
    "version": 1,
    "secrets": {
        "GEMINI_API_KEY": {"format": "google-api-key"},
        "GITHUB_PERSONAL_ACCESS_TOKEN": {"format": ["github-pat", "github-fine-grained-pat"]},
        "E2B_API_KEY": {"format": "e2b-api-key"},
        "N8N_API_KEY": {"format": "n8n-api-key"},
        "OPTIONAL_TOKEN": {"required": False},
        "RENAMED": {"from": "env://LEGACY_RENAMED_KEY", "required": False},
    },
    "settings": {"allowed_env": ["EXPECTED_TOKEN"]},
}


@pytest.fixture
def policy() -> Policy:
    return Policy.from_dict(POLICY)


def store_for(policy: Policy, environ: dict[str, str]) -> SecretStore:
    return SecretStore([EnvSource(environ)], policy=policy)


def assert_no_values(problems: list[Problem], *values: str) -> None:
    text = json.dumps([p.to_dict() for p in problems]) + " ".join(map(str, problems))
    for value in values:
        assert value not in text


# --------------------------------------------------------------------------- check_secret


@pytest.mark.parametrize(
    ("rule_id", "make"),
    [
        ("google-api-key", google_api_key),
        ("github-pat", github_classic),
        ("github-fine-grained-pat", github_fine_grained),
        ("e2b-api-key", e2b_api_key),
        ("n8n-api-key", n8n_api_key),
        ("jwt", jwt),
    ],
)
def test_well_formed_values_pass(rule_id: str, make) -> None:
    value = make()
    assert check_secret("X", Secret("X", value), SecretSpec(format=rule_id)) == []
    assert check_secret("X", value, SecretSpec(format=rule_id)) == []


@pytest.mark.parametrize(
    ("rule_id", "make"),
    [
        ("google-api-key", e2b_api_key),
        ("github-pat", github_fine_grained),
        ("e2b-api-key", lambda: "e2b_" + rand(40)),  # not hex
        ("n8n-api-key", lambda: jwt({"iss": "someone-else", "sub": "x"})),
        ("google-api-key", lambda: google_api_key()[:-1]),
    ],
)
def test_wrong_format_names_the_rule_not_the_value(rule_id: str, make) -> None:
    value = make()
    problems = check_secret("KEY", Secret("KEY", value), SecretSpec(format=rule_id))
    assert [(p.name, p.rule, p.severity) for p in problems] == [("KEY", rule_id, "error")]
    assert f"does not match format {rule_id}" in problems[0].message
    assert_no_values(problems, value)


GITHUB_FORMATS = ["github-pat", "github-fine-grained-pat"]


@pytest.mark.parametrize("make", [github_classic, github_fine_grained])
def test_format_list_passes_a_value_of_any_listed_format(make) -> None:
    value = make()
    spec = SecretSpec(format=GITHUB_FORMATS)
    assert check_secret("GITHUB_PERSONAL_ACCESS_TOKEN", Secret("T", value), spec) == []
    assert check_secret("GITHUB_PERSONAL_ACCESS_TOKEN", value, spec) == []


def test_format_list_failure_names_every_accepted_format_not_the_value() -> None:
    value = google_api_key()
    name = "GITHUB_PERSONAL_ACCESS_TOKEN"
    problems = check_secret(name, Secret(name, value), SecretSpec(format=GITHUB_FORMATS))
    assert [(p.name, p.rule, p.severity) for p in problems] == [
        (name, "github-pat|github-fine-grained-pat", "error")
    ]
    assert "does not match format github-pat or github-fine-grained-pat" in problems[0].message
    assert_no_values(problems, value)


def test_format_list_of_one_id_reads_like_the_single_id() -> None:
    value = e2b_api_key()
    problems = check_secret("K", value, SecretSpec(format=["google-api-key"]))
    single = check_secret("K", value, SecretSpec(format="google-api-key"))
    assert problems == single and [p.rule for p in single] == ["google-api-key"]


def test_missing_required_and_optional() -> None:
    problems = check_secret("GEMINI_API_KEY", None, SecretSpec())
    assert [(p.name, p.rule) for p in problems] == [("GEMINI_API_KEY", "required")]
    assert ".env.template" in problems[0].message
    assert check_secret("OPT", None, SecretSpec(required=False)) == []
    assert [p.rule for p in check_secret("E", "", SecretSpec())] == ["required"]


def test_min_length_the_guides_check() -> None:
    value = rand(9)
    problems = check_secret("K", Secret("K", value), SecretSpec())
    assert [p.rule for p in problems] == ["min_length"]
    assert "minimum of 10 characters" in problems[0].message
    assert_no_values(problems, value)
    assert check_secret("K", Secret("K", rand(10)), SecretSpec()) == []
    assert check_secret("K", Secret("K", rand(3)), SecretSpec(min_length=0)) == []


def test_all_problems_of_one_value_at_once() -> None:
    value = "your_gemini_api_key_here "
    problems = check_secret("G", Secret("G", value), SecretSpec(format="google-api-key"))
    assert [p.rule for p in problems] == ["whitespace", "template-value", "google-api-key"]
    assert_no_values(problems, value, value.strip())


def test_placeholder_is_not_a_value() -> None:
    placeholder = Secret("G", google_api_key()).placeholder
    problems = check_secret("G", Secret("G", placeholder), SecretSpec())
    assert [p.rule for p in problems] == ["template-value"]


@pytest.mark.parametrize(
    ("name", "secretish"),
    [
        ("OPENAI_API_KEY", True),
        ("SOME_TOKEN", True),
        ("CLIENT_SECRET", True),
        ("DB_PASSWORD", True),
        ("PASSWORD_FILE", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("my_service_apikey", True),
        ("GH_PAT", True),
        ("PATH", False),
        ("HOME", False),
        ("KEYBOARD", False),
        ("TOKENIZERS_PARALLELISM", False),
        ("DEBUG", False),
        ("SSH_AUTH_SOCK", False),
    ],
)
def test_looks_like_secret_name(name: str, secretish: bool) -> None:
    assert looks_like_secret_name(name) is secretish


# --------------------------------------------------------------------------- check_environment


def test_clean_environment(policy: Policy) -> None:
    values = the_four()
    report = check_environment(policy, store_for(policy, values), values)
    assert report.ok and bool(report) and report.problems == []
    statuses = {s.name: s.status for s in report.secrets}
    assert statuses["GEMINI_API_KEY"] == "ok" and statuses["OPTIONAL_TOKEN"] == "unset"
    gemini = next(s for s in report.secrets if s.name == "GEMINI_API_KEY")
    assert gemini.origin == "env://GEMINI_API_KEY"
    assert gemini.masked == Secret("x", values["GEMINI_API_KEY"]).masked
    dumped = json.dumps(report.to_dict())
    for value in values.values():
        assert value not in dumped


def test_every_problem_reported_at_once(policy: Policy) -> None:
    values = the_four()
    environ = {
        "GEMINI_API_KEY": rand(6),
        "E2B_API_KEY": google_api_key(),
        "DEBUG": "True",
        "ENVIRONMENT": "production",
        "STRAY_API_KEY": rand(30),
        "EXPECTED_TOKEN": rand(30),
        "LEGACY_RENAMED_KEY": rand(30),
        "EMPTY_TOKEN": "",
        "GPG_KEY": rand(40),
        "N8N_API_KEY": values["N8N_API_KEY"],
    }
    report = check_environment(policy, store_for(policy, environ), environ)
    found = sorted((p.name, p.rule, p.severity) for p in report.problems)
    assert found == [
        ("DEBUG", "debug-in-production", "error"),
        ("E2B_API_KEY", "e2b-api-key", "error"),
        ("GEMINI_API_KEY", "google-api-key", "error"),
        ("GEMINI_API_KEY", "min_length", "error"),
        ("GITHUB_PERSONAL_ACCESS_TOKEN", "required", "error"),
        ("STRAY_API_KEY", "unexpected-secret", "warning"),
    ]
    assert not report.ok and len(report.errors) == 5 and len(report.warnings) == 1
    statuses = {s.name: s.status for s in report.secrets}
    assert statuses == {
        "GEMINI_API_KEY": "invalid",
        "GITHUB_PERSONAL_ACCESS_TOKEN": "missing",
        "E2B_API_KEY": "invalid",
        "N8N_API_KEY": "ok",
        "OPTIONAL_TOKEN": "unset",
        "RENAMED": "ok",
    }
    secret_values = [v for k, v in environ.items() if k not in ("DEBUG", "ENVIRONMENT") and v]
    assert_no_values(report.problems, *secret_values)
    dumped = json.dumps(report.to_dict())
    for value in secret_values:
        assert value not in dumped


@pytest.mark.parametrize(
    ("debug", "environment", "refused"),
    [
        ("true", "production", True),
        ("1", "PRODUCTION", True),
        ("yes", "prod", True),
        ("false", "production", False),
        ("true", "development", False),
        ("true", "", False),
    ],
)
def test_debug_refused_in_production(
    policy: Policy, debug: str, environment: str, refused: bool
) -> None:
    values = the_four()
    environ = {**values, "DEBUG": debug, "ENVIRONMENT": environment}
    report = check_environment(policy, store_for(policy, values), environ)
    assert [p.rule for p in report.problems] == (["debug-in-production"] if refused else [])


def test_debug_settings_are_configurable() -> None:
    policy = Policy.from_dict({"settings": {"debug_env": "APP_DEBUG", "environment_env": "STAGE"}})
    report = check_environment(policy, store_for(policy, {}), {"APP_DEBUG": "on", "STAGE": "prod"})
    assert [(p.name, p.rule) for p in report.problems] == [("APP_DEBUG", "debug-in-production")]
    report = check_environment(
        policy, store_for(policy, {}), {"DEBUG": "true", "ENVIRONMENT": "production"}
    )
    assert report.ok


def test_extra_names_are_screened(policy: Policy) -> None:
    values = the_four()
    report = check_environment(
        policy, store_for(policy, values), values, extra_names=["FROM_DOTENV_TOKEN", "PLAIN"]
    )
    assert [(p.name, p.severity) for p in report.problems] == [("FROM_DOTENV_TOKEN", "warning")]
    assert report.ok  # warnings alone do not fail


def test_broken_dotenv_is_one_environment_problem(tmp_path: Path, policy: Policy) -> None:
    value = google_api_key()
    (tmp_path / ".env").write_text(f'GEMINI_API_KEY="{value}\nOTHER=1\n', encoding="utf-8")
    store = SecretStore([EnvSource({}), DotenvSource([".env"], base_dir=tmp_path)], policy=policy)
    report = check_environment(policy, store, {})
    # The parse error once, as an environment problem naming file:line ...
    assert [p.rule for p in report.problems] == ["env-file-syntax"]
    (problem,) = report.environment
    assert problem.name == str(tmp_path / ".env") and ".env:1: cannot parse" in problem.message
    # ... and every secret it hides marked unavailable, pointing to it.
    assert {s.name: s.status for s in report.secrets} == dict.fromkeys(
        POLICY["secrets"], "unavailable"
    )
    for status in report.secrets:
        (hidden,) = status.problems
        assert hidden.cause == "env-file-syntax" and ".env:1 is fixed" in hidden.message
    assert not report.ok and len(report.errors) == 1
    assert_no_values([*report.problems, *(p for s in report.secrets for p in s.problems)], value)
    assert value not in json.dumps(report.to_dict())


def test_broken_dotenv_does_not_hide_secrets_found_first(tmp_path: Path, policy: Policy) -> None:
    values = the_four()
    (tmp_path / ".env").write_text('BROKEN LINE "unterminated\n', encoding="utf-8")
    store = SecretStore(
        [
            EnvSource({"GEMINI_API_KEY": values["GEMINI_API_KEY"]}),
            DotenvSource([".env"], base_dir=tmp_path),
        ],
        policy=policy,
    )
    report = check_environment(policy, store, {})
    statuses = {s.name: s.status for s in report.secrets}
    assert statuses["GEMINI_API_KEY"] == "ok" and statuses["E2B_API_KEY"] == "unavailable"
    assert [(p.rule, p.name) for p in report.environment] == [
        ("env-file-syntax", str(tmp_path / ".env"))
    ]


def test_unreadable_dotenv_is_one_environment_problem(tmp_path: Path, policy: Policy) -> None:
    (tmp_path / ".env").mkdir()
    store = SecretStore([EnvSource({}), DotenvSource([".env"], base_dir=tmp_path)], policy=policy)
    report = check_environment(policy, store, {})
    assert [p.rule for p in report.problems] == ["env-file-unreadable"]
    assert "is a directory" in report.environment[0].message
    assert {s.status for s in report.secrets} == {"unavailable"}


def test_other_source_errors_stay_on_the_secret(tmp_path: Path, policy: Policy) -> None:
    (tmp_path / "GEMINI_API_KEY").write_text("", encoding="utf-8")  # an empty secret file
    store = SecretStore.from_policy(
        Policy.from_dict(
            {
                "sources": {"order": ["files"], "secrets_dir": str(tmp_path)},
                "secrets": {"GEMINI_API_KEY": {}},
            }
        )
    )
    policy = store.policy
    report = check_environment(policy, store, {})
    assert [(p.name, p.rule) for p in report.problems] == [("GEMINI_API_KEY", "source")]
    assert report.secrets[0].status == "missing" and report.environment == []


class _DictStore:
    """A dict-backed stand-in: validate only needs try_get and origin."""

    def __init__(self, secrets: dict[str, Secret]) -> None:
        self._secrets = secrets

    def try_get(self, name: str) -> Secret | None:
        return self._secrets.get(name)

    def origin(self, name: str) -> str:
        raise RuntimeError("no origin")  # falls back to Secret.source


def test_minimal_store_protocol(policy: Policy) -> None:
    secrets = {k: Secret(k, v, source="test") for k, v in the_four().items()}
    report = check_environment(policy, _DictStore(secrets), {})
    assert report.ok
    assert {s.origin for s in report.secrets if s.present} == {"test"}


def test_environment_view_reads_debug_settings_and_names_from_dotenv(
    tmp_path: Path, policy: Policy
) -> None:
    value = google_api_key()
    (tmp_path / ".env").write_text(
        f"GEMINI_API_KEY={value}\nDEBUG=true\nENVIRONMENT=production\nSTRAY_TOKEN=x\n",
        encoding="utf-8",
    )
    view, names = environment_view(policy, {"ENVIRONMENT": "staging"}, project_dir=tmp_path)
    assert names == ["GEMINI_API_KEY", "DEBUG", "ENVIRONMENT", "STRAY_TOKEN"]
    assert view == {"ENVIRONMENT": "staging", "DEBUG": "true"}  # the process env wins
    assert value not in view.values()
    view, _ = environment_view(policy, {}, project_dir=tmp_path)
    report = check_environment(policy, store_for(policy, {}), view, extra_names=names)
    assert {p.rule for p in report.environment} == {"debug-in-production", "unexpected-secret"}
    no_dotenv = Policy.from_dict({"sources": {"order": ["env"]}})
    assert environment_view(no_dotenv, {"A": "1"}, project_dir=tmp_path) == ({"A": "1"}, [])
