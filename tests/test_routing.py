"""The route table: first match wins, in the configuration's order, however
the table is indexed. Checked against a plain scan of every route."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.config import parse
from dataplane.routing.table import RouteTable

ROUTES = """
clusters: {api: {backends: [{host: 198.18.0.9, port: 80}]},
           static: {backends: [{host: 198.18.0.8, port: 80}]}}
routes:
  - {name: health, match: {path: {exact: /healthz}}, respond: {status: 200, body: ok}}
  - {name: api-v2, match: {host: "*.example.org", path: {prefix: /api/v2/}}, cluster: api}
  - {name: api, match: {host: api.example.com}, cluster: api}
  - {name: static, match: {path: {prefix: /static/}}, cluster: static}
  - {name: posts, match: {path: {prefix: /api/}, method: [POST]}, cluster: static}
  - {name: tenant, match: {header: [{name: X-Tenant, equals: blue}]}, cluster: api}
  - {name: debug, match: {header: [{name: X-Debug}], query: [{name: trace, regex: "[0-9]+"}]},
     cluster: static}
  - {name: users, match: {path: {regex: "/users/[0-9]+"}}, cluster: api}
  - {name: old, match: {host: old.example.com}, redirect: {location: "https://new.example.com"}}
"""
TABLE = RouteTable(parse(ROUTES).routes)


def find(target: bytes, host: bytes = b"www.example.com", method: bytes = b"GET",
         headers: list | None = None) -> str | None:
    route = TABLE.find(method, target, host, headers or [])
    return route.name if route else None


def test_paths_hosts_methods_headers_and_queries():
    assert find(b"/healthz") == "health"
    assert find(b"/healthz/more") is None                       # exact is exact
    assert find(b"/api/v2/x", b"a.b.example.org") == "api-v2"  # any depth
    assert find(b"/api/v2/x", b"example.org") is None          # not the bare domain
    assert find(b"/anything", b"API.Example.com:8443") == "api"  # case and port ignored
    assert find(b"/static/a.css") == "static"
    assert find(b"/api/x", method=b"POST") == "posts" and find(b"/api/x") is None
    assert find(b"/", headers=[(b"x-tenant", b"blue")]) == "tenant"
    assert find(b"/", headers=[(b"X-Tenant", b"red")]) is None
    assert find(b"/?trace=12", headers=[(b"X-Debug", b"")]) == "debug"
    assert find(b"/?trace=abc", headers=[(b"X-Debug", b"1")]) is None
    assert find(b"/users/42") == "users" and find(b"/users/42x") is None   # anchored
    assert find(b"/x", b"old.example.com") == "old"


def test_the_first_match_wins_across_host_and_path_indexes():
    # /healthz on api.example.com: the health route comes first.
    assert find(b"/healthz", b"api.example.com") == "health"
    # /static/ on api.example.com: "api" (host) comes before "static" (path).
    assert find(b"/static/x", b"api.example.com") == "api"


HOSTS = [b"api.example.com", b"a.example.org", b"x.y.example.org", b"old.example.com",
         b"www.example.com", b"example.org"]
TARGETS = [b"/", b"/healthz", b"/api/v2/q", b"/api/x", b"/static/s", b"/users/7",
           b"/users/7/x", b"/?trace=3"]
HEADERS = [[], [(b"X-Tenant", b"blue")], [(b"X-Debug", b"on")]]


def plain_scan(method: bytes, target: bytes, host: bytes, headers: list) -> str | None:
    """Every route in order, each condition checked directly."""
    import re
    from urllib.parse import parse_qsl
    path, _, query = target.decode().partition("?")
    name = host.decode().lower().partition(":")[0]
    named = {k.lower().decode(): v.decode() for k, v in reversed(headers)}
    fields = dict(parse_qsl(query, keep_blank_values=True))
    for route in parse(ROUTES).routes:
        m = route.match
        if m.host and not (name.endswith(m.host[1:].lower()) if m.host.startswith("*.")
                           else name == m.host.lower()):
            continue
        if m.path and ((m.path.exact and path != m.path.exact)
                       or (m.path.prefix and not path.startswith(m.path.prefix))
                       or (m.path.regex and not re.fullmatch(m.path.regex, path))):
            continue
        if m.method and method.decode() not in m.method:
            continue
        if any(not ok(named.get(h.name.lower()), h) for h in m.header):
            continue
        if any(not ok(fields.get(q.name), q) for q in m.query):
            continue
        return route.name
    return None


def ok(value, condition) -> bool:
    import re
    if value is None:
        return False
    if condition.equals is not None:
        return value == condition.equals
    return condition.regex is None or re.fullmatch(condition.regex, value) is not None


@settings(max_examples=300)
@given(st.sampled_from([b"GET", b"POST"]), st.sampled_from(TARGETS), st.sampled_from(HOSTS),
       st.sampled_from(HEADERS))
def test_the_index_agrees_with_a_plain_scan(method, target, host, headers):
    assert find(target, host, method, headers) == plain_scan(method, target, host, headers)


HEADERLESS = RouteTable([r for r in parse(ROUTES).routes if not r.match.header])


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([b"GET", b"POST"]), st.sampled_from(TARGETS),
                          st.sampled_from(HOSTS)), min_size=1, max_size=20))
def test_a_table_without_header_conditions_remembers_what_it_found(requests):
    """Asked again, it answers as it did, from memory."""
    for method, target, host in requests + requests:
        assert HEADERLESS.find(method, target, host, []) is \
            HEADERLESS._find(method, target, host, [])
    assert (requests[0][0], requests[0][1], requests[0][2]) in HEADERLESS.found


def test_what_a_table_remembers_is_bounded():
    from dataplane.routing.table import FOUND_KEPT, FOUND_TARGET
    for number in range(FOUND_KEPT + 10):
        HEADERLESS.find(b"GET", b"/static/%d" % number, b"h", [])
        assert len(HEADERLESS.found) <= FOUND_KEPT
    long = b"/static/" + b"x" * FOUND_TARGET
    assert HEADERLESS.find(b"GET", long, b"h", []).name == "static"
    assert (b"GET", long, b"h") not in HEADERLESS.found
