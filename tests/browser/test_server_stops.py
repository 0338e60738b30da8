"""The web server stopping under a live stream: SIGTERM closes the socket with a message
and saves the partial reply; kill -9 loses at most the last few seconds (the periodic
checkpoint) and never a finished turn's audit event."""

import signal
import sqlite3
import time

import psutil
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.browser.test_chat_journey import add_agent, add_backend
from tests.support.console_server import ConsoleServer
from tests.support.scripted_openai import finish, text

pytestmark = pytest.mark.browser


def daphne_of(server: ConsoleServer) -> psutil.Process:
    for child in psutil.Process(server.proc.pid).children():
        if "console.web" in child.cmdline():  # Daphne, through console.web
            return child
    raise AssertionError("no daphne process under manage.py serve")


def long_reply(words: int, gap: float) -> list:
    return [item for i in range(words) for item in (("sleep", gap), *text(f"w{i} "))] + \
        finish()


def rows(db, sql):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def start_chat(page, console, scripted, message):
    page.get_by_label("Message").fill(message)
    page.keyboard.press("Enter")


def test_sigterm_saves_the_partial_and_tells_the_browser(page, scripted, tmp_path):
    data = tmp_path / "data"
    console = ConsoleServer(data).start()
    try:
        sign_in(page, console)
        add_backend(page, console, "scripted", "openai_compatible", scripted.url)
        add_agent(page, console, "talker", "scripted", "scripted-1", max_tokens="2000")
        page.get_by_role("button", name="Try in playground").click()
        expect(page.get_by_role("button", name="Send")).to_be_enabled()
        scripted.add(*long_reply(200, 0.05))
        start_chat(page, console, scripted, "tell me everything")
        expect(page.locator(".msg-assistant .body").last).to_contain_text("w10", timeout=15000)
        started = time.monotonic()
        console.proc.send_signal(signal.SIGTERM)  # serve sends each child one SIGTERM
        expect(page.locator(".error-line").last).to_contain_text("the server is restarting",
                                                                 timeout=10000)
        console.proc.wait(20)
        assert time.monotonic() - started < 15
    finally:
        console.stop()
    db = data / "tanglaw.sqlite3"
    [(content, incomplete)] = rows(db, "SELECT content, incomplete FROM agents_message "
                                       "WHERE role = 'assistant'")
    assert incomplete == 1 and content.startswith("w0 w1 ") and "w10" in content
    [(outcome,)] = rows(db, "SELECT outcome FROM agents_run")
    assert outcome == "cancelled"
    assert rows(db, "SELECT count(*) FROM console_auditevent WHERE action = 'agent.turn'") == [
        (1,)]


def test_kill_9_loses_only_the_last_seconds(page, scripted, tmp_path):
    data = tmp_path / "data"
    console = ConsoleServer(data).start()
    try:
        sign_in(page, console)
        add_backend(page, console, "scripted", "openai_compatible", scripted.url)
        add_agent(page, console, "talker", "scripted", "scripted-1", max_tokens="2000")
        page.get_by_role("button", name="Try in playground").click()
        expect(page.get_by_role("button", name="Send")).to_be_enabled()
        scripted.add(text("a finished answer"), finish())
        start_chat(page, console, scripted, "first")
        expect(page.locator(".msg-assistant .timings").first).to_be_visible(timeout=15000)
        scripted.add(*long_reply(400, 0.05))
        start_chat(page, console, scripted, "second")
        expect(page.locator(".msg-assistant .body").last).to_contain_text("w120",
                                                                          timeout=20000)
        daphne_of(console).kill()  # SIGKILL: no chance to save anything now
    finally:
        console.stop()
    db = data / "tanglaw.sqlite3"
    assert rows(db, "SELECT count(*) FROM console_auditevent WHERE action = 'agent.turn'") == [
        (1,)]  # the finished turn's event is there
    drafts = rows(db, "SELECT content FROM agents_message WHERE role = 'assistant' AND "
                      "incomplete = 1")
    assert len(drafts) == 1 and drafts[0][0].startswith("w0 w1 ")
    # the last checkpoint is at most 5 s (100 words) behind what the browser had seen
    assert "w20" in drafts[0][0]
