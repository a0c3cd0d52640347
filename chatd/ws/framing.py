"""
WebSocket framing on the hot path.

Chat traffic is small binary messages, each in one frame. Autobahn parses a
frame through a chain of hooks (frame begin, data, end, message begin, end,
an event fired per message) and logs every send; per chat message that
cost more than everything chatd does with it. L{LeanFraming} takes the
common case, a complete, final, masked binary frame of up to 64 KiB, in one
step, and leaves every other frame (control frames, fragments, text, larger
frames, frames over the configured limits, anything while a frame is half
received) to Autobahn, so the protocol's rules and errors stay Autobahn's.

Outgoing frames are framed once per fan-out by L{server_frame} and go to
the transport through the factory's L{chatd.ws.writes.WriteCoalescer}. Of
Autobahn's traffic statistics, the lean path keeps the frame and message
counts, not the per-level octet counts (nothing in chatd reads them).
"""

import struct

_FIN_BINARY = 0x82
_MASKED = 0x80


def server_frame(payload):
    """
    C{payload} as one final, unmasked binary frame (server to client).
    """
    n = len(payload)
    if n < 126:
        return bytes((_FIN_BINARY, n)) + payload
    if n <= 0xFFFF:
        return struct.pack("!BBH", _FIN_BINARY, 126, n) + payload
    return struct.pack("!BBQ", _FIN_BINARY, 127, n) + payload


def unmask(data, key):
    """
    XOR C{data} with the 4-byte masking C{key}, repeated (RFC 6455 5.3).
    """
    n = len(data)
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little")
            ^ int.from_bytes(keystream, "little")).to_bytes(n, "little")


class LeanFraming:
    """
    A mixin for an Autobahn C{WebSocketServerProtocol} without
    per-message compression: reads without a debug log line each, small
    binary messages in one step, framed bytes out. Put it before the
    Autobahn class in the bases.
    """

    def dataReceived(self, data):
        # Autobahn's own formats the arguments of a debug log line on every
        # read, even with debug logging off.
        self._dataReceived(data)

    def processData(self):
        data = self.data
        if (len(data) < 6 or data[0] != _FIN_BINARY or not data[1] & _MASKED
                or self.current_frame is not None or self.inside_message
                or self.state != self.STATE_OPEN or self.failedByMe
                or self._perMessageCompress is not None or self.logFrames):
            return super().processData()
        length = data[1] & 0x7F
        if length < 126:
            start = 6
        elif length == 126:
            length = (data[2] << 8) | data[3]
            start = 8
            if length < 126:
                # Not the minimal encoding: Autobahn refuses it.
                return super().processData()
        else:
            return super().processData()
        end = start + length
        if (not length or len(data) < end
                or 0 < self.maxFramePayloadSize < length
                or 0 < self.maxMessagePayloadSize < length):
            return super().processData()
        payload = unmask(data[start:end], data[start - 4:start])
        self.data = data[end:]
        stats = self.trafficStats
        stats.incomingWebSocketFrames += 1
        stats.incomingWebSocketMessages += 1
        self._onMessage(payload, True)
        return len(self.data) > 0

    def write_frame(self, frame):
        """
        Send bytes framed by L{server_frame}, through the factory's
        C{writes} (a L{chatd.ws.writes.WriteCoalescer}).
        """
        if self.send_queue:
            self.sendData(frame)
        else:
            self.factory.writes.write(self.transport, frame)
