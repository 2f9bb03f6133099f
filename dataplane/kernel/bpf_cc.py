"""Our BPF congestion-control algorithms (bpf/*.bpf.c): loading them with
libbpf (through ctypes over libbpf.so.1), registering them with the kernel as
struct_ops, tuning them through their tunables map, unregistering them.

Only one balancer on a machine owns them (the kernel's list of algorithms is
global): the owner holds an flock on LOCK_PATH. Registrations outlive a crashed
owner, so the next owner first removes any struct_ops map of the same name.
A balancer that finds the lock held uses the algorithms the owner registered,
by name, and cannot tune them.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Any

import structlog

from .libbpf import BpfError, Libbpf
from .tcp_info import kernel_algorithms

log = structlog.get_logger("l7lb.bpf")

# Tunables of each algorithm, in the order of its C struct, with defaults.
ALGORITHMS: dict[str, dict[str, int]] = {
    "lb_aimd": {"increase": 1, "decrease": 50},
    "lb_delay": {"target_us": 1000, "increase": 1, "max_decrease": 30, "loss_decrease": 30,
                 "compete": 1},
}
LIMITS: dict[str, tuple[int, int]] = {
    "increase": (1, 1000), "decrease": (1, 99), "target_us": (1, 10_000_000),
    "max_decrease": (1, 99), "loss_decrease": (1, 99), "compete": (0, 1)}
OBJECT_DIR = Path(__file__).resolve().parents[2] / "bpf" / "build"
LOCK_PATH = "/run/l7lb-bpf.lock"
REGISTER_WAIT = 2.0           # seconds to wait out a registration the kernel is freeing
_STRUCT_OPS_MAP = 26          # BPF_MAP_TYPE_STRUCT_OPS
_MAP_INFO_SIZE = 96           # struct bpf_map_info, enough for type, id and name


def check_tunable(name: str, key: str, value: object) -> int:
    """A tunable value as the map stores it, or ValueError saying what is allowed."""
    if key not in ALGORITHMS[name]:
        raise ValueError(f"{name} has no tunable {key!r}; it has {', '.join(ALGORITHMS[name])}")
    low, high = LIMITS[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name}.{key} must be an integer from {low} to {high}")
    return value


def with_defaults(name: str, tunables: dict[str, int]) -> dict[str, int]:
    """All of an algorithm's tunables, in its C struct's order."""
    return {**ALGORITHMS[name], **tunables}


def clear_orphans() -> None:
    """Remove registrations of ours that no running balancer owns (what a
    crashed one left); nothing when a balancer holds the lock."""
    probe = BpfAlgorithms(True, {})
    try:
        lib = Libbpf()
    except BpfError:
        return
    if probe._take_lock(quiet=True):
        for name in ALGORITHMS:
            probe._clear_stale(lib, name)
        probe.stop()


class Algorithm:
    """One loaded and registered algorithm."""

    def __init__(self, lib: Libbpf, name: str, path: Path, tunables: dict[str, int]) -> None:
        self.lib, self.name = lib, name
        self.obj = lib.bpf_object__open_file(str(path).encode(), None)
        if not self.obj:
            raise lib.failed(f"cannot open {path}")
        self.link = None
        try:
            if lib.bpf_object__load(self.obj) != 0:
                raise lib.failed(f"kernel refused {name} (no struct_ops for TCP?)")
            tunables_map = lib.bpf_object__find_map_by_name(self.obj, f"{name}_tunables".encode())
            self.tunables_fd = lib.bpf_map__fd(tunables_map)
            self.tunables = with_defaults(name, tunables)
            self._write_tunables()
            ops = lib.bpf_object__find_map_by_name(self.obj, name.encode())
            self.link = lib.bpf_map__attach_struct_ops(ops)
            if not self.link:
                raise lib.failed(f"cannot register {name}")
        except BaseException:
            lib.bpf_object__close(self.obj)
            raise

    def _write_tunables(self) -> None:
        values = (ctypes.c_uint32 * len(self.tunables))(*self.tunables.values())
        zero = ctypes.c_uint32(0)
        if self.lib.bpf_map_update_elem(self.tunables_fd, ctypes.byref(zero),
                                        ctypes.byref(values), 0) != 0:
            raise self.lib.failed(f"cannot write {self.name} tunables")

    def tune(self, key: str, value: int) -> None:
        old = self.tunables[key]
        self.tunables[key] = value
        try:
            self._write_tunables()
        except BpfError:
            self.tunables[key] = old
            raise

    def unregister(self) -> None:
        if self.link:
            self.lib.bpf_link__destroy(self.link)    # deletes the struct_ops registration
            self.link = None
        self.lib.bpf_object__close(self.obj)


class BpfAlgorithms:
    """The BPF side of congestion control for one balancer."""

    def __init__(self, enabled: bool, tunables: dict[str, dict[str, int]],
                 directory: Path = OBJECT_DIR) -> None:
        self.enabled = enabled
        self.tunables = tunables
        self.directory = directory
        self.loaded: dict[str, Algorithm] = {}
        self.reason: str | None = None     # why BPF is not in use, when it is not
        self.owner = False
        self._lock_fd = -1

    def start(self) -> None:
        """Register every algorithm; on any failure record why and register none."""
        if not self.enabled:
            self.reason = "disabled by congestion.bpf: off"
            return
        try:
            self._start()
        except BpfError as exc:
            self.stop()
            self.reason = str(exc)
        except OSError as exc:      # the lock file: /run not writable (not root)
            self.stop()
            self.reason = f"cannot use {LOCK_PATH}: {exc.strerror} (run as root)"

    def _start(self) -> None:
        if not os.path.exists("/sys/kernel/btf/vmlinux"):
            raise BpfError("the kernel has no BTF (/sys/kernel/btf/vmlinux)")
        missing = [n for n in ALGORITHMS if not (self.directory / f"{n}.bpf.o").exists()]
        if missing:
            raise BpfError(f"{', '.join(missing)} not built in {self.directory}: "
                           f"run scripts/build-bpf")
        lib = Libbpf()
        if not self._take_lock():
            return
        for name in ALGORITHMS:
            self.loaded[name] = self._register(lib, name)
        log.info("bpf congestion control registered", algorithms=list(self.loaded))

    def take_over(self) -> bool:
        """Become the owner if the one before has gone (it drained after an
        upgrade, or died): True once registered here."""
        if self.owner or not self.enabled or self.reason is not None:
            return False
        try:
            if not self._take_lock(quiet=True):
                return False
            lib = Libbpf()
            for name in ALGORITHMS:
                self.loaded[name] = self._register(lib, name)
        except (BpfError, OSError) as exc:
            self.stop()
            self.reason = str(exc)
            return False
        log.info("bpf congestion control registered; the previous owner has gone",
                 algorithms=list(self.loaded))
        return True

    def _register(self, lib: Libbpf, name: str) -> Algorithm:
        """Register ``name``, first removing a stale registration. The kernel
        frees a dead owner's registration lazily: while it is going, its map is
        no longer listed but its name is still taken (EEXIST), so retry a while."""
        deadline = time.monotonic() + REGISTER_WAIT
        while True:
            self._clear_stale(lib, name)
            try:
                return Algorithm(lib, name, self.directory / f"{name}.bpf.o",
                                 self.tunables.get(name, {}))
            except BpfError as exc:
                if exc.code != errno.EEXIST or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def _take_lock(self, quiet: bool = False) -> bool:
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = Path(LOCK_PATH).read_text().strip() or "?"
            if not quiet:
                log.warning("bpf algorithms are owned by another balancer; using its registrations",
                            owner_pid=holder)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd, self.owner = fd, True
        return True

    @staticmethod
    def _clear_stale(lib: Libbpf, name: str) -> None:
        """Delete a registration of ``name`` left by an owner that died."""
        next_id = ctypes.c_uint32(0)
        info = ctypes.create_string_buffer(_MAP_INFO_SIZE)
        size = ctypes.c_uint32(_MAP_INFO_SIZE)
        while lib.bpf_map_get_next_id(next_id.value, ctypes.byref(next_id)) == 0:
            fd = lib.bpf_map_get_fd_by_id(next_id.value)
            if fd < 0:
                continue
            try:
                size.value = _MAP_INFO_SIZE
                ctypes.memset(info, 0, _MAP_INFO_SIZE)
                if lib.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)) != 0:
                    continue
                kind = int.from_bytes(info.raw[0:4], "little")
                map_name = info.raw[24:40].split(b"\0", 1)[0].decode(errors="replace")
                if kind == _STRUCT_OPS_MAP and map_name == name:
                    zero = ctypes.c_uint32(0)
                    lib.bpf_map_delete_elem(fd, ctypes.byref(zero))
                    log.warning("removed a stale registration", algorithm=name, map_id=next_id.value)
            finally:
                os.close(fd)

    def tune(self, name: str, key: str, value: object) -> dict[str, int]:
        """Change one tunable; ValueError for a bad name, key or value, BpfError
        when this balancer does not own the algorithm."""
        if name not in ALGORITHMS:
            raise ValueError(f"no BPF algorithm {name!r}; ours are {', '.join(ALGORITHMS)}")
        value = check_tunable(name, key, value)
        algorithm = self.loaded.get(name)
        if algorithm is None:
            raise BpfError(self.reason or f"{name} is registered by another balancer")
        algorithm.tune(key, value)
        log.info("bpf tunable changed", algorithm=name, key=key, value=value)
        return dict(algorithm.tunables)

    @staticmethod
    def usable() -> bool:
        """Ours are registered, by this balancer or by the one that owns them."""
        return set(ALGORITHMS) <= set(kernel_algorithms())

    def describe(self) -> dict[str, Any]:
        registered = set(kernel_algorithms())
        return {"usable": self.usable(), "owner": self.owner, "reason": self.reason,
                "algorithms": {name: {"registered": name in registered,
                                      "tunables": dict(a.tunables) if (a := self.loaded.get(name))
                                      else with_defaults(name, self.tunables.get(name, {}))}
                               for name in ALGORITHMS}}

    def stop(self) -> None:
        for algorithm in self.loaded.values():
            algorithm.unregister()
        if self.loaded:
            log.info("bpf congestion control unregistered", algorithms=list(self.loaded))
        self.loaded.clear()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd, self.owner = -1, False
