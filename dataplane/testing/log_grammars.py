"""Access log grammars as each format's own documentation gives them, made
into regular expressions for the tests to read l7lb's lines with: nginx's
"combined" and HAProxy's "httplog". Written from the documents, not from
dataplane/config/access_format.py, so that a line our templates get wrong
does not match."""

from __future__ import annotations

import re

# nginx's documented "combined" format (ngx_http_log_module), and the pattern
# each of its variables has; the line's regex is made from that text.
NGINX_COMBINED = ('$remote_addr - $remote_user [$time_local] "$request" $status '
                  '$body_bytes_sent "$http_referer" "$http_user_agent"')
NGINX_VARIABLES = {
    "remote_addr": r"(?P<remote_addr>[0-9a-fA-F.:]+)", "remote_user": r"(?P<remote_user>-|\S+)",
    "time_local": r"(?P<time_local>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})",
    "request": r"(?P<request>[^\"]*)", "status": r"(?P<status>\d{3})",
    "body_bytes_sent": r"(?P<body_bytes_sent>\d+)", "http_referer": r"(?P<http_referer>[^\"]*)",
    "http_user_agent": r"(?P<http_user_agent>[^\"]*)",
}
# HAProxy's documented httplog (configuration.txt, "HTTP log format"), as its
# log-format string, and each field's pattern as that section describes it.
# %hr and %hs (captured headers, "{...}") are absent without captures.
HAPROXY_HTTPLOG = ('%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc '
                   '%ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r')
HAPROXY_FIELDS = {
    "ci": r"(?P<ci>[0-9a-fA-F.:]+)", "cp": r"(?P<cp>\d+)",
    "tr": r"(?P<tr>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3})",
    "ft": r"(?P<ft>\S+?~?)", "b": r"(?P<b>\S+)", "s": r"(?P<s>\S+)",
    "TR": r"(?P<TR>-?\d+)", "Tw": r"(?P<Tw>-?\d+)", "Tc": r"(?P<Tc>-?\d+)",
    "Tr": r"(?P<Tr>-?\d+)", "Ta": r"\+?(?P<Ta>\d+)", "ST": r"(?P<ST>-?\d+)",
    "B": r"\+?(?P<B>\d+)", "CC": r"(?P<CC>\S+)", "CS": r"(?P<CS>\S+)",
    "tsc": r"(?P<tsc>[-A-Za-z]{4})", "ac": r"(?P<ac>\d+)", "fc": r"(?P<fc>\d+)",
    "bc": r"(?P<bc>\d+)", "sc": r"(?P<sc>\d+)", "rc": r"\+?(?P<rc>\d+)",
    "sq": r"(?P<sq>\d+)", "bq": r"(?P<bq>\d+)", "hr": r"(?:\{[^}]*\})?", "hs": r"(?:\{[^}]*\})?",
    "{+Q}r": r"\"(?P<r>[^\"]*)\"",
}


def nginx_regex(fmt: str) -> re.Pattern[str]:
    pieces = re.split(r"(\$[a-z_]+)", fmt)
    pattern = "".join(NGINX_VARIABLES[piece[1:]] if piece.startswith("$") else re.escape(piece)
                      for piece in pieces)
    return re.compile("^" + pattern + "$")


def haproxy_regex(fmt: str) -> re.Pattern[str]:
    pieces = re.split(r"(%\{\+Q\}r|%[A-Za-z]+)", fmt)
    pattern = "".join(HAPROXY_FIELDS[piece[1:]] if piece.startswith("%") else re.escape(piece)
                      for piece in pieces)
    pattern = pattern.replace(r"(?:\{[^}]*\})?\ (?:\{[^}]*\})?\ ", r"(?:\{[^}]*\} )?(?:\{[^}]*\} )?")
    return re.compile("^" + pattern + "$")


HTTPLOG_LINE = haproxy_regex(HAPROXY_HTTPLOG)
COMBINED_LINE = nginx_regex(NGINX_COMBINED)
