"""The key ring that encrypts Secret values at rest (Fernet: AES-128-CBC + HMAC-SHA256).

Keys live in `<data dir>/secret-keys.json` (mode 0600), never in the database, so a copy of the
database alone reveals no secret. Rotation adds a new active key; older keys stay to decrypt
until every secret has been re-encrypted."""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class KeyRing:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None and path.exists():
            data = json.loads(path.read_text())
            self.active: str = data["active"]
            self.keys: dict[str, str] = data["keys"]
        else:
            self.active = secrets.token_hex(4)
            self.keys = {self.active: Fernet.generate_key().decode()}
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"active": self.active, "keys": self.keys}, f)
        tmp.replace(self.path)

    def _fernet(self) -> MultiFernet:
        order = [self.active] + [k for k in self.keys if k != self.active]
        return MultiFernet([Fernet(self.keys[k].encode()) for k in order])

    def encrypt(self, plain: bytes) -> tuple[str, str]:
        """(key id, token)"""
        with self._lock:
            return self.active, Fernet(self.keys[self.active].encode()).encrypt(plain).decode()

    def decrypt(self, token: str) -> bytes:
        with self._lock:
            try:
                return self._fernet().decrypt(token.encode())
            except InvalidToken:
                raise ValueError("a secret cannot be decrypted with any key of the key ring") from None

    def rotate(self) -> str:
        """Make a new key active (old ones still decrypt); returns its id."""
        with self._lock:
            self.active = secrets.token_hex(4)
            self.keys[self.active] = Fernet.generate_key().decode()
            self._save()
            return self.active

    def retire_except(self, keep: set[str]) -> None:
        with self._lock:
            self.keys = {k: v for k, v in self.keys.items() if k in keep or k == self.active}
            self._save()
