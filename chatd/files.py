"""
The file store: avatars and message attachments, kept under
C{DATA_DIR/files} with names the server makes (never the client's), typed
by sniffing their first bytes, with a size limit.

Used by the REST API (C{POST /file}, C{GET /file/<name>}) and by the
WebSocket for attachments.
"""

import codecs
import contextlib
import hashlib
import os
import re
import uuid as uuid_module
from dataclasses import dataclass

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from chatd.auth.ratelimit import RateLimiter
from chatd.errors import BadRequest, NotFound, PayloadTooLarge
from chatd.stores import now_ms

log = Logger()

# Names the server makes: 32 hex digits and a short extension.
NAME_PATTERN = re.compile(r"^[0-9a-f]{32}\.[a-z0-9]{1,8}$")

OCTET_STREAM = "application/octet-stream"

# Types a browser shows without running anything; everything else is
# served as an attachment.
_INLINE_TYPES = frozenset({
    "image/png", "image/jpeg", "image/gif", "image/webp",
    "audio/mpeg", "audio/ogg", "audio/wav", "audio/flac", "audio/aac",
    "audio/mp4", "audio/webm", "audio/amr",
    "video/mp4", "video/webm", "video/quicktime", "video/x-matroska",
    "video/x-msvideo", "text/plain",
})

# Types the client's suffix may choose when sniffing finds nothing better,
# only for bytes that are not recognised as anything else. None of these
# is run by a browser.
_SUFFIX_TYPES = {
    "txt": "text/plain", "md": "text/plain", "csv": "text/plain",
    "log": "text/plain",
    "doc": "application/msword", "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint",
    "docx": "application/vnd.openxmlformats-officedocument"
            ".wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument"
            ".spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument"
            ".presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "epub": "application/epub+zip",
    "apk": "application/vnd.android.package-archive",
    "jar": "application/java-archive",
}
_ZIP_SUFFIXES = frozenset({"docx", "xlsx", "pptx", "odt", "ods", "epub",
                           "apk", "jar"})
_TEXT_SUFFIXES = frozenset({"txt", "md", "csv", "log"})

_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script",
                b"<iframe", b"<title", b"<style", b"<div", b"<a ", b"<img",
                b"<p>", b"<meta", b"<!--")


def _text_start(data):
    head = data[:1024]
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    return head.lstrip(b" \t\r\n\x0c").lower()


def _is_text(data):
    head = data[:4096]
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return not any(b < 32 and b not in (9, 10, 12, 13) for b in head)


# Files recognised by a fixed prefix: (prefix or prefixes, media type,
# extension). Formats that need more than a prefix are handled in sniff.
_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    ((b"GIF87a", b"GIF89a"), "image/gif", "gif"),
    (b"%PDF-", "application/pdf", "pdf"),
    (b"\x1f\x8b", "application/gzip", "gz"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed", "7z"),
    (b"Rar!\x1a\x07", "application/vnd.rar", "rar"),
    (b"OggS", "audio/ogg", "ogg"),
    (b"fLaC", "audio/flac", "flac"),
    (b"#!AMR", "audio/amr", "amr"),
]


def sniff(data, suffix_hint=""):
    """
    The media type and file extension of C{data}, from its first bytes;
    C{suffix_hint} (the sender's guess of the extension) only decides
    between harmless types for bytes that nothing else matches.

    @return: C{(media_type, extension)}.
    """
    hint = suffix_hint.lower().lstrip(".")
    for magic, media_type, extension in _MAGIC:
        if data.startswith(magic):
            return media_type, extension
    if data.startswith(b"RIFF") and len(data) >= 12:
        kind = data[8:12]
        if kind == b"WEBP":
            return "image/webp", "webp"
        if kind == b"WAVE":
            return "audio/wav", "wav"
        if kind == b"AVI ":
            return "video/x-msvideo", "avi"
    if data.startswith(b"PK\x03\x04"):
        if hint in _ZIP_SUFFIXES:
            return _SUFFIX_TYPES[hint], hint
        return "application/zip", "zip"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        if b"webm" in data[:64]:
            return "video/webm", "webm"
        return "video/x-matroska", "mkv"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand.startswith(b"M4A"):
            return "audio/mp4", "m4a"
        if brand == b"qt  ":
            return "video/quicktime", "mov"
        return "video/mp4", "mp4"
    if data.startswith(b"ID3"):
        return "audio/mpeg", "mp3"
    if len(data) >= 2 and data[0] == 0xFF:
        if data[1] & 0xF6 == 0xF0:
            return "audio/aac", "aac"
        if data[1] & 0xE0 == 0xE0:
            return "audio/mpeg", "mp3"
    start = _text_start(data)
    if start.startswith(b"<svg") or (
            start.startswith(b"<?xml") and b"<svg" in start):
        return "image/svg+xml", "svg"
    if start.startswith(_HTML_STARTS):
        return "text/html", "html"
    if start.startswith(b"<?xml"):
        return "application/xml", "xml"
    if data and _is_text(data):
        if hint in _TEXT_SUFFIXES:
            return "text/plain", hint
        return "text/plain", "txt"
    if hint in _SUFFIX_TYPES and hint not in _TEXT_SUFFIXES \
            and hint not in _ZIP_SUFFIXES:
        return _SUFFIX_TYPES[hint], hint
    return OCTET_STREAM, "bin"


def is_inline(media_type):
    """
    Whether a browser may show a file of this type in place; other types
    are served with C{Content-Disposition: attachment}.
    """
    return media_type in _INLINE_TYPES


def check_name(name):
    """
    Refuse a requested file name that is not one the server could have
    made: traversal (C{../}, encoded or not), absolute paths, NUL.

    @raise BadRequest: a NUL or path separator.
    @raise NotFound: any other name that the server never makes.
    """
    if not isinstance(name, str) or "\x00" in name:
        raise BadRequest("bad file name")
    if "/" in name or "\\" in name:
        raise BadRequest("bad file name")
    if not NAME_PATTERN.match(name):
        raise NotFound("no such file")
    return name


@dataclass(frozen=True)
class StoredFile:
    name: str
    media_type: str
    size: int


def _sync_directory(path):
    """
    Flush a directory's entries (a file created or renamed in it) to disk.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class FileStore:
    """
    Stores and finds files under C{directory}.

    @param records: a L{chatd.stores.files.FileRecordStore}.
    @param max_bytes: the largest file accepted.
    @param reactor: for the clock and the thread pool writes run in.
    @param bytes_per_hour: what one owner may store an hour (a quarter of
        it at once); 0 for no limit.
    """

    def __init__(self, directory, records, max_bytes, reactor, bytes_per_hour=0):
        self.directory = os.path.abspath(directory)
        self.max_bytes = max_bytes
        self._records = records
        self._reactor = reactor
        self._budget = (RateLimiter(reactor, bytes_per_hour / 4, bytes_per_hour,
                                    "bytes of files") if bytes_per_hour else None)

    def path_of(self, name):
        return os.path.join(self.directory, check_name(name))

    async def save(self, owner_id, data, suffix_hint=""):
        """
        Store C{data} under a new name, charged to C{owner_id}'s budget.

        @raise PayloadTooLarge: C{data} is over the limit.
        @raise BadRequest: C{data} is empty.
        @raise TooManyRequests: the owner stored too much of late (its
            error frame code is C{rate_limited}).
        """
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(
                f"the file is larger than {self.max_bytes} bytes")
        if not data:
            raise BadRequest("file: the file is empty")
        if self._budget is not None and owner_id is not None:
            self._budget.take(owner_id, len(data), frame_code="rate_limited")
        media_type, extension = sniff(data, suffix_hint)
        name = f"{uuid_module.uuid4().hex}.{extension}"
        try:
            digest = await deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(),
                self._write, name, data)
        except BaseException:
            self.refund(owner_id, len(data))
            raise
        await self._records.add(name, owner_id, media_type, len(data),
                                digest, now_ms(self._reactor))
        return StoredFile(name, media_type, len(data))

    def refund(self, owner_id, size):
        """
        Give C{size} bytes back to C{owner_id}'s budget: what they saved was
        not kept (a message resent, or not stored).
        """
        if self._budget is not None and owner_id is not None:
            self._budget.refund(owner_id, size)

    def _write(self, name, data):
        """
        Write C{data} as C{name}, durably: the bytes and the directory
        entry are on disk before the record (and then a message) that
        names them is committed.
        """
        if not os.path.isdir(self.directory):
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            _sync_directory(os.path.dirname(self.directory))
        final = os.path.join(self.directory, name)
        temporary = final + ".part"
        try:
            with open(temporary, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, final)
        except BaseException:
            # A full disk must not be kept full by what failed to fit.
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise
        _sync_directory(self.directory)
        return hashlib.sha256(data).hexdigest()

    async def discard_if_unused(self, name):
        """
        Delete a stored file (record and bytes) if no user has it as avatar
        and no message points to it, e.g. a replaced avatar.
        """
        try:
            path = self.path_of(name)
        except (BadRequest, NotFound):
            return False
        if not await self._records.forget_if_unused(name):
            return False
        await self.remove_bytes(path)
        return True

    async def remove_bytes(self, path):
        """
        Delete a stored file's bytes (its record is gone already), in a
        thread; a failure is logged, not raised.
        """
        try:
            await deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), _remove, path)
        except OSError:
            log.failure("Removing the stored file {path} failed", path=path)

    async def find(self, name):
        """
        The L{StoredFile} and path of a stored file.

        @raise NotFound: no such file.
        @raise BadRequest: a name no file could have.
        """
        path = self.path_of(name)
        record = await self._records.get(name)
        if record is None or not os.path.isfile(path):
            raise NotFound("no such file")
        return StoredFile(record.name, record.media_type, record.size), path


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
