"""TLS pieces without a network: which certificate answers a name, what a
certificate file says, and the configuration's checks of certificate files."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dataplane.config import ConfigError, parse
from dataplane.tls.certificates import read
from dataplane.tls.names import NameIndex


def make_cert(tmp: Path, name: str, dns: list[str], days: int = 30) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(days=days)))
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.mark.parametrize("name, index", [
    ("a.test", 0), ("A.Test.", 0), ("api.w.test", 1), ("w.test", 2), ("x.y.w.test", 0),
    ("other.test", 0), (None, 0), ("", 0), ("b.test", 2)])
def test_exact_then_one_label_wildcard_then_the_first(name, index):
    names = NameIndex([["a.test"], ["*.w.test"], ["w.test", "b.test", "a.test"]])
    assert names.pick(name) == index


def test_a_certificate_says_its_names_issuer_and_expiry(tmp_path):
    cert, _ = make_cert(tmp_path, "site", ["site.test", "*.site.test"], days=10)
    info = read(cert)
    assert info.names == ["site.test", "*.site.test"] and "CN=site" in info.issuer
    left = info.expires_in(datetime.datetime.now(datetime.timezone.utc))
    assert datetime.timedelta(days=9) < left <= datetime.timedelta(days=10)


def test_without_alternative_names_the_common_name_counts(tmp_path):
    cert, _ = make_cert(tmp_path, "legacy.test", [])
    assert read(cert).names == ["legacy.test"]


def tls_config(cert: str, key: str, extra: str = "") -> str:
    return f"balancer: {{tls: {{certificates: [{{cert: {cert}, key: {key}}}]{extra}}}}}\n"


def test_the_configuration_loads_certificates_and_names_a_bad_file(tmp_path):
    cert, key = make_cert(tmp_path, "ok", ["ok.test"])
    assert parse(tls_config(cert, key)).balancer.tls.min_version == "1.2"
    other_cert, other_key = make_cert(tmp_path, "other", ["other.test"])
    with pytest.raises(ConfigError) as caught:
        parse(tls_config(cert, other_key), "f.yaml")
    assert str(caught.value).startswith(f"f.yaml:1: balancer.tls.certificates[0]: {cert}: "
                                        f"does not load with {other_key}")
    with pytest.raises(ConfigError, match="missing.pem: cannot be read"):
        parse(tls_config(str(tmp_path / "missing.pem"), key))
    with pytest.raises(ConfigError, match="required needs client_ca"):
        parse(tls_config(cert, key, ", verify: required"))
    with pytest.raises(ConfigError, match="only in http mode"):
        parse(tls_config(cert, key).replace("balancer: {", "balancer: {mode: tcp, "))
    with pytest.raises(ConfigError, match="balancer.tls.min_version"):
        parse(tls_config(cert, key, ', min_version: "1.1"'))
