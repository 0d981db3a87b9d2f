"""The operator console in a real browser: Debian's Chromium, driven by Playwright, against
a real ``floodwall demo`` process on a real redis-server.

An operator signs in, sees a flooding user in ``top`` within seconds, blocks them and finds
the block in the audit under their token's name; ticks rows and blocks them at once; meets
hostile ids shown as text; a wrong token is refused with no data; the token is never in a
URL, a cookie or a referrer; the console works on another mount path, at phone width and
from the keyboard. Every page is watched for script errors, dialogs and Content Security
Policy violations.

With ``CONSOLE_SCREENSHOTS=docs/images`` the run also writes the screenshots of
``docs/console.md`` there.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from demo_process import demo_process
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    Request,
    Response,
    sync_playwright,
)
from pydantic import SecretStr
from starlette.applications import Starlette

from floodwall import Floodwall, FloodwallSettings
from harness import RedisServer, find_free_port, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ACTOR = "oncall"
TOKEN = "console-browser-token-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
# Flush of refusals (1 s) plus one refresh of top (2 s), with room for a busy machine.
WITHIN_MS = 10_000
SCREENSHOTS = "CONSOLE_SCREENSHOTS"
DESIGN_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
TABLES = ["top", "top-networks", "blocked", "networks", "audit"]

# Collected by the page itself, before any of its own scripts run: Playwright adds this
# through the DevTools protocol, which the page's policy does not govern.
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[str]:
    """The demo on Redis, the admin API on, with the token named ``oncall``."""
    with demo_process(
        tmp_path_factory.mktemp("console-demo"),
        FLOODWALL_REDIS_URL=redis_server.url,
        FLOODWALL_KEY_PREFIX=f"console-{uuid.uuid4().hex[:8]}",
        FLOODWALL_ADMIN_TOKENS=f"{ACTOR}:{TOKEN}",
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Console:
    """One browser tab on the console, and what it did."""

    page: Page
    context: BrowserContext
    base: str
    requests: list[Request] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base}/console"

    def open(self) -> None:
        self.page.goto(self.url)

    def sign_in(self, token: str = TOKEN) -> None:
        self.page.locator('input[name="token"]').fill(token)
        self.page.get_by_role("button", name="Sign in", exact=True).click()

    def signed_in(self) -> None:
        self.page.locator("#console").wait_for(state="visible")

    def row(self, table: str, key: str, value: str) -> Locator:
        """The row of ``table`` whose ``data-{key}`` is ``value``, once it is there; found
        by comparing strings in the page, never by building a selector from the value."""
        self.page.wait_for_function(
            """([table, key, value]) => Array.from(
                 document.getElementById(table).tBodies[0].rows
               ).some((row) => row.dataset[key] === value)""",
            arg=[table, key, value],
            timeout=WITHIN_MS,
        )
        index = self.page.evaluate(
            """([table, key, value]) => Array.from(
                 document.getElementById(table).tBodies[0].rows
               ).findIndex((row) => row.dataset[key] === value)""",
            [table, key, value],
        )
        return self.page.locator(f"#{table} tbody tr").nth(index)

    def keys(self, table: str, key: str) -> list[str]:
        keys: list[str] = self.page.evaluate(
            """([table, key]) => Array.from(
                 document.getElementById(table).tBodies[0].rows, (row) => row.dataset[key]
               )""",
            [table, key],
        )
        return keys

    def rows(self, table: str) -> int:
        return self.page.locator(f"#{table} tbody tr").count()

    def notice(self, containing: str) -> str:
        notice = self.page.locator("#notice")
        notice.filter(has_text=containing).wait_for(timeout=WITHIN_MS)
        return notice.inner_text()

    def violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("window.__violations ?? []")
        return found

    def screenshot(self, name: str, *, full_page: bool = False) -> None:
        folder = os.environ.get(SCREENSHOTS)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=Path(folder) / name, full_page=full_page)


@contextmanager
def console_tab(browser: Browser, base: str, **options: Any) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    context.add_init_script(WATCH)
    page = context.new_page()
    console = Console(page, context, base)
    # Playwright wraps each handler, so a plain function, not a builtin method.
    context.on("request", lambda request: console.requests.append(request))

    def dialog(shown: Dialog) -> None:
        console.dialogs.append(shown.message)
        shown.dismiss()

    def message(logged: ConsoleMessage) -> None:
        # A refused token is a 401 the browser logs; a missing favicon a 404.
        if logged.type == "error" and "Failed to load resource" not in logged.text:
            console.errors.append(logged.text)

    page.on("dialog", dialog)
    page.on("console", message)
    page.on("pageerror", lambda error: console.errors.append(str(error)))
    try:
        yield console
        assert console.violations() == []
        assert console.dialogs == []
        assert console.errors == []
    finally:
        context.close()


@pytest.fixture
def console(browser: Browser, demo: str) -> Iterator[Console]:
    with console_tab(browser, f"{demo}/admin") as tab:
        yield tab


def flood(url: str, user: str | None, requests: int = 40) -> None:
    """Call the demo ``requests`` times as ``user`` (anonymous when None), one after another
    on one connection: faster than the limit, so most are refused."""
    with httpx.Client(base_url=url, timeout=10) as http:
        headers = {}
        if user is not None:
            login = http.post("/login", json={"user": user})
            assert login.status_code == 200, login.text
            headers = {"authorization": f"Bearer {login.json()['access_token']}"}
        codes = [http.get("/api/hello", headers=headers).status_code for _ in range(requests)]
    assert 429 in codes


def admin(url: str, method: str, path: str, **options: Any) -> Any:
    response = httpx.request(method, f"{url}/admin/{path}", headers=ADMIN, timeout=10, **options)
    assert response.status_code == 200, response.text
    return response.json()


def status_of(url: str, user_id: str) -> Any:
    return admin(url, "GET", "users/-", params={"user_id": user_id})


# -- the incident --------------------------------------------------------------------------


def test_a_flooding_user_shows_in_top_and_is_blocked_from_the_console(
    console: Console, demo: str
) -> None:
    page = console.page
    console.open()
    # The token input has the focus: type it and press Enter.
    assert page.evaluate("document.activeElement.name") == "token"
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    console.signed_in()
    assert page.locator('input[name="token"]').input_value() == ""

    for user in ("mallory", "stuffing-bot-17", "scraper-eu-3"):
        flood(demo, user)
    flood(demo, None, requests=30)
    row = console.row("top", "subject", "mallory")
    console.row("top", "subject", "stuffing-bot-17")
    console.row("top-networks", "network", "127.0.0.0/24")
    assert row.locator("bdi").inner_text() == "mallory"
    assert int(row.locator("td.number").inner_text().replace(",", "")) > 0
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    console.screenshot("console-top.png")

    page.locator('input[name="reason"]').fill("flooding /api/hello")
    page.locator('input[name="ttl"]').fill("1h")
    row.get_by_role("button", name="Open").click()
    page.locator("#status-fields").filter(has_text="mallory").wait_for()
    page.get_by_role("button", name="Block", exact=True).click()
    text = console.notice("Blocked")
    assert "mallory" in text
    assert "received_by: 1" in text
    assert page.locator("#notice").get_attribute("class") == "notice ok"

    # The audit, newest first: this block on top, under the token's name.
    newest = console.row("audit", "id", admin(demo, "GET", "audit?limit=1")["items"][0]["id"])
    assert console.keys("audit", "id")[0] == newest.get_attribute("data-id")
    cells = newest.locator("td").all_inner_texts()
    assert cells[1:5] == [ACTOR, "block", "mallory", "flooding /api/hello"]
    assert cells[5] != "—"  # expires in an hour
    console.row("blocked", "userId", "mallory")

    status = status_of(demo, "mallory")
    assert (status["blocked"], status["blocked_by"], status["reason"]) == (
        True,
        ACTOR,
        "flooding /api/hello",
    )
    with httpx.Client(base_url=demo, timeout=10) as http:
        login = http.post("/login", json={"user": "mallory"}).json()["access_token"]
        assert (
            http.get("/api/hello", headers={"authorization": f"Bearer {login}"}).status_code == 403
        )
    console.screenshot("console-audit.png", full_page=True)


def test_ticked_rows_of_top_are_blocked_at_once_long_ids_whole(console: Console, demo: str) -> None:
    page = console.page
    long_id = "wave-" + "0123456789abcdef" * 12 + "-end"
    users = [long_id, "stuffed-account-204"]
    for user in users:
        flood(demo, user)
    console.open()
    console.sign_in()
    console.signed_in()
    long_row = console.row("top", "subject", long_id)
    # Shortened in view, whole in the title and in what is sent.
    shown = long_row.locator("bdi").inner_text()
    assert len(shown) < 60
    assert "…" in shown
    assert long_row.locator("bdi").get_attribute("title") == long_id
    for user in users:
        console.row("top", "subject", user).get_by_role("checkbox").check()
    assert page.locator("#selected-count").inner_text() == "2 ticked"
    page.locator('input[name="reason"]').fill("credential stuffing wave")
    with page.expect_request(lambda request: request.url.endswith("/admin/blocks")) as sent:
        page.get_by_role("button", name="Block selected", exact=True).click()
    body = sent.value.post_data_json
    assert body is not None
    assert sorted(body["user_ids"]) == sorted(users)
    assert body["reason"] == "credential stuffing wave"
    text = console.notice("Blocked 2 users of 2")
    assert "received_by: 1" in text
    for user in users:
        assert status_of(demo, user)["blocked"] is True
    audited = [item["user_id"] for item in admin(demo, "GET", "audit?limit=2")["items"]]
    assert sorted(audited) == sorted(users)
    titles = page.locator("#audit tbody tr td:nth-child(4) bdi").evaluate_all(
        "(cells) => cells.slice(0, 2).map((cell) => cell.title)"
    )
    assert sorted(titles) == sorted(users)
    assert page.locator("#selected-count").inner_text() == "None ticked"


HOSTILE = [
    "<img src=x onerror=window.__pwned=1>",
    "</td></tr><tr data-subject=forged><td>forged",
    "\u202egnp.exe",
    "alice\u200b",
    "<style>body{display:none}</style>",
]
HOSTILE_REASON = "<b>bold</b> <script>window.__pwned=2</script>\u202e reversed"


def test_hostile_ids_and_reasons_are_shown_as_text(console: Console, demo: str) -> None:
    page = console.page
    for user in HOSTILE:
        flood(demo, user, requests=30)
        admin(
            demo, "PUT", "users/-/block", params={"user_id": user}, json={"reason": HOSTILE_REASON}
        )
    console.open()
    console.sign_in()
    console.signed_in()
    for user in HOSTILE:
        row = console.row("top", "subject", user)
        view = row.locator("bdi")
        assert view.text_content() == user
        assert view.get_attribute("title") == user
        assert view.evaluate("(element) => getComputedStyle(element).unicodeBidi") == "isolate"
        console.row("blocked", "userId", user)
    # Characters that print as nothing are flagged, so "alice" and "alice\u200b" differ.
    flagged = console.row("top", "subject", "alice\u200b").locator("bdi")
    assert "invisible-chars" in (flagged.get_attribute("class") or "")
    rtl = console.row("top", "subject", "\u202egnp.exe").locator("bdi")
    assert "invisible-chars" in (rtl.get_attribute("class") or "")

    # Exactly the rows the admin API lists, in its order: no row forged, none lost.
    subjects = [item["subject"] for item in admin(demo, "GET", "top?window=60&limit=25")["items"]]
    wait_until(lambda: console.keys("top", "subject") == subjects, "top matches", within=5)
    blocked = [item["user_id"] for item in admin(demo, "GET", "blocked?limit=25")["items"]]
    wait_until(lambda: console.keys("blocked", "userId") == blocked, "blocked matches", within=5)
    assert "forged" not in console.keys("top", "subject")
    audit_rows = console.rows("audit")
    assert audit_rows == len(admin(demo, "GET", "audit?limit=25")["items"])
    assert page.locator("#audit tbody tr td").count() == audit_rows * 7

    # Nothing of it became markup: no element, no script run, nothing restyled.
    assert page.locator("#console img, #console style, #console script, #console b").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#top").is_visible()
    reasons = page.locator("#blocked tbody tr td:nth-child(2) bdi").all_text_contents()
    assert HOSTILE_REASON in reasons

    # And an action on one acts on that id exactly.
    console.row("blocked", "userId", HOSTILE[1]).get_by_role("button", name="Open").click()
    page.locator("#status").wait_for()
    page.get_by_role("button", name="Unblock", exact=True).click()
    console.notice("Unblocked")
    assert status_of(demo, HOSTILE[1])["blocked"] is False
    assert status_of(demo, "forged")["blocked"] is False


def test_ids_a_path_cannot_hold_are_acted_on_exactly(console: Console, demo: str) -> None:
    page = console.page
    console.open()
    console.sign_in()
    console.signed_in()
    page.locator('input[name="reason"]').fill("path forms")
    # "." and ".." would be resolved away in a path, "" fits none, "/" "?" "#" "+" "%" and a
    # space must be encoded; the console names each so the admin API reads it back.
    for user_id in ["..", ".", "", "team/alice", " a b+c?d#e%2F ", "-"]:
        page.locator('input[name="user_id"]').fill(user_id)
        page.locator('input[name="user_id"]').press("Enter")
        page.wait_for_function(
            "(id) => document.querySelector('#status-fields bdi.id')?.title === id",
            arg=user_id,
            timeout=WITHIN_MS,
        )
        page.get_by_role("button", name="Block", exact=True).click()
        console.notice("Blocked")
        status = status_of(demo, user_id)
        assert (status["user_id"], status["blocked"]) == (user_id, True)
        page.locator("#notice").evaluate("(notice) => notice.replaceChildren()")

    # An id no keyboard types: the lone surrogate U+D800 (a JWT "sub" of "\ud800").
    surrogate = "users/%ED%A0%80"
    admin(demo, "PUT", f"{surrogate}/block", json={"reason": "lone surrogate"})
    find = """Array.from(document.getElementById("blocked").tBodies[0].rows).findIndex(
        (row) => row.dataset.userId === String.fromCharCode(0xd800))"""
    page.get_by_role("button", name="Sign out", exact=True).click()
    console.sign_in()
    console.signed_in()
    # Predicates as functions: a string would be evaluated, which the page's policy forbids.
    page.wait_for_function(f"() => {find} >= 0", timeout=WITHIN_MS)
    row = page.locator("#blocked tbody tr").nth(page.evaluate(find))
    row.get_by_role("button", name="Open").click()
    page.wait_for_function(
        "() => document.querySelector('#status-fields bdi.id')?.title === "
        "String.fromCharCode(0xd800)",
        timeout=WITHIN_MS,
    )
    page.get_by_role("button", name="Unblock", exact=True).click()
    console.notice("Unblocked")
    assert admin(demo, "GET", surrogate)["blocked"] is False


def test_a_network_block_and_a_password_reset_from_the_console(console: Console, demo: str) -> None:
    page = console.page
    console.open()
    console.sign_in()
    console.signed_in()
    page.locator('input[name="reason"]').fill("scanner network")
    page.locator('input[name="ttl"]').fill("soon")
    page.locator('input[name="cidr"]').fill("198.51.100.0/24")
    page.get_by_role("button", name="Block network", exact=True).click()
    console.notice("For (ttl)")
    assert admin(demo, "GET", "networks")["items"] == []

    page.locator('input[name="ttl"]').fill("15m")
    page.get_by_role("button", name="Block network", exact=True).click()
    text = console.notice("Blocked the network")
    assert "198.51.100.0/24" in text
    assert "received_by: 1" in text
    row = console.row("networks", "network", "198.51.100.0/24")
    assert row.locator("td").all_inner_texts()[1:3] == ["scanner network", ACTOR]
    (block,) = admin(demo, "GET", "networks")["items"]
    assert (block["network"], block["reason"]) == ("198.51.100.0/24", "scanner network")
    row.get_by_role("button", name="Lift block").click()
    console.notice("Lifted the block of")
    assert admin(demo, "GET", "networks")["items"] == []

    page.locator('input[name="user_id"]').fill("reset-me")
    page.get_by_role("button", name="Look up", exact=True).click()
    page.locator("#status").wait_for()
    page.get_by_role("button", name="Require password reset", exact=True).click()
    assert "received_by: 1" in console.notice("must reset their password")
    status = status_of(demo, "reset-me")
    assert status["password_reset_required"] is True
    assert status["credentials_not_before"] is not None
    audit = admin(demo, "GET", "audit?limit=1")["items"][0]
    assert (audit["actor"], audit["user_id"], audit["reason"]) == (
        ACTOR,
        "reset-me",
        "scanner network",
    )


# -- the token -----------------------------------------------------------------------------


def test_a_wrong_token_is_refused_and_shows_no_data(console: Console, demo: str) -> None:
    page = console.page
    flood(demo, "present-in-top")
    console.open()
    console.sign_in("not-the-token-0123456789abcdef")
    alert = page.get_by_role("alert")
    alert.filter(has_text="refused").wait_for()
    assert page.locator("#console").is_hidden()
    assert page.locator('input[name="token"]').is_visible()
    for table in TABLES:
        assert console.rows(table) == 0, table
    assert page.evaluate("sessionStorage.length") == 0
    data = [r for r in console.requests if "/admin/" in r.url and "/console" not in r.url]
    assert len(data) == 1
    assert data[0].response() is not None
    assert data[0].response().status == 401  # type: ignore[union-attr]

    # The right one then works, in the same tab.
    console.sign_in()
    console.signed_in()
    console.row("top", "subject", "present-in-top")
    assert page.locator("#sign-in-error").inner_text() == ""


def test_a_token_refused_mid_session_signs_out_and_leaves_no_data(
    console: Console, demo: str
) -> None:
    page = console.page
    flood(demo, "seen-before-rotation")
    console.open()
    console.sign_in()
    console.signed_in()
    console.row("top", "subject", "seen-before-rotation")
    # The operators rotate the token: from now on the admin API refuses this one.
    page.route(
        "**/admin/top?*",
        lambda route: route.fulfill(
            status=401,
            content_type="application/problem+json",
            body='{"title": "Unauthorized", "detail": "A valid admin bearer token is required."}',
        ),
    )
    page.get_by_role("alert").filter(has_text="The admin token was refused").wait_for(
        timeout=WITHIN_MS
    )
    assert page.locator("#console").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    for table in TABLES:
        assert console.rows(table) == 0, table


def test_the_token_is_never_in_a_url_a_cookie_or_a_referrer(console: Console, demo: str) -> None:
    page = console.page
    console.open()
    console.sign_in()
    console.signed_in()
    page.locator('input[name="user_id"]').fill("revoked-user")
    page.get_by_role("button", name="Look up", exact=True).click()
    page.locator("#status").wait_for()
    page.get_by_role("button", name="Revoke", exact=True).click()
    console.notice("Revoked every credential")
    # Through a refresh of top, and a reload: the tab keeps the token, nothing else does.
    with page.expect_request(lambda request: "/admin/top?" in request.url):
        pass
    page.reload()
    console.signed_in()
    assert page.evaluate("sessionStorage.getItem('floodwall-admin-token')") == TOKEN
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("localStorage.length") == 0
    assert console.context.cookies() == []

    data = [r for r in console.requests if "/console" not in r.url and "/admin/" in r.url]
    assert len(data) >= 8
    for request in console.requests:
        headers = request.all_headers()
        assert TOKEN not in request.url
        # Chromium reports a referrer it withholds as an empty header.
        assert headers.get("referer", "") == "", request.url
        assert "cookie" not in headers, request.url
        if request in data:
            assert headers["authorization"] == f"Bearer {TOKEN}", request.url
        else:
            assert "authorization" not in headers, request.url

    # Sign out: the token and every figure leave the tab; a reload shows the sign-in only.
    page.get_by_role("button", name="Sign out", exact=True).click()
    assert page.locator("#console").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    for table in TABLES:
        assert console.rows(table) == 0, table
    before = len(console.requests)
    page.reload()
    page.locator('input[name="token"]').wait_for()
    assert page.locator("#console").is_hidden()
    after = [r.url for r in console.requests[before:]]
    assert not [url for url in after if "/console" not in url and "/admin/" in url], after


def test_the_page_and_its_assets_carry_the_design_headers(console: Console) -> None:
    seen: list[Response] = []
    console.page.on("response", lambda response: seen.append(response))
    console.open()
    console.page.locator('input[name="token"]').wait_for()
    by_path = {response.url.removeprefix(console.base): response for response in seen}
    for path in ("/console", "/console/console.js", "/console/console.css"):
        headers = by_path[path].all_headers()
        assert by_path[path].status == 200, path
        for header, value in DESIGN_HEADERS.items():
            assert headers.get(header) == value, (path, header)


# -- anywhere, any screen ------------------------------------------------------------------


@pytest.fixture
def elsewhere(browser: Browser) -> Iterator[Console]:
    """The admin app alone, mounted at ``/ops/floodwall`` of an app that no worker follows
    changes in: a change is stored, and received by no app."""
    settings = FloodwallSettings(admin_token=SecretStr(TOKEN), admin_tokens={})
    app = Starlette(routes=[Floodwall(settings).admin_mount("/ops/floodwall")])
    port = find_free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "the app serves", within=10)
        with console_tab(browser, f"http://127.0.0.1:{port}/ops/floodwall") as tab:
            yield tab
    finally:
        server.should_exit = True
        thread.join(10)


def test_on_another_mount_path_a_change_no_app_received_is_a_warning(elsewhere: Console) -> None:
    page = elsewhere.page
    elsewhere.open()
    elsewhere.sign_in()
    elsewhere.signed_in()
    # A store with nothing in it: each section says so, and what to do.
    empty = {
        "top-empty": "No refusals in the last minute.",
        "top-networks-empty": "No anonymous client refused in the last minute.",
        "blocked-empty": "No one is blocked. Block a user from User",
        "networks-empty": "No network is blocked. Enter one (203.0.113.0/24)",
        "audit-empty": "No operator action yet",
    }
    for element, text in empty.items():
        page.locator(f"#{element}").filter(has_text=text).wait_for(timeout=WITHIN_MS)
    page.locator('select[name="window"]').select_option(label="1 hour")
    page.locator("#top-empty").filter(has_text="No refusals in the last hour.").wait_for()
    page.locator('input[name="user_id"]').fill("carol")
    page.locator('input[name="user_id"]').press("Enter")
    page.locator("#status").wait_for()
    page.get_by_role("button", name="Block", exact=True).click()
    # No reason: nothing is sent, and the reason is asked for.
    elsewhere.notice("give a reason")
    assert page.evaluate("document.activeElement.name") == "reason"
    page.locator('input[name="reason"]').fill("testing the mount")
    page.get_by_role("button", name="Block", exact=True).click()
    text = elsewhere.notice("received_by: 0")
    assert "no running app received it" in text
    assert page.locator("#notice").get_attribute("class") == "notice warn"
    elsewhere.row("blocked", "userId", "carol")
    assert elsewhere.page.locator("#audit tbody tr td").nth(2).inner_text() == "block"
    for request in elsewhere.requests:
        assert request.url.startswith(elsewhere.base + "/") or request.url.endswith("favicon.ico")


def test_blocked_users_and_the_audit_page_on(elsewhere: Console) -> None:
    page = elsewhere.page
    users = [f"wave-{n:02}" for n in range(30)]
    answer = httpx.post(
        f"{elsewhere.base}/blocks",
        json={"user_ids": users, "reason": "stuffing wave"},
        headers=ADMIN,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    elsewhere.open()
    elsewhere.sign_in()
    elsewhere.signed_in()
    elsewhere.row("blocked", "userId", "wave-00")
    assert elsewhere.keys("blocked", "userId") == users[:25]
    page.get_by_role("button", name="Next page", exact=True).click()
    elsewhere.row("blocked", "userId", "wave-29")
    assert elsewhere.keys("blocked", "userId") == users[25:]
    assert page.get_by_role("button", name="Next page", exact=True).is_disabled()
    page.get_by_role("button", name="First page", exact=True).click()
    elsewhere.row("blocked", "userId", "wave-00")
    assert elsewhere.keys("blocked", "userId") == users[:25]

    # The audit, newest first: the last of the bulk block on top, then older entries.
    newest = [
        cell.strip() for cell in page.locator("#audit tbody tr td:nth-child(4)").all_inner_texts()
    ]
    assert newest == users[::-1][:25]
    page.get_by_role("button", name="Older", exact=True).click()
    page.wait_for_function("() => document.getElementById('audit').tBodies[0].rows.length === 5")
    older = [
        cell.strip() for cell in page.locator("#audit tbody tr td:nth-child(4)").all_inner_texts()
    ]
    assert older == users[::-1][25:]
    page.get_by_role("button", name="Newest", exact=True).click()
    page.wait_for_function("() => document.getElementById('audit').tBodies[0].rows.length === 25")


def test_usable_at_phone_width_from_the_keyboard(browser: Browser, demo: str) -> None:
    flood(demo, "phone-flooder")
    with console_tab(browser, f"{demo}/admin") as phone:
        page = phone.page
        page.set_viewport_size({"width": 390, "height": 844})
        phone.open()
        page.keyboard.type(TOKEN)
        page.keyboard.press("Enter")
        phone.signed_in()
        phone.row("top", "subject", "phone-flooder")
        phone.screenshot("console-phone.png")
        # Nothing wider than the screen: wide tables scroll inside their own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390

        def tab_to(description: str) -> None:
            for _ in range(80):
                page.keyboard.press("Tab")
                focused = page.evaluate(
                    "document.activeElement.name || document.activeElement.textContent.trim()"
                )
                if focused == description:
                    return
            raise AssertionError(f"Tab never reached {description}")

        page.locator("#main").focus()
        tab_to("reason")
        page.keyboard.type("flooding from a phone")
        tab_to("user_id")
        page.keyboard.type("phone-flooder")
        page.keyboard.press("Enter")
        page.locator("#status").wait_for()
        tab_to("Block")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid"
        page.keyboard.press("Enter")
        phone.notice("Blocked")
        assert status_of(demo, "phone-flooder")["blocked"] is True
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
