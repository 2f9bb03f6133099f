"""The control process and its workers: connections spread over SO_REUSEPORT
workers, a killed worker is replaced, reloads reach every worker quickly."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time

from conftest import Client, balancer_config, reload_and_wait


def events(topo, proc, name: str) -> list[dict]:
    return [json.loads(line) for line in topo.log(proc).splitlines()
            if f'"event":"{name}"' in line]


def two_workers(topo, backends=("b1",), extra: str = "log: {summary: 300ms}\n"):
    for name in backends:
        topo.python_backend(name, name)
    lb = topo.balancer("lb", balancer_config(topo, list(backends), extra=extra)
                       .replace("workers: 1", "workers: 2"))
    assert len(topo.worker_pids(lb, 2)) == 2
    return lb


def test_connections_land_on_both_workers(topology):
    topo = topology(["client", "lb", "b1"])
    lb = two_workers(topo)
    pids = set(topo.worker_pids(lb, 2))
    client = Client(topo)
    for i in range(40):                     # new connection each: new source port
        assert client.request("GET", f"/spread/{i}")[0].status == 200
    backend = f"{topo.hosts['b1']}:8000"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        summaries = events(topo, lb, "summary")
        last = summaries[-1] if summaries else {"workers": {}, "backends": {}}
        counted = {int(pid): w["connections"] for pid, w in last["workers"].items()}
        requests = last["backends"].get(backend, {}).get("requests", 0)
        if sum(counted.values()) >= 40 and requests >= 40:
            break
        time.sleep(0.1)
    assert set(counted) == pids
    assert all(count > 0 for count in counted.values()), counted
    assert requests == 40


def test_killed_worker_is_replaced_and_service_continues(topology):
    topo = topology(["client", "lb", "b1"])
    lb = two_workers(topo)
    victim, survivor = topo.worker_pids(lb, 2)
    results: list[tuple[float, int]] = []
    stop = threading.Event()

    def load() -> None:
        client = Client(topo)
        deadline = time.monotonic() + 8
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status = client.request("GET", "/load", timeout=3)[0].status
            except (OSError, http.client.HTTPException):
                status = 0          # in flight on the killed worker
            results.append((started, status))

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    topo.wait_for_log(lb, '"event":"worker died"')
    deadline = time.monotonic() + 5
    while len(events(topo, lb, "worker started")) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    replaced_at = time.monotonic()
    time.sleep(1.0)
    stop.set()
    thread.join(10)
    assert len(events(topo, lb, "worker started")) == 3
    assert os.path.exists(f"/proc/{survivor}")
    after = [status for started, status in results if started > replaced_at]
    assert len(after) > 20 and set(after) == {200}, after
    assert sum(1 for _, status in results if status == 200) > 0.9 * len(results)
    lb.terminate()
    assert lb.wait(10) == 0


def test_reload_reaches_every_worker_within_100_ms(topology):
    topo = topology(["client", "lb", "b1", "b2"])
    lb = two_workers(topo, backends=("b1", "b2"))
    config_path = topo.tmp / "balancer.yaml"
    config_path.write_text(balancer_config(topo, ["b2"]).replace("workers: 1", "workers: 2"))
    version = reload_and_wait(topo, lb, 2)
    applied = [e for e in events(topo, lb, "state applied") if e["version"] == version]
    assert applied and applied[0]["ms"] < 100, applied
    client = Client(topo)
    seen = {json.loads(client.request("GET", f"/r/{i}")[1])["backend"] for i in range(10)}
    assert seen == {"b2"}


def test_bad_reload_keeps_the_running_configuration(topology):
    topo = topology(["client", "lb", "b1"])
    lb = two_workers(topo)
    (topo.tmp / "balancer.yaml").write_text("balancer: {port: nope}\n")
    lb.send_signal(signal.SIGHUP)
    topo.wait_for_log(lb, "reload rejected")
    assert "balancer.port: expected `int`" in topo.log(lb)
    assert Client(topo).request("GET", "/still")[0].status == 200


def test_workers_dying_at_start_make_the_control_process_exit_1(topology):
    topo = topology(["client", "lb", "b1"])
    lb = two_workers(topo, extra="")
    killed: set[int] = set()
    deadline = time.monotonic() + 30
    while lb.poll() is None and time.monotonic() < deadline:
        for started in events(topo, lb, "worker started"):
            pid = started["worker_pid"]
            if pid not in killed and started["slot"] == 0:
                killed.add(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.01)
    assert lb.wait(10) == 1
    assert "workers keep dying at start, giving up" in topo.log(lb)
    assert "signal 9" in topo.log(lb)


def test_connections_queued_while_the_worker_restarts_are_served(topology):
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb = topo.balancer("lb", balancer_config(topo, ["b1"]))
    [worker] = topo.worker_pids(lb)
    os.kill(worker, signal.SIGKILL)
    # No worker accepts now; the listener stays open in the control process.
    response, body = Client(topo).request("GET", "/during-restart", timeout=10)
    assert response.status == 200 and json.loads(body)["path"] == "/during-restart"
    deadline = time.monotonic() + 5          # the control process flushes its log per tick
    while len(events(topo, lb, "worker started")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(events(topo, lb, "worker started")) == 2


def test_workers_hold_only_their_own_descriptors_however_often_they_are_replaced(topology):
    """A worker forked after its siblings used to inherit their rings, doorbells
    and the control's pidfds on them (and a replaced sibling's, for life): the
    soak saw one descriptor more per restart."""
    topo = topology(["client", "lb", "b1"])
    topo.python_backend("b1", "b1")
    lb = topo.balancer("lb", balancer_config(topo, ["b1"], extra="health: {type: tcp}\n")
                       .replace("workers: 1", "workers: 3"))

    def descriptors() -> list[int]:
        """Each worker's descriptors, less the /dev/null placeholders for the
        control's sockets open at its fork (a health probe in flight then
        makes one more: supervisor._drop_inherited_sockets)."""
        pids = topo.worker_pids(lb, 3)
        return sorted(sum(os.readlink(f"/proc/{pid}/fd/{fd}") != os.devnull
                          for fd in os.listdir(f"/proc/{pid}/fd")) for pid in pids)

    first = descriptors()
    assert len(set(first)) == 1, first
    for _ in range(4):
        pid = topo.worker_pids(lb, 3)[0]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid in topo.worker_pids(lb, 3) or len(topo.worker_pids(lb, 3)) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    time.sleep(0.5)
    assert descriptors() == first
