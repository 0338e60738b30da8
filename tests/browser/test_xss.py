"""Hostile model output renders inert, streamed and reloaded: no script, dialog or remote load."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.support.scripted_openai import finish, text

pytestmark = pytest.mark.browser

CORPUS = [
    "<script>alert('s1')</script>",
    "<img src=x onerror=alert('s2')>",
    "<img src=\"http://remote.example/track.png\">",
    "![tracker](http://remote.example/pixel.png)",
    "[click](javascript:alert('s3'))",
    "[click2](JaVaScRiPt:alert('s4'))",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<a href=\"javascript:alert('s5')\">a</a>",
    "<svg onload=alert('s6')></svg>",
    "<iframe src=\"http://remote.example/\"></iframe>",
    "<details open ontoggle=alert('s7')>",
    "<div style=\"background:url(http://remote.example/bg.png)\">bg</div>",
    "&lt;script&gt;alert('s8')&lt;/script&gt;",
    "<math><mi xlink:href=\"javascript:alert('s9')\">m</mi></math>",
    "<object data=\"http://remote.example/x.swf\"></object>",
    "<link rel=stylesheet href=\"http://remote.example/x.css\">",
    "```html\n<script>alert('s10')</script>\n```",
    "<body onload=alert('s11')>",
    "<input autofocus onfocus=alert('s12')>",
    "<a href=\"http://ok.example/\" onclick=\"alert('s13')\">safe link</a>",
    "<img src=x:alert(1) onerror=eval(src)>",
    "<video><source onerror=alert('s14')></video>",
    "<form action=\"javascript:alert('s15')\"><button>go</button></form>",
    "[link](&#106;avascript:alert('s16'))",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert('s17')\">",
    "<base href=\"http://remote.example/\">",
    "<style>@import 'http://remote.example/x.css';</style>",
]
assert len(CORPUS) >= 25



def check_inert(page):
    transcript = page.locator("#transcript")
    assert transcript.locator("script, img, iframe, svg, object, link, style, input").count() == 0
    handlers = page.evaluate("""() => [...document.querySelectorAll('#transcript *')]
        .flatMap(e => [...e.attributes].map(a => a.name))
        .filter(n => n.startsWith('on') || n === 'style' || n === 'src')""")
    assert handlers == []
    # links in what the model wrote; a turn's own "Trace" link (its timings) and a
    # question's "Replay…" (beside who asked it) are the console's
    hrefs = page.evaluate("""() => [...document.querySelectorAll('#transcript a[href]')]
        .filter(a => !a.closest('.timings, .who')).map(a => a.getAttribute('href'))""")
    assert all(h.startswith(("http://", "https://", "mailto:")) for h in hrefs), hrefs
    ours = page.evaluate("""() => [...document.querySelectorAll('#transcript .timings a')]
        .map(a => a.getAttribute('href'))""")
    assert all(re.fullmatch(r"/traces/[0-9a-f]{32}/", h) for h in ours), ours
    replays = page.evaluate("""() => [...document.querySelectorAll('#transcript .who a')]
        .map(a => a.getAttribute('href'))""")
    assert all(re.fullmatch(r"/compare/\?conversation=\d+&message=\d+", h)
               for h in replays), replays


def test_xss_corpus_is_inert(page, console, scripted, browser):
    dialogs, remote = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: remote.append(r.url) if "127.0.0.1" not in r.url else None)
    sign_in(page, console)
    page.goto(console.url + "/backends/new/")
    page.get_by_label("Name").fill("hostile")
    page.get_by_label("Kind").select_option("openai_compatible")
    page.get_by_label("Base URL").fill(scripted.url)
    page.get_by_role("button", name="Add backend").click()
    page.goto(console.url + "/agents/new/")
    page.get_by_label("Name", exact=True).fill("hostile-agent")
    page.get_by_label("Backend", exact=True).select_option(label="hostile")
    page.get_by_label("Model", exact=True).fill("scripted-1")
    page.get_by_role("button", name="Create agent").click()
    scripted.add(text(*[item + "\n\n" for item in CORPUS]), finish())
    page.get_by_role("button", name="Try in playground").click()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()  # socket open
    page.get_by_label("Message").fill("be evil")
    page.keyboard.press("Enter")
    expect(page.locator(".msg-assistant .timings")).to_be_visible()
    expect(page.locator(".msg-assistant .body")).to_contain_text("safe link")
    page.wait_for_timeout(300)
    check_inert(page)
    shot(page, "xss-inert")
    page.reload()  # the stored conversation, rendered by the server then by markdown.js
    expect(page.locator(".msg-assistant .body")).to_contain_text("safe link")
    page.wait_for_timeout(300)
    check_inert(page)
    assert dialogs == [] and remote == []
    assert page.js_errors == []
