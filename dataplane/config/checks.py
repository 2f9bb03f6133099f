"""Checks that the schema's types cannot express: primes, duplicates,
algorithm names, tunables."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl

from .access_format import parse as parse_access_format, template_of
from .errors import KeyPath, Lines
from .errors import error as _error
from .group_checks import backends_path, check_groups
from .model import DEFAULT, Config
from .routes import Match, RouteSettings


def run_checks(config: Config, lines: Lines, source: str) -> None:
    """Raise ConfigError for the first problem the schema's types let through."""
    _check_balancer(config, lines, source)
    _check_backends(config, lines, source)
    _check_congestion(config, lines, source)
    check_groups(config, lines, source)
    _check_routes(config, lines, source)
    _check_fleet(config, lines, source)
    _check_tls(config, lines, source)
    _check_access_format(config, lines, source)


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n ** 0.5) + 1))


def _check_balancer(config: Config, lines: Lines, source: str) -> None:
    settings = config.balancer
    if not _is_prime(settings.maglev_table_size):
        raise _error(lines, source, ("balancer", "maglev_table_size"),
                     f"{settings.maglev_table_size} is not prime (65537, 655373 and 5000011 are)")
    if settings.resolve_interval < 1:
        raise _error(lines, source, ("balancer", "resolve_interval"), "must be at least 1s")
    for i, cidr in enumerate(settings.trusted_proxies):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise _error(lines, source, ("balancer", "trusted_proxies", i),
                         f"{cidr!r} is not an address or network (10.0.0.0/8, 2001:db8::/32)") \
                from None
    if settings.accept_proxy and not settings.trusted_proxies:
        raise _error(lines, source, ("balancer", "accept_proxy"),
                     "needs balancer.trusted_proxies: who may send PROXY headers")


def _check_backends(config: Config, lines: Lines, source: str) -> None:
    for group in config.group_names():
        within = backends_path(group)
        for i, backend in enumerate(config.group(group).backends):
            if backend.congestion_control is not None:
                try:
                    check_algorithm(backend.congestion_control)
                except ValueError as exc:
                    raise _error(lines, source, (*within, i, "congestion_control"),
                                 str(exc)) from None


def check_algorithm(name: str) -> None:
    """ValueError, listing what is available, unless a backend may ask for ``name``."""
    known = congestion_algorithms()
    if name not in known:
        raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(known)}")


def congestion_algorithms() -> list[str]:
    """What ``congestion_control`` may name: the kernel's, ours from bpf/, pacer."""
    from ..kernel.bpf_cc import ALGORITHMS
    from ..kernel.tcp_info import kernel_algorithms, module_algorithms
    return list(dict.fromkeys([*kernel_algorithms(), *module_algorithms(), *ALGORITHMS, "pacer",
                               "auto"]))


def _check_congestion(config: Config, lines: Lines, source: str) -> None:
    from ..kernel.bpf_cc import ALGORITHMS, check_tunable
    pacer = config.congestion.pacer
    if not 0.01 <= pacer.interval <= 10:
        raise _error(lines, source, ("congestion", "pacer", "interval"), "must be 10ms to 10s")
    if not pacer.min_rate <= pacer.start_rate <= pacer.max_rate:
        raise _error(lines, source, ("congestion", "pacer"),
                     "needs min_rate <= start_rate <= max_rate")
    auto = config.congestion.auto
    if not 1 <= auto.interval <= 3600:
        raise _error(lines, source, ("congestion", "auto", "interval"), "must be 1s to 1h")
    if auto.window < auto.interval:
        raise _error(lines, source, ("congestion", "auto", "window"),
                     "must be at least congestion.auto.interval")
    for name, values in config.congestion.tunables.items():
        path = ("congestion", "tunables", name)
        if name not in ALGORITHMS:
            raise _error(lines, source, path,
                         f"no BPF algorithm {name!r}; ours are {', '.join(ALGORITHMS)}")
        for key, value in values.items():
            try:
                check_tunable(name, key, value)
            except ValueError as exc:
                raise _error(lines, source, path + (key,), str(exc)) from None


def _check_backend_tls(config: Config, lines: Lines, source: str) -> None:
    for group in config.group_names():
        settings = config.balancer_of(group).backend_tls
        where = ("balancer", "backend_tls") if group == DEFAULT or \
            config.clusters[group].balancer.backend_tls is None \
            else ("clusters", group, "balancer", "backend_tls")
        if settings is None:
            continue
        if config.balancer.mode != "http":
            raise _error(lines, source, where, "only in http mode (no TLS in tcp mode yet)")
        if settings.ca and (problem := ca_problem(settings.ca)):
            raise _error(lines, source, (*where, "ca"), problem)


def _check_tls(config: Config, lines: Lines, source: str) -> None:
    """Every certificate loads with its key, as the workers will load them."""
    _check_backend_tls(config, lines, source)
    tls = config.balancer.tls
    if tls is None:
        return
    where = ("balancer", "tls")
    if config.balancer.mode != "http":
        raise _error(lines, source, where, "only in http mode (no TLS in tcp mode yet)")
    for i, pair in enumerate(tls.certificates):
        problem = certificate_problem(pair.cert, pair.key)
        if problem:
            raise _error(lines, source, (*where, "certificates", i), problem)
    if tls.ticket_rotation < 1:
        raise _error(lines, source, (*where, "ticket_rotation"), "must be at least 1s")
    if tls.verify != "none" and not tls.client_ca:
        raise _error(lines, source, (*where, "verify"), f"{tls.verify} needs client_ca")
    if tls.client_ca:
        problem = ca_problem(tls.client_ca)
        if problem:
            raise _error(lines, source, (*where, "client_ca"), problem)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).set_ciphers(tls.ciphers)
    except ssl.SSLError:
        raise _error(lines, source, (*where, "ciphers"),
                     "OpenSSL knows none of these ciphers") from None


def certificate_problem(cert: str, key: str) -> str | None:
    """Why a certificate and key do not load together ("FILE: problem"), or None."""
    for path in (cert, key):
        if not os.access(path, os.R_OK):
            return f"{path}: cannot be read"
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        return f"{cert}: does not load with {key} ({exc.reason or exc})"
    return None


def ca_problem(path: str) -> str | None:
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_verify_locations(path)
    except (OSError, ssl.SSLError) as exc:
        return f"{path}: {getattr(exc, 'reason', None) or exc.strerror or exc}"
    return None


def _check_fleet(config: Config, lines: Lines, source: str) -> None:
    fleet = config.fleet
    if fleet is None:
        return
    if not 2 <= fleet.lease_ttl <= 3600:
        raise _error(lines, source, ("fleet", "lease_ttl"),
                     "must be from 2s (etcd's shortest lease) to 1h")
    if not 0.05 <= fleet.timeout < fleet.lease_ttl:
        raise _error(lines, source, ("fleet", "timeout"), "must be from 50ms to below lease_ttl")
    if (fleet.user is None) != (fleet.password is None):
        raise _error(lines, source, ("fleet", "user" if fleet.user is None else "password"),
                     "user and password go together")
    tls = fleet.tls
    if tls is not None and (tls.cert is None) != (tls.key is None):
        raise _error(lines, source, ("fleet", "tls", "cert" if tls.cert is None else "key"),
                     "cert and key go together")
    if tls is not None and not all(url.startswith("https://") for url in fleet.etcd):
        raise _error(lines, source, ("fleet", "etcd"), "fleet.tls needs https:// endpoints")


def _check_routes(config: Config, lines: Lines, source: str) -> None:
    names: dict[str, int] = {}
    for i, route in enumerate(config.routes):
        path = ("routes", i)
        if route.name is not None:
            if route.name in names:
                raise _error(lines, source, path + ("name",),
                             f"duplicate route name {route.name!r} (already routes[{names[route.name]}])")
            names[route.name] = i
        if route.cluster is not None and route.cluster != DEFAULT \
                and route.cluster not in config.clusters:
            known = ", ".join([DEFAULT, *config.clusters])
            raise _error(lines, source, path + ("cluster",),
                         f"no cluster {route.cluster!r}; known: {known}")
        answers = [k for k in ("cluster", "redirect", "respond") if getattr(route, k) is not None]
        if len(answers) > 1:
            raise _error(lines, source, path, f"give one of cluster, redirect, respond, "
                                              f"not {' and '.join(answers)}")
        if route.redirect is not None and \
                (route.redirect.location is None) == (route.redirect.scheme is None):
            raise _error(lines, source, path + ("redirect",), "give location or scheme (one)")
        if route.rewrite_prefix is not None and (route.match.path is None
                                                 or route.match.path.prefix is None):
            raise _error(lines, source, path + ("rewrite_prefix",),
                         "needs match.path.prefix (the part it replaces)")
        _check_regexes(route, lines, source, path)
        _check_route_timeouts(route, config, lines, source, path)
        if config.balancer.mode == "tcp" and _more_than_sni(route):
            raise _error(lines, source, path, "in tcp mode a route matches match.host (the "
                                              "TLS server name) and names a cluster, no more")


def _check_route_timeouts(route: RouteSettings, config: Config, lines: Lines, source: str,
                          path: KeyPath) -> None:
    """A route's own request or per-try timeout at or above the total (its own
    or timeouts.total) never fires."""
    total = route.timeouts.total or config.timeouts.total
    if total is None:
        return
    for where, value in ((("timeouts", "request"), route.timeouts.request),
                         (("retries", "per_try_timeout"),
                          route.retries.per_try_timeout if route.retries else None)):
        if value is not None and value >= total:
            raise _error(lines, source, path + where, f"{value:g}s never fires: the total "
                                                      f"({total:g}s) ends the exchange first")


def _more_than_sni(route: RouteSettings) -> bool:
    match = route.match
    return (match.path is not None or match.method is not None or bool(match.header)
            or bool(match.query) or route.redirect is not None or route.respond is not None
            or route.rewrite_prefix is not None or route.retries is not None
            or route.set_headers != type(route.set_headers)()
            or route.remove_headers != type(route.remove_headers)()
            or route.timeouts != type(route.timeouts)())


def _check_regexes(route: RouteSettings, lines: Lines, source: str, path: KeyPath) -> None:
    match = route.match
    found: list[tuple[KeyPath, str | None]] = (
        [(("match", "path", "regex"), match.path.regex)] if match.path else [])
    if match.path is not None and sum(x is not None for x in (
            match.path.prefix, match.path.exact, match.path.regex)) != 1:
        raise _error(lines, source, path + ("match", "path"), "give one of prefix, exact, regex")
    found += [(("match", kind, j, "regex"), c.regex) for kind in ("header", "query")
              for j, c in enumerate(getattr(match, kind)) if c.regex is not None]
    for where, pattern in found:
        if pattern is None:
            continue
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _error(lines, source, path + where, f"invalid regex: {exc}") from None


def warnings(config: Config) -> list[str]:
    """What is legal but almost surely a mistake: routes an earlier one shadows."""
    out = []
    for j, later in enumerate(config.routes):
        for i, earlier in enumerate(config.routes[:j]):
            if _covers(earlier.match, later.match):
                out.append(f"routes[{j}] ({later.name or 'unnamed'}) is never reached: "
                           f"routes[{i}] ({earlier.name or 'unnamed'}) matches every request "
                           "it would")
                break
    return out


def _covers(wide: Match, narrow: Match) -> bool:
    """Does every request ``narrow`` matches also match ``wide``? (Only the
    plain cases: ``wide`` with at most a host and a path condition.)"""
    if wide.method or wide.header or wide.query:
        return False
    if wide.host and not _host_covers(wide.host.lower(), (narrow.host or "").lower()):
        return False
    if wide.path is None or wide.path.prefix == "/":      # every path starts with /
        return True
    if narrow.path is None or narrow.path.regex is not None:
        return False
    if wide.path.prefix is not None:
        return (narrow.path.prefix or narrow.path.exact or "").startswith(wide.path.prefix)
    return wide.path.exact is not None and narrow.path.exact == wide.path.exact


def _host_covers(wide: str, narrow: str) -> bool:
    if not narrow:                  # the narrow route takes any host; the wide one does not
        return False
    return narrow.endswith(wide[1:]) if wide.startswith("*.") else narrow == wide


def _check_access_format(config: Config, lines: Lines, source: str) -> None:
    text = config.log.access_format
    if text == "json":
        return
    try:
        parse_access_format(template_of(text))
    except ValueError as exc:
        raise _error(lines, source, ("log", "access_format"),
                     f"{exc} (or one of json, httplog, combined)") from None
