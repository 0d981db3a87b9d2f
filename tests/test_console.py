"""The operator console's files as the admin app serves them, without a browser: the
design's headers on the page and its assets on any mount path, no token needed for them
while every data route still needs one, markup that needs no inline script or style, a
script that never parses HTML, and the demo's landing page pointing at it.

``test_console_browser.py`` drives the console itself in Chromium."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib.resources import files

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from floodwall import Floodwall, FloodwallSettings
from floodwall.admin.console import ASSETS
from floodwall.demo import create_app

TOKEN = "console-token-0123456789abcdef"
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
MEDIA_TYPES = {
    "/console": "text/html; charset=utf-8",
    "/console/console.js": "text/javascript; charset=utf-8",
    "/console/console.css": "text/css; charset=utf-8",
}


def _text(name: str) -> str:
    return files("floodwall.admin.console").joinpath(name).read_text(encoding="utf-8")


def _settings(**values: object) -> FloodwallSettings:
    # Explicit, so no FLOODWALL_* variable of the environment leaks in.
    return FloodwallSettings(**{"admin_token": None, "admin_tokens": {}, **values})  # type: ignore[arg-type]


def _client(prefix: str, settings: FloodwallSettings) -> httpx.AsyncClient:
    app = Starlette(routes=[Floodwall(settings).admin_mount(prefix)])
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 123)),
        base_url="http://console.test",
    )


def test_the_served_paths_are_the_packaged_files() -> None:
    assert set(ASSETS) == set(MEDIA_TYPES)
    for path, (_, media_type) in ASSETS.items():
        assert media_type == MEDIA_TYPES[path]


@pytest.mark.parametrize("prefix", ["/admin", "/ops/floodwall"])
async def test_the_page_and_its_assets_carry_the_design_headers_and_need_no_token(
    prefix: str,
) -> None:
    async with _client(prefix, _settings(admin_token=SecretStr(TOKEN))) as http:
        for path, media_type in MEDIA_TYPES.items():
            for method in ("GET", "HEAD"):
                response = await http.request(method, prefix + path)
                assert response.status_code == 200, (method, path, response.text)
                assert response.headers["content-type"] == media_type
                for name, value in HEADERS.items():
                    assert response.headers[name] == value, (path, name)
                assert "set-cookie" not in response.headers
            body = (await http.get(prefix + path)).content
            assert body == files("floodwall.admin.console").joinpath(ASSETS[path][0]).read_bytes()
        # The data the page shows still needs the token.
        refused = await http.get(prefix + "/top")
        assert refused.status_code == 401
        allowed = await http.get(prefix + "/top", headers={"authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200


def test_the_policy_allows_no_inline_script_no_eval_and_no_other_origin() -> None:
    policy = HEADERS["content-security-policy"]
    assert "unsafe" not in policy
    assert "*" not in policy
    assert "http" not in policy
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"


async def test_the_console_is_served_when_no_admin_token_is_set() -> None:
    # The page says what the admin API answers (403, no token configured) after sign-in.
    async with _client("/admin", _settings()) as http:
        page = await http.get("/admin/console")
        data = await http.get("/admin/top", headers={"authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200
    assert data.status_code == 403


async def test_a_trailing_slash_leads_back_to_the_page() -> None:
    async with _client("/admin", _settings(admin_token=SecretStr(TOKEN))) as http:
        response = await http.get("/admin/console/")
    assert response.status_code in {307, 308}
    assert response.headers["location"] == "http://console.test/admin/console"


class _Markup(HTMLParser):
    """What the page's markup holds that could run or style anything, and its contract."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.script_text = ""
        self.in_script = False
        self.styles = 0
        self.style_attributes: list[str] = []
        self.handlers: list[str] = []
        self.urls: list[str] = []
        self.tables: list[str] = []
        self.names: dict[str, str] = {}
        self.buttons: list[str] = []
        self.in_button = False
        self.button_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self.in_script = True
        if tag == "style":
            self.styles += 1
        if "style" in attributes:
            self.style_attributes.append(tag)
        self.handlers += [name for name in attributes if name.startswith("on")]
        self.urls += [value or "" for name, value in attrs if name in {"src", "href", "action"}]
        if tag == "table":
            self.tables.append(attributes.get("id") or "")
        if "name" in attributes:
            self.names[attributes["name"] or ""] = f"{tag}:{attributes.get('type')}"
        if tag == "button":
            self.in_button = True
            self.button_text = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False
        if tag == "button":
            self.in_button = False
            self.buttons.append(" ".join(self.button_text.split()))

    def handle_data(self, data: str) -> None:
        if self.in_script:
            self.script_text += data
        if self.in_button:
            self.button_text += data


def test_the_page_has_no_inline_script_or_style_and_names_its_assets_relatively() -> None:
    markup = _Markup()
    markup.feed(_text("index.html"))
    assert markup.scripts == [{"type": "module", "src": "console/console.js"}]
    assert markup.script_text == ""
    assert markup.styles == 0
    assert markup.style_attributes == []
    assert markup.handlers == []
    # Relative to {mount}/console: the same files on any mount path, from no other origin.
    assert "console/console.css" in markup.urls
    for url in markup.urls:
        assert url.startswith(("console/", "#")), url


def test_the_page_holds_the_contract_names() -> None:
    markup = _Markup()
    markup.feed(_text("index.html"))
    assert markup.tables == ["top", "top-networks", "blocked", "networks", "audit"]
    assert markup.names["token"] == "input:password"
    for name in ("reason", "ttl", "user_id", "cidr"):
        assert markup.names[name] == "input:text", name
    assert markup.names["window"] == "select:None"
    contract = [
        "Sign in",
        "Sign out",
        "Block",
        "Unblock",
        "Revoke",
        "Require password reset",
        "Block selected",
        "Block network",
    ]
    for text in contract:
        # Exactly one of each, so "the Block button" names one thing.
        assert markup.buttons.count(text) == 1, (text, markup.buttons)
    for option in ("1 minute", "10 minutes", "1 hour"):
        assert f">{option}</option>" in _text("index.html")


def test_the_script_never_parses_html_or_code() -> None:
    script = _text("console.js")
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "createContextualFragment",
        "DOMParser",
        "srcdoc",
        "eval(",
        "Function(",
        'setTimeout("',
        "import(",
    ):
        assert sink not in script, sink
    # Nothing goes to the browser's console (a log), nor into a cookie or a URL's query,
    # except the ids and cursors the admin API takes there.
    assert "console.log" not in script
    assert "document.cookie" not in script
    assert "localStorage" not in script
    assert "sessionStorage" in script
    # Every route is relative to the page, so the console works on any mount path.
    for path in re.findall(r'call\("[A-Z]+", [`"]([^`"]*)', script):
        assert not path.startswith(("/", "http")), path


async def test_the_landing_page_links_the_console_and_says_the_admin_api_is_on() -> None:
    app = create_app(_settings(rate=1000, burst=1000, admin_token=SecretStr(TOKEN)))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 123))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo.test") as http:
        text = (await http.get("/")).text
        console = await http.get("/admin/console")
    assert 'href="http://demo.test/admin/console"' in text
    assert "The admin API is on." in text
    assert "The admin API is off" not in text
    assert TOKEN not in text
    assert console.status_code == 200


async def test_the_landing_page_says_how_to_turn_the_admin_api_on() -> None:
    app = create_app(_settings(rate=1000, burst=1000))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 123))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo.test") as http:
        text = (await http.get("/")).text
    assert "The admin API is off: no admin token is set" in text
    assert "FLOODWALL_ADMIN_TOKEN" in text
    assert 'href="http://demo.test/admin/console"' in text
    assert "The admin API is on." not in text
