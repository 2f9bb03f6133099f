"""How users start it: `lbctl demo`, and `lbctl run` with several workers."""

from __future__ import annotations

import json
import signal
import time

from conftest import Client, balancer_config
from topology import lbctl_path


def test_demo_serves_from_three_backends(topology):
    topo = topology(["lb"])
    demo = topo.spawn("lb", [lbctl_path(), "demo"], log_name="demo.log")
    for port in (9001, 9002, 9003, 8080):
        topo.wait_port("lb", port, from_host="lb", proc=demo, address="127.0.0.1")
    seen = set()
    # Weights 2:2:1; the first probes' state changes may restart the round
    # robin's sequence during the first requests, so ask more than 5 times.
    for _ in range(12):
        result = topo.run("lb", ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:8080/try"])
        seen.add(json.loads(result.stdout)["backend"])
    assert seen == {"demo1", "demo2", "demo3"}
    assert "l7lb demo" in topo.log(demo) and "curl" in topo.log(demo)
    page = topo.run("lb", ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:9100/"]).stdout
    assert b'data-backend="127.0.0.1:9001"' in page     # the dashboard the demo names
    demo.send_signal(signal.SIGINT)
    assert demo.wait(10) == 0


def test_two_workers_share_the_port_and_stop_cleanly(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb = topo.balancer("lb", balancer_config(topo, ["b1"]).replace("workers: 1", "workers: 2"))
    assert len(topo.worker_pids(lb, 2)) == 2
    client = Client(topo)
    statuses = [client.request("GET", f"/w/{i}")[0].status for i in range(20)]
    assert statuses == [200] * 20
    lb.terminate()
    assert lb.wait(10) == 0
    assert topo.log(lb).count('"event":"worker stopped"') == 4   # each worker, then the control


def _events(path, event: str) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [record for record in map(json.loads, lines) if record.get("event") == event]


def _wait_events(path, event: str, count: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while len(found := _events(path, event)) < count:
        assert time.monotonic() < deadline, f"{count} {event!r} lines not in {path}: {found}"
        time.sleep(0.05)
    return found


def test_log_file_is_reopened_on_sigusr1_after_logrotate_moves_it(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    path = topo.tmp / "l7lb.log"
    lb = topo.balancer("lb", balancer_config(topo, ["b1"]).replace("workers: 1", "workers: 2")
                       + f"log: {{file: {path}}}\n")
    client = Client(topo)
    for i in range(5):
        assert client.request("GET", f"/before/{i}")[0].status == 200
    _wait_events(path, "request", 5)
    rotated = path.rename(topo.tmp / "l7lb.log.1")          # what logrotate does first
    lb.send_signal(signal.SIGUSR1)
    reopened = _wait_events(path, "log file reopened", 3)
    assert len({record["pid"] for record in reopened}) == 3   # the control and both workers
    for i in range(5):
        assert client.request("GET", f"/after/{i}")[0].status == 200
    after = [r["path"] for r in _wait_events(path, "request", 5)]
    assert sorted(after) == [f"/after/{i}" for i in range(5)]
    assert sorted(r["path"] for r in _events(rotated, "request")) == \
        [f"/before/{i}" for i in range(5)]
    assert '"event":"request"' not in topo.log(lb)            # nothing on standard output
    lb.terminate()
    assert lb.wait(10) == 0


def test_a_log_file_that_cannot_be_opened_stops_the_start_with_a_clear_error(topology):
    topo = topology(["lb", "b1"])
    config = topo.tmp / "bad-log.yaml"
    config.write_text(balancer_config(topo, ["b1"]) + "log: {file: /nonexistent/l7lb.log}\n")
    result = topo.run("lb", [lbctl_path(), "run", "-c", str(config)], timeout=20, text=True)
    assert result.returncode == 1
    assert "cannot open log.file: [Errno 2] No such file or directory" in result.stderr
