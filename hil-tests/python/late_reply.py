#!/usr/bin/env python3
"""Independent check of the load-frame shim's --delay-reply fault (started with
`--rtu --tcp 127.0.0.1:0 --delay-reply 16@1:DELAY_MS`), from the Modbus specifications alone.

Usage: late_reply.py RTU_PATH TCP_HOST TCP_PORT DELAY_MS

RTU (pyserial on the shim's pseudo-terminal; frames built by hand, CRC by pymodbus): the first
function 16 request's echo must leave no earlier than DELAY_MS after it, be a well-formed echo of
that request, and be followed — not preceded, not merged — by the echo of a second request sent
while the first was held (the device answers in order, and the host cannot tell the two apart:
an RTU frame has no transaction id). TCP (a raw socket with an MBAP header by hand, and pymodbus
on a second connection): the held request has taken effect at once, the second connection is
served meanwhile, and the late reply comes back on its own connection with its own transaction id.

Byte strings, as the specifications give them:
- RTU frame: unit id (1 byte), PDU, CRC-16 low byte first (Modbus over Serial Line V1.02 §2.5.1
  and §6.2.2);
- function 16 request: 0x10, start address (2), quantity (2), byte count (1), values (2 each);
  its reply: 0x10, start address (2), quantity (2) (Modbus Application Protocol V1.1b3 §6.12);
- MBAP header: transaction id (2), protocol id 0 (2), length (2) = unit id + PDU, unit id (1)
  (Modbus Messaging on TCP/IP Implementation Guide V1.0b §3.1.3).
Prints one line per check and exits non-zero on the first mismatch.
"""
import socket
import struct
import sys
import time

import serial
from pymodbus.client import ModbusTcpClient
from pymodbus.framer import FramerRTU

UNIT = 1
RATE = 9  # holding registers 9-10: sample rate, Hz (u32, high word first)


def fail(msg):
    print(f"FAIL {msg}")
    sys.exit(1)


def ok(msg):
    print(f"ok   {msg}")


def rtu_frame(pdu):
    adu = bytes([UNIT]) + pdu
    # pymodbus returns the CRC with the low byte in the high half: big-endian packing puts the
    # low byte first on the wire, as §6.2.2 requires.
    return adu + struct.pack(">H", FramerRTU.compute_CRC(adu))


def write_rate_pdu(hz):
    return struct.pack(">BHHBHH", 0x10, RATE, 2, 4, hz >> 16, hz & 0xFFFF)


ECHO_PDU = struct.pack(">BHH", 0x10, RATE, 2)


def read_until(port, n, deadline):
    got = b""
    while len(got) < n and time.monotonic() < deadline:
        got += port.read(n - len(got))
    return got


def check_rtu(path, delay_s):
    port = serial.Serial(path, 921600, timeout=0.05)
    port.reset_input_buffer()
    echo = rtu_frame(ECHO_PDU)
    assert len(echo) == 8
    sent = time.monotonic()
    port.write(rtu_frame(write_rate_pdu(1000)))
    # Nothing may come while the reply is held (a lower bound: a slow host only waits longer).
    early = read_until(port, 1, sent + 0.8 * delay_s)
    if early:
        fail(f"rtu: {early.hex()} arrived {time.monotonic() - sent:.3f} s after the request, before the delay")
    # A second, identical request while the first is held: the host's retry.
    port.write(rtu_frame(write_rate_pdu(1000)))
    got = read_until(port, 16, sent + delay_s + 10.0)
    arrived = time.monotonic() - sent
    if len(got) != 16:
        fail(f"rtu: {len(got)} bytes ({got.hex()}) within {arrived:.3f} s, expected two 8-byte echoes")
    if arrived < delay_s:
        fail(f"rtu: the late echo arrived {arrived:.3f} s after its request, before the {delay_s} s delay")
    for i, frame in enumerate((got[:8], got[8:])):
        if frame != echo:
            fail(f"rtu: reply {i + 1} is {frame.hex()}, expected {echo.hex()}")
        if not FramerRTU.check_CRC(frame[:-2], struct.unpack(">H", frame[-2:])[0]):
            fail(f"rtu: reply {i + 1} {frame.hex()} fails the CRC")
    ok(f"rtu: late echo {echo.hex()} {arrived:.3f} s after its request, then the retry's, identical")
    if read_until(port, 1, time.monotonic() + 0.2):
        fail("rtu: more than two replies to two requests")
    port.close()


def check_tcp(host, port_no, delay_s):
    tid = 0x1234
    pdu = write_rate_pdu(2000)
    mbap = struct.pack(">HHHB", tid, 0, 1 + len(pdu), UNIT)
    a = socket.create_connection((host, port_no), timeout=delay_s + 10.0)
    sent = time.monotonic()
    a.sendall(mbap + pdu)
    # A second connection is served while the first one's reply is held, and sees the write.
    b = ModbusTcpClient(host, port=port_no, timeout=5)
    if not b.connect():
        fail("tcp: pymodbus could not connect")
    rr = b.read_holding_registers(RATE, count=2, device_id=UNIT)
    held = time.monotonic() - sent
    if rr.isError():
        fail(f"tcp: read of the rate on a second connection: {rr}")
    rate = (rr.registers[0] << 16) | rr.registers[1]
    if rate != 2000:
        fail(f"tcp: rate {rate} on a second connection, expected 2000 (the held write took effect)")
    b.close()
    ok(f"tcp: a second connection read rate {rate} Hz {held:.3f} s after the held write")
    want = struct.pack(">HHHB", tid, 0, 1 + len(ECHO_PDU), UNIT) + ECHO_PDU
    got = b""
    while len(got) < len(want):
        chunk = a.recv(len(want) - len(got))
        if not chunk:
            break
        got += chunk
    arrived = time.monotonic() - sent
    if got != want:
        fail(f"tcp: reply {got.hex()}, expected {want.hex()}")
    if arrived < delay_s:
        fail(f"tcp: the late reply arrived {arrived:.3f} s after its request, before the {delay_s} s delay")
    ok(f"tcp: late reply {got.hex()} (transaction id {tid:#06x}) on its own connection after {arrived:.3f} s")
    a.close()


def main():
    path, host, port_no, delay_ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    check_rtu(path, delay_ms / 1000)
    check_tcp(host, port_no, delay_ms / 1000)
    print("ALL OK")


if __name__ == "__main__":
    main()
