"""The logging filter and structlog processor scrub everything a record can carry."""

from __future__ import annotations

import io
import json
import logging
import threading

import httpx
import pytest
import structlog

from keyguard.integrations.logging import RedactingFilter, install, structlog_processor
from keyguard.redact import Redactor
from tests.fakes import google_api_key


@pytest.fixture()
def setup():
    value = google_api_key()
    r = Redactor()
    r.add_secret("GEMINI_API_KEY", value)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(user)s"))
    logger = logging.getLogger(f"kg-test-{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    flt = install(r, logger)
    yield value, r, stream, logger, flt
    logger.removeHandler(handler)


def test_message_args_extra_exception_stack(setup) -> None:
    value, _r, stream, logger, _ = setup
    logger.info(
        "calling %s with key=%s",
        "https://x.example/?key=" + value,
        value,
        extra={"user": {"token": value}},
    )
    try:
        raise ValueError(f"bad request to https://h/?key={value}")
    except ValueError:
        logger.exception("failed %s", value, extra={"user": value}, stack_info=True)
    text = stream.getvalue()
    assert value not in text
    assert text.count("[REDACTED:GEMINI_API_KEY]") >= 5
    assert "Traceback" in text and "ValueError" in text and "Stack (most recent call last)" in text


def test_never_raises_never_drops(setup) -> None:
    value, _r, stream, logger, _ = setup
    logger.info("broken %s %s", value, extra={"user": "u"})  # too few args for the format
    logger.info("fine", extra={"user": "u"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and value not in stream.getvalue()


def test_third_party_records_through_root_handlers(monkeypatch) -> None:
    value = google_api_key()
    r = Redactor()
    r.add_secret("GEMINI_API_KEY", value)
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        install(r)
        transport = httpx.MockTransport(lambda request: httpx.Response(200))
        with httpx.Client(transport=transport) as client:
            client.get(f"https://generativelanguage.googleapis.com/v1?key={value}")
        logging.getLogger("httpcore.connection").debug("connect to %s", value)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for f in list(root.filters):
            if isinstance(f, RedactingFilter):
                root.removeFilter(f)
    out = buf.getvalue()
    assert "generativelanguage.googleapis.com" in out  # httpx logged the request
    assert value not in out and "[REDACTED:GEMINI_API_KEY]" in out


def test_install_is_idempotent_and_thread_safe(setup) -> None:
    value, r, stream, logger, flt = setup
    assert install(r, logger) is flt
    assert sum(isinstance(f, RedactingFilter) for f in logger.handlers[0].filters) == 1

    def work() -> None:
        for _ in range(50):
            logger.info("v=%s", value, extra={"user": "t"})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 200 and value not in stream.getvalue()


def test_structlog_processor() -> None:
    value = google_api_key()
    r = Redactor()
    r.add_secret("GEMINI_API_KEY", value)
    out = io.StringIO()
    structlog.configure(
        processors=[structlog_processor(r), structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(out),
    )
    try:
        log = structlog.get_logger()
        log.info("request", url=f"https://h/?key={value}", headers={"x-goog-api-key": value})
        try:
            raise RuntimeError(value)
        except RuntimeError:
            log.error("boom", exc_info=True)
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert value not in out.getvalue()
    assert lines[0]["headers"]["x-goog-api-key"] == "[REDACTED:GEMINI_API_KEY]"
    assert "RuntimeError" in lines[1]["exception"]
