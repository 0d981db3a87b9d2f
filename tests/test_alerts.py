"""deploy/prometheus and deploy/grafana, proven on a real Prometheus.

promtool checks the rules and runs their unit tests. Then a real Prometheus (the Debian
``prometheus`` package, on a free loopback port, never the system one's :9090) loads the
rules file as shipped, scrapes two demo apps every second and evaluates every second:
``flood``, on its own redis-server, that one account floods from many connections, and
``outage``, whose redis-server is stopped under a trickle of requests. The alerts must
fire for the app they are about and no other, and every query of the dashboard must
evaluate on that Prometheus.

The rules' ``for: 1m`` is kept: the alerts fire about a minute and a quarter after the
flood and the outage start, together.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import math
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from demo_process import demo_process

from harness import RedisServer, death_signal_preexec, find_free_port, wait_until, wait_until_async

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "floodwall-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "floodwall-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "floodwall-dashboard.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
ALERTS = ("FloodwallRefusalFlood", "FloodwallStoreUnavailable", "FloodwallShedding")
JWT_SECRET = "alerts-jwt-signing-key-0123456789abcdef"
# One account on 150 connections: the tarpit holds each refusal about 0.5 s, which leaves
# about 300 refusals a second, "a few hundred", as it leaves of a flood in production.
FLOOD_CONNECTIONS = 150
# Generous: the alerts fire about 75 s after the flood and the outage start.
ALERT_DEADLINE = 240.0
# What Grafana puts in for its built-in variables, as the tests substitute them.
BUILT_INS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# The panels that must show data while an app serves requests.
MAIN_PANELS = ("Decisions by result", "Refusals by kind", "Store check latency")

pytestmark = pytest.mark.slow


# -- promtool ---------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_unit_tests_see_each_alert_fire_and_stay_quiet() -> None:
    text = RULE_TESTS.read_text()
    for alert in ALERTS:
        checks = re.findall(rf"alertname: {alert}\n\s+exp_alerts:( \[\])?", text)
        assert "" in checks, f"no unit test sees {alert} fire"
        assert " []" in checks, f"no unit test sees {alert} stay quiet"


# -- the runbook's headings -------------------------------------------------------------------


def heading_anchor(heading: str) -> str:
    """The anchor GitHub and MkDocs give a heading: lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", text)


def runbook_anchors() -> set[str]:
    anchors: set[str] = set()
    fenced = False
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)$", line)):
            anchors.add(heading_anchor(match.group(1)))
    return anchors


def test_heading_anchors_are_githubs() -> None:
    assert heading_anchor("Redis is down") == "redis-is-down"
    assert heading_anchor("Rolling out a new limit (shadow mode)") == (
        "rolling-out-a-new-limit-shadow-mode"
    )
    assert heading_anchor("The first 60 seconds") in runbook_anchors()
    assert "floodwall-on-call-runbook" in runbook_anchors()


# -- a real Prometheus ------------------------------------------------------------------------


class Prometheus:
    """One ``prometheus`` process on a free loopback port, with its own configuration and
    data directory, scraping ``targets`` (job name: host:port) and evaluating ``RULES``
    every second."""

    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        # JSON is YAML: prometheus reads it as is.
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(json.dumps(config, indent=2))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=death_signal_preexec(),
            )
        wait_until(self._ready, f"prometheus answers at {self.url}", within=30, details=self.log)

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{self.log()}")
        try:
            return httpx.get(self.url + "/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def get(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful API answer; fails the test on an error answer."""
        reply = httpx.get(self.url + path, params=params, timeout=10).json()
        assert reply["status"] == "success", f"{path} {params}: {reply}"
        return reply["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", expr
        result: list[dict[str, Any]] = data["result"]
        return result


@dataclass
class Stack:
    prometheus: Prometheus
    flood_url: str
    outage_url: str
    outage_redis: RedisServer


def target(url: str) -> str:
    return url.removeprefix("http://")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("alerts")
    with ExitStack() as started:
        flood_redis = RedisServer.start(tmp / "flood-redis")
        started.callback(flood_redis.stop)
        outage_redis = RedisServer.start(tmp / "outage-redis")
        started.callback(outage_redis.stop)
        flood_url = started.enter_context(
            demo_process(tmp, FLOODWALL_REDIS_URL=flood_redis.url, FLOODWALL_JWT_SECRET=JWT_SECRET)
        )
        outage_url = started.enter_context(
            demo_process(tmp, FLOODWALL_REDIS_URL=outage_redis.url, FLOODWALL_REDIS_TIMEOUT="0.5")
        )
        prometheus = Prometheus(
            tmp / "prometheus", {"flood": target(flood_url), "outage": target(outage_url)}
        )
        started.callback(prometheus.stop)
        prometheus.start()
        wait_until(
            lambda: len(prometheus.query("up == 1")) == 2,
            "prometheus scrapes both apps",
            within=30,
            interval=0.2,
            details=prometheus.log,
        )
        yield Stack(prometheus, flood_url, outage_url, outage_redis)


def alerts(prometheus: Prometheus, name: str) -> list[dict[str, Any]]:
    """The alerts ``name`` Prometheus holds now, pending or firing."""
    found: list[dict[str, Any]] = prometheus.get("/api/v1/alerts")["alerts"]
    return [alert for alert in found if alert["labels"]["alertname"] == name]


def firing(prometheus: Prometheus, name: str, job: str) -> dict[str, Any] | None:
    for alert in alerts(prometheus, name):
        if alert["state"] == "firing" and alert["labels"].get("job") == job:
            return alert
    return None


def test_every_alert_has_a_severity_a_summary_and_a_runbook_heading(stack: Stack) -> None:
    groups = stack.prometheus.get("/api/v1/rules", type="alert")["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(ALERTS) <= rules.keys()
    anchors = runbook_anchors()
    for name, rule in rules.items():
        assert rule["labels"].get("severity") in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= annotations.keys(), name
        path, _, fragment = annotations["runbook_url"].partition("#")
        assert path == "docs/runbook.md", name
        assert fragment in anchors, f"{name}: docs/runbook.md has no heading #{fragment}"
    assert "`floodwall top`" in rules["FloodwallRefusalFlood"]["annotations"]["description"]


async def flood_connection(
    url: str, token: str, stop: asyncio.Event, statuses: collections.Counter[int]
) -> None:
    """One keep-alive connection sending ``GET /api/hello`` with ``token``, each request as
    soon as the last is answered, until ``stop``; counts the answers by status.

    Plain HTTP/1.1 on asyncio streams: httpx spends so much CPU a request that on a small
    shared machine it, not the tarpit, would set the flood's pace, below the threshold."""
    host, _, port = target(url).partition(":")
    request = (
        f"GET /api/hello HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\r\n"
    ).encode()
    while not stop.is_set():
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while not stop.is_set():
                writer.write(request)
                status_line = await reader.readline()
                if not status_line:
                    break  # the server closed the connection: open another
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                statuses[int(status_line.split()[1])] += 1
        finally:
            writer.close()


async def test_a_flood_and_a_stopped_redis_fire_their_alerts(stack: Stack) -> None:
    prometheus = stack.prometheus
    statuses: collections.Counter[int] = collections.Counter()
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=stack.outage_url, timeout=10) as outage_client:
        login = await outage_client.post(stack.flood_url + "/login", json={"user": "mallory"})
        token = login.json()["access_token"]

        async def trickle() -> None:
            # A worker notices a dead Redis when a request needs it.
            while not stop.is_set():
                await outage_client.get("/api/hello")
                await asyncio.sleep(0.2)

        stack.outage_redis.stop()
        tasks = [
            asyncio.create_task(flood_connection(stack.flood_url, token, stop, statuses))
            for _ in range(FLOOD_CONNECTIONS)
        ]
        tasks.append(asyncio.create_task(trickle()))

        def details() -> str:
            seen = [
                (a["labels"]["alertname"], a["labels"].get("job"), a["state"], a["value"])
                for name in ALERTS
                for a in alerts(prometheus, name)
            ]
            refusals = prometheus.query("job:floodwall_refusals:rate1m")
            return f"alerts: {seen}\nrefusals a second: {refusals}\nflood answers: {statuses}"

        try:
            unavailable = await wait_until_async(
                lambda: firing(prometheus, "FloodwallStoreUnavailable", "outage"),
                "FloodwallStoreUnavailable fires for the app whose Redis stopped",
                within=ALERT_DEADLINE,
                interval=1,
                details=details,
            )
            flood_alert = await wait_until_async(
                lambda: firing(prometheus, "FloodwallRefusalFlood", "flood"),
                "FloodwallRefusalFlood fires for the flooded app",
                within=ALERT_DEADLINE,
                interval=1,
                details=details,
            )
            # Each alert is about its app only: the trickle to the other app is no flood,
            # the flooded app's Redis answers.
            assert [a["labels"]["job"] for a in alerts(prometheus, "FloodwallRefusalFlood")] == [
                "flood"
            ], details()
            assert [
                a["labels"]["job"] for a in alerts(prometheus, "FloodwallStoreUnavailable")
            ] == ["outage"], details()
            assert alerts(prometheus, "FloodwallShedding") == [], details()
        finally:
            stop.set()
            ended = await asyncio.gather(*tasks, return_exceptions=True)
    assert [e for e in ended if e is not None] == []
    assert unavailable is not None
    assert flood_alert is not None
    assert statuses[429] > statuses[200], statuses
    assert unavailable["labels"]["instance"] == target(stack.outage_url)
    assert unavailable["labels"]["severity"] == "critical"
    assert flood_alert["labels"]["severity"] == "critical"
    assert float(flood_alert["value"]) > 50
    assert "`floodwall top`" in flood_alert["annotations"]["description"]


# -- the dashboard ------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too; rows themselves left out."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def substitute(expr: str, variables: dict[str, str]) -> str:
    for name, value in {**BUILT_INS, **variables}.items():
        expr = expr.replace("${" + name.lstrip("$") + "}", value).replace(name, value)
    assert "$" not in expr, f"a variable is left: {expr}"
    return expr


def test_the_dashboard_is_one_grafana_imports() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["title"]
    assert board["uid"]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["includeAll"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = [panel["title"] for panel in panels(board)]
    for title in (*MAIN_PANELS, "Circuit breaker and store errors", "Shed requests"):
        assert title in titles
    for title in ("Capacity limit", "Tarpit", "Operator actions", "Connections closed"):
        assert title in titles
    for panel in panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        for query in panel["targets"]:
            assert query["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'job=~"$job"' in query["expr"], panel["title"]
            assert 'instance=~"$instance"' in query["expr"], panel["title"]


def test_every_dashboard_query_evaluates_and_the_main_panels_have_data(stack: Stack) -> None:
    prometheus = stack.prometheus
    board = dashboard()
    # Traffic: one user within the limit, then over it (10 a second, a burst of 10).
    with httpx.Client(base_url=stack.flood_url, timeout=10) as client:
        login = client.post("/login", json={"user": "carol"})
        carol = {"authorization": f"Bearer {login.json()['access_token']}"}
        codes = [client.get("/api/hello", headers=carol).status_code for _ in range(30)]
    assert 200 in codes, codes
    assert 429 in codes, codes

    # The variables' queries (Grafana's label_values) as the API answers them.
    jobs = prometheus.get("/api/v1/label/job/values", **{"match[]": "floodwall_decisions_total"})
    assert {"flood", "outage"} <= set(jobs)
    instances = prometheus.get(
        "/api/v1/label/instance/values", **{"match[]": 'floodwall_decisions_total{job=~"flood"}'}
    )
    assert instances == [target(stack.flood_url)]

    selections = [
        {"$job": ".*", "$instance": ".*"},
        {"$job": "flood", "$instance": target(stack.flood_url)},
    ]
    for variables in selections:
        for panel in panels(board):
            for query in panel["targets"]:
                prometheus.query(substitute(query["expr"], variables))

    def has_data(title: str) -> bool:
        (panel,) = [panel for panel in panels(board) if panel["title"] == title]
        for query in panel["targets"]:
            result = prometheus.query(substitute(query["expr"], selections[1]))
            if not any(math.isfinite(float(series["value"][1])) for series in result):
                return False
        return True

    for title in MAIN_PANELS:
        wait_until(
            functools.partial(has_data, title),
            f"the panel {title!r} has data",
            within=30,
            interval=0.5,
        )

    groups = prometheus.get("/api/v1/rules")["groups"]
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", rule
