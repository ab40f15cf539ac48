"""Fleet credentials: per-user passwords, device certificates and revocations.

They live in a *state* directory next to the registry (default ``<fleet>/state``)
that is never committed: on creation it gets a ``.gitignore`` of ``*`` and mode
0700, and every secret file is 0600. Nothing here prints or logs a secret; the
CLI only ever names the file a secret is in.

Layout::

    state/.gitignore                 "*" -- the directory ignores itself
    state/passwd                     user:$7$... hashes (what the broker gets)
    state/secrets/<user>.password    plaintext, copied into the user's bundle/config
    state/pki/ca.key ca.crt          fleet CA
    state/pki/server.key server.crt  broker certificate
    state/pki/devices/<id>.key .crt  device client certificates
    state/revoked.toml               revoked certificate serials per device
    state/weblink/<centre>.toml      the centre's rating-link keys (broker/weblink.py), current and retired;
                                     a counter terminal's own key is derived from it at provisioning
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.contract import validate_id
from broker.fleet.passwd import check_username, hash_password, new_password, parse_passwd, render_passwd
from broker.kernel.settings import toml_key
from broker.weblink import Keyring, LinkKey

from .pki import FleetCA, cert_serial, write_private

STATE_DIRNAME = "state"


@dataclass
class DeviceCert:
    key_path: Path
    cert_path: Path
    serial: int


class FleetState:
    """The credentials of one fleet. Methods create what is missing, lazily."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_fleet(cls, fleet: Path, state: Path | None = None) -> FleetState:
        return cls(state if state is not None else Path(fleet) / STATE_DIRNAME)

    # ------------------------------------------------------------------ layout
    def ensure(self) -> FleetState:
        fresh = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        if fresh or not (self.root / ".gitignore").exists():
            (self.root / ".gitignore").write_text("# generated credentials: never commit\n*\n")
        for sub in ("secrets", "pki", "pki/devices", "weblink"):
            (self.root / sub).mkdir(mode=0o700, exist_ok=True)
        return self

    @property
    def passwd_path(self) -> Path:
        return self.root / "passwd"

    def secret_path(self, user: str) -> Path:
        return self.root / "secrets" / f"{check_username(user)}.password"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    # ------------------------------------------------------------------ passwords
    def hashes(self) -> dict[str, str]:
        if not self.passwd_path.exists():
            return {}
        return parse_passwd(self.passwd_path.read_text(encoding="utf-8"))

    def _save_hashes(self, hashes: dict[str, str]) -> None:
        write_private(self.passwd_path, render_passwd(hashes).encode())

    def password(self, user: str) -> str:
        """The user's password, generated (and hashed into ``passwd``) on first use."""
        hashes = self.hashes()
        path = self.secret_path(user)
        if user in hashes and path.exists():
            return path.read_text(encoding="utf-8").strip()
        return self.rotate_password(user)

    def passwords(self, users: list[str]) -> dict[str, str]:
        """``password`` for many users with one read and at most one write of ``passwd``
        (a centre's terminals provisioned together: not O(fleet) file work per terminal)."""
        hashes = self.hashes()
        out: dict[str, str] = {}
        fresh = False
        for user in users:
            path = self.secret_path(user)
            if user in hashes and path.exists():
                out[user] = path.read_text(encoding="utf-8").strip()
                continue
            self.ensure()
            out[user] = new_password()
            write_private(path, (out[user] + "\n").encode())
            hashes[user] = hash_password(out[user])
            fresh = True
        if fresh:
            self._save_hashes(hashes)
        return out

    def own_password(self, user: str, other: str) -> str:
        """``user``'s own password, never the same as ``other``'s (an ingest worker and its instance).

        Workers once shared their instance's password; a worker still holding that shared secret
        gets a fresh one here, so each worker is rotated and revoked alone.
        """
        secret = self.password(user)
        if secret == self.password(other):
            secret = self.rotate_password(user)
        return secret

    def rotate_password(self, user: str) -> str:
        self.ensure()
        secret = new_password()
        write_private(self.secret_path(user), (secret + "\n").encode())
        hashes = self.hashes()
        hashes[user] = hash_password(secret)
        self._save_hashes(hashes)
        return secret

    def drop_user(self, user: str) -> None:
        hashes = self.hashes()
        if hashes.pop(user, None) is not None:
            self._save_hashes(hashes)
        self.secret_path(user).unlink(missing_ok=True)

    # ------------------------------------------------------------------ certificates
    def ca(self) -> FleetCA:
        self.ensure()
        return FleetCA.load_or_create(self.pki_dir)

    def server_names(self) -> list[str]:
        """Host names the current broker certificate was issued for ([] before the first render)."""
        names_file = self.pki_dir / "server.names"
        return names_file.read_text().split() if names_file.exists() else []

    def server_cert(self, names: list[str]) -> tuple[Path, Path]:
        """(key, cert) for the broker; re-issued when the host names change."""
        key, crt = self.pki_dir / "server.key", self.pki_dir / "server.crt"
        names_file = self.pki_dir / "server.names"
        wanted = "\n".join(names)
        if not (key.exists() and crt.exists() and names_file.exists() and names_file.read_text() == wanted):
            key_pem, cert_pem, _ = self.ca().issue(names[0], server_names=names)
            write_private(key, key_pem)
            crt.write_bytes(cert_pem)
            names_file.write_text(wanted)
        return key, crt

    def device_cert(self, device: str, *, renew: bool = False, ca: FleetCA | None = None) -> DeviceCert:
        """The device's certificate, issued on first use (``ca``: the loaded CA, when issuing many)."""
        key, crt = self.pki_dir / "devices" / f"{device}.key", self.pki_dir / "devices" / f"{device}.crt"
        if renew or not (key.exists() and crt.exists()):
            if crt.exists():
                self.revoke_serial(device, cert_serial(crt.read_bytes()))
            key_pem, cert_pem, _ = (ca or self.ca()).issue(device)
            write_private(key, key_pem)
            crt.write_bytes(cert_pem)
        return DeviceCert(key, crt, cert_serial(crt.read_bytes()))

    # ------------------------------------------------------------------ revocation
    @property
    def revoked_path(self) -> Path:
        return self.root / "revoked.toml"

    def revoked(self) -> dict[str, list[int]]:
        """device -> revoked certificate serials (a device may have several over its life)."""
        if not self.revoked_path.exists():
            return {}
        data = tomllib.loads(self.revoked_path.read_text(encoding="utf-8"))
        return {k: [int(s, 16) for s in v.get("serials", [])] for k, v in _revoked_entries(data.get("device", {}))}

    def revoked_serials(self) -> list[int]:
        return [s for serials in self.revoked().values() for s in serials]

    def revoke_serial(self, device: str, serial: int | None) -> None:
        """Record a revoked certificate serial (None: only mark the device as having been revoked)."""
        data = self.revoked()
        serials = data.setdefault(device, [])
        if serial is not None and serial not in serials:
            serials.append(serial)
        lines = ["# certificate serials (hex) revoked per device; written by hailong fleet"]
        for dev in sorted(data):
            listed = ", ".join(f'"{s:x}"' for s in data[dev])
            lines += ["", f"[device.{toml_key(dev)}]", f"serials = [{listed}]"]
        self.ensure()
        self.revoked_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def revoke_device(self, device: str) -> bool:
        """Revoke the device's certificate and delete its password. True if it had any credential."""
        had = device in self.hashes()
        self.drop_user(device)
        crt = self.pki_dir / "devices" / f"{device}.crt"
        if crt.exists():
            self.revoke_serial(device, cert_serial(crt.read_bytes()))
            crt.unlink()
            (self.pki_dir / "devices" / f"{device}.key").unlink(missing_ok=True)
            had = True
        else:
            self.revoke_serial(device, None)  # password-only terminal: still listed as revoked
        return had

    def is_revoked(self, device: str) -> bool:
        """Revoked and not re-provisioned since (no live credential)."""
        crt = self.pki_dir / "devices" / f"{device}.crt"
        return device in self.revoked() and device not in self.hashes() and not crt.exists()

    # ------------------------------------------------------------------ rating-link keys
    # Longest a rating link may live: a retired key verifies for this long after its retirement.
    LINK_KEY_KEEP_S = 35 * 86_400

    @property
    def weblink_dir(self) -> Path:
        return self.root / "weblink"

    def link_keyring(self, centre: str, *, create: bool = True) -> Keyring:
        """The centre's rating-link keys (broker/weblink.py), made with a first key on first use."""
        path = self.weblink_dir / f"{validate_id(centre, 'centre')}.toml"
        if path.exists():
            return Keyring.parse(centre, path.read_text(encoding="utf-8"), str(path))
        if not create:
            raise FileNotFoundError(f"{path}: centre {centre} has no rating-link key yet")
        ring = Keyring(centre, 1, (LinkKey(1, os.urandom(32), int(time.time())),))
        self._save_keyring(ring)
        return ring

    def rotate_link_key(self, centre: str, now_s: int | None = None, revoke_counters: tuple[str, ...] = ()) -> Keyring:
        """A new signing key for the centre; links signed with the previous keys keep working until they expire,
        except terminal links of ``revoke_counters`` (a stolen terminal), which stop verifying at once."""
        now = int(time.time()) if now_s is None else now_s
        ring = self.link_keyring(centre).rotated(now, self.LINK_KEY_KEEP_S, os.urandom(32), revoke_counters)
        self._save_keyring(ring)
        return ring

    def terminal_link_secret(self, centre: str, counter: str) -> str:
        """What a counter terminal's bundle carries as its link key: ``<key id>:<hex>``, the key derived for its
        counter from the centre's current key (broker.weblink.terminal_key); a secret, written 0600 only."""
        key_id, secret = self.link_keyring(centre).terminal_key(counter)
        return f"{key_id}:{secret.hex()}"

    def _save_keyring(self, ring: Keyring) -> None:
        self.ensure()
        write_private(self.weblink_dir / f"{ring.centre}.toml", ring.render().encode("utf-8"))


def _revoked_entries(table: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, entry) of every ``[device.<name>]``. A file written before names were quoted holds a
    dotted name as nested tables ([device.fed.quang-ninh]): their path is joined back into the name,
    so a revocation recorded then still takes effect."""
    for key, value in table.items():
        if not isinstance(value, dict):
            continue
        name = f"{prefix}{key}"
        if "serials" in value:
            yield name, value
        yield from _revoked_entries(value, f"{name}.")
