"""Property tests: no text a Secret produces contains its value."""

from __future__ import annotations

import copy
import io
import json
import logging
import pickle
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keyguard.secret import MIN_VISIBLE_LENGTH, Secret, json_default, mask
from tests.fakes import e2b_api_key, github_classic, google_api_key, n8n_api_key

NAMES = st.from_regex(r"[A-Z][A-Z0-9_]{0,24}", fullmatch=True)
# Long values are shown as first4…last4; anything of at least 16 characters.
LONG_VALUES = st.text(min_size=MIN_VISIBLE_LENGTH, max_size=120)
# Short values are fully hidden ("********"), so a value made of stars is excluded.
SHORT_VALUES = st.text(
    alphabet=st.characters(blacklist_characters="*\u2603", blacklist_categories=("Cs",)),
    min_size=4,
    max_size=MIN_VISIBLE_LENGTH - 1,
)
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _logged(secret: Secret) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(args)s"))
    logger = logging.getLogger("keyguard.test.secret")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("value %s / %r", secret, secret)
        logger.warning(secret)
        logger.warning("as dict %(s)s", {"s": secret})
        try:
            raise ValueError(secret)
        except ValueError:
            logger.exception("failed with %s", secret)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def outputs(secret: Secret) -> list[str]:
    """Every text a Secret can be turned into without ``reveal()``."""
    texts = [
        repr(secret),
        str(secret),
        format(secret),
        format(secret, ">60"),
        format(secret, "^40"),
        f"{secret}",
        f"{secret!r}",
        f"{secret!s}",
        f"{secret!a}",
        f"{secret:<50}",
        "%s" % secret,  # noqa: UP031
        "%r" % secret,  # noqa: UP031
        "%(x)s" % {"x": secret},  # noqa: UP031
        "{} {!r}".format(secret, secret),  # noqa: UP032
        json.dumps({"key": secret, "list": [secret]}, default=json_default),
        json.dumps(secret, default=json_default),
        repr([secret, (secret,), {"k": secret}]),
        str({"k": secret}),
        repr(copy.copy(secret)),
        repr(copy.deepcopy({"k": secret})),
        str(ValueError(secret)),
        repr(ValueError(secret)),
        secret.masked,
        secret.fingerprint,
        secret.placeholder,
        _logged(secret),
    ]
    with pytest.raises(TypeError) as err:
        pickle.dumps(secret)
    texts.append(str(err.value))
    with pytest.raises(TypeError) as err:
        pickle.dumps({"nested": [secret]})
    texts.append(str(err.value))
    with pytest.raises(TypeError) as err:
        json.dumps({"k": secret})  # without the default: refuses, does not leak
    texts.append(str(err.value))
    return texts


def _baseline(name: str, length: int) -> str:
    """Everything printed for another value of the same name and length: a value that
    occurs in it (a word of a file path, hex of a fingerprint) would be a false alarm."""
    return "\n".join(outputs(Secret(name, "\u2603" * length)))


@PROPERTY
@given(name=NAMES, value=LONG_VALUES)
def test_long_values_never_appear(name: str, value: str) -> None:
    assume(value not in _baseline(name, len(value)))
    secret = Secret(name, value)
    for text in outputs(secret):
        assert value not in text
    # At most 4 + 4 characters of the value are ever shown.
    assert secret.masked == f"{value[:4]}…{value[-4:]}"


@PROPERTY
@given(name=NAMES, value=SHORT_VALUES)
def test_short_values_are_fully_hidden(name: str, value: str) -> None:
    assume(value not in _baseline(name, len(value)))
    secret = Secret(name, value)
    assume(value not in secret.fingerprint)  # 4 hex characters may occur in a hash
    assert secret.masked == "********" == mask(value)
    for text in outputs(secret):
        assert value not in text


@PROPERTY
@given(value=st.text(alphabet=string.ascii_letters + string.digits, min_size=16, max_size=64))
def test_equality_without_exposure(value: str) -> None:
    secret = Secret("K", value)
    assert secret == value and secret == Secret("OTHER", value)
    assert secret != value + "x" and secret != Secret("K", value[::-1] + "x")
    assert secret.reveal() == value


@pytest.mark.parametrize("make", [google_api_key, github_classic, e2b_api_key, n8n_api_key])
def test_provider_shaped_values(make) -> None:
    value = make()
    secret = Secret("KEY", value)
    for text in outputs(secret):
        assert value not in text
    assert repr(secret) == f"Secret('KEY', '{value[:4]}…{value[-4:]}')"


def test_secret_has_no_instance_dict_and_rejects_non_str() -> None:
    secret = Secret("K", google_api_key())
    assert not hasattr(secret, "__dict__")
    with pytest.raises(TypeError) as err:
        Secret("K", b"bytes-value-123456")  # type: ignore[arg-type]
    assert "bytes-value" not in str(err.value)
