"""The broker's readiness probe: one MQTT 3.1.1 CONNECT over a plain socket (optionally
TLS), no client library, and the CONNACK return code.

Return codes (MQTT 3.1.1 section 3.2.2.3): 0 accepted, 4 bad user name or password,
5 not authorised. The probe sends DISCONNECT after an accepted CONNECT so the broker logs a
clean close, and uses a random ``tingbao-probe-XXXXXXXX`` client id so it never takes over a
real client's session.
"""

from __future__ import annotations

import secrets
import socket
import ssl


def mqtt_connect_code(host: str, port: int, username: str | None, password: str | None,
                      *, timeout: float = 2.0, ssl_context: ssl.SSLContext | None = None,
                      server_hostname: str | None = None) -> int:
    """Send an MQTT 3.1.1 CONNECT and return the CONNACK return code (0 accepted, 4 bad user
    name or password, 5 not authorised); raises OSError when nothing answers within
    ``timeout`` seconds. A plain socket, no client library: this is the readiness probe."""
    def field(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    flags = 0x02  # clean session
    payload = field(f"tingbao-probe-{secrets.token_hex(4)}".encode())
    if username is not None:
        flags |= 0x80
        payload += field(username.encode())
        if password is not None:
            flags |= 0x40
            payload += field(password.encode())
    body = field(b"MQTT") + bytes([4, flags]) + (10).to_bytes(2, "big") + payload
    length, n = b"", len(body)
    while True:
        digit, n = n % 128, n // 128
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            break
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = (ssl_context.wrap_socket(raw, server_hostname=server_hostname or host)
                if ssl_context else raw)
        sock.settimeout(timeout)
        sock.sendall(b"\x10" + length + body)
        ack = b""
        while len(ack) < 4:
            chunk = sock.recv(4 - len(ack))
            if not chunk:
                raise ConnectionError("broker closed the connection before CONNACK")
            ack += chunk
        if ack[0] != 0x20:
            raise ConnectionError(f"unexpected answer to CONNECT: {ack!r}")
        if ack[3] == 0:
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        return ack[3]
