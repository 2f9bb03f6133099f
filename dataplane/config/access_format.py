"""``log.access_format``: its named formats and the grammar of its templates
(docs/logging.md lists the variables). Parsing only; dataplane/logs/
renders a parsed template.

A template is text with ``%`` variables (the name is every letter that
follows), HAProxy's names where HAProxy has
the field (``%ci``, ``%ST``, ``%Ta``...), ``%{Name}i`` for a request header
(Apache's spelling) and ``%%`` for a percent sign.
"""

from __future__ import annotations

import re

# HAProxy's httplog, field for field; the connection and queue counts HAProxy
# keeps per process are not kept per request here and are written as 0.
HTTPLOG = ('%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B - - %tsc '
           '0/0/0/0/%rc 0/0 "%r"')
# nginx's "combined" (no authenticated user: "-").
COMBINED = '%ci - - [%tl] "%r" %ST %B "%{Referer}i" "%{User-Agent}i"'
NAMED = {"httplog": HTTPLOG, "combined": COMBINED}

VARIABLES = {
    "ci": "client IP address", "cp": "client port",
    "ft": "listener: l7lb, l7lb~ over TLS", "pr": "protocol: http/1.1, h2, h2c",
    "tr": "request date, 03/Dec/2026:21:39:23.123 (UTC)",
    "tl": "request date as nginx's $time_local, 03/Dec/2026:21:39:23 +0000",
    "ts": "request date in ISO 8601, UTC",
    "b": "cluster (backend group)", "s": "backend HOST:PORT, <NOSRV> when none was chosen",
    "rt": "route name, - when none",
    "TR": "ms to read the request head (0: the clock starts with the head)",
    "Tw": "ms waiting in a queue (included in Tc)",
    "Tc": "ms from the head to the request sent upstream (pool, queue, connect)",
    "Tr": "ms from the request sent to the response's end", "Ta": "ms in all",
    "Tt": "ms in all (as Ta)",
    "ST": "status", "B": "response body bytes to the client",
    "U": "request body bytes from the client",
    "tsc": "termination state, HAProxy's two letters and -- (---- when normal)",
    "rc": "retries (tries after the first)", "ec": "the error, - when none",
    "r": "request line: method, target, HTTP version", "HM": "method", "HU": "target",
    "HV": "HTTP version", "ID": "request ID, - when none",
    "sslv": "TLS version, - without TLS", "sslc": "TLS cipher", "sni": "TLS server name",
    "pid": "the worker's process ID",
}
_NAME = re.compile(r"[A-Za-z]+")     # a variable's name: every letter after its %

Part = str | tuple[str, str]     # literal text, or (variable, its {argument})


def template_of(text: str) -> str:
    """A named format's template, or ``text`` itself (a template)."""
    return NAMED.get(text, text)


def parse(template: str) -> list[Part]:
    """The parts of ``template``; ValueError names what is wrong. A ``json``
    format has no template (parse is not asked for it)."""
    parts: list[Part] = []
    text: list[str] = []
    at = 0
    while at < len(template):
        char = template[at]
        if char != "%":
            text.append(char)
            at += 1
            continue
        if template.startswith("%%", at):
            text.append("%")
            at += 2
            continue
        variable, at = _variable(template, at + 1)
        if text:
            parts.append("".join(text))
            text = []
        parts.append(variable)
    if text:
        parts.append("".join(text))
    return parts


def _variable(template: str, at: int) -> tuple[tuple[str, str], int]:
    """The variable at ``at`` (just after its ``%``) and where it ends."""
    if template.startswith("{", at):
        end = template.find("}", at)
        name = template[at + 1:end] if end > 0 else ""
        if not name or not name.replace("-", "").isalnum() or not template.startswith("i", end + 1):
            raise ValueError(f"at {at}: a header is written %{{Name}}i")
        return ("i", name.lower()), end + 2
    word = _NAME.match(template, at)
    if word is None or word.group() not in VARIABLES:
        what = word.group() if word else template[at:at + 1]
        raise ValueError(f"at {at}: unknown variable %{what} "
                         f"(known: {', '.join(sorted(VARIABLES))}, %{{Name}}i, %%)")
    return (word.group(), ""), word.end()
