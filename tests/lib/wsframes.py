"""RFC 6455 on a raw socket, for tests that need frames no client library sends (or a
client that does not read): frame() builds a client frame, Reader reads server frames.

    s.sendall(frame(9, b"ping payload"))
    op, payload = Reader(s, rest_after_handshake).frame()
"""
import os, struct


def frame(opcode, payload, fin=True, mask=True):
    """A client frame (masked unless mask=False, which servers must refuse)."""
    b0 = (0x80 if fin else 0) | opcode
    ln = len(payload)
    if ln < 126:
        hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | ln)
    elif ln < 65536:
        hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, ln)
    else:
        hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, ln)
    if not mask:
        return hdr + payload
    m = os.urandom(4)
    key = (m * (ln // 4 + 1))[:ln]
    return hdr + m + bytes(a ^ b for a, b in zip(payload, key))


class Reader:
    """Server frames from socket s (rest: bytes already read past the handshake)."""

    def __init__(self, s, rest=b""):
        self.s, self.buf = s, rest

    def need(self, k):
        while len(self.buf) < k:
            c = self.s.recv(65536)
            if not c:
                raise EOFError
            self.buf += c
        out, self.buf = self.buf[:k], self.buf[k:]
        return out

    def frame(self):
        """(opcode, payload) of the next frame."""
        b0, b1 = self.need(2)
        ln = b1 & 0x7F
        if ln == 126:
            ln = struct.unpack("!H", self.need(2))[0]
        elif ln == 127:
            ln = struct.unpack("!Q", self.need(8))[0]
        return b0 & 0x0F, self.need(ln)
