"""Policy loading (every error message: file, line, key, fix) and the decisions."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyguard.errors import PolicyError
from keyguard.policy import Decision, Policy, PolicyWarning, is_loopback, parse_host_pattern
from tests.fakes import github_classic, google_api_key

BASE = """\
version: 1
secrets:
  GEMINI_API_KEY:
    format: google-api-key
    inject:
      hosts: [generativelanguage.googleapis.com]
      header: x-goog-api-key
  E2B_API_KEY:
    format: e2b-api-key
    inject: {hosts: [api.e2b.dev, "*.e2b.dev"], header: X-API-KEY}
  LOCAL_KEY:
    inject: {hosts: ["localhost", "127.0.0.1", "[::1]"], header: Authorization,
             template: "Bearer {value}"}
  PORTED_KEY:
    inject: {hosts: ["api.example.com:8443"], header: X-Key}
  HTTP_KEY:
    allow_http: true
    inject: {hosts: [plain.example.com], header: X-Key}
  NOWHERE_KEY:
    required: false
tools:
  gemini_chat:
    secrets: [GEMINI_API_KEY]
  code_interpreter:
    secrets: [E2B_API_KEY]
    sandbox_env: []
  tester:
    secrets: [LOCAL_KEY, PORTED_KEY, HTTP_KEY, NOWHERE_KEY]
    sandbox_env: [LOCAL_KEY]
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, name: str = "policy.yaml") -> PolicyError:
    path = write(tmp_path, text, name)
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    return info.value


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.loads(BASE, "base.yaml")


# --------------------------------------------------------------------------- load errors


def test_unknown_top_level_field_names_file_line_key_and_suggestion(tmp_path: Path) -> None:
    err = load_error(tmp_path, "version: 1\nsecret:\n  A: {}\n")
    text = str(err)
    assert "policy.yaml:2" in text
    assert "secret" in text and "did you mean 'secrets'?" in text
    assert (Path(err.file).name, err.line, err.key) == ("policy.yaml", 2, "secret")


def test_unknown_nested_field_suggests_closest(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """\
        version: 1
        secrets:
          GEMINI_API_KEY:
            inject:
              hots: [generativelanguage.googleapis.com]
        """,
    )
    assert err.line == 5
    assert err.key == "secrets.GEMINI_API_KEY.inject.hots"
    assert "unknown field 'hots'; did you mean 'hosts'?" in str(err)
    assert str(err).startswith(str(tmp_path / "policy.yaml") + ":5:")


def test_unknown_field_without_close_match_lists_valid_fields(tmp_path: Path) -> None:
    err = load_error(tmp_path, "tools:\n  t:\n    zzzzzz: 1\n")
    assert err.line == 3 and err.key == "tools.t.zzzzzz"
    assert "valid fields here: secrets, sandbox_env, description" in str(err)


def test_from_alias_is_the_yaml_key(tmp_path: Path) -> None:
    policy = Policy.load(write(tmp_path, "secrets:\n  A:\n    from: env://OTHER_NAME\n"))
    assert policy.secrets["A"].from_ref == "env://OTHER_NAME"
    err = load_error(tmp_path, "secrets:\n  A:\n    frm: env://X\n")
    assert "did you mean 'from'?" in str(err) and err.line == 3


def test_invalid_reference_in_from(tmp_path: Path) -> None:
    err = load_error(tmp_path, "secrets:\n  A:\n    from: vault://only-mount\n")
    assert err.line == 3 and err.key == "secrets.A.from"
    assert "vault://<mount>/<path>#<field>" in str(err)


def test_unknown_secret_named_by_a_tool(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """\
        version: 1
        secrets:
          GEMINI_API_KEY: {}
        tools:
          chat:
            secrets:
              - GEMINI_APIKEY
        """,
    )
    assert (err.line, err.key) == (7, "tools.chat.secrets[0]")
    assert "unknown secret 'GEMINI_APIKEY'" in str(err)
    assert "did you mean 'GEMINI_API_KEY'?" in str(err)


def test_unknown_secret_in_sandbox_env_and_sandbox_without_grant(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """\
        secrets:
          E2B_API_KEY: {}
          OTHER: {}
        tools:
          code_interpreter:
            secrets: [E2B_API_KEY]
            sandbox_env: [NOPE, OTHER]
        """,
    )
    problems = err.problems
    assert [p["key"] for p in problems] == [
        "tools.code_interpreter.sandbox_env[0]",
        "tools.code_interpreter.sandbox_env[1]",
    ]
    assert all(p["line"] == 7 for p in problems)
    assert "unknown secret 'NOPE'" in problems[0]["message"]
    assert "declare it under secrets:" in problems[0]["message"]
    assert "not in tools.code_interpreter.secrets; add it" in problems[1]["message"]
    assert str(err).startswith("2 problems in the policy:")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("https://api.github.com/v1", "write 'api.github.com'"),
        ("api.github.com/repos", "write 'api.github.com'"),
        ("http://localhost:5678", "write 'localhost:5678'"),
        ("*.com", "too broad"),
        ("*", "would allow every host"),
        ("api.*.example.com", "wildcard must be the whole first label"),
        ("*api.example.com", "wildcard must be the whole first label"),
        ("api.example.com:0", "port must be a number from 1 to 65535"),
        ("api.example.com:99999", "port must be a number from 1 to 65535"),
        ("api.example.com:http", "port must be a number"),
        ("api example.com", "not a host name"),
        ("1.2.3.999", "not a valid IPv4 address"),
        ("[::zz]", "not an IPv6 address"),
        ("[::1", "unclosed '['"),
        ("", "empty host"),
    ],
)
def test_invalid_host_pattern(tmp_path: Path, host: str, expected: str) -> None:
    err = load_error(
        tmp_path,
        f"""\
        secrets:
          A:
            inject:
              header: X-Key
              hosts:
                - ok.example.com
                - {yaml.safe_dump(host, default_style='"').strip()}
        """,
    )
    assert (err.line, err.key) == (7, "secrets.A.inject.hosts[1]")
    assert "invalid host pattern" in str(err)
    assert expected in str(err)


@pytest.mark.parametrize(
    ("text", "host", "wildcard", "port"),
    [
        ("api.github.com", "api.github.com", False, None),
        ("API.GitHub.com.", "api.github.com", False, None),
        ("*.e2b.dev", "e2b.dev", True, None),
        ("n8n.example.com:5678", "n8n.example.com", False, 5678),
        ("localhost", "localhost", False, None),
        ("n8n", "n8n", False, None),
        ("127.0.0.1:8080", "127.0.0.1", False, 8080),
        ("[::1]", "::1", False, None),
        ("[::1]:9000", "::1", False, 9000),
        ("::1", "::1", False, None),
    ],
)
def test_valid_host_patterns(text: str, host: str, wildcard: bool, port: int | None) -> None:
    pattern = parse_host_pattern(text)
    assert (pattern.host, pattern.wildcard, pattern.port) == (host, wildcard, port)


def test_unknown_format_rule_lists_close_ids(tmp_path: Path) -> None:
    err = load_error(tmp_path, "secrets:\n  G:\n    format: google-api-kee\n")
    assert (err.line, err.key) == (3, "secrets.G.format")
    assert "unknown format rule id 'google-api-kee'" in str(err)
    assert "did you mean 'google-api-key'" in str(err)


def test_unknown_format_rule_without_close_ids_lists_known(tmp_path: Path) -> None:
    err = load_error(tmp_path, "secrets:\n  G:\n    format: qqqqqqqqq\n")
    assert "known rule ids:" in str(err) and "e2b-api-key" in str(err)


def test_format_list_means_any_of(tmp_path: Path) -> None:
    text = "secrets:\n  T:\n    format: [github-pat, github-fine-grained-pat]\n"
    policy = Policy.load(write(tmp_path, text))
    spec = policy.secrets["T"]
    assert spec.format == ["github-pat", "github-fine-grained-pat"]
    assert spec.formats == ("github-pat", "github-fine-grained-pat")
    # A single id stays a string, as written.
    single = Policy.from_dict({"secrets": {"G": {"format": "google-api-key"}}})
    assert single.secrets["G"].format == "google-api-key"
    assert single.secrets["G"].formats == ("google-api-key",)
    assert Policy.from_dict({"secrets": {"N": {}}}).secrets["N"].formats == ()


def test_unknown_format_id_inside_a_list_names_its_index(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        "secrets:\n  T:\n    format:\n      - github-pat\n      - github-fine-grain-pat\n",
    )
    assert (err.line, err.key) == (5, "secrets.T.format[1]")
    assert "unknown format rule id 'github-fine-grain-pat'" in str(err)
    assert "did you mean 'github-fine-grained-pat'" in str(err)
    assert [p["key"] for p in err.problems] == ["secrets.T.format[1]"]


def test_pasted_key_as_a_format_list_item_is_masked(tmp_path: Path) -> None:
    key = google_api_key()
    err = load_error(tmp_path, f"secrets:\n  T:\n    format: [github-pat, '{key}']\n")
    assert err.key == "secrets.T.format[1]" and "unknown format rule id" in str(err)
    assert key not in str(err)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("[]", "an empty format list accepts no value"),
        ("5", "format must be a rule id or a list of rule ids, not a number"),
        ("{a: b}", "format must be a rule id or a list of rule ids, not a mapping"),
        ("[github-pat, 5]", "format[1] must be a rule id, not a number"),
    ],
)
def test_format_of_the_wrong_shape_is_rejected(tmp_path: Path, written: str, expected: str) -> None:
    err = load_error(tmp_path, f"secrets:\n  T:\n    format: {written}\n")
    assert (err.line, err.key) == (3, "secrets.T.format")
    assert expected in str(err)
    assert len(err.problems) == 1  # one sentence, not one per member of the union


@pytest.mark.parametrize(
    "rule_id",
    [
        "google-api-key",
        "github-pat",
        "github-fine-grained-pat",
        "github-oauth",
        "github-app-token",
        "github-refresh-token",
        "e2b-api-key",
        "n8n-api-key",
        "jwt",
        "openai-api-key",
        "anthropic-api-key",
        "aws-access-key-id",
        "slack-bot-token",
        "stripe-secret-key",
        "hashicorp-vault-token",
        "generic-secret",
    ],
)
def test_documented_format_ids_load(rule_id: str) -> None:
    policy = Policy.from_dict({"secrets": {"A": {"format": rule_id}}})
    assert policy.secrets["A"].format == rule_id


def test_invalid_yaml_reports_line_and_column(tmp_path: Path) -> None:
    err = load_error(tmp_path, "version: 1\nsecrets:\n  A: {inject: [\n")
    assert "invalid YAML" in str(err)
    assert err.line == 4 and "column" in str(err)
    err = load_error(tmp_path, "version: 1\n  bad indent: x\n")
    assert err.line == 2 and "invalid YAML, column" in str(err)


def test_wrong_version(tmp_path: Path) -> None:
    err = load_error(tmp_path, "# comment\nversion: 2\nsecrets: {}\n")
    assert (err.line, err.key) == (2, "version")
    assert "unsupported policy version 2" in str(err) and "'version: 1'" in str(err)
    assert "version 'one'" in str(load_error(tmp_path, "version: one\n"))


def test_duplicate_key_in_one_file(tmp_path: Path) -> None:
    err = load_error(tmp_path, "secrets:\n  A: {}\n  B: {}\n  A: {required: false}\n")
    assert (err.line, err.key) == (4, "secrets.A")
    assert "duplicate key (first defined at line 2)" in str(err)


def test_same_secret_in_two_files_names_both(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "version: 1\nsecrets:\n  A: {}\n", "a.yaml")
    write(folder, "version: 1\n\nsecrets:\n  A: {}\n", "b.yml")
    with pytest.raises(PolicyError) as info:
        Policy.load(folder)
    text = str(info.value)
    assert f"{folder / 'a.yaml'}:3" in text and f"{folder / 'b.yml'}:4" in text
    assert "secret 'A' is defined twice" in text and "keep one" in text


def test_same_tool_and_sources_in_two_files(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "tools:\n  t: {}\nsources: {ttl: 1}\n", "a.yaml")
    write(folder, "tools:\n  t: {}\nsources: {ttl: 2}\n", "b.yaml")
    with pytest.raises(PolicyError) as info:
        Policy.load(folder)
    assert "tool 't' is defined twice" in str(info.value)
    assert "'sources' is defined twice" in str(info.value)


def test_folder_merges_across_files(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "version: 1\nsecrets:\n  A: {inject: {hosts: [a.example.com]}}\n", "1.yaml")
    write(folder, "version: 1\ntools:\n  t: {secrets: [A]}\n", "2.yml")
    (folder / "notes.txt").write_text("not: [yaml", encoding="utf-8")
    policy = Policy.load(folder)
    assert set(policy.secrets) == {"A"} and set(policy.tools) == {"t"}
    assert len(policy.files) == 2
    assert policy.project_dir == tmp_path.resolve()
    assert policy.may_send("A", "a.example.com", "t")


def test_unknown_secret_across_files_points_at_the_tool_file(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "secrets:\n  A: {}\n", "1.yaml")
    write(folder, "tools:\n  t:\n    secrets: [B]\n", "2.yaml")
    with pytest.raises(PolicyError) as info:
        Policy.load(folder)
    assert info.value.file == str(folder / "2.yaml") and info.value.line == 3


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="keyguard init"):
        Policy.load(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match=r"no \*\.yaml policy files"):
        Policy.load(tmp_path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    err = load_error(tmp_path, "- a\n- b\n")
    assert "must be a mapping" in str(err) and "not a list" in str(err) and err.line == 1


def test_wrong_types_name_the_key(tmp_path: Path) -> None:
    err = load_error(tmp_path, "tools:\n  t:\n    secrets: {a: 1}\n")
    assert (err.line, err.key) == (3, "tools.t.secrets")
    assert "valid list, got a mapping" in str(err)
    err = load_error(tmp_path, "secrets:\n  A:\n    min_length: -1\n")
    assert err.key == "secrets.A.min_length" and err.line == 3


def test_literal_choices_suggest(tmp_path: Path) -> None:
    err = load_error(tmp_path, "sources:\n  order: [env, vaul]\n  vault: {auth: tokn}\n")
    assert [p["key"] for p in err.problems] == ["sources.order[1]", "sources.vault.auth"]
    assert "did you mean 'vault'?" in err.problems[0]["message"]
    assert "did you mean 'token'?" in err.problems[1]["message"]


def test_injection_form_errors(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """\
        secrets:
          A:
            inject:
              hosts: [a.example.com]
              header: "X Key"
              template: "Bearer {token}"
              query: key
        """,
    )
    messages = {p["key"]: p["message"] for p in err.problems}
    assert "choose one injection form" in messages["secrets.A.inject.query"]
    assert "not a valid HTTP header name" in messages["secrets.A.inject.header"]
    assert "must contain '{value}'" in messages["secrets.A.inject.template"]


def test_invalid_secret_name(tmp_path: Path) -> None:
    err = load_error(tmp_path, "secrets:\n  9LIVES: {}\n")
    assert err.key == "secrets.9LIVES" and "environment-variable style name" in str(err)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """\
        secrets:
          A: {format: nope-rule, inject: {hosts: ["http://x.example.com"]}}
        tools:
          t: {secrets: [B]}
        """,
    )
    keys = [p["key"] for p in err.problems]
    assert keys == ["secrets.A.format", "secrets.A.inject.hosts[0]", "tools.t.secrets[0]"]


def test_query_injection_warns(tmp_path: Path) -> None:
    path = write(tmp_path, "secrets:\n  A:\n    inject: {hosts: [a.example.com], query: key}\n")
    with pytest.warns(PolicyWarning, match="URL query parameter"):
        policy = Policy.load(path)
    assert len(policy.warnings) == 1
    assert f"{path}:3: secrets.A.inject.query" in policy.warnings[0]


def test_form_without_hosts_warns() -> None:
    with pytest.warns(PolicyWarning, match="never sent"):
        policy = Policy.from_dict({"secrets": {"A": {"inject": {"header": "X-Key"}}}})
    assert not policy.may_send("A", "anything.example.com", None)


def test_empty_sections_and_null_specs_mean_defaults() -> None:
    policy = Policy.loads("version: 1\nsecrets:\n  A:\ntools:\n")
    assert policy.secrets["A"].required is True and policy.secrets["A"].min_length == 10
    assert policy.tools == {}
    assert Policy.loads("").secrets == {}


def test_from_dict_errors_name_the_source_without_line() -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_dict({"secrets": {"A": {"hostz": []}}}, source="inline")
    assert str(info.value).startswith("inline: secrets.A.hostz: unknown field")
    assert info.value.line is None


def test_errors_never_echo_a_pasted_key(tmp_path: Path) -> None:
    key = google_api_key()
    token = github_classic()
    texts = [
        f"secrets:\n  A:\n    inject: {{hosts: [a.example.com], template: 'Bearer {key}'}}\n",
        f"secrets:\n  A:\n    format: '{key}'\n",
        f"secrets:\n  A:\n    {token}: 1\n",
        f"secrets:\n  A:\n    inject: {{hosts: ['{key}.example.com/x']}}\n",
        f"version: '{key}'\n",
        f"tools:\n  t: {{secrets: ['{token}']}}\n",
    ]
    for text in texts:
        err = load_error(tmp_path, text)
        shown = str(err).lower()
        assert key.lower() not in shown and token.lower() not in shown, str(err)


# --------------------------------------------------------------------------- decisions

MATRIX = [
    # secret, host, tool, scheme, port, allowed, reason fragment
    ("GEMINI_API_KEY", "generativelanguage.googleapis.com", "gemini_chat", "https", None, True,
     "matches its inject.hosts entry"),
    ("GEMINI_API_KEY", "GenerativeLanguage.googleapis.com.", "gemini_chat", "https", 443, True,
     "over https"),
    ("GEMINI_API_KEY", "evil.example.com", "gemini_chat", "https", None, False,
     "is not in the inject.hosts of GEMINI_API_KEY"),
    ("GEMINI_API_KEY", "generativelanguage.googleapis.com", "code_interpreter", "https", None,
     False, "is not granted GEMINI_API_KEY"),
    ("GEMINI_API_KEY", "generativelanguage.googleapis.com", "unknown_tool", "https", None, False,
     "is not listed under tools:"),
    ("GEMINI_API_KEY", "generativelanguage.googleapis.com", None, "https", None, False,
     "outside any tool context"),
    ("GEMINI_API_KEY", "generativelanguage.googleapis.com", "gemini_chat", "http", None, False,
     "only over https"),
    ("GEMINI_API_KEY", "generativelanguage.googleapis.com", "gemini_chat", "https", 8443, False,
     "port 8443 does not"),
    ("GEMINI_API_KEY", "generativelanguage.googleapis.com", "gemini_chat", "ftp", None, False,
     "not http(s)"),
    ("E2B_API_KEY", "api.e2b.dev", "code_interpreter", "https", None, True, "'api.e2b.dev'"),
    ("E2B_API_KEY", "sandbox.e2b.dev", "code_interpreter", "https", None, True, "'*.e2b.dev'"),
    ("E2B_API_KEY", "49999-abc.sandbox.e2b.dev", "code_interpreter", "https", None, True,
     "'*.e2b.dev'"),
    ("E2B_API_KEY", "e2b.dev", "code_interpreter", "https", None, False, "not in the inject"),
    ("E2B_API_KEY", "e2b.dev.evil.com", "code_interpreter", "https", None, False, "not in"),
    ("E2B_API_KEY", "evile2b.dev", "code_interpreter", "https", None, False, "not in"),
    ("LOCAL_KEY", "localhost", "tester", "http", 5678, True, "over http"),
    ("LOCAL_KEY", "127.0.0.1", "tester", "http", 12345, True, "'127.0.0.1'"),
    ("LOCAL_KEY", "[::1]", "tester", "http", 9999, True, "'[::1]'"),
    ("LOCAL_KEY", "127.0.0.2", "tester", "http", None, False, "not in"),
    ("PORTED_KEY", "api.example.com", "tester", "https", 8443, True, "api.example.com:8443"),
    ("PORTED_KEY", "api.example.com", "tester", "https", None, False, "allowed: 8443"),
    ("HTTP_KEY", "plain.example.com", "tester", "http", None, True, "over http"),
    ("HTTP_KEY", "plain.example.com", "tester", "http", 8080, False, "port 8080"),
    ("NOWHERE_KEY", "localhost", "tester", "https", None, False, "has no inject.hosts"),
    ("UNDECLARED", "localhost", "tester", "https", None, False, "not declared"),
    ("E2B_API_KEY", "x..e2b.dev", "code_interpreter", "https", None, False, "not a valid host"),
    ("E2B_API_KEY", "api.e2b.dev ", "code_interpreter", "https", None, False, "not a valid"),
    ("E2B_API_KEY", "api.e2b.dev\n", "code_interpreter", "https", None, False, "not a valid"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("secret", "host", "tool", "scheme", "port", "allowed", "fragment"), MATRIX
)
def test_decision_matrix(
    policy: Policy,
    secret: str,
    host: str,
    tool: str | None,
    scheme: str,
    port: int | None,
    allowed: bool,
    fragment: str,
) -> None:
    decision = policy.may_send(secret, host, tool, scheme=scheme, port=port)
    assert isinstance(decision, Decision)
    assert bool(decision) is allowed
    assert fragment in decision.reason, decision.reason
    assert (decision.secret, decision.host, decision.tool) == (secret, host, tool)


def test_default_tool_applies_outside_any_tool_context() -> None:
    policy = Policy.from_dict(
        {
            "secrets": {"A": {"inject": {"hosts": ["a.example.com"], "header": "X-A"}}},
            "tools": {"default": {"secrets": ["A"]}},
        }
    )
    decision = policy.may_send("A", "a.example.com", None)
    assert decision and "no tool context -> 'default'" in decision.reason
    assert policy.tool_may_use(None, "A") and policy.tool_may_use("default", "A")
    assert not policy.tool_may_use("other", "A")
    assert [n for n, _ in policy.injections_for("a.example.com", None)] == ["A"]


def test_grants_and_sandbox_env(policy: Policy) -> None:
    assert policy.tool_may_use("gemini_chat", "GEMINI_API_KEY")
    assert not policy.tool_may_use("gemini_chat", "E2B_API_KEY")
    assert not policy.tool_may_use(None, "GEMINI_API_KEY")
    assert policy.sandbox_env("code_interpreter") == []
    assert policy.sandbox_env("tester") == ["LOCAL_KEY"]
    assert policy.sandbox_env("nobody") == [] and policy.sandbox_env(None) == []
    assert "NOWHERE_KEY" not in policy.required_secrets()
    assert "GEMINI_API_KEY" in policy.required_secrets()


def test_injections_for(policy: Policy) -> None:
    found = policy.injections_for("generativelanguage.googleapis.com", "gemini_chat")
    assert [(n, spec.header) for n, spec in found] == [("GEMINI_API_KEY", "x-goog-api-key")]
    assert policy.injections_for("generativelanguage.googleapis.com", "code_interpreter") == []
    assert policy.injections_for("evil.example.com", "gemini_chat") == []
    local = policy.injections_for("localhost", "tester", scheme="http", port=8080)
    assert [n for n, _ in local] == ["LOCAL_KEY"]
    assert local[0][1].render("v") == "Bearer v"


def test_placeholder_only_secret_is_allowed_but_not_injected() -> None:
    policy = Policy.from_dict(
        {
            "secrets": {"A": {"inject": {"hosts": ["a.example.com"]}}},
            "tools": {"t": {"secrets": ["A"]}},
        }
    )
    assert policy.may_send("A", "a.example.com", "t")
    assert policy.injections_for("a.example.com", "t") == []


def test_explain_covers_every_secret(policy: Policy) -> None:
    decisions = policy.explain("api.e2b.dev", "code_interpreter")
    assert [d.secret for d in decisions] == list(policy.secrets)
    assert [d.secret for d in decisions if d] == ["E2B_API_KEY"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("[::1]", True),
     ("::1", True), ("LOCALHOST.", True), ("10.0.0.1", False), ("localhost.evil.com", False),
     ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_decision_is_frozen(policy: Policy) -> None:
    decision = policy.may_send("GEMINI_API_KEY", "x", "gemini_chat")
    with pytest.raises(AttributeError):
        decision.allowed = True  # type: ignore[misc]


def test_project_dir_is_parent_of_policies(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "proj" / "policies"
    folder.mkdir(parents=True)
    path = write(folder, "secrets: {}\n", "keyguard.yaml")
    assert Policy.load(path).project_dir == (tmp_path / "proj").resolve()
    monkeypatch.chdir(tmp_path)
    other = write(tmp_path, "secrets: {}\n", "elsewhere.yaml")
    assert Policy.load(other).project_dir == Path.cwd()
    assert Policy.load(other, project_dir=folder).project_dir == folder


def test_starter_policy_loads_clean() -> None:
    from keyguard.cli.init import starter_policy_text

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        policy = Policy.loads(starter_policy_text(), "starter")
    assert policy.required_secrets() == [
        "GEMINI_API_KEY",
        "GITHUB_PERSONAL_ACCESS_TOKEN",
        "E2B_API_KEY",
        "N8N_API_KEY",
    ]
    assert policy.may_send("GEMINI_API_KEY", "generativelanguage.googleapis.com", "gemini_chat")
    assert policy.may_send("E2B_API_KEY", "api.e2b.app", "code_interpreter")
    # Sandbox hosts run untrusted code: the control-plane key must not reach them.
    assert not policy.may_send("E2B_API_KEY", "49999-abc.e2b.app", "code_interpreter")
    assert policy.may_send("N8N_API_KEY", "localhost", "n8n_workflows", scheme="http", port=5678)
    assert policy.may_send("GITHUB_PERSONAL_ACCESS_TOKEN", "api.github.com", "github")
    assert policy.sandbox_env("code_interpreter") == []
    assert not policy.may_send("GEMINI_API_KEY", "generativelanguage.googleapis.com", None)


# --------------------------------------------------------------------------- fuzzing

_VOCAB = [
    "version", "secrets", "tools", "sources", "settings", "from", "required", "format",
    "min_length", "inject", "hosts", "header", "template", "basic_user", "query",
    "json_field", "allow_http", "github", "secret", "sandbox_env", "order", "dotenv",
    "vault", "auth", "ttl", "GEMINI_API_KEY", "t", "google-api-key", "*.e2b.dev",
]  # fmt: skip
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70000),
    st.floats(allow_nan=True),
    st.sampled_from(_VOCAB),
    st.text(max_size=12),
)
_keys = st.one_of(st.sampled_from(_VOCAB), st.text(max_size=8), st.integers(-2, 2))
_data = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)
    ),
    max_leaves=25,
)
_documents = st.dictionaries(st.sampled_from(_VOCAB[:5]), _data, max_size=5)


def _only_policy_errors(load) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PolicyWarning)
            load()
    except PolicyError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_fuzz_from_dict_raises_only_policy_error(data) -> None:
    _only_policy_errors(lambda: Policy.from_dict(data))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_fuzz_yaml_dump_raises_only_policy_error(data) -> None:
    text = yaml.safe_dump(data, sort_keys=False)
    _only_policy_errors(lambda: Policy.loads(text, "fuzz.yaml"))


_yaml_tokens = st.sampled_from(
    [
        "version: 1\n", "secrets:\n", "tools:\n", "  A:\n", "    inject:\n", "      hosts: [",
        "x.com", "]\n", "{", "}", "- ", "&a ", "*a", "<<: *a\n", "!!python/object:os.system ",
        ": ", "  ", "\t", "'", '"', "#", "---\n", "...\n", "? ", "|\n", ">\n", "\n", "[[[[",
        "%YAML 1.1\n", "!!binary ", "@", "\x00", "\ufeff", "1e400", "0x1F", "~",
    ]
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_yaml_tokens, st.text(max_size=6)), max_size=30).map("".join))
def test_fuzz_yaml_text_raises_only_policy_error(text: str) -> None:
    _only_policy_errors(lambda: Policy.loads(text, "fuzz.yaml"))


def test_recursive_alias_and_deep_nesting_are_policy_errors() -> None:
    with pytest.raises(PolicyError):
        Policy.loads("secrets: &a\n  A: *a\n")
    with pytest.raises(PolicyError):
        Policy.loads("secrets: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(PolicyError):
        Policy.loads("!!python/object/apply:os.system ['true']\n")


@settings(max_examples=150, deadline=None)
@given(
    secret=st.sampled_from(["GEMINI_API_KEY", "E2B_API_KEY", "LOCAL_KEY", "NOPE", ""]),
    host=st.one_of(st.text(max_size=30), st.sampled_from(["api.e2b.dev", "[::1]", "LOCALHOST"])),
    tool=st.one_of(st.none(), st.sampled_from(["tester", "code_interpreter", ""]), st.text()),
    scheme=st.one_of(st.sampled_from(["https", "http", "HTTPS", "ws"]), st.text(max_size=6)),
    port=st.one_of(st.none(), st.integers(-5, 70000)),
)
def test_fuzz_decisions_always_answer(secret, host, tool, scheme, port) -> None:
    policy = Policy.loads(BASE, "base.yaml")
    decision = policy.may_send(secret, host, tool, scheme=scheme, port=port)
    assert isinstance(decision, Decision) and decision.reason
    if decision:
        assert policy.tool_may_use(tool, secret)
        assert decision.pattern in policy.hosts_for(secret)
