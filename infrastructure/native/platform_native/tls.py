"""A throwaway certificate authority and a loopback server certificate, made with keytool.

For the secured servers (Kafka's SASL_SSL listener): the JDK that runs Kafka
already has ``keytool``, so no other tool is needed. Everything is made fresh
in a directory of its own, valid for a few days, for 127.0.0.1 and localhost
only; nothing here is meant to outlive a test run or a development session.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

VALID_DAYS = "7"
SERVER_NAMES = "SAN=ip:127.0.0.1,dns:localhost"


class TLSError(RuntimeError):
    """keytool failed; the message has its command line and output."""


@dataclass(frozen=True)
class ServerCertificate:
    """What a TLS server and its clients need."""

    ca_file: Path  # PEM: what clients trust
    keystore: Path  # PKCS12: the server's key and certificate chain
    password: str  # of the keystore and its key

    @property
    def password_file(self) -> Path:
        """The file holding the password (mode 600), beside the keystore."""
        return self.keystore.parent / "password"


def _keytool(*args: str, cwd: Path) -> None:
    found = shutil.which("keytool")
    if found is None:
        raise TLSError("keytool is not on PATH (it comes with the JDK, Java 17+)")
    # Seven short JVMs per certificate: C1 alone makes one in 6.3-6.9 s of CPU, not 10-11.4.
    command = [found, "-J-XX:TieredStopAtLevel=1", *args]
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise TLSError(f"keytool {' '.join(args[:1])} failed:\n{result.stdout}{result.stderr}")


def make_server_certificate(directory: Path, name: str = "server") -> ServerCertificate:
    """A CA (``ca.pem``) and ``<name>.p12`` holding a key and the CA-signed certificate.

    Made once: an existing directory is reused as it is.
    """
    directory.mkdir(parents=True, exist_ok=True)
    password_file = directory / "password"
    certificate = ServerCertificate(
        ca_file=directory / "ca.pem",
        keystore=directory / f"{name}.p12",
        password=password_file.read_text().strip() if password_file.exists() else "",
    )
    if certificate.password and certificate.keystore.exists():
        return certificate
    password = secrets.token_urlsafe(18)
    ca, key = ["-keystore", "ca.p12"], ["-keystore", certificate.keystore.name]
    pw = ["-storepass", password, "-storetype", "PKCS12"]
    common = ["-keyalg", "RSA", "-keysize", "2048", "-validity", VALID_DAYS]
    ca_subject = ["-dname", "CN=platform test CA", "-ext", "bc:c"]
    signed = ["-rfc", "-ext", SERVER_NAMES, "-ext", "EKU=serverAuth", "-validity", VALID_DAYS]
    csr = ["-infile", f"{name}.csr", "-outfile", f"{name}.pem"]
    steps = [
        ["-genkeypair", "-alias", "ca", *ca_subject, *common, *ca, *pw],
        ["-exportcert", "-rfc", "-alias", "ca", "-file", "ca.pem", *ca, *pw],
        ["-genkeypair", "-alias", name, "-dname", "CN=localhost", *common, *key, *pw],
        ["-certreq", "-alias", name, "-file", f"{name}.csr", *key, *pw],
        ["-gencert", "-alias", "ca", *csr, *signed, *ca, *pw],
        ["-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem", *key, *pw],
        ["-importcert", "-alias", name, "-file", f"{name}.pem", *key, *pw],
    ]
    for step in steps:
        _keytool(*step, cwd=directory)
    (directory / "ca.p12").unlink()  # the CA's key is not needed again
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    return ServerCertificate(certificate.ca_file, certificate.keystore, password)
