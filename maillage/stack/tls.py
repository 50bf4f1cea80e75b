"""Certificates for the MQTT TLS listener: a private CA and a server certificate it signs.

`maillage broker tls` and the embedded broker (`maillage up` with a TLS port) write them with the
`cryptography` package; an operator may give their own files instead (same three names). Devices
trust `ca.crt`; keys are written 0600 (`registry/secret_files.py`). ECDSA P-256: small, fast to
verify on a device, accepted by every TLS 1.2 stack Mosquitto and paho use.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maillage.errors import StackError
from maillage.registry.secret_files import write_secret

log = logging.getLogger(__name__)

CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"


@dataclass(frozen=True)
class TlsFiles:
    """Where a broker's TLS listener finds its files."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def of(cls, directory: Path) -> TlsFiles:
        return cls(directory / CA_CERT, directory / SERVER_CERT, directory / SERVER_KEY)

    def exist(self) -> bool:
        return self.ca.exists() and self.cert.exists() and self.key.exists()


def _san(hosts: list[str]):  # type: ignore[no-untyped-def]  # cryptography is imported lazily
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def generate(directory: Path, hosts: list[str], *, days: int = 825,
             owner: tuple[int, int] | None = None) -> TlsFiles:
    """Write a CA (kept if present) and a server certificate for `hosts` (names or IPs)."""
    try:
        # Imported here: only certificate generation needs it (an optional dependency).
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise StackError("the cryptography package is needed to generate certificates "
                         "(pip install cryptography), or give your own ca.crt/server.crt/server.key") from exc
    if not hosts:
        raise StackError("name at least one host the devices connect to (--host)")
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC) - timedelta(minutes=5)  # a device clock slightly behind still accepts it
    pem = serialization.Encoding.PEM
    raw_key = serialization.PrivateFormat.PKCS8
    nocrypt = serialization.NoEncryption()
    ca_key_path, ca_path = directory / CA_KEY, directory / CA_CERT
    if ca_key_path.exists() and ca_path.exists():
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key = loaded
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "maillage"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "maillage MQTT CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        write_secret(ca_key_path, ca_key.private_bytes(pem, raw_key, nocrypt))
        ca_path.write_bytes(ca.public_bytes(pem))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=days))
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TlsFiles.of(directory)
    write_secret(files.key, key.private_bytes(pem, raw_key, nocrypt))
    files.cert.write_bytes(cert.public_bytes(pem))
    if owner is not None:  # the broker's user must read its key (uid 1883 in the image)
        for path in (files.key, files.cert, files.ca):
            os.chown(path, *owner)
    log.info("TLS: CA %s, server certificate for %s in %s", ca_path, ", ".join(hosts), directory)
    return files
