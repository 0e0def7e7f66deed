"""Key material: from settings in production, generated once and kept on disk in development.

Tests (``SMARTBANK_ENV=test``) get fixed, well-known keys so that separate processes and app
instances agree; never run anything real with ``env=test``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Literal

from smartbank.platform.settings import Settings

KeyName = Literal["secret", "audit"]
KEY_BYTES = 32


def load_key(settings: Settings, name: KeyName) -> bytes:
    """The master key ``name``: configured, fixed for tests, or generated into ``data_dir/keys``."""
    configured = settings.secret_key if name == "secret" else settings.audit_key
    if configured is not None:
        return configured.get_secret_value().encode()
    if settings.env == "production":
        raise RuntimeError(f"SMARTBANK_{name.upper()}_KEY must be set in production")
    if settings.env == "test":
        return hashlib.sha256(f"smartbank-test-only:{name}".encode()).digest()
    folder = settings.data_dir / "keys"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{name}.key"
    if not path.exists():
        # Written aside, then linked into place: a concurrent process sees the whole key or none.
        staging = folder / f".{name}.{secrets.token_hex(8)}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES).hex())
        try:
            os.link(staging, path)
        except FileExistsError:
            pass
        finally:
            staging.unlink()
    key = bytes.fromhex(path.read_text().strip())
    if len(key) != KEY_BYTES:
        raise RuntimeError(f"{path} does not hold a {KEY_BYTES}-byte hex key")
    return key


def derive(master: bytes, purpose: str) -> bytes:
    """A sub-key for one purpose, so that no two uses share a key."""
    return hmac.new(master, f"smartbank:{purpose}".encode(), hashlib.sha256).digest()
