"""
A minimal WebSocket client for the load generator: the opening handshake,
masked binary frames out, unmasked frames in, pings answered.

The generator must not be the bottleneck it measures; a full client
library spends more CPU per frame than the servers under test do, so the
generator uses this lean client instead (RFC 6455, no extensions, no
fragmentation on send).
"""

import base64
import os
import struct

from twisted.internet.protocol import Protocol

_OPCODE_BINARY = 0x2
_OPCODE_CLOSE = 0x8
_OPCODE_PING = 0x9
_OPCODE_PONG = 0xA


def _mask(payload, key):
    n = len(payload)
    if not n:
        return payload
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(payload, opcode=_OPCODE_BINARY):
    """
    One final, masked client frame.
    """
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    return header + key + _mask(payload, key)


class RawWebSocketClient(Protocol):
    """
    Calls C{on_open(self)} after the 101, C{on_message(self, payload)} per
    data message, C{on_close(self, reason)} when the connection ends.
    """

    def __init__(self, host, path, on_open, on_message, on_close):
        self._host = host
        self._path = path
        self._on_open = on_open
        self._on_message = on_message
        self._on_close = on_close
        self._buffer = b""
        self._open = False
        self._fragments = []

    def connectionMade(self):
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())

    def send(self, payload):
        self.transport.write(encode_frame(payload))

    def dataReceived(self, data):
        self._buffer += data
        if not self._open:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self._buffer[:self._buffer.find(b"\r\n")]
            self._buffer = self._buffer[end + 4:]
            if b" 101 " not in status:
                self._on_close(self, status.decode("latin-1"))
                self.transport.loseConnection()
                return
            self._open = True
            self._on_open(self)
        self._read_frames()

    def _read_frames(self):
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                if len(buffer) - start < 2:
                    break
                length = struct.unpack_from("!H", buffer, start)[0]
                start += 2
            elif length == 127:
                if len(buffer) - start < 8:
                    break
                length = struct.unpack_from("!Q", buffer, start)[0]
                start += 8
            if len(buffer) - start < length:
                break
            payload = buffer[start:start + length]
            offset = start + length
            self._frame(first & 0x80, first & 0x0F, payload)
        self._buffer = buffer[offset:]

    def _frame(self, final, opcode, payload):
        if opcode == _OPCODE_PING:
            self.transport.write(encode_frame(payload, _OPCODE_PONG))
        elif opcode == _OPCODE_CLOSE:
            self.transport.write(encode_frame(payload[:2], _OPCODE_CLOSE))
            self.transport.loseConnection()
        elif opcode in (0x0, 0x1, 0x2):
            self._fragments.append(payload)
            if final:
                message = b"".join(self._fragments)
                self._fragments = []
                self._on_message(self, message)

    def connectionLost(self, reason):
        self._on_close(self, reason.getErrorMessage())
