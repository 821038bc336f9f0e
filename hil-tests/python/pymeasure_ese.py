"""The IEEE 488.2 standard event status enable register (`*ESE`, `*ESE?`) of one SMU shim model,
set and read by PyMeasure over pyvisa-py's raw-socket resource. nanoecr resynchronises an
out-of-step SCPI conversation with it (crates/nanoecr-hw/src/scpi.rs): `*ESE <a>`, `*ESE?`,
`*ESE <b>`, `*ESE?` with markers 2, 3, 4, ... 255, 2, ... in turn, then `*ESE 0`. This checks,
with a client that shares no code with nanoecr, that the shim answers those as the documents say:

- IEEE 488.2-1992 §10.10 `*ESE <DECIMAL NUMERIC PROGRAM DATA>`: the value, rounded to an
  integer, 0 to 255, sets the register; §10.11 `*ESE?`: the register as <NR1 NUMERIC RESPONSE
  DATA> (§8.7.2: digits, an optional sign), then the response message terminator (NL, §8.5).
  §10.3 `*CLS` and §10.32 `*RST` leave the enable registers alone; an out-of-range value is an
  execution error (SCPI-99 Vol. 2 §21.8.6: -222 "Data out of range") and changes nothing.
- Keithley 2450 Reference Manual 2450-901-01 Rev. B, appendix B "Common commands", `*ESE`
  (p. B-2): `*ESE <n>` / `*ESE?`, "the value of the Status Enable register of the Standard Event
  Register (0 to 255)", returned as a decimal value; `*CLS` (p. B-2) clears the event registers,
  and "to reset all the bits of the Standard Event Enable Register, send *ESE 0".
- Keysight B2900 SCPI Command Reference (B2910-90030), chapter 3 "Common Commands", `*ESE`: the
  same register, 0 to 255 (page unverified).
- The in-house dialect (docs/hardware.md "In-house dialect"): IEEE 488.2's `*ESE` as above.

Usage: pymeasure_ese.py MODEL HOST PORT   (MODEL: keithley-2450, keysight-b2900, nanoecr-scpi)
Prints one line per check and "ALL OK" at the end; any failed check raises.
"""

import re
import sys

from pymeasure.instruments import Instrument, SCPIMixin
from pymeasure.instruments.keithley import Keithley2450
from pymeasure.instruments.validators import strict_range

from socket_visa import open_socket

model, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

# The register as a PyMeasure property: `*ESE %d` to set, `*ESE?` cast to int to read.
EVENT_STATUS_ENABLE = Instrument.control(
    "*ESE?",
    "*ESE %d",
    """Control the standard event status enable register (IEEE 488.2 §10.10, §10.11).""",
    validator=strict_range,
    values=[0, 255],
    cast=int,
)


class Keithley2450Ese(Keithley2450):
    """PyMeasure's own Keithley 2450 driver, with the register."""

    event_status_enable = EVENT_STATUS_ENABLE


class GenericScpiEse(SCPIMixin, Instrument):
    """PyMeasure's generic SCPI instrument (it has no B2900 or in-house driver), with the
    register."""

    event_status_enable = EVENT_STATUS_ENABLE

    def __init__(self, adapter, **kwargs):
        super().__init__(adapter, "SMU shim", **kwargs)


# 2450 Reference Manual appendix B "*IDN?" (p. B-5, less its Rev. B "INC."); B2900 SCPI Command
# Reference chapter 3 "*IDN?" (unverified); the in-house dialect, docs/hardware.md.
IDN = {
    "keithley-2450": "KEITHLEY INSTRUMENTS,MODEL 2450,",
    "keysight-b2900": "Keysight Technologies,B29",
    "nanoecr-scpi": "NANOECR,SMU-SHIM-1,",
}[model]
cls = Keithley2450Ese if model == "keithley-2450" else GenericScpiEse
inst = open_socket(cls, host, port)
visa = inst.adapter.connection

idn = inst.id
assert idn.startswith(IDN), idn
print("idn", idn)

NR1 = re.compile(rb"^[+-]?[0-9]+\n$")


def raw_ese():
    """`*ESE?` and its reply's bytes, terminator included (pyvisa's read_raw keeps it)."""
    inst.write("*ESE?")
    raw = visa.read_raw()
    assert NR1.match(raw), f"*ESE? reply {raw!r} is not <NR1> + NL"
    value = int(raw)
    assert 0 <= value <= 255, raw
    return raw, value


def errors():
    """The error queue until empty, as (code, message) (PyMeasure's SYST:ERR?)."""
    found = []
    for _ in range(32):
        code, message = inst.next_error
        if int(code) == 0:
            return found
        found.append((int(code), message))
    raise AssertionError(f"error queue does not empty: {found}")


assert errors() == [], "errors before the checks"

# Power-on value 0 (nanoecr's resync restores it with `*ESE 0`).
raw, value = raw_ese()
assert value == 0, raw
print("power-on *ESE? ->", raw)

# The values the resync writes: the first pair 2 and 3, later pairs up to 255 and the wrap back
# to 2 (markers run 2…255), and 0 after each resync; 1 and 128, 64 for the bits between.
replies = {}
for v in [2, 3, 0, 4, 5, 0, 254, 255, 0, 255, 2, 0, 1, 128, 64, 0]:
    inst.event_status_enable = v
    assert inst.event_status_enable == v, (v, inst.event_status_enable)
    raw, value = raw_ese()
    assert value == v, (v, raw)
    replies[v] = raw
print("set/read as the resync uses them: ok;", ", ".join(f"{v} -> {r!r}" for v, r in sorted(replies.items())))

# The resync's exchange as nanoecr sends it: four messages, then both replies, in order.
for a, b in [(2, 3), (254, 255), (255, 2)]:
    for m in [f"*ESE {a}", "*ESE?", f"*ESE {b}", "*ESE?"]:
        inst.write(m)
    first, second = visa.read_raw(), visa.read_raw()
    assert NR1.match(first) and NR1.match(second), (first, second)
    assert (int(first), int(second)) == (a, b), (a, b, first, second)
    inst.write("*ESE 0")
print("markers *ESE a;*ESE?;*ESE b;*ESE? answered in order: ok")

# *CLS and *RST leave the register (IEEE 488.2 §10.3, §10.32).
inst.event_status_enable = 37
inst.write("*CLS")
assert raw_ese()[1] == 37, "*CLS changed *ESE"
inst.write("*RST")
assert raw_ese()[1] == 37, "*RST changed *ESE"
print("*CLS and *RST leave *ESE: ok")

# Decimal numeric program data is rounded (IEEE 488.2 §10.10, §7.7.2): NR2 2.6 sets 3.
inst.write("*ESE 2.6")
assert raw_ese()[1] == 3, "*ESE 2.6 should set 3"
assert errors() == [], "*ESE 2.6 raised an error"
print("*ESE 2.6 -> 3: ok")

# Out of range: an execution error, the register unchanged.
inst.write("*ESE 256")
assert raw_ese()[1] == 3, "*ESE 256 changed the register"
errs = errors()
assert [c for c, _ in errs] == [-222], errs
print("*ESE 256 ->", errs)

inst.write("*ESE 0")
assert raw_ese()[1] == 0
assert errors() == []
print("ALL OK")
