"""A throwaway test CA and a server certificate for loopback (127.0.0.1, ::1, localhost).

Used by the test peers (oauth_server.py) and scripts/mta. Run as a script to write
ca.pem, ca.key, server.pem, server.key into a directory:

    python testca.py DIR [--name NAME ...]

Files that already exist are reused, so several peers can share one CA.
"""

import argparse
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write(path, data, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _expires_within(path, now, days):
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return cert.not_valid_after_utc < now + datetime.timedelta(days=days)


def ensure(directory, names=("localhost",), ips=("127.0.0.1", "::1"), days=90, valid=None):
    """Creates (or reuses) the CA and the server certificate in `directory`; returns a dict of paths.

    The server certificate is valid for `days` (default 90: longer than the operator's default early-warning
    window of 14 days, so ordinary peers raise no CertificateExpiresSoon; a test of that warning passes e.g. 3).
    A reused server certificate that expires within 30 days is replaced (unless `days` asks for less).
    `valid`: (not_before, not_after) of the server certificate as offsets from now (datetime.timedelta), e.g. an
    expired or a not-yet-valid one (tests/peers/fault_peer.py, in a fresh directory); it overrides `days`."""
    os.makedirs(directory, exist_ok=True)
    paths = {
        "ca": os.path.join(directory, "ca.pem"),
        "ca_key": os.path.join(directory, "ca.key"),
        "cert": os.path.join(directory, "server.pem"),
        "key": os.path.join(directory, "server.key"),
    }
    now = datetime.datetime.now(datetime.timezone.utc)
    if os.path.exists(paths["ca"]) and os.path.exists(paths["ca_key"]):
        with open(paths["ca"], "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
        with open(paths["ca_key"], "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp-operator test CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=400))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(paths["ca_key"], _key_pem(ca_key), 0o600)
        _write(paths["ca"], ca_cert.public_bytes(serialization.Encoding.PEM))

    reuse = os.path.exists(paths["cert"]) and os.path.exists(paths["key"])
    if reuse and days >= 30 and _expires_within(paths["cert"], now, 30):
        reuse = False
    if not reuse:
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + (valid[0] if valid else -datetime.timedelta(minutes=5)))
            .not_valid_after(now + (valid[1] if valid else datetime.timedelta(days=days)))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        # the key first: a reader that sees server.pem finds its key too
        _write(paths["key"], _key_pem(key), 0o600)
        _write(paths["cert"], cert.public_bytes(serialization.Encoding.PEM))
    return paths


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("dir")
    p.add_argument("--name", action="append", default=None, help="DNS name (default: localhost)")
    a = p.parse_args()
    import json

    print(json.dumps(ensure(a.dir, tuple(a.name or ["localhost"]))))
