#!/usr/bin/env python3
"""A load-frame controller on a serial line that holds stale bytes when the host opens it, written
from the Modbus specifications alone (hil-tests/tests/stale_rtu_line.rs drives it).

Usage: stale_line.py REQUESTS

Opens a pseudo-terminal (the stdlib's os.openpty; the slave in raw mode, as a serial port is) and,
before anyone else opens the slave, writes to the master side — into the slave's input queue,
which Linux keeps across opens, as a USB-serial adapter or a line left by a session that died
mid-reply would hold it:
- power-up chatter: a NUL, 0xFF and a boot banner `BOOT 2.1\\r\\n`;
- a stale, well-formed reply to an old identification read: unit 1, function 04, 72 bytes of
  registers (the identification block, docs/register-map.md) whose serial number is `PY-STALE`.
Then prints `PTY <slave path> STALE <bytes written>` and, REQUESTS times, reads one request from
the master, checks it is byte for byte the identification read `01 04 00 00 00 24 f0 11`, and
answers it with the same block but the serial number `PY-FRESH`. A host that reads the stale
reply as the answer to its first read reports the wrong serial number.

Byte strings, as the specifications give them:
- RTU frame: unit id (1 byte), PDU, CRC-16 low byte first (Modbus over Serial Line V1.02 §2.5.1
  and §6.2.2); CRC by pymodbus;
- function 04 request: 0x04, start address (2), quantity (2); its reply: 0x04, byte count (1) =
  2 × quantity, the registers (2 each, high byte first) (Modbus Application Protocol V1.1b3 §6.4).
Prints one line per check and exits non-zero on the first mismatch.
"""
import os
import select
import struct
import sys
import time
import tty

from pymodbus.framer import FramerRTU

UNIT = 1
IDENT_LEN = 36
CHATTER = b"\x00\xffBOOT 2.1\r\n"


def fail(msg):
    print(f"FAIL {msg}", flush=True)
    sys.exit(1)


def ok(msg):
    print(f"ok   {msg}", flush=True)


def rtu_frame(pdu):
    adu = bytes([UNIT]) + pdu
    # pymodbus returns the CRC with the low byte in the high half: big-endian packing puts the
    # low byte first on the wire, as §6.2.2 requires.
    return adu + struct.pack(">H", FramerRTU.compute_CRC(adu))


def ascii_regs(text):
    """8 registers, two characters each, first in the high byte, NUL-padded (register-map.md)."""
    raw = text.encode("ascii").ljust(16, b"\0")
    return list(struct.unpack(">8H", raw))


def ident_reply(serial):
    regs = ascii_regs("NANOECR") + ascii_regs("LF-PY-1") + ascii_regs(serial) + ascii_regs("1.0")
    regs += [1, 16384, 15, 8]  # protocol version, FIFO capacity, samples per block, words per sample
    assert len(regs) == IDENT_LEN
    return rtu_frame(struct.pack(">BB", 0x04, 2 * IDENT_LEN) + struct.pack(f">{IDENT_LEN}H", *regs))


def read_exactly(fd, n, deadline):
    got = b""
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            got += os.read(fd, n - len(got))
    return got


def main():
    requests = int(sys.argv[1])
    master, slave = os.openpty()
    # Raw before anything is written, so the line discipline passes the bytes through unchanged
    # (no echo back to the master, no CR/LF translation, no line buffering).
    tty.setraw(slave)
    stale = CHATTER + ident_reply("PY-STALE")
    os.write(master, stale)
    print(f"PTY {os.ttyname(slave)} STALE {len(stale)}", flush=True)
    want = rtu_frame(struct.pack(">BHH", 0x04, 0, IDENT_LEN))
    assert want.hex() == "010400000024f011", want.hex()
    fresh = ident_reply("PY-FRESH")
    for i in range(requests):
        got = read_exactly(master, len(want), time.monotonic() + 30.0)
        if got != want:
            fail(f"request {i + 1} is {got.hex()}, expected {want.hex()}")
        os.write(master, fresh)
        ok(f"request {i + 1} {got.hex()} answered with serial PY-FRESH")
    # The test closes stdin once the host is done; only then may the master close (a pty's
    # hang-up drops what the slave has not read yet).
    sys.stdin.read()
    # The host's writes land in the master's queue at once: anything now unread is a request
    # beyond the ones answered.
    ready, _, _ = select.select([master], [], [], 0)
    if ready:
        fail(f"unexpected bytes after {requests} requests: {os.read(master, 256).hex()}")
    print("ALL OK", flush=True)
    os.close(slave)
    os.close(master)


if __name__ == "__main__":
    main()
