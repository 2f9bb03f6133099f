"""Network-namespace topologies for integration tests.

Each Topology makes its own namespaces (uniquely named), joins them with veth
pairs to a bridge that lives in a namespace of its own, addresses them from
198.18.0.0/24 (inside 198.18.0.0/15, the benchmarking range), and removes
everything it made: processes first, then namespaces, also when a test fails.
Nothing here touches the root namespace's network.
"""

from __future__ import annotations

import ctypes
import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from pyroute2 import NetNS, netns

CLONE_NEWNET = 0x40000000
SUBNET = "198.18.0"
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count()
VENV_BIN = Path(sys.executable).parent
# Waits are this many times longer where everything runs slower (the lab VM
# under qemu's software emulation sets it: scripts/test-vm).
SLOW = float(os.environ.get("L7LB_LAB_SLOW", "1"))


def lbctl_path() -> str:
    beside = VENV_BIN / "lbctl"
    return str(beside) if beside.exists() else shutil.which("lbctl") or "lbctl"


@contextmanager
def inside(ns_name: str):
    """Run the block with this thread in another network namespace."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns_name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


class HTTPConnection(http.client.HTTPConnection):
    """http.client from one host of a topology to another. Its own connect()
    opens the socket in the host's namespace, also when http.client reconnects
    by itself after a ``Connection: close``: the default would open it in the
    test process's namespace, whose route leads out of the topology."""

    def __init__(self, topo: "Topology", from_host: str, to_host: str, port: int,
                 timeout: float = 10.0) -> None:
        super().__init__(topo.hosts[to_host], port, timeout=timeout)
        self.topo, self.from_host, self.to_host = topo, from_host, to_host

    def connect(self) -> None:
        self.sock = self.topo.connect(self.from_host, self.to_host, self.port,
                                      timeout=self.timeout)


class Topology:
    def __init__(self, hosts: list[str]) -> None:
        self.prefix = f"l7t{os.getpid() % 100000}x{next(_counter)}"
        self.switch = f"{self.prefix}-sw"
        self.hosts: dict[str, str] = {}      # host -> address
        self.ports: dict[str, str] = {}      # host -> its switch port (traffic towards it)
        self.procs: list[subprocess.Popen] = []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self._made: list[str] = []
        try:
            self._build(hosts)
        except BaseException:
            self.close()
            raise

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def names(self, host: str, hosts_file: str) -> None:
        """Give a host its own /etc/hosts and a resolver that asks only its own
        loopback (refused at once), so name lookups never leave the topology."""
        etc = Path("/etc/netns") / self.ns(host)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text("127.0.0.1 localhost\n" + hosts_file)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")

    def _build(self, hosts: list[str]) -> None:
        netns.create(self.switch)
        self._made.append(self.switch)
        with NetNS(self.switch) as sw:
            sw.link("add", ifname="br0", kind="bridge")
            bridge = sw.link_lookup(ifname="br0")[0]
            sw.link("set", index=bridge, state="up")
            for i, host in enumerate(hosts, start=2):
                name = self.ns(host)
                netns.create(name)
                self._made.append(name)
                port = f"p{i}"
                sw.link("add", ifname=port, kind="veth",
                        peer={"ifname": "eth0", "net_ns_fd": name})
                index = sw.link_lookup(ifname=port)[0]
                sw.link("set", index=index, master=bridge, state="up")
                address = f"{SUBNET}.{i}"
                with NetNS(name) as ipr:
                    eth = ipr.link_lookup(ifname="eth0")[0]
                    ipr.addr("add", index=eth, address=address, prefixlen=24)
                    ipr.link("set", index=eth, state="up")
                    ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                self.hosts[host] = address
                self.ports[host] = port

    # -- processes -------------------------------------------------------
    def spawn(self, host: str, argv: list[str], log_name: str | None = None,
              env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        """Start a process inside a host's namespace (``env``: variables to add);
        its output goes to a log file."""
        return self.spawn_in(self.ns(host), argv, log_name or f"{host}-{len(self.procs)}.log",
                             env, **kwargs)

    def spawn_in(self, namespace: str, argv: list[str], log_name: str,
                 env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        log_path = self.tmp / log_name
        out = open(log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        proc = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], stdout=out,
                                stderr=subprocess.STDOUT, env=env, **kwargs)
        proc.log_path = log_path  # type: ignore[attr-defined]
        out.close()
        self.procs.append(proc)
        return proc

    def python_backend(self, host: str, name: str, port: int = 8000,
                       tcp: bool = False, delay: str = "", proxy: bool = False,
                       tls: tuple[str, str] | None = None) -> subprocess.Popen:
        argv = [sys.executable, "-m", "dataplane.testing.backend", "--name", name,
                "--host", self.hosts[host], "--port", str(port)] + (["--tcp"] if tcp else []) \
            + (["--proxy"] if proxy else []) + (["--tls", ":".join(tls)] if tls else [])
        if delay:
            argv += ["--delay", delay]
        proc = self.spawn(host, argv, log_name=f"{name}.log")
        self.wait_port(host, port, from_host=host)
        return proc

    def nginx_backend(self, host: str, name: str, port: int = 8000,
                      keepalive: str = "120s", listen: str = "",
                      server: str = "") -> subprocess.Popen:
        """``listen``: more of nginx's listen options (``http2``: h2c only);
        ``server``: more directives for its server block. Files put in its
        ``files`` directory (``nginx_files``) are served under /files/."""
        root = self.tmp / f"nginx-{name}"
        (root / "files").mkdir(parents=True)
        conf = root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=root, address=self.hosts[host], port=port,
                                          name=name, keepalive=keepalive, listen=listen,
                                          server=server))
        proc = self.spawn(host, ["nginx", "-c", str(conf), "-e", str(root / "error.log")],
                          log_name=f"{name}.log")
        self.wait_port(host, port, from_host=host)
        return proc

    def nginx_files(self, name: str) -> Path:
        return self.tmp / f"nginx-{name}" / "files"

    def balancer(self, host: str, config_text: str, port: int = 8080,
                 name: str = "balancer", env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``lbctl run -c FILE`` in the host's namespace and wait until it
        listens."""
        path = self.tmp / f"{name}.yaml"
        path.write_text(config_text)
        proc = self.spawn(host, [lbctl_path(), "run", "-c", str(path)], log_name=f"{name}.log",
                          env=env)
        self.wait_port(host, port, from_host=host, proc=proc)
        return proc

    def wait_port(self, host: str, port: int, from_host: str, timeout: float = 10.0,
                  proc: subprocess.Popen | None = None, address: str | None = None) -> None:
        timeout *= SLOW
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited ({proc.returncode}): {self.log(proc)}")
            try:
                self.connect(from_host, host, port, timeout=0.5, address=address).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{host}:{port} not listening after {timeout}s")

    def wait_for_log(self, proc: subprocess.Popen, text: str, timeout: float = 10.0) -> str:
        """The process's output once it contains ``text``; fails after ``timeout``."""
        timeout *= SLOW
        deadline = time.monotonic() + timeout
        while text not in (out := self.log(proc)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout}s:\n{out[-2000:]}")
            time.sleep(0.05)
        return out

    def worker_pids(self, balancer: subprocess.Popen, count: int = 1) -> list[int]:
        """Pids of the balancer's running workers, from its log."""
        self.wait_for_log(balancer, '"event":"worker listening"')
        deadline = time.monotonic() + 10
        while True:
            started = [json.loads(line)["worker_pid"] for line in self.log(balancer).splitlines()
                       if '"event":"worker started"' in line]
            alive = [pid for pid in started if os.path.exists(f"/proc/{pid}")]
            if len(alive) >= count or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)

    @staticmethod
    def log(proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    # -- sockets ---------------------------------------------------------
    def socket(self, host: str, family: int = socket.AF_INET) -> socket.socket:
        """A TCP socket that lives in the host's namespace."""
        with inside(self.ns(host)):
            return socket.socket(family, socket.SOCK_STREAM)

    def connect(self, from_host: str, to_host: str, port: int, timeout: float = 10.0,
                address: str | None = None) -> socket.socket:
        """Connect from one host to another's address (or ``address`` in its namespace)."""
        sock = self.socket(from_host)
        sock.settimeout(timeout)
        try:
            sock.connect((address or self.hosts[to_host], port))
        except BaseException:
            sock.close()
            raise
        return sock

    def run(self, host: str, argv: list[str], timeout: float = 60,
            **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv],
                              capture_output=True, timeout=timeout, **kwargs)

    # -- impairments ----------------------------------------------------
    def shape(self, host: str, rate: str, queue: str = "100ms", limit: int = 0) -> None:
        """A bottleneck: traffic towards ``host`` leaves the switch at ``rate``
        (tbf), with room for ``queue`` of backlog (or ``limit`` bytes)."""
        room = ["limit", str(limit)] if limit else ["latency", queue]
        subprocess.run(["ip", "netns", "exec", self.switch, "tc", "qdisc", "replace", "dev",
                        self.ports[host], "root", "tbf", "rate", rate, "burst", "32kbit",
                        *room], check=True, capture_output=True)

    def netem(self, host: str, impairment: str) -> None:
        """netem on the switch's port towards ``host`` (kernels that have it:
        the lab VM), e.g. "delay 20ms 2ms loss 0.5% rate 50mbit limit 1000"."""
        subprocess.run(["ip", "netns", "exec", self.switch, "tc", "qdisc", "replace", "dev",
                        self.ports[host], "root", "netem", *impairment.split()],
                       check=True, capture_output=True)

    def lose(self, host: str, percent: int) -> None:
        """Drop ``percent`` % of the TCP segments arriving at ``host`` (0: none;
        100: a black hole, nothing answers, not even a reset)."""
        script = "flush ruleset\n"
        if percent:
            chance = "" if percent >= 100 else f"numgen random mod 100 < {percent} "
            script += ("table inet impair {\n chain in {\n"
                       "  type filter hook input priority 0;\n"
                       f"  meta l4proto tcp {chance}drop\n }}\n}}\n")
        subprocess.run(["ip", "netns", "exec", self.ns(host), "nft", "-f", "-"],
                       input=script.encode(), check=True, capture_output=True)

    def delay(self, host: str, ms: float) -> subprocess.Popen:
        """Add ``ms`` to every round trip to ``host``: what it sends waits that
        long in a delay line (dataplane/testing/delay_line.py) between its
        switch port and the bridge; what it is sent keeps the kernel's path."""
        port, line = self.ports[host], f"d{self.ports[host]}"
        mac = json.loads(self.run(host, ["ip", "-j", "link", "show", "eth0"], text=True,
                                  check=True).stdout)[0]["address"]
        # Frames are copied as they are: no checksum left to the NIC, no 64 KiB GSO frames.
        self.run(host, ["ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off"],
                 check=True)
        for argv in (["ip", "link", "add", f"{line}a", "type", "veth", "peer", "name", f"{line}b"],
                     ["ip", "link", "set", f"{line}b", "master", "br0", "up"],
                     ["ip", "link", "set", f"{line}a", "up"],
                     # The bridge must keep sending to the host through its own port.
                     ["bridge", "link", "set", "dev", f"{line}b", "learning", "off"],
                     ["bridge", "fdb", "replace", mac, "dev", port, "master", "static"]):
            subprocess.run(["ip", "netns", "exec", self.switch, *argv], check=True,
                           capture_output=True)
        rule = (f"table bridge delay_{port} {{\n chain in {{\n"
                "  type filter hook prerouting priority -300;\n"
                f'  iifname "{port}" drop\n }}\n}}\n')
        subprocess.run(["ip", "netns", "exec", self.switch, "nft", "-f", "-"],
                       input=rule.encode(), check=True, capture_output=True)
        proc = self.spawn_in(self.switch, [sys.executable, "-m", "dataplane.testing.delay_line",
                                           "--ingress", port, "--egress", f"{line}a",
                                           "--delay-ms", str(ms)], f"delay-{host}.log")
        self.wait_for_log(proc, "delay line")
        return proc

    def tcp_sockets(self, host: str, peer: str, port: int,
                    side: str = "dst") -> list[dict[str, str]]:
        """What ``ss -tin`` says of the host's connections to peer:port (with
        side="src": from it), per socket: "local" (address:port), "algorithm",
        the key:value fields (rtt, cwnd, retrans, bytes_acked...) and the
        pacing rates."""
        out = self.run(host, ["ss", "-tinH", "state", "established", side,
                              f"{self.hosts[peer]}:{port}"], text=True).stdout
        sockets: list[dict[str, str]] = []
        for line in out.splitlines():
            if not line[:1].isspace():   # Recv-Q Send-Q Local Peer; details follow
                sockets.append({"local": line.split()[2]})
                continue
            words, info = line.split(), sockets[-1]
            if words and ":" not in words[0]:
                info["algorithm"] = words[0]
            for key, value in zip(words, words[1:]):
                if key.endswith("pacing_rate"):
                    info[key] = value
            for word in words:
                key, sep, value = word.partition(":")
                if sep:
                    info.setdefault(key, value)
        return sockets

    # -- teardown --------------------------------------------------------
    def close(self) -> None:
        # Printed output is shown by pytest only when a test fails.
        for proc in self.procs:
            print(f"--- {proc.args[4:]}\n{self.log(proc)[-4000:]}")
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for name in reversed(self._made):
            # Anything still inside (nginx workers, strays) goes with the namespace.
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
            for pid in pids.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                netns.remove(name)
            except OSError:
                pass
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        self._made.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


NGINX_CONF = """
daemon off;
user root;

master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_timeout {keepalive};
    keepalive_requests 1000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {address}:{port} {listen};
        {server}
        location /files/ {{
            alias {dir}/files/;
        }}
        location / {{
            add_header X-Backend {name};
            return 200 "nginx {name}\\n";
        }}
    }}
}}
"""
