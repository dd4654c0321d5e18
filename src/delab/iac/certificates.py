"""A certificate authority of the lab's own and the certificates it issues, as PEM files (Python's cryptography).

    files = certificates.ensure(folder, hosts=("127.0.0.1", "localhost"))
    files.ca         # the CA's certificate: what clients trust
    files.keystore   # the server's private key + certificate + CA certificate (Kafka's PEM keystore), mode 600
    files.other_cert, files.other_key   # a certificate the same CA issued to another service (impostor demo)

Made at run time into a state folder, never committed. A real deployment gets its certificates from the
organisation's CA (cert-manager, Vault's PKI engine, ACM Private CA): only the file paths change.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

#: how long the lab's certificates are valid; files that expire within a day are made again
VALIDITY = datetime.timedelta(days=365)
OTHER_SERVICE = "billing.internal.invalid"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one TLS setup."""

    ca: Path
    ca_key: Path
    keystore: Path
    other_cert: Path
    other_key: Path


def _files(folder: Path) -> TlsFiles:
    return TlsFiles(
        ca=folder / "ca.pem",
        ca_key=folder / "ca-key.pem",
        keystore=folder / "server-keystore.pem",
        other_cert=folder / "other-service.pem",
        other_key=folder / "other-service-key.pem",
    )


def _still_valid(path: Path) -> bool:
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    now = datetime.datetime.now(datetime.UTC)
    return certificate.not_valid_after_utc - now > datetime.timedelta(days=1)


def ensure(folder: str | Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsFiles:
    """The CA and the certificates under ``folder``, made if missing or about to expire. The server certificate
    names ``hosts`` (IP addresses and DNS names) as subject alternative names: what clients verify."""
    folder = Path(folder)
    files = _files(folder)
    if all(p.exists() for p in vars(files).values()) and _still_valid(files.ca) and _still_valid(files.keystore):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    ca_key, ca_cert = _authority("delab lab CA")
    server_key, server_cert = _issue(ca_key, ca_cert, hosts[0], hosts)
    other_key, other_cert = _issue(ca_key, ca_cert, OTHER_SERVICE, (OTHER_SERVICE,))
    _write(files.ca, _pem_cert(ca_cert))
    _write(files.ca_key, _pem_key(ca_key), private=True)
    # Kafka's PEM keystore: an unencrypted PKCS#8 key, then the chain from the server's certificate to the CA
    _write(files.keystore, _pem_key(server_key) + _pem_cert(server_cert) + _pem_cert(ca_cert), private=True)
    _write(files.other_cert, _pem_cert(other_cert) + _pem_cert(ca_cert))
    _write(files.other_key, _pem_key(other_key), private=True)
    return files


def describe(path: str | Path) -> dict[str, str]:
    """Subject, issuer, names and expiry of the first certificate in a PEM file (what ``openssl x509 -text`` says)."""
    from cryptography import x509

    data = Path(path).read_bytes()
    start = data.index(b"-----BEGIN CERTIFICATE-----")
    certificate = x509.load_pem_x509_certificate(data[start:])
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = ", ".join(str(getattr(name, "value", name)) for name in names)
    except x509.ExtensionNotFound:
        sans = ""
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "names": sans,
        "not after": certificate.not_valid_after_utc.strftime("%Y-%m-%d"),
    }


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _pem_cert(certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return certificate.public_bytes(serialization.Encoding.PEM)


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "delab"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _authority(common_name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _issue(ca_key, ca_cert, common_name: str, hosts: tuple[str, ...]):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate
