"""The operators' HTTP endpoints, called as the host calls them, and the timeline page in a real headless Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest

from shared import runtime
from shared.ops.simulate import Options, simulate
from shared.reactions import Rules
from shared.settings import get_settings
from tests.conftest import ROOT, Harness, event, indexed

ARTIFACTS = ROOT / "test-artifacts"


def call(name: str, **params: str) -> func.HttpResponse:
    request = func.HttpRequest(method="GET", url=f"http://localhost/api/{name}", params=params, body=b"")
    response: func.HttpResponse = indexed()[name].get_user_function()(request)
    return response


@pytest.fixture
def app_engine(make_engine: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    harness = make_engine()
    monkeypatch.setattr(runtime, "_engine", harness.engine)
    get_settings.cache_clear()
    yield harness
    get_settings.cache_clear()


def test_the_endpoints_are_get_only_and_need_a_function_key() -> None:
    for name in ("health", "audit", "timeline"):
        (trigger, _) = indexed()[name].get_bindings()
        binding = trigger.get_dict_repr()
        methods = [str(getattr(m, "value", m)) for m in binding["methods"]]
        assert (binding["type"], binding["route"], methods) == ("httpTrigger", name, ["GET"])
        assert str(binding["authLevel"]).lower().endswith("function")


def test_health_says_rules_valid_ledger_reachable_and_which_adapters_are_live_without_secrets(
    app_engine: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLREACTOR_DEVOPS_PAT", "pat-must-never-show-7f3a")
    monkeypatch.setenv("MLREACTOR_STORAGE_CONNECTION_STRING", "AccountKey=never-show-9b1c")
    response = call("health")
    body = response.get_body().decode()
    report = json.loads(body)
    assert response.status_code == 200
    assert report["status"] == "ok" and report["rules"]["valid"] is True
    assert report["ledger"] == {"backend": "sqlite", "reachable": True}
    assert report["adapters"]["queue_release"] == "dry-run" and report["dry_run"] is True
    assert "never-show" not in body


def test_health_is_503_and_lists_the_errors_when_the_rules_are_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("allowed_workspaces: [nope]\nrules: []\n")
    monkeypatch.setenv("MLREACTOR_RULES_PATH", str(bad))
    monkeypatch.setenv("MLREACTOR_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(runtime, "_engine", None)
    get_settings.cache_clear()
    try:
        response = call("health")
    finally:
        get_settings.cache_clear()
    report = json.loads(response.get_body())
    assert response.status_code == 503 and report["status"] == "unhealthy"
    assert "'nope' is not a workspace resource id" in report["rules"]["errors"][0]


def test_audit_needs_a_correlation_or_an_event_and_returns_json(app_engine: Harness) -> None:
    assert call("audit").status_code == 400
    assert "since" in json.loads(call("audit", event="x", since="soon").get_body())["error"]
    app_engine.engine.handle_delivery(json.dumps([event("model_registered")]))
    entries = json.loads(call("audit", event="831e1650-001e-001b-66ab-eeb76e069631").get_body())
    assert [e["outcome"] for e in entries] == ["acted"]
    assert entries[0]["actions"][0]["kind"] == "tag_model"


def hostile_chain(harness: Harness) -> str:
    raw = event("run_status_changed_failed")
    raw["data"]["runId"] = "<script>alert(1)</script>"
    raw["data"]["runTags"] = {"mlreactor.correlation": "chain-<b>1</b>"}
    raw["data"]["experimentName"] = "*bold* & <i>"
    harness.engine.handle_delivery(json.dumps([raw]))
    harness.engine.handle_delivery(json.dumps([event("model_registered", id="m-1") | {
        "data": {"ModelName": "credit", "ModelVersion": 3, "ModelTags": {"mlreactor.correlation": "chain-<b>1</b>"}}}]))
    return "chain-<b>1</b>"


def test_the_timeline_page_escapes_event_values_and_allows_no_script(app_engine: Harness) -> None:
    correlation = hostile_chain(app_engine)
    response = call("timeline", correlation=correlation)
    page = response.get_body().decode()
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "chain-&lt;b&gt;1&lt;/b&gt;" in page
    assert page.index("RunStatusChanged") < page.index("ModelRegistered"), "oldest step first"


class _Handler(BaseHTTPRequestHandler):
    """Serves /api/<name> by calling the function itself, as the Functions host would."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        response = call(url.path.removeprefix("/api/"), **params)
        self.send_response(response.status_code)
        self.send_header("Content-Type", f"{response.mimetype}; charset=utf-8")
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(response.get_body())

    def log_message(self, *args: Any) -> None:
        return None


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(url: str, shot: Path, profile: Path) -> str:
    """The page as headless Chromium builds it (the DOM after parsing), and a screenshot of it."""
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("headless Chromium is missing: make test installs Debian's chromium")
        pytest.skip("headless Chromium is not installed (make test installs it)")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1100,1500", "--hide-scrollbars"]
    ARTIFACTS.mkdir(exist_ok=True)
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=True)
    subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, timeout=90, check=True)
    assert shot.stat().st_size > 5_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return dom.stdout


@pytest.fixture
def served() -> Iterator[str]:
    """The app's HTTP functions behind a real local server, for the browser."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_the_timeline_renders_in_headless_chromium(app_engine: Harness, served: str, tmp_path: Path) -> None:
    correlation = hostile_chain(app_engine)
    dom = render(f"{served}/api/timeline?correlation={correlation}", ARTIFACTS / "timeline.png", tmp_path / "p")
    assert dom.count("class=\"step ") == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "<script>alert" not in dom


def steps(dom: str) -> list[tuple[str, str, str]]:
    """(tone, time, kind) of each step, in page order."""
    return re.findall(r'<li class="step (\w+)"[^>]*>.*?<span class="when">([^<]+)</span> · <span class="kind">'
                      r"([^<]+)</span>", dom)


CHAINS = {
    # name: (simulate options, header tone, verdict text, last step's tone)
    "deployed": (Options(duplicates=True, shuffle=True, fault_rate=0.2), "good",
                 "deployed as champion: credit-fraud:2", "good"),
    "rejected": (Options(fail_gate=True), "bad", "rejected by the gate: credit-fraud:2: failed: auc 0.74", "bad"),
    "failed": (Options(fail_run="test"), "bad", "failed at step RunStatusChanged: run mlr-", "bad"),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_the_timeline_page_of_a_chain_starts_with_its_verdict_in_headless_chromium(
    app_engine: Harness, served: str, tmp_path: Path, shipped_rules: Rules, name: str
) -> None:
    options, tone, text, last = CHAINS[name]
    result = simulate(shipped_rules, app_engine.ledger, options)

    dom = render(f"{served}/api/timeline?correlation={result.correlation_id}", ARTIFACTS / f"timeline-{name}.png",
                 tmp_path / "profile")

    header = re.search(r'<header class="verdict (\w+)" id="verdict">(.*?)</header>', dom, re.S)
    assert header is not None and header.group(1) == tone
    assert text in html.unescape(header.group(2)), "the verdict comes first"
    drawn = steps(dom)
    deciding = [step_tone for step_tone, _, _ in drawn if step_tone != "neutral"][-1]
    assert deciding == last, "the dot of the step that ended the chain follows how it ended"
    if tone == "bad":
        assert drawn[-1][0] == "bad", "a chain that ended badly never ends on a green (or grey) dot"
    assert [when for _, when, _ in drawn] == sorted(when for _, when, _ in drawn), "times in order"
    assert len(drawn) == len({raw["id"] for raw in _events(result)}), "one step per event, however often delivered"
    assert 'aria-label="legend"' in dom and "failed, quarantined or rejected" in dom
    assert ">open<" not in dom
    jobs = re.findall(r">job (mlr-[0-9a-f]{12})</a>", dom)
    assert jobs and set(jobs) <= set(result.world.jobs), "job links are labelled with the job's name"
    if name == "deployed":
        assert ">release #100</a>" in dom
        assert "attempts of this step" in dom, "redeliveries are shown as attempts of their step"
    else:
        assert "release #" not in dom


def _events(result: Any) -> list[dict[str, Any]]:
    return [{"id": outcome.event_id} for _, outcome in result.outcomes]
