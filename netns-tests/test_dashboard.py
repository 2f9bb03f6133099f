"""The dashboard in a real browser: headless Chromium loads it from a running
balancer with three backends; one backend is killed, and the page shows it
down within 2 s of the balancer marking it so, read from the DOM. The page
also shows its tables with JavaScript off. The screenshot lands in
test-results/dashboard/."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from browser import CHROMIUM, Browser
from conftest import balancer_config
from topology import inside

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/setup)")
RESULTS = Path(__file__).resolve().parent.parent / "test-results" / "dashboard"
ROW = "document.querySelector('tr[data-backend=\"{name}\"] td[data-field=\"{field}\"]')"


def get(topo, url: str) -> tuple[int, dict[str, str], bytes]:
    with inside(topo.ns("client")):
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read()


def first_mention(tab, name: str) -> str:
    """Where the page first names ``name``: the data-field of the cell holding it."""
    return tab.evaluate(f"""(() => {{
        const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        while (walk.nextNode()) {{
            if (walk.currentNode.textContent.includes({json.dumps(name)})) {{
                const cell = walk.currentNode.parentElement.closest('td');
                return cell ? cell.dataset.field + ' ' + cell.closest('tr').dataset.backend : 'elsewhere';
            }}
        }}
        return 'nowhere';
    }})()""")


def test_a_killed_backend_shows_down_in_the_browser_within_2s(topology):
    topo = topology(["client", "lb", "b1", "b2", "b3"])
    procs = {b: topo.python_backend(b, b) for b in ("b1", "b2", "b3")}
    lb_ip = topo.hosts["lb"]
    topo.balancer("lb", balancer_config(topo, ["b1", "b2", "b3"], extra=(
        f"metrics: {{listen: \"{lb_ip}:9100\"}}\nhealth: {{interval: 200ms}}\n")))
    names = {b: f"{topo.hosts[b]}:8000" for b in procs}
    for i in range(30):                   # something for the tables and charts
        assert get(topo, f"http://{lb_ip}:8080/warm{i}")[0] == 200
    status, headers, _ = get(topo, f"http://{lb_ip}:9100/")
    assert status == 200 and "default-src 'self'" in headers["Content-Security-Policy"]

    browser = Browser(topo.ns("client"), topo.tmp / "chromium")
    try:
        tab = browser.page()
        tab.go(f"http://{lb_ip}:9100/")
        deadline = time.monotonic() + 10
        while not tab.evaluate("document.body && document.body.dataset.updated || ''"):
            assert time.monotonic() < deadline, "the page's script never showed a document"
            time.sleep(0.05)
        for name in names.values():
            assert tab.evaluate(ROW.format(name=name, field="health") + ".textContent") == "up"
            assert first_mention(tab, name) == f"name {name}"
        assert tab.evaluate("document.querySelectorAll('canvas').length") == 3

        procs["b2"].send_signal(signal.SIGKILL)
        killed = time.time()
        seen = None
        while seen is None and time.time() < killed + 15:
            if tab.evaluate(ROW.format(name=names["b2"], field="health") + ".textContent") \
                    == "down":
                seen = time.time()
            time.sleep(0.05)
        assert seen is not None, "the page never showed b2 down"
        document = json.loads(get(topo, f"http://{lb_ip}:9100/dashboard.json")[2])
        marked = next(e["at"] for e in document["events"]
                      if e["backend"] == names["b2"] and e["kind"] == "health"
                      and e["to"] == "down")
        print(f"b2 killed; marked down {marked - killed:.2f}s later, "
              f"shown down in the page {seen - marked:.2f}s after that")
        assert seen - marked <= 2.0
        assert tab.evaluate(ROW.format(name=names["b2"], field="health") + ".className") \
            == "health bad"
        assert names["b2"] in tab.evaluate("document.getElementById('events').textContent")
        RESULTS.mkdir(parents=True, exist_ok=True)
        time.sleep(1.5)                    # another point or two on the charts
        tab.screenshot(RESULTS / "dashboard.png")
        assert (RESULTS / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        plain = browser.page(scripts=False)
        plain.go(f"http://{lb_ip}:9100/")
        deadline = time.monotonic() + 10
        while "</table>" not in (html := plain.html()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        health = dict(re.findall(r'<tr data-backend="([^"]+)".*?data-field="health"[^>]*>(\w+)<',
                                 html))
        assert health == {names["b1"]: "up", names["b2"]: "down", names["b3"]: "up"}
        assert "Charts need JavaScript" in html
    finally:
        browser.close()


def test_the_dashboard_can_be_turned_off(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb_ip = topo.hosts["lb"]
    topo.balancer("lb", balancer_config(topo, ["b1"], extra=(
        f"metrics: {{listen: \"{lb_ip}:9100\", dashboard: false}}\n")))
    for path in ("/", "/dashboard.json"):
        out = topo.run("client", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                  f"http://{lb_ip}:9100{path}"])
        assert out.stdout == b"404"
    assert get(topo, f"http://{lb_ip}:9100/metrics")[0] == 200
