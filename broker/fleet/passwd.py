"""Mosquitto password files, written without the ``mosquitto_passwd`` binary.

Mosquitto 2.0 stores ``user:$7$<iterations>$<base64 salt>$<base64 hash>`` where
the hash is PBKDF2-HMAC-SHA512 over the password with a 12-byte salt and 101
iterations (what ``mosquitto_passwd`` writes). Rendering the file in Python lets
``hailong broker render`` run on a technician's laptop that has no Mosquitto
installed; the tests prove the real broker accepts the logins.

The iteration count stays at Mosquitto's default: fleet passwords are 256-bit
random tokens, so key stretching buys nothing, while every connect of a 1,000
device reconnect storm pays for it on the broker's CPU.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets

ITERATIONS = 101
SALT_BYTES = 12
# ':' separates user and hash; mosquitto also rejects control characters.
_USER_RE = re.compile(r"^[^:\x00-\x1f\x7f]{1,65535}$")
_HASH_RE = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


class PasswdError(ValueError):
    """A malformed password file line or username."""


def new_password() -> str:
    """A fresh random password (256 bits, URL-safe so it survives TOML/env/shell quoting)."""
    return secrets.token_urlsafe(32)


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The ``$7$`` PBKDF2-SHA512 hash mosquitto 2.0 expects."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(hashed: str, password: str) -> bool:
    """True if ``password`` matches a ``$7$`` hash (as mosquitto would decide)."""
    m = _HASH_RE.match(hashed)
    if not m:
        return False
    iterations, salt, digest = int(m.group(1)), base64.b64decode(m.group(2)), base64.b64decode(m.group(3))
    candidate = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(candidate, digest)


def check_username(user: str) -> str:
    if not _USER_RE.match(user):
        raise PasswdError(f"username {user!r} cannot be stored in a mosquitto password file")
    return user


def render_passwd(hashes: dict[str, str]) -> str:
    """The password file text, one ``user:hash`` per line, sorted for stable diffs."""
    lines = []
    for user in sorted(hashes):
        if not _HASH_RE.match(hashes[user]):
            raise PasswdError(f"hash for {user!r} is not a mosquitto $7$ hash")
        lines.append(f"{check_username(user)}:{hashes[user]}")
    return "\n".join(lines) + ("\n" if lines else "")


def parse_passwd(text: str) -> dict[str, str]:
    """Read a password file back (``user -> hash``); raise PasswdError naming the line."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not _HASH_RE.match(hashed):
            raise PasswdError(f"line {n}: expected user:$7$... (mosquitto 2.0 format)")
        out[check_username(user)] = hashed
    return out
