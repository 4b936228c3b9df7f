"""TLS material: a throw-away test CA, the server certificate, the client's CA bundle and the
app registration's client certificate.

MSAL refuses plain-http authorities, so the stand-ins must speak real HTTPS. The CA is created per
run with `trustme`; `ca-bundle.pem` is the system bundle plus that CA, so one file can be handed to
`REQUESTS_CA_BUNDLE`/`SSL_CERT_FILE` without breaking other HTTPS traffic of the same process.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SERVER_IDENTITIES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsMaterial:
    ca_path: Path
    bundle_path: Path
    server_context: ssl.SSLContext


def system_bundle_path(env: Mapping[str, str], exclude: Path | None = None) -> Path:
    """The bundle clients trust today: `SSL_CERT_FILE`/`REQUESTS_CA_BUNDLE` if set, else certifi's.

    A variable that already points at the bundle being (re)written is skipped, so restarting the
    sandbox in the same state directory does not read its own output.
    """
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = env.get(name)
        if not value:
            continue
        candidate = Path(value)
        if not candidate.is_file():
            continue
        if exclude is not None and candidate.resolve() == exclude.resolve():
            continue
        return candidate
    return Path(certifi.where())


def create_tls(state_dir: Path, env: Mapping[str, str] | None = None) -> TlsMaterial:
    """Create the CA and server certificate; write `ca.pem` and `ca-bundle.pem` into `state_dir`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Bookings invoicing sandbox")
    leaf = ca.issue_cert(*SERVER_IDENTITIES, common_name="sandbox")
    ca_path = state_dir / "ca.pem"
    bundle_path = state_dir / "ca-bundle.pem"
    ca_pem = ca.cert_pem.bytes()
    system = system_bundle_path(os.environ if env is None else env, exclude=bundle_path)
    system_pem = system.read_bytes()
    _write_atomic(ca_path, ca_pem)
    _write_atomic(
        bundle_path, system_pem.rstrip(b"\n") + b"\n\n# Bookings invoicing sandbox test CA\n" + ca_pem
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    leaf.configure_cert(context)
    return TlsMaterial(ca_path=ca_path, bundle_path=bundle_path, server_context=context)


@dataclass(frozen=True)
class ClientCertificate:
    """The certificate registered on the sandbox app registration (certificate credentials)."""

    private_key_pem: str
    certificate_pem: str
    certificate: x509.Certificate
    thumbprint_sha1: str
    """Upper-case hex, as the Azure portal shows it and MSAL's `thumbprint` expects."""
    path: Path
    """PEM file with the private key followed by the certificate."""

    @property
    def x5t(self) -> str:
        return _b64url(self.certificate.fingerprint(hashes.SHA1()))  # noqa: S303 - x5t is SHA-1 by spec

    @property
    def x5t_s256(self) -> str:
        return _b64url(self.certificate.fingerprint(hashes.SHA256()))


def create_client_certificate(path: Path, common_name: str) -> ClientCertificate:
    """A self-signed RSA certificate, as `New-SelfSignedCertificate` would make for an app."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, (key_pem + cert_pem).encode("ascii"))
    os.chmod(path, 0o600)
    return ClientCertificate(
        private_key_pem=key_pem,
        certificate_pem=cert_pem,
        certificate=certificate,
        thumbprint_sha1=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
        path=path,
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file so a reader never sees half a bundle."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
