"""Certificates for a TLS-only redis-server, made by the test that needs them.

A private certificate authority, a server certificate for ``127.0.0.1`` signed by it, and
a client certificate (for servers that ask clients for one). Keys are EC P-256; nothing is
written outside the given directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness._resp import HOST


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the CA's certificate, the server's pair, a client's pair."""

    ca: pathlib.Path
    cert: pathlib.Path
    key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path

    def client_context(self) -> ssl.SSLContext:
        """What a client trusting this CA, presenting its own certificate, connects with."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def url_query(self) -> str:
        """redis-py's ssl query parameters for these files (``rediss://...?<this>``)."""
        return (
            f"ssl_ca_certs={self.ca}&ssl_certfile={self.client_cert}"
            f"&ssl_keyfile={self.client_key}&ssl_cert_reqs=required"
        )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(path: pathlib.Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_certificates(directory: pathlib.Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("floodwall test CA"))
        .issuer_name(_name("floodwall test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common: str, usage: x509.ObjectIdentifier) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key

    files = TlsFiles(
        ca=directory / "ca.crt",
        cert=directory / "redis.crt",
        key=directory / "redis.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = leaf(HOST, ExtendedKeyUsageOID.SERVER_AUTH)
    files.cert.write_bytes(server_cert)
    _write_key(files.key, server_key)
    client_cert, client_key = leaf("floodwall test client", ExtendedKeyUsageOID.CLIENT_AUTH)
    files.client_cert.write_bytes(client_cert)
    _write_key(files.client_key, client_key)
    return files
