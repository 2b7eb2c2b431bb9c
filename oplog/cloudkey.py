"""The key of an encrypted cloud folder: ``<cloudName>/KEY``, the passphrase KDF, wrapping the data key.

Design. The objects of an encrypted cloud are sealed with one random 256-bit
*data key*, made once by the first device that writes the folder. The data key
is never stored in the clear: ``KEY`` holds it wrapped (AES-256-GCM) under a
*key-encryption key* derived from the passphrase with scrypt, so changing the
passphrase rewraps 32 bytes and replaces one small file — nothing is
re-uploaded (``rewrap``). ``KEY`` is JSON and itself unsealed (it is what
unseals the rest); it records everything needed to redo the derivation
(KDF name, its parameters, the salt), so the cost can be raised later without
breaking old folders, and a format number so a newer layout is refused with an
"upgrade oplog" message instead of being misread.

The *key check* is an HMAC of a fixed label under the key-encryption key: a
wrong passphrase is told apart from a damaged ``KEY`` (the check matches but the
wrapped key does not open). It is no more of an oracle than the wrapped key's
own tag.

Randomness (salt, data key, nonce) comes in as a ``RandomBytes`` callable: the
edge passes ``os.urandom``, tests may pass a seeded source. The passphrase and
keys are only ever in memory; no message here contains them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from oplog.errors import CloudKeyError

__all__ = [
    "KEY_FILE",
    "KEY_FORMAT",
    "DEFAULT_KDF",
    "RandomBytes",
    "KdfParams",
    "KeyFile",
    "new_key_file",
    "open_key_file",
    "rewrap",
]

#: The key's name inside the cloud folder.
KEY_FILE = "KEY"
#: The layout of ``KEY`` this oplog writes and understands.
KEY_FORMAT = 1
_CIPHER = "AES-256-GCM"
_WRAP_AAD = b"oplog cloud KEY v1: data key"
_CHECK_LABEL = b"oplog cloud KEY v1: key check"

#: Where random bytes come from (``os.urandom`` at the edge).
RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True)
class KdfParams:
    """scrypt's cost: ``n`` (CPU/memory, a power of two), ``r`` (block size), ``p`` (parallelism)."""

    n: int = 1 << 16
    r: int = 8
    p: int = 1

    def derive(self, passphrase: bytes, salt: bytes) -> bytes:
        """The 32-byte key-encryption key for ``passphrase`` and ``salt``."""
        return Scrypt(salt=salt, length=32, n=self.n, r=self.r, p=self.p).derive(passphrase)


#: scrypt N=2^16, r=8, p=1 (64 MiB): 0.3 s on this machine (docs/encryption.md has the figure).
DEFAULT_KDF = KdfParams()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    return base64.b64decode(text.encode("ascii"), validate=True)


def _check(kek: bytes) -> bytes:
    return hmac.new(kek, _CHECK_LABEL, hashlib.sha256).digest()[:16]


@dataclass(frozen=True)
class KeyFile:
    """A parsed ``KEY``: the KDF, its salt, the wrapped data key and the key check."""

    kdf: KdfParams
    salt: bytes
    wrapped: bytes
    check: bytes
    cipher: str = _CIPHER
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The JSON bytes stored as ``<cloud>/KEY``."""
        doc = {
            "format": KEY_FORMAT,
            "cipher": self.cipher,
            "kdf": {
                "name": "scrypt",
                "n": self.kdf.n,
                "r": self.kdf.r,
                "p": self.kdf.p,
                "salt": _b64(self.salt),
            },
            "wrapped_key": _b64(self.wrapped),
            "key_check": _b64(self.check),
        }
        return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes, where: str) -> KeyFile:
        """Parse ``KEY`` bytes; ``CloudKeyError`` naming ``where`` if damaged or newer than understood."""
        try:
            doc = json.loads(data)
            version = doc["format"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CloudKeyError(f"{where} is damaged: not a key file ({exc})") from None
        if not isinstance(version, int) or version > KEY_FORMAT:
            raise CloudKeyError(
                f"{where} has key format {version}, newer than this oplog understands ({KEY_FORMAT}): upgrade oplog"
            )
        try:
            kdf = doc["kdf"]
            if kdf["name"] != "scrypt":
                raise ValueError(f"unknown KDF {kdf['name']!r}")
            if doc["cipher"] != _CIPHER:
                raise ValueError(f"unknown cipher {doc['cipher']!r}")
            params = KdfParams(int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
            return cls(params, _unb64(kdf["salt"]), _unb64(doc["wrapped_key"]), _unb64(doc["key_check"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CloudKeyError(f"{where} is damaged: {exc}") from None

    def unwrap(self, passphrase: bytes, where: str) -> bytes:
        """The data key; ``CloudKeyError`` for a wrong passphrase or a damaged ``KEY``."""
        try:
            kek = self.kdf.derive(passphrase, self.salt)
        except (ValueError, TypeError) as exc:
            raise CloudKeyError(f"{where} is damaged: bad KDF parameters ({exc})") from None
        if not hmac.compare_digest(_check(kek), self.check):
            raise CloudKeyError(f"wrong passphrase for the encrypted cloud folder ({where})")
        try:
            key = AESGCM(kek).decrypt(self.wrapped[:12], self.wrapped[12:], _WRAP_AAD)
        except (InvalidTag, ValueError):
            raise CloudKeyError(f"{where} is damaged: the wrapped data key does not open") from None
        if len(key) != 32:
            raise CloudKeyError(f"{where} is damaged: the data key is {len(key)} bytes, not 32")
        return key


def _wrap(data_key: bytes, passphrase: bytes, kdf: KdfParams, random_bytes: RandomBytes) -> KeyFile:
    salt = random_bytes(16)
    kek = kdf.derive(passphrase, salt)
    nonce = random_bytes(12)
    wrapped = nonce + AESGCM(kek).encrypt(nonce, data_key, _WRAP_AAD)
    return KeyFile(kdf, salt, wrapped, _check(kek))


def new_key_file(
    passphrase: bytes, random_bytes: RandomBytes, kdf: KdfParams = DEFAULT_KDF
) -> tuple[KeyFile, bytes]:
    """A fresh random data key and the ``KeyFile`` that wraps it under ``passphrase``."""
    data_key = random_bytes(32)
    return _wrap(data_key, passphrase, kdf, random_bytes), data_key


def open_key_file(data: bytes, passphrase: bytes, where: str) -> bytes:
    """The data key held in ``KEY`` bytes ``data``; ``CloudKeyError`` if it cannot be had."""
    return KeyFile.decode(data, where).unwrap(passphrase, where)


def rewrap(
    data: bytes, old: bytes, new: bytes, random_bytes: RandomBytes, where: str, kdf: KdfParams | None = None
) -> bytes:
    """New ``KEY`` bytes: the same data key, wrapped under ``new`` with a fresh salt (``old`` must open it)."""
    current = KeyFile.decode(data, where)
    data_key = current.unwrap(old, where)
    return _wrap(data_key, new, kdf or current.kdf, random_bytes).encode()
