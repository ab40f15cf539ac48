"""One MQTT connection made, answered and closed: is there a session, and ending one.

The ingest's supervisor uses it for the persistent sessions of workers it no longer runs
(ingest/retired.py): "does this identity still hold a session?" (CONNECT with clean start
off: the CONNACK's session-present flag) and "end it" (CONNECT with clean start on and no
session expiry: the broker discards the old session, and the new one ends with the
connection). Nothing is acked here: messages the broker hands over while we look are
redelivered to the next connection of that identity.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

from . import wire
from .settings import MqttSettings


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    """The client TLS context of ``settings`` (the chain and, unless tls_insecure, the host name verified)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if settings.ca_file:
        ctx.load_verify_locations(cafile=str(settings.ca_file))
    else:
        ctx.load_default_certs()
    if settings.cert_file:
        ctx.load_cert_chain(str(settings.cert_file), str(settings.key_file) if settings.key_file else None)
    if settings.tls_insecure:
        ctx.check_hostname = False  # lab use: the chain is still verified
    return ctx


def connect_once(settings: MqttSettings, client_id: str, *, clean_start: bool,
                 session_expiry_s: int | None) -> wire.ConnAck:
    """CONNECT, read the CONNACK, DISCONNECT (normal: no will). Raises OSError / ProtocolError."""
    v5 = settings.protocol == "5"
    raw = socket.create_connection((settings.host, settings.port), timeout=settings.connect_timeout_s)
    sock: socket.socket = tls_context(settings).wrap_socket(raw, server_hostname=settings.host) \
        if settings.tls else raw
    try:
        sock.sendall(wire.connect(client_id, v5=v5, keepalive_s=settings.keepalive_s, username=settings.username,
                                  password=settings.secret(), clean_start=clean_start,
                                  session_expiry_s=session_expiry_s if v5 else None, receive_maximum=None))
        buf = b""
        while True:
            got = wire.read_varint(buf, 1) if len(buf) >= 2 else None
            if got is not None and len(buf) >= got[1] + got[0]:
                break
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("broker closed the connection before its CONNACK")
            buf += chunk
        if buf[0] >> 4 != wire.CONNACK:
            raise wire.ProtocolError(f"expected CONNACK, got packet type {buf[0] >> 4}")
        ack = wire.read_connack(buf[got[1]:got[1] + got[0]], v5)
        if ack.code == 0:
            sock.sendall(wire.DISCONNECT_PACKET)
        return ack
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def has_session(settings: MqttSettings, client_id: str, session_expiry_s: int) -> bool:
    """True when the broker holds a session for ``client_id``; it is kept as it was (expiry ``session_expiry_s``).

    Asking creates an empty session when there was none: it is ended again here. A refused
    login raises PermissionError (the identity is not, or no longer, a broker user).
    """
    ack = connect_once(settings, client_id, clean_start=False, session_expiry_s=session_expiry_s)
    if ack.code != 0:
        raise PermissionError(f"broker refused {client_id}: {wire.reason_name(ack.code, settings.protocol == '5')}")
    if not ack.session_present:
        end_session(settings, client_id)
    return ack.session_present


def end_session(settings: MqttSettings, client_id: str) -> None:
    """Discard ``client_id``'s session (and whatever still waits in it). Raises PermissionError if refused."""
    ack = connect_once(settings, client_id, clean_start=True, session_expiry_s=0)
    if ack.code != 0:
        raise PermissionError(f"broker refused {client_id}: {wire.reason_name(ack.code, settings.protocol == '5')}")
