"""log.access_format: the template grammar, the named formats' lines read by
each format's own documented grammar, escaping, and a broken template as a
configuration error with its line."""

from __future__ import annotations

import pytest

from dataplane.config import ConfigError, parse
from dataplane.config.access_format import HTTPLOG, COMBINED, parse as parse_template
from dataplane.logs import access_text
from dataplane.logs.access_text import TextAccessLog
from dataplane.testing.log_grammars import COMBINED_LINE, HTTPLOG_LINE
from dataplane.upstream.outcome import ErrorKind

class Done:
    """A finished request as the text log reads it (access_text.Details)."""
    def __init__(self, forward: bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                 kind: ErrorKind = ErrorKind.NONE, sends: int = 1) -> None:
        self.forward, self.kind, self.sends = forward, kind, sends
        self.request_id, self.started, self.sent_at, self.version = b"", 100.0, 100.004, "1.1"


def line_of(template: str, capsys, **overrides) -> str:
    log = TextAccessLog(parse_template(template))
    prefix = log.prefix(b"198.18.0.2", "http/1.1",
                        {"tls": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256", "sni": "a.example"},
                        41000)
    fields = dict(method=b"GET", target=b"/p?q=1", status=200, backend="198.18.0.4:8000",
                  bytes_in=0, bytes_out=1234, ms=12.7, error="", route="api", cluster="apis",
                  request_id=b"0123456789abcdef0123456789abcdef", details=Done())
    fields.update(overrides)
    log.request(prefix, **fields)
    return capsys.readouterr().out.splitlines()[-1]


def test_httplog_lines_read_by_haproxys_documented_fields(capsys):
    line = line_of(HTTPLOG, capsys)
    match = HTTPLOG_LINE.match(line)
    assert match, line
    assert (match["ci"], match["cp"], match["ft"], match["b"], match["s"]) == \
        ("198.18.0.2", "41000", "l7lb~", "apis", "198.18.0.4:8000")
    assert (match["ST"], match["B"], match["Ta"], match["Tc"], match["tsc"], match["rc"]) == \
        ("200", "1234", "12", "4", "----", "0")
    assert match["r"] == "GET /p?q=1 HTTP/1.1"
    failed = HTTPLOG_LINE.match(line_of(HTTPLOG, capsys, status=503, backend="", bytes_out=0,
                                        details=Done(kind=ErrorKind.CONNECT_REFUSED, sends=3)))
    assert failed and (failed["s"], failed["tsc"], failed["rc"]) == ("<NOSRV>", "SC--", "2")


def test_combined_lines_read_by_nginxs_documented_format(capsys):
    forward = (b'GET / HTTP/1.1\r\nHost: a\r\nReferer: https://r.example/\r\n'
               b'User-Agent: curl/7.88 "quoted"\r\n\r\n')
    match = COMBINED_LINE.match(line_of(COMBINED, capsys, details=Done(forward)))
    assert match
    assert (match["remote_addr"], match["status"], match["body_bytes_sent"]) == \
        ("198.18.0.2", "200", "1234")
    assert match["request"] == "GET /p?q=1 HTTP/1.1"
    assert match["http_referer"] == "https://r.example/"
    assert match["http_user_agent"] == r"curl/7.88 \x22quoted\x22"
    bare = COMBINED_LINE.match(line_of(COMBINED, capsys))
    assert bare and bare["http_referer"] == "-" and bare["http_user_agent"] == "-"


def test_a_template_names_every_documented_field(capsys):
    line = line_of("%ID %rt %b %s %sslv %sni %HM %HU %U %B %ST %rc %ec %pr %{Host}i 100%%",
                   capsys, target=b'/a"b\x01', error="connect refused")
    assert line == ("0123456789abcdef0123456789abcdef api apis 198.18.0.4:8000 TLSv1.3 "
                    r"a.example GET /a\x22b\x01 0 1234 200 0 connect refused http/1.1 a 100%")


@pytest.mark.parametrize("template, problem", [
    ("%ci %bogus", "unknown variable %bogus"),
    ("%{User-Agent}", "a header is written %{Name}i"),
    ("%", "unknown variable"),
])
def test_a_broken_template_is_a_config_error_with_its_line(template, problem):
    with pytest.raises(ConfigError) as error:
        parse(f"backends: []\nlog:\n  access_format: '{template}'\n")
    assert "log.access_format" in str(error.value) and ":3:" in str(error.value)
    assert problem in str(error.value)


def test_named_formats_are_their_templates():
    assert parse("log: {access_format: httplog}\n").log.access_format == "httplog"
    assert access_text.safe(b"\xff\x00ok") == r"\xFF\x00ok"


def test_every_variable_is_documented():
    from pathlib import Path
    from dataplane.config.access_format import VARIABLES
    page = (Path(__file__).parent.parent / "docs" / "logging.md").read_text()
    assert [name for name in VARIABLES if f"| `%{name}` |" not in page] == []
