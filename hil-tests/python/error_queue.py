"""Read an SMU shim's error queue with PyMeasure over pyvisa-py's raw-socket resource, until it
reports no error, and print each entry. Independent of nanoecr's code: PyMeasure's `next_error`
sends `SYST:ERR?` (`:SYSTem:ERRor[:NEXT]?` with the optional node left out: 2450 Reference
Manual 2450-901-01 section 6; B2900 SCPI Command Reference chapter 4) and splits the
`<code>,"<message>"` reply; pyvisa-py frames it on TCP. The queue is empty when the reply's
code is 0 (`0,"No error"`; the B2900 writes `+0,"No error"`, B2900 SCPI Command Reference
chapter 5 "Error Messages", p. 5-2).

Usage: error_queue.py MODEL HOST PORT   (MODEL: keithley-2450, keysight-b2900, nanoecr-scpi)
Prints `ENTRY <code> <message>` per entry, then `EMPTY` (or raises after 32 entries).
"""

import sys

from pymeasure.instruments import Instrument, SCPIMixin
from pymeasure.instruments.keithley import Keithley2450

from socket_visa import open_socket

model, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])


class GenericScpi(SCPIMixin, Instrument):
    """PyMeasure's generic SCPI instrument (it has no B2900 or in-house driver)."""

    def __init__(self, adapter, **kwargs):
        super().__init__(adapter, "SMU shim", **kwargs)


cls = Keithley2450 if model == "keithley-2450" else GenericScpi
inst = open_socket(cls, host, port)
for _ in range(32):
    code, message = inst.next_error
    if int(code) == 0:
        print("EMPTY")
        break
    print("ENTRY", int(code), message)
else:
    raise AssertionError("error queue does not empty in 32 reads")
