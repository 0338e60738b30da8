"""The structural redactor: secrets masked, everything else left alone."""

import logging

from console.redact import MASK, RedactingFilter, redact


def test_secret_keys_are_masked_and_others_kept():
    data = {"api_key": "sk-abc", "Authorization": "Bearer xyz", "password": "p",
            "access_token": "t", "X-Auth-Token": "h", "headers": {"secret": "s"},
            "tokens_out": 17, "tokens_in": 3, "api_key_set": True, "api_key_last4": "1234",
            "keyboard": "qwerty", "monkey": "banana", "name": "edge"}
    out = redact(data)
    for masked in ("api_key", "Authorization", "password", "access_token", "X-Auth-Token"):
        assert out[masked] == MASK
    assert out["headers"]["secret"] == MASK
    assert out["tokens_out"] == 17 and out["tokens_in"] == 3
    assert out["api_key_set"] is True and out["api_key_last4"] == "1234"
    assert out["keyboard"] == "qwerty" and out["monkey"] == "banana"


def test_tokens_in_strings_are_scrubbed():
    text = redact("GET /v1/models?key=AIzaSecret&x=1 with Bearer sk-live-123456789 api_key=abc")
    assert "AIzaSecret" not in text and "sk-live-123456789" not in text and "abc" not in text
    assert "x=1" in text


def test_log_filter_scrubs_the_formatted_message():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "calling with %s",
                               ("Authorization: Bearer tgl_abcdefgh12345",), None)
    RedactingFilter().filter(record)
    assert "tgl_abcdefgh12345" not in record.getMessage()
