"""An SMU model inside the rig shim, driven by independent clients: pyvisa-py for the SMU (raw
TCP socket; pyvisa parses the B2900's IEEE 488.2 definite-length blocks itself) and pymodbus for
the load frame (docs/register-map.md). Written from the Keithley 2450 Reference Manual, the B2900
SCPI Command Reference and SMU-CONTRACT.md, sharing no code with nanoecr.

Usage:
  smu_rig.py align-b2900 FRAME_HOST FRAME_PORT SMU_HOST SMU_PORT RATE_HZ
  smu_rig.py align-2450 FRAME_HOST FRAME_PORT SMU_HOST SMU_PORT RATE_HZ
      arm the SMU on its trigger input (B2900 EXT1 / 2450 digital I/O line 1), reset the frame,
      wait for N readings, check one reading per frame sample (timestamps one sample period
      apart, none before the reset, none after N).
  smu_rig.py drop FRAME_HOST FRAME_PORT SMU_HOST SMU_PORT DROP_S
      reset the frame and keep querying until the shim closes the connection (a LAN drop);
      check it happened at or after DROP_S of device time.
Prints one line per check and "ALL OK" at the end; any failed check raises.
"""

import struct
import sys
import time

import pyvisa
from pymodbus.client import ModbusTcpClient

UNIT = 1
mode, fhost, fport, shost, sport, arg = sys.argv[1:7]

frame = ModbusTcpClient(fhost, port=int(fport))
assert frame.connect(), "frame connection"
rm = pyvisa.ResourceManager("@py")
smu = rm.open_resource(f"TCPIP::{shost}::{sport}::SOCKET", read_termination="\n", write_termination="\n", timeout=5000)


def frame_counter():
    # Input registers 102-105: sample counter, u64, big-endian words (register map).
    r = frame.read_input_registers(102, count=4, device_id=UNIT)
    assert not r.isError(), r
    return struct.unpack(">Q", struct.pack(">4H", *r.registers))[0]


def reset_frame():
    # Holding register 12 = 1: reset, the sample counter restarts at 0 (register map).
    r = frame.write_register(12, 1, device_id=UNIT)
    assert not r.isError(), r


def wait_for(cond, what, limit_s=30.0):
    # A bound for a loaded machine, not a timing assertion: polls a condition.
    end = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


idn = smu.query("*IDN?")
print("idn", idn)

if mode == "align-b2900":
    # B2900 SCPI Command Reference chapter 3 "*IDN?" (page and exact text unverified).
    assert idn.startswith("Keysight Technologies,B29"), idn
    rate_hz = float(arg)
    n = 300
    for cmd in [
        "*RST", "*CLS", ":SOUR:FUNC:MODE VOLT", ":SOUR:VOLT 5", ':SENS:FUNC "CURR"',
        ":SENS:CURR:PROT 1e-4", ":SENS:CURR:RANG:AUTO OFF", ":SENS:CURR:RANG 1e-4",
        ":SENS:CURR:NPLC 0.01", ":TRIG:SOUR EXT1", f":TRIG:COUN {n}", ":ARM:COUN 1",
        ":TRAC:FEED SENS", f":TRAC:POIN {n}", ":TRAC:FEED:CONT NEXT", ":FORM:DATA REAL,64",
        ":FORM:BORD NORM", ":FORM:ELEM:SENS CURR,TIME,STAT",
    ]:
        smu.write(cmd)
    err = smu.query(":SYST:ERR:NEXT?")
    # B2900 SCPI Command Reference chapter 5 "Error Messages" (p. 5-2): "+0, "No error"".
    assert err == '+0,"No error"', err
    smu.write(":OUTP ON")
    smu.write(":INIT")
    assert smu.query("*OPC?") == "1"
    # Armed, the frame not yet reset: its samples of the old count are no readings of this run.
    c0 = frame_counter()
    wait_for(lambda: frame_counter() > c0 + 20, "frame samples before the reset")
    assert smu.query(":TRAC:POIN:ACT?") == "0", "readings before the frame's reset"
    reset_frame()
    wait_for(lambda: int(smu.query(":TRAC:POIN:ACT?")) >= n, f"{n} readings")
    assert frame_counter() >= n
    # The trigger count is exhausted: later frame samples take no reading.
    c1 = frame_counter()
    wait_for(lambda: frame_counter() > c1 + 20, "more frame samples")
    assert smu.query(":TRAC:POIN:ACT?") == str(n)
    values = smu.query_binary_values(f":TRAC:DATA? 0,{n}", datatype="d", is_big_endian=True, container=list)
    assert len(values) == 3 * n, len(values)
    cur, t, stat = values[0::3], values[1::3], values[2::3]
    steps = [b - a for a, b in zip(t, t[1:])]
    worst = max(abs(s - 1.0 / rate_hz) for s in steps)
    print(f"{n} readings, timestamp step worst deviation from 1/rate: {worst:.3e} s; first t {t[0]:.6f} s")
    assert worst < 1e-9, worst
    # Unloaded pillar: before contact the current is a small fraction of V/R, never limited.
    assert all(0.0 <= i < 1e-4 for i in cur), (min(cur), max(cur))
    assert all(s == 0.0 for s in stat), set(stat)
    # ASCII fallback of the same data.
    smu.write(":FORM:DATA ASC")
    ascii_values = [float(v) for v in smu.query(f":TRAC:DATA? 0,{n}").split(",")]
    assert len(ascii_values) == 3 * n
    assert all(abs(a - b) <= 1e-6 * abs(b) + 1e-20 for a, b in zip(ascii_values, values)), "ASCII differs from REAL,64"
    smu.write(":ABOR")
    smu.write(":OUTP OFF")
    assert smu.query(":OUTP?") == "0"
elif mode == "align-2450":
    # 2450 Reference Manual appendix B "*IDN?" (p. B-5).
    assert "MODEL 2450" in idn, idn
    assert smu.query("*LANG?") == "SCPI"
    rate_hz = float(arg)
    n = 300
    buf = '"defbuffer1"'
    # 2450 Reference Manual section 6 (SCPI command reference), "Trigger model" in section 3.
    for cmd in [
        "*RST", "*CLS", ":SOUR:FUNC VOLT", ":SOUR:VOLT:RANG 5", ":SOUR:VOLT 5", ":SOUR:VOLT:ILIM 1e-4",
        ':SENS:FUNC "CURR"', ":SENS:CURR:RANG 1e-4", ":SENS:CURR:NPLC 0.01", ":SENS:CURR:AZER OFF",
        f":TRAC:POIN {n}, {buf}", f":TRAC:CLE {buf}", ":DIG:LINE1:MODE TRIG, IN", ":TRIG:DIG1:IN:EDGE FALL",
        ':TRIG:LOAD "Empty"', f":TRIG:BLOC:BUFF:CLE 1, {buf}", ":TRIG:BLOC:WAIT 2, DIGIO1",
        f":TRIG:BLOC:MDIG 3, {buf}, 1", f":TRIG:BLOC:BRAN:COUN 4, {n}, 2",
    ]:
        smu.write(cmd)
    assert smu.query(":SYST:ERR:COUN?") == "0"
    smu.write(":OUTP ON")
    smu.write(":INIT")
    assert smu.query("*OPC?") == "1"
    c0 = frame_counter()
    wait_for(lambda: frame_counter() > c0 + 20, "frame samples before the reset")
    assert smu.query(f":TRAC:ACT:END? {buf}") == "0", "readings before the frame's reset"
    reset_frame()
    wait_for(lambda: smu.query(":TRIG:STAT?").startswith("IDLE"), "the trigger model to finish")
    assert smu.query(f":TRAC:ACT:STAR? {buf}") == "1"
    assert smu.query(f":TRAC:ACT:END? {buf}") == str(n)
    values = smu.query_ascii_values(f':TRAC:DATA? 1, {n}, {buf}, READ, REL, SOURSTAT')
    assert len(values) == 3 * n, len(values)
    cur, rel, stat = values[0::3], values[1::3], values[2::3]
    worst = max(abs(r - i / rate_hz) for i, r in enumerate(rel))
    print(f"{n} readings, worst |REL - i/rate| {worst:.3e} s")
    assert worst < 1e-6, worst
    assert all(0.0 <= i < 1e-4 for i in cur), (min(cur), max(cur))
    # Source status: output on (128), not limited (32 clear).
    assert all(int(s) == 128 for s in stat), set(stat)
    smu.write(":ABOR")
    smu.write(":OUTP OFF")
    assert smu.query(":OUTP?") == "0"
elif mode == "drop":
    drop_s = float(arg)
    # A closed socket surfaces as a read timeout in pyvisa-py; keep it short.
    smu.timeout = 1000
    reset_frame()
    t0 = frame_counter()
    queries = 0
    try:
        while True:
            smu.query(":TRAC:POIN:ACT?")
            queries += 1
            time.sleep(0.01)
    except Exception as e:  # pyvisa reports the closed socket as an I/O error
        dropped_at = frame_counter()
        print(f"connection closed after {queries} queries at frame sample {dropped_at}: {type(e).__name__}")
    rate = 1000.0
    assert dropped_at / rate >= drop_s, (dropped_at, drop_s)
    assert t0 / rate < drop_s
else:
    raise SystemExit(f"unknown mode {mode}")
print("ALL OK")
