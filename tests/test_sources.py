"""Sources: process env, dotenv files, secret files; their errors never carry values."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from keyguard.errors import AccessDenied, InvalidReference, SecretNotFound, SourceError
from keyguard.secret import Reference
from keyguard.sources import DotenvSource, EnvSource, Fetched, FilesSource, Source
from keyguard.store import SecretStore
from tests.fakes import e2b_api_key, github_classic, google_api_key, n8n_api_key, rand


def ref(text: str) -> Reference:
    return Reference.parse(text)


def as_unprivileged(fn: Callable[[], str], *paths: Path) -> str:
    """Run ``fn`` where read permission on ``paths`` is really missing; return its output.

    Permission bits do not stop root, so under root ``fn`` runs in a forked child that
    has dropped to ``nobody``.
    """
    for path in paths:
        path.chmod(0)
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out = fn()
        except BaseException as exc:
            out = f"ERROR {type(exc).__name__}: {exc}"
        os.write(write_end, out.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        out = fh.read().decode()
    os.waitpid(pid, 0)
    return out


@pytest.fixture
def open_dir() -> Path:
    """A directory ``nobody`` can traverse (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="keyguard-test-"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        child.chmod(0o600)
        child.unlink()
    path.rmdir()


# -- process environment --------------------------------------------------------------


def test_env_source_serves_env_refs_and_bare_names(clean_env) -> None:
    value = google_api_key()
    source = EnvSource({"GEMINI_API_KEY": value, "EMPTY": ""})
    assert isinstance(source, Source)
    assert source.fetch(ref("env://GEMINI_API_KEY")) == Fetched(value, "env://GEMINI_API_KEY")
    assert source.fetch(ref("GEMINI_API_KEY")).value == value
    assert source.fetch(ref("EMPTY")) is None  # KEY= from a template means "not filled in"
    assert source.fetch(ref("MISSING")) is None
    assert source.fetch(ref("file:///run/secrets/GEMINI_API_KEY")) is None
    assert source.fetch(ref("vault://secret/x#GEMINI_API_KEY")) is None


def test_env_source_reads_os_environ_live(clean_env) -> None:
    source = EnvSource()
    assert source.fetch(ref("E2B_API_KEY")) is None
    value = e2b_api_key()
    clean_env.setenv("E2B_API_KEY", value)
    assert source.fetch(ref("E2B_API_KEY")).value == value


def test_fetched_repr_hides_value() -> None:
    value = github_classic()
    assert value not in repr(Fetched(value, ".env:1", version=3))


# -- dotenv ---------------------------------------------------------------------------


def test_dotenv_local_overrides_and_nothing_enters_os_environ(clean_env, tmp_path) -> None:
    gemini, gemini_local, github = google_api_key(), google_api_key(), github_classic()
    (tmp_path / ".env").write_text(
        f"# team defaults\nGEMINI_API_KEY={gemini}\n"
        f"export GITHUB_PERSONAL_ACCESS_TOKEN='{github}'\n"
    )
    (tmp_path / ".env.local").write_text(f'\n\nGEMINI_API_KEY="{gemini_local}"\n')
    source = DotenvSource(base_dir=tmp_path)
    got = source.fetch(ref("GEMINI_API_KEY"))
    assert got.value == gemini_local and got.origin == ".env.local:3"
    got = source.fetch(ref("env://GITHUB_PERSONAL_ACCESS_TOKEN"))
    assert got.value == github and got.origin == ".env:3"
    assert source.names() == ["GEMINI_API_KEY", "GITHUB_PERSONAL_ACCESS_TOKEN"]
    assert "GEMINI_API_KEY" not in os.environ
    assert "GITHUB_PERSONAL_ACCESS_TOKEN" not in os.environ
    assert source.fetch(ref("file:///x")) is None


def test_dotenv_relative_to_cwd_by_default_and_missing_files(clean_env, tmp_path) -> None:
    source = DotenvSource()
    assert source.fetch(ref("N8N_API_KEY")) is None  # no file at all: nothing, no error
    value = n8n_api_key()
    (tmp_path / ".env.local").write_text(f"N8N_API_KEY={value}\n")
    assert source.fetch(ref("N8N_API_KEY")).value == value


def test_dotenv_export_only_when_asked(clean_env, tmp_path) -> None:
    kept, written = e2b_api_key(), e2b_api_key()
    (tmp_path / ".env").write_text(f"E2B_API_KEY={written}\nKG_TEST_ONLY_IN_FILE={written}\n")
    clean_env.setenv("E2B_API_KEY", kept)
    clean_env.delenv("KG_TEST_ONLY_IN_FILE", raising=False)  # restored at teardown
    DotenvSource(base_dir=tmp_path)
    assert "KG_TEST_ONLY_IN_FILE" not in os.environ
    DotenvSource(base_dir=tmp_path, export=True)
    assert os.environ["KG_TEST_ONLY_IN_FILE"] == written
    assert os.environ["E2B_API_KEY"] == kept  # an existing variable is not replaced


def test_dotenv_interpolation_across_files(clean_env, tmp_path) -> None:
    user = rand(12)
    (tmp_path / ".env").write_text(f"N8N_USER={user}\n")
    (tmp_path / ".env.local").write_text("N8N_BASIC=${N8N_USER}:pw\n")
    source = DotenvSource(base_dir=tmp_path)
    assert source.fetch(ref("N8N_BASIC")).value == f"{user}:pw"
    raw = DotenvSource(base_dir=tmp_path, interpolate=False)
    assert raw.fetch(ref("N8N_BASIC")).value == "${N8N_USER}:pw"


def test_dotenv_rereads_changed_file(clean_env, tmp_path) -> None:
    first, second = google_api_key(), google_api_key() + "xyz"
    env = tmp_path / ".env"
    env.write_text(f"GEMINI_API_KEY={first}\n")
    source = DotenvSource(base_dir=tmp_path)
    assert source.fetch(ref("GEMINI_API_KEY")).value == first
    env.write_text(f"GEMINI_API_KEY={second}\n")
    assert source.fetch(ref("GEMINI_API_KEY")).value == second


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('A=1\nGEMINI_API_KEY="{v}\n', 2),  # unclosed quote: the rest is swallowed
        ("A=1\n\n\n# comment\nGEMINI API KEY={v}\n", 5),  # spaces in the name
        ("A=1\n{v}\n", 2),  # a pasted value with no name
        ("A=1\nB=2\n-{v}=x\n", 3),  # not a variable name
        ("A=1\nB='x\ny'\nC={v} 'oops\nD='{v}\n", 5),  # after a multi-line value
    ],
)
def test_malformed_dotenv_names_file_and_line_never_value(
    clean_env, tmp_path, text: str, line: int
) -> None:
    value = google_api_key()
    env = tmp_path / ".env.local"
    env.write_text(text.format(v=value))
    source = DotenvSource(base_dir=tmp_path)
    with pytest.raises(SourceError) as err:
        source.fetch(ref("GEMINI_API_KEY"))
    message = str(err.value)
    assert f"{env}:{line}:" in message
    assert value not in message and value[:12] not in message
    assert err.value.__cause__ is None


def test_dotenv_bad_files(clean_env, tmp_path) -> None:
    value = google_api_key()
    (tmp_path / ".env").write_bytes(b"GEMINI_API_KEY=" + value.encode() + b"\xff\xfe\n")
    with pytest.raises(SourceError, match="not UTF-8") as err:
        DotenvSource(base_dir=tmp_path).fetch(ref("GEMINI_API_KEY"))
    assert value not in str(err.value)
    (tmp_path / ".env").unlink()
    (tmp_path / ".env").mkdir()
    with pytest.raises(SourceError, match="is a directory"):
        DotenvSource(base_dir=tmp_path).fetch(ref("GEMINI_API_KEY"))


def test_unreadable_dotenv_is_access_denied(open_dir) -> None:
    value = google_api_key()
    (open_dir / ".env").write_text(f"GEMINI_API_KEY={value}\n")

    def attempt() -> str:
        try:
            DotenvSource(base_dir=open_dir).fetch(ref("GEMINI_API_KEY"))
        except AccessDenied as exc:
            return f"DENIED {exc}"
        return "READ"

    out = as_unprivileged(attempt, open_dir / ".env")
    assert out.startswith("DENIED"), out
    assert f"{open_dir / '.env'}" in out and "permission denied" in out
    assert value not in out


# -- secret files -----------------------------------------------------------------------


def test_secrets_dir_exact_and_lowercase_names(clean_env, tmp_path) -> None:
    gemini, e2b = google_api_key(), e2b_api_key()
    (tmp_path / "GEMINI_API_KEY").write_text(gemini + "\n")
    (tmp_path / "e2b_api_key").write_text(e2b)
    (tmp_path / "N8N_API_KEY").mkdir()  # a directory is not a secret
    source = FilesSource(tmp_path, environ={})
    got = source.fetch(ref("GEMINI_API_KEY"))
    assert got.value == gemini and got.origin == str(tmp_path / "GEMINI_API_KEY")
    assert source.fetch(ref("E2B_API_KEY")).value == e2b
    assert source.fetch(ref("N8N_API_KEY")) is None
    assert source.fetch(ref("OTHER")) is None
    # env:// means a variable: the secrets directory is not consulted for it.
    assert source.fetch(ref("env://GEMINI_API_KEY")) is None


def test_missing_secrets_dir_is_not_an_error(clean_env, tmp_path) -> None:
    source = FilesSource(tmp_path / "absent", environ={})
    assert source.fetch(ref("GEMINI_API_KEY")) is None


def test_name_file_indirection(clean_env, tmp_path) -> None:
    token = rand(28)
    (tmp_path / "vault_token").write_text(token + "\n")
    environ = {"VAULT_TOKEN_FILE": str(tmp_path / "vault_token")}
    source = FilesSource(None, environ=environ)
    for text in ("VAULT_TOKEN", "env://VAULT_TOKEN"):
        got = source.fetch(ref(text))
        assert got.value == token
        assert got.origin == f"VAULT_TOKEN_FILE={tmp_path / 'vault_token'}"
    assert FilesSource(None, environ=environ, indirection=False).fetch(ref("VAULT_TOKEN")) is None


def test_name_file_pointing_nowhere_is_a_clear_error(clean_env, tmp_path) -> None:
    missing = tmp_path / "nope"
    source = FilesSource(None, environ={"GEMINI_API_KEY_FILE": str(missing)})
    with pytest.raises(SourceError) as err:
        source.fetch(ref("GEMINI_API_KEY"))
    assert str(missing) in str(err.value) and "GEMINI_API_KEY_FILE" in str(err.value)


def test_file_reference(clean_env, tmp_path) -> None:
    value = n8n_api_key()
    path = tmp_path / "n8n key"
    path.write_text(f"  {value}\r\n")
    source = FilesSource(environ={})
    got = source.fetch(ref(f"file://{tmp_path}/n8n%20key"))
    assert got.value == value and got.origin == f"file://{path}"
    assert source.fetch(ref(f"file://{tmp_path}/absent")) is None


@pytest.mark.parametrize("kind", ["directory", "empty", "binary", "dangling", "huge"])
def test_bad_secret_files_name_the_path_never_the_value(clean_env, tmp_path, kind: str) -> None:
    value = google_api_key()
    path = tmp_path / "GEMINI_API_KEY"
    if kind == "directory":
        path.mkdir()
        target = ref(f"file://{path}")
    elif kind == "empty":
        path.write_text("\n")
        target = ref("GEMINI_API_KEY")
    elif kind == "binary":
        path.write_bytes(value.encode() + b"\xc3\x28")
        target = ref("GEMINI_API_KEY")
    elif kind == "dangling":
        path.symlink_to(tmp_path / "gone")
        target = ref("GEMINI_API_KEY")
    else:
        path.write_text(value * 40_000)
        target = ref("GEMINI_API_KEY")
    with pytest.raises(SourceError) as err:
        FilesSource(tmp_path, environ={}).fetch(target)
    assert str(path) in str(err.value)
    assert value not in str(err.value) and value[:10] not in str(err.value)


def test_unreadable_secret_file_is_access_denied(open_dir) -> None:
    value = e2b_api_key()
    (open_dir / "E2B_API_KEY").write_text(value)

    def attempt() -> str:
        store = SecretStore([FilesSource(open_dir, environ={})])
        lines = []
        for text in ("E2B_API_KEY", f"file://{open_dir}/E2B_API_KEY"):
            try:
                store.get(text)
                lines.append("READ")
            except AccessDenied as exc:
                lines.append(f"DENIED {exc}")
        return "\n".join(lines)

    lines = as_unprivileged(attempt, open_dir / "E2B_API_KEY").splitlines()
    assert len(lines) == 2 and all(line.startswith("DENIED") for line in lines), lines
    assert all(str(open_dir / "E2B_API_KEY") in line for line in lines)
    assert all(value not in line for line in lines)


# -- references through the store ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "vault://secret/path",
        "vault://secret#field",
        "s3://bucket/key",
        "file://rel",
        "env://",
        "NAME WITH SPACE",
    ],
)
def test_invalid_references_are_clear_errors(clean_env, text: str) -> None:
    store = SecretStore([EnvSource({})])
    with pytest.raises(InvalidReference) as err:
        store.get_ref(text) if "://" in text else store.get(text)
    assert "reference" in str(err.value)


def test_a_value_passed_as_a_name_is_not_echoed(clean_env) -> None:
    store = SecretStore([EnvSource({})])
    for value in (google_api_key(), github_classic(), e2b_api_key().upper() + "aZ9"):
        with pytest.raises((SecretNotFound, InvalidReference)) as err:
            store.get(value)
        assert value not in str(err.value)
    jwt_value = n8n_api_key()
    with pytest.raises(InvalidReference) as err:
        store.get_ref("vault://secret/" + jwt_value)
    assert jwt_value not in str(err.value)


def test_file_ref_not_found_names_the_reference(clean_env, tmp_path) -> None:
    store = SecretStore([EnvSource({})], ref_sources=[FilesSource(tmp_path, environ={})])
    with pytest.raises(SecretNotFound) as err:
        store.get_ref(f"file://{tmp_path}/gemini")
    assert f"file://{tmp_path}/gemini" in str(err.value)


def test_access_denied_is_a_permission_error() -> None:
    assert issubclass(AccessDenied, PermissionError)
