"""The encrypting layer over any ``Remote``: every object of an encrypted cloud folder is sealed.

Design. ``SealedRemote`` wraps a ``Remote`` (folder, S3, WebDAV, the fake) and
keeps its interface, so sync, verify and the daemon use it unchanged. The
first part of every path is the cloud folder; its ``KEY`` (``oplog.cloudkey``)
gives the data key, read and unwrapped on the first use of that cloud and kept
in memory for this process only (``Keyring`` caches it by the ``KEY`` bytes, so
a passphrase change elsewhere is noticed on the next sync, which re-reads KEY).

A sealed object is::

    b"OPLS" | format version (1 byte) | flags (1 byte) | nonce (12) | AES-256-GCM ciphertext + tag

with the associated data being the header and the object's path *inside the
cloud folder* (``devices/<id>/<seg>``, ``EPOCH``...): an object copied or moved
to another name fails to open, while the whole cloud folder may still be moved
or restored under another name. A fresh random nonce per object (96 bits from
the injected random source) keeps nonces unique. A newer version byte or an
unknown flag is refused with "upgrade oplog", never misread. Flag bit 0 marks a
zlib-compressed body (compression before encryption); readers open it, but
``SealedRemote`` does not write it: the benchmark showed it does not pay
(docs/encryption.md), and ``sizes`` (sync's read-free damage check) reports a
sealed object's size less the fixed ``SEAL_OVERHEAD``, which needs a body
whose size is the content's.

Names stay visible (``list`` passes through), and so do ``delete`` and
``sweep``, which never need contents. A cloud is encrypted or not from its
first write: ``KEY`` is created (create-only) just before the first object;
a passphrase for a cloud that already holds plain objects, or no passphrase
for a cloud that has a ``KEY`` (``PlainGuardRemote``), is a ``CloudKeyError``
raised before anything is written. An object that does not open is a
``DamagedRemoteObject`` naming its path; sync refuses it like a bad checksum.
"""

from __future__ import annotations

import hashlib
import threading
import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from oplog.cloudkey import DEFAULT_KDF, KEY_FILE, KdfParams, RandomBytes, new_key_file, open_key_file
from oplog.errors import CloudKeyError, DamagedRemoteObject, RemoteError, TransientRemoteError
from oplog.remote import Remote, VersionedRemote, check_remote_path, remote_url

__all__ = [
    "SEAL_MAGIC",
    "SEAL_FORMAT",
    "SEAL_OVERHEAD",
    "Keyring",
    "SealedRemote",
    "PlainGuardRemote",
    "guard_remote",
]

SEAL_MAGIC = b"OPLS"
#: The sealed-object format this oplog writes and understands.
SEAL_FORMAT = 1
_FLAG_ZLIB = 0x01
_KNOWN_FLAGS = _FLAG_ZLIB
_HEADER = len(SEAL_MAGIC) + 2
_NONCE = 12
_TAG = 16
#: What sealing adds to an object's size: ``sizes`` reports sizes less this, as the manifests have them.
SEAL_OVERHEAD = _HEADER + _NONCE + _TAG
_AAD_LABEL = b"oplog sealed object\0"


class Keyring:
    """A process's passphrase and the data keys it has unwrapped (memory only; never printed)."""

    def __init__(self, passphrase: bytes, random_bytes: RandomBytes, kdf: KdfParams = DEFAULT_KDF) -> None:
        """Hold ``passphrase``; new ``KEY`` files use ``kdf``; salts, keys and nonces come from ``random_bytes``."""
        if not passphrase:
            raise CloudKeyError("the passphrase is empty")
        self._passphrase = passphrase
        self.random_bytes = random_bytes
        self.kdf = kdf
        self._keys: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Keyring(<passphrase withheld>)"

    def data_key(self, key_file: bytes, where: str) -> bytes:
        """The data key in ``KEY`` bytes ``key_file`` (derived once per distinct KEY)."""
        digest = hashlib.sha256(key_file).digest()
        with self._lock:
            key = self._keys.get(digest)
            if key is None:
                key = open_key_file(key_file, self._passphrase, where)
                self._keys[digest] = key
            return key

    def new_key(self) -> tuple[bytes, bytes]:
        """``KEY`` bytes for a new cloud and the data key they wrap."""
        key_file, data_key = new_key_file(self._passphrase, self.random_bytes, self.kdf)
        encoded = key_file.encode()
        with self._lock:
            self._keys[hashlib.sha256(encoded).digest()] = data_key
        return encoded, data_key


def _split(path: str) -> tuple[str, str]:
    parts = check_remote_path(path)
    return parts[0], "/".join(parts[1:])


def _aad(header: bytes, rel: str) -> bytes:
    return _AAD_LABEL + header + rel.encode()


def seal(key: bytes, rel: str, data: bytes, random_bytes: RandomBytes, *, compress: bool = False) -> bytes:
    """``data`` sealed for the name ``rel`` (its path inside the cloud folder)."""
    flags = 0
    if compress:
        data = zlib.compress(data, 1)
        flags |= _FLAG_ZLIB
    header = SEAL_MAGIC + bytes((SEAL_FORMAT, flags))
    nonce = random_bytes(_NONCE)
    # encrypt_into a preallocated buffer measured no faster once the result is made bytes again.
    return header + nonce + AESGCM(key).encrypt(nonce, data, _aad(header, rel))


def unseal(key: bytes, rel: str, blob: bytes, where: str) -> bytes:
    """The contents of a sealed object; ``DamagedRemoteObject`` naming ``where`` if it does not open."""
    if len(blob) < _HEADER + _NONCE + _TAG or blob[: len(SEAL_MAGIC)] != SEAL_MAGIC:
        raise DamagedRemoteObject(
            f"{where}: not an encrypted object (damaged, or written without the passphrase)"
        )
    version, flags = blob[len(SEAL_MAGIC)], blob[len(SEAL_MAGIC) + 1]
    if version > SEAL_FORMAT or flags & ~_KNOWN_FLAGS:
        raise DamagedRemoteObject(
            f"{where}: encrypted with format {version} (flags {flags:#x}), newer than this oplog "
            f"understands ({SEAL_FORMAT}): upgrade oplog"
        )
    header = blob[:_HEADER]
    nonce = blob[_HEADER : _HEADER + _NONCE]
    try:
        data = AESGCM(key).decrypt(nonce, memoryview(blob)[_HEADER + _NONCE :], _aad(header, rel))
    except InvalidTag:
        raise DamagedRemoteObject(
            f"{where}: does not open with the cloud's key (tampered, damaged, or moved from another name)"
        ) from None
    if flags & _FLAG_ZLIB:
        try:
            data = zlib.decompress(data)
        except zlib.error as exc:
            raise DamagedRemoteObject(f"{where}: does not decompress ({exc})") from None
    return data


class SealedRemote:
    """A ``Remote`` whose objects are sealed under each cloud folder's data key (``KEY`` stays plain)."""

    def __init__(self, inner: Remote, keyring: Keyring) -> None:
        """Seal what goes to ``inner`` with keys from ``keyring``."""
        self.inner = inner
        self.keyring = keyring
        self._keys: dict[str, bytes] = {}
        #: every path read through this layer (verify uses it to open each object once)
        self.read_paths: set[str] = set()

    def _key(self, cloud: str, *, create: bool) -> bytes | None:
        """The cloud's data key; made (with ``KEY``) when ``create`` and the cloud is empty, else None."""
        key = self._keys.get(cloud)
        if key is not None:
            return key
        where = f"{cloud}/{KEY_FILE}"
        raw = self.inner.read(where)
        if raw is None:
            plain = [n for n in self.inner.list(cloud) if n != KEY_FILE]
            if plain:
                raise CloudKeyError(
                    f"cloud folder {cloud!r} already holds unencrypted data ({', '.join(plain[:3])}): "
                    "sync it without a passphrase, or use another --cloud-name"
                )
            if not create:
                return None
            encoded, key = self.keyring.new_key()
            if not self.inner.write_new(where, encoded):
                # Another device made the key first: theirs decides, if our passphrase opens it.
                raw = self.inner.read(where)
                if raw is None:
                    raise TransientRemoteError(f"{where} was created, then vanished")
                key = self.keyring.data_key(raw, where)
        else:
            key = self.keyring.data_key(raw, where)
        self._keys[cloud] = key
        return key

    def check_key(self, cloud: str) -> bool:
        """Open ``<cloud>/KEY`` with the passphrase (``CloudKeyError`` if it does not); False if the cloud is empty."""
        return self._key(cloud, create=False) is not None

    @property
    def url(self) -> str:
        """The inner remote's identity (sync keeps its records per remote by it)."""
        return remote_url(self.inner)

    def list(self, folder: str) -> list[str]:
        """Names pass through: they are not secret (device ids, segment numbers)."""
        return self.inner.list(folder)

    def sizes(self, folder: str) -> dict[str, int]:
        """The contents' sizes (stored size less ``SEAL_OVERHEAD``), so sync's size check needs no reading.

        An object too short to be sealed reports 0, which no segment has: sync reads or replaces it.
        ``KEY`` (plain) keeps its stored size.
        """
        sizes = self.inner.sizes(folder)
        top = "/" not in folder
        return {
            name: size if top and name == KEY_FILE else max(0, size - SEAL_OVERHEAD)
            for name, size in sizes.items()
        }

    def read(self, path: str) -> bytes | None:
        """The opened object, or None; ``DamagedRemoteObject`` if it does not open."""
        cloud, rel = _split(path)
        if rel == KEY_FILE or not rel:
            return self.inner.read(path)
        key = self._key(cloud, create=False)
        self.read_paths.add(path)
        blob = self.inner.read(path)
        if blob is None:
            return None
        if key is None:
            raise CloudKeyError(f"cloud folder {cloud!r} holds unencrypted data ({rel}) and no KEY")
        return unseal(key, rel, blob, path)

    def _sealed(self, path: str, data: bytes) -> bytes:
        cloud, rel = _split(path)
        if rel == KEY_FILE or not rel:
            raise RemoteError(
                f"{path}: the key file is written only by 'oplog remote passwd' and the first sync"
            )
        key = self._key(cloud, create=True)
        assert key is not None
        return seal(key, rel, data, self.keyring.random_bytes)

    def write_new(self, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data`` sealed (a fresh nonce), unless it exists."""
        return self.inner.write_new(path, self._sealed(path, data))

    def replace(self, path: str, data: bytes) -> None:
        """Create or replace ``path`` with ``data`` sealed."""
        self.inner.replace(path, self._sealed(path, data))

    def delete(self, path: str) -> None:
        """Pass through: deleting needs no key."""
        self.inner.delete(path)

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """The opened object and the inner remote's version of its sealed bytes."""
        inner = self._versioned()
        cloud, rel = _split(path)
        key = self._key(cloud, create=False)
        self.read_paths.add(path)
        blob, version = inner.read_versioned(path)
        if blob is None:
            return None, version
        if key is None:
            raise CloudKeyError(f"cloud folder {cloud!r} holds unencrypted data ({rel}) and no KEY")
        return unseal(key, rel, blob, path), version

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """Replace with ``data`` sealed if the stored object is still at ``version``."""
        return self._versioned().replace_if(path, self._sealed(path, data), version)

    def _versioned(self) -> VersionedRemote:
        if not isinstance(self.inner, VersionedRemote):
            raise RemoteError(f"remote {self.url}: cannot replace conditionally")
        return self.inner

    def sweep(self, folder: str) -> int:
        """Pass through: temporaries are found by name."""
        return self.inner.sweep(folder)


class PlainGuardRemote:
    """A ``Remote`` used without a passphrase: it refuses a cloud folder that has a ``KEY``."""

    def __init__(self, inner: Remote) -> None:
        """Guard ``inner``; each cloud folder is checked once, before its first use."""
        self.inner = inner
        self._checked: set[str] = set()

    def _guard(self, path: str) -> None:
        if not path:
            return
        cloud, _ = _split(path)
        if cloud in self._checked:
            return
        if self.inner.read(f"{cloud}/{KEY_FILE}") is not None:
            raise CloudKeyError(
                f"cloud folder {cloud!r} is encrypted: give its passphrase (--passphrase-file FILE or OPLOG_PASSPHRASE)"
            )
        self._checked.add(cloud)

    def check_key(self, cloud: str) -> bool:
        """``CloudKeyError`` if ``cloud`` is encrypted; False (no key in use) otherwise."""
        self._guard(cloud)
        return False

    @property
    def url(self) -> str:
        """The inner remote's identity."""
        return remote_url(self.inner)

    def list(self, folder: str) -> list[str]:
        """The inner listing, once the cloud is known to be plain."""
        self._guard(folder)
        return self.inner.list(folder)

    def sizes(self, folder: str) -> dict[str, int]:
        """The inner sizes, once the cloud is known to be plain."""
        self._guard(folder)
        return self.inner.sizes(folder)

    def read_versioned(self, path: str) -> tuple[bytes | None, str | None]:
        """The inner versioned read, once the cloud is known to be plain."""
        self._guard(path)
        if not isinstance(self.inner, VersionedRemote):
            raise RemoteError(f"remote {self.url}: cannot read versions")
        return self.inner.read_versioned(path)

    def replace_if(self, path: str, data: bytes, version: str | None) -> bool:
        """The inner conditional replace, once the cloud is known to be plain."""
        self._guard(path)
        if not isinstance(self.inner, VersionedRemote):
            raise RemoteError(f"remote {self.url}: cannot replace conditionally")
        return self.inner.replace_if(path, data, version)

    def read(self, path: str) -> bytes | None:
        """The inner read, once the cloud is known to be plain."""
        self._guard(path)
        return self.inner.read(path)

    def write_new(self, path: str, data: bytes) -> bool:
        """The inner create, once the cloud is known to be plain."""
        self._guard(path)
        return self.inner.write_new(path, data)

    def replace(self, path: str, data: bytes) -> None:
        """The inner replace, once the cloud is known to be plain."""
        self._guard(path)
        self.inner.replace(path, data)

    def delete(self, path: str) -> None:
        """The inner delete, once the cloud is known to be plain."""
        self._guard(path)
        self.inner.delete(path)

    def sweep(self, folder: str) -> int:
        """The inner sweep, once the cloud is known to be plain."""
        self._guard(folder)
        return self.inner.sweep(folder)


def guard_remote(inner: Remote, keyring: Keyring | None) -> SealedRemote | PlainGuardRemote:
    """``inner`` sealed under ``keyring``, or (no passphrase) guarded against encrypted clouds."""
    if keyring is None:
        return PlainGuardRemote(inner)
    return SealedRemote(inner, keyring)
