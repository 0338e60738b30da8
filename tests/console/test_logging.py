"""Quiet logs: a 4xx is no traceback, and shows only from TANGLAW_LOG_LEVEL=INFO."""

import logging

import pytest

from console.redact import ExpectedResponseFilter


class Seen(logging.Handler):
    """What a handler receives: the level and whether a traceback came with it."""

    def __init__(self, level=None):
        super().__init__()
        if level:
            self.addFilter(ExpectedResponseFilter(level))
        self.seen = []

    def emit(self, record):
        self.seen.append((record.levelname, bool(record.exc_info), record.getMessage()))


def _through(client, path, *handlers):
    logger = logging.getLogger("django.request")
    for h in handlers:
        logger.addHandler(h)
    try:
        return client.get(path)
    finally:
        for h in handlers:
            logger.removeHandler(h)


@pytest.mark.django_db
def test_a_refused_page_and_a_missing_one_are_info_lines_without_tracebacks(viewer_client):
    raw, quiet, verbose = Seen(), Seen("WARNING"), Seen("INFO")
    assert _through(viewer_client, "/users/", raw, quiet, verbose).status_code == 403
    # what Django hands the handlers: a warning with the PermissionDenied traceback
    assert raw.seen == [("WARNING", True, "Forbidden (Permission denied): /users/")]
    assert quiet.seen == []  # hidden by default
    assert verbose.seen == [("INFO", False, "Forbidden (Permission denied): /users/")]
    raw, quiet, verbose = Seen(), Seen("WARNING"), Seen("INFO")
    assert _through(viewer_client, "/backends/999999/", raw, quiet, verbose
                    ).status_code == 404
    assert raw.seen and raw.seen[0][0] == "WARNING"
    assert quiet.seen == [] and verbose.seen[0][:2] == ("INFO", False)


def test_a_server_error_and_a_security_warning_stay_as_they_are():
    keep = ExpectedResponseFilter("WARNING")
    crash = logging.LogRecord("django.request", logging.ERROR, __file__, 1,
                              "Internal Server Error: /x", (), (ValueError, ValueError(), None))
    crash.status_code = 500
    assert keep.filter(crash) and crash.exc_info and crash.levelno == logging.ERROR
    csrf = logging.LogRecord("django.security.csrf", logging.WARNING, __file__, 1,
                             "Forbidden (CSRF cookie not set.): /x", (), None)
    csrf.status_code = 403
    assert keep.filter(csrf) and csrf.levelno == logging.WARNING
    plain = logging.LogRecord("tanglaw.monitor", logging.WARNING, __file__, 1, "slow", (), None)
    assert keep.filter(plain)


def test_the_log_level_is_checked(tmp_path):
    from tests.console.test_settings import manage

    result = manage("check", data_dir=tmp_path / "data",
                    extra_env={"TANGLAW_LOG_LEVEL": "chatty"})
    assert result.returncode != 0
    assert "TANGLAW_LOG_LEVEL='CHATTY' is not one of DEBUG, INFO, WARNING" in result.stderr
    assert manage("check", data_dir=tmp_path / "data",
                  extra_env={"TANGLAW_LOG_LEVEL": "info"}).returncode == 0
