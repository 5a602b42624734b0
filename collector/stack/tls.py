"""TLS for the broker's second listener: a private CA and a server certificate for
``127.0.0.1`` / ``localhost``, made once with the ``openssl`` command.

Files in the stack's ``tls/`` directory (mode 0700; keys 0600)::

    ca.crt, ca.key            the CA: EC P-256, valid 3650 days, CA:TRUE, keyCertSign
    server.crt, server.key    EC P-256, valid 825 days, serverAuth, SAN IP:127.0.0.1 and
                              DNS:localhost, signed by the CA (SHA-256)

Clients trust ``ca.crt`` (:func:`client_context`); a client with only the system's trust
store cannot connect.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from pathlib import Path

from .errors import StackError

FILES = ("ca.crt", "server.crt", "server.key")
"""What the broker's TLS listener needs; when all exist, :func:`make_certificates` keeps
them."""

_SERVER_EXT = ("basicConstraints = critical, CA:FALSE\n"
               "keyUsage = critical, digitalSignature, keyEncipherment\n"
               "extendedKeyUsage = serverAuth\n"
               "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
               "subjectKeyIdentifier = hash\n"
               "authorityKeyIdentifier = keyid, issuer\n")


def make_certificates(directory: Path) -> None:
    """Make the CA and the server certificate in ``directory`` unless they exist already
    (idempotent); raises StackError when openssl is missing or fails."""
    d = directory
    if all((d / f).exists() for f in FILES):
        return
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("openssl not found (needed for the TLS listener): "
                         "apt-get install openssl")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    (d / "server.ext").write_text(_SERVER_EXT)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "3650", "-subj", "/O=tingbao/CN=tingbao stack CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-addext", "subjectKeyIdentifier=hash"],
        [openssl, "req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/O=tingbao/CN=localhost"],
        [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "825", "-sha256",
         "-extfile", "server.ext"],
    ]
    for argv in steps:
        done = subprocess.run(argv, cwd=d, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise StackError(f"openssl failed making the TLS certificates (exit "
                             f"{done.returncode}): {done.stderr.strip()[-1000:]}")
    for key in ("ca.key", "server.key"):
        os.chmod(d / key, 0o600)


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A client SSL context that trusts only the stack's CA (hostname checked)."""
    return ssl.create_default_context(cafile=str(ca_file))
