"""Throw-away X.509 material made with the openssl command line for TLS tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_client_cert: Path
    wrong_client_key: Path
    serial_cert: Path  # CN = a serial number, O = "Example CPO"
    serial_key: Path
    foreign_cert: Path  # the same serial, O = another CPO
    foreign_key: Path


def _run(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _leaf(
    d: Path, name: str, cn: str, ca: Path, ca_key: Path, server: bool, org: str | None = None
) -> tuple[Path, Path]:
    key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    _run(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        f"/O={org}/CN={cn}" if org else f"/CN={cn}",
    )
    ext = d / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "extendedKeyUsage=clientAuth\n"
    )
    _run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        str(cert),
        "-extfile",
        str(ext),
    )
    return cert, key


def make_certs(d: Path) -> Certs:
    """A CA, a server certificate for 127.0.0.1, client certificates for CP16 and OTHER,
    and two with a serial number as CN, one of our CPO and one of another."""
    ca, ca_key = d / "ca.pem", d / "ca.key"
    _run(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=edge test CA",
    )
    server_cert, server_key = _leaf(d, "server", "127.0.0.1", ca, ca_key, server=True)
    client_cert, client_key = _leaf(d, "client", "CP16", ca, ca_key, server=False)
    wrong_cert, wrong_key = _leaf(d, "wrong", "OTHER", ca, ca_key, server=False)
    serial = _leaf(d, "serial", "SN-0042", ca, ca_key, server=False, org="Example CPO")
    foreign = _leaf(d, "foreign", "SN-0042", ca, ca_key, server=False, org="Another CPO")
    return Certs(
        ca,
        server_cert,
        server_key,
        client_cert,
        client_key,
        wrong_cert,
        wrong_key,
        *serial,
        *foreign,
    )
