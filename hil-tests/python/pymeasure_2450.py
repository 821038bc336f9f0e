"""PyMeasure's Keithley2450 driver, over pyvisa-py's raw-socket resource, against the
keithley-2450 shim. Independent of nanoecr's code: PyMeasure writes the commands, pyvisa-py
frames them on TCP.

Usage: pymeasure_2450.py HOST PORT CIRCUIT_RESISTANCE_OHM
Prints one line per check and "ALL OK" at the end; any failed check raises.
"""

import statistics
import sys

from pymeasure.instruments.keithley import Keithley2450

from socket_visa import open_socket

host, port, r_ohm = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

k = open_socket(Keithley2450, host, port)

idn = k.id
# 2450 Reference Manual 2450-901-01 appendix B "*IDN?" (p. B-5): "KEITHLEY INSTRUMENTS INC.,MODEL nnnn,...".
assert "MODEL 2450" in idn, idn
print("idn", idn)

k.apply_voltage()  # :SOUR:FUNC VOLT, :SOUR:FUNC?, :SOUR:VOLT:RANG:AUTO 1, :SOUR:VOLT:ILIM 0.1
assert k.source_mode == "voltage", k.source_mode
k.source_voltage = 5  # :SOUR:VOLT:LEV 5
assert k.source_voltage == 5.0, k.source_voltage
k.compliance_current = 1e-4  # :SOUR:VOLT:ILIM 0.0001
assert abs(k.compliance_current - 1e-4) < 1e-12, k.compliance_current
k.measure_current(nplc=0.01)  # :SENS:FUNC 'CURR';:SENS:CURR:NPLC 0.010000; then :SENS:CURR:RANG:AUTO 1;
assert k.current_nplc == 0.01, k.current_nplc
assert k.check_errors() == [], "set-up raised errors"

k.enable_source()  # OUTPUT ON
assert k.source_enabled, "output should be on"
readings = [k.current for _ in range(40)]  # :READ?
expected = 5.0 / r_ohm
mean = statistics.mean(readings)
print(f"current mean {mean:.6e} A, expected V/R = {expected:.6e} A, spread {min(readings):.6e}..{max(readings):.6e}")
# The pillar in Ohmic contact reads V/R times a factor of 1 plus noise (1e-4 rms) and rare
# resistivity spikes (Δρ/ρ at most simulation.x_max = 10 %, about 1 ms long); before contact it
# would read 2-30 % of V/R.
assert abs(mean - expected) < 0.01 * expected, (mean, expected)
assert all(abs(r - expected) < 0.15 * expected for r in readings), readings
k.disable_source()  # OUTPUT OFF
assert not k.source_enabled, "output should be off"
off = k.current
assert abs(off) < 1e-3 * expected, off
print("output off reads", off)
assert k.check_errors() == []

# PyMeasure's buffer helpers are written for the 2400 command set. The 2450's native SCPI has
# reading buffers but no :TRACe:FEED subsystem (2450 Reference Manual 2450-901-01, section 6,
# TRACe subsystem: CLEar, POINts, ACTual, DATA, MAKE, ... and no FEED), so a real 2450 answers
# those units with -113 while accepting the rest of the message.
k.buffer_points = 100  # :TRAC:POIN 100 -- also a native 2450 command
assert k.buffer_points == 100, k.buffer_points
assert k.check_errors() == []
k.reset_buffer()  # :STAT:PRES;*CLS;:TRAC:CLEAR;:TRAC:FEED:CONT NEXT;
err = k.next_error
assert int(err[0]) == -113 and "Undefined header" in err[1], err
print("reset_buffer ->", err)
k.disable_buffer()  # :TRAC:FEED:CONT NEV
err = k.next_error
assert int(err[0]) == -113, err
print("disable_buffer ->", err)
assert k.check_errors() == []
print("ALL OK")
