"""A PyMeasure instrument on an SMU shim's SCPI raw-socket port, through pyvisa-py (`@py`), as
the HIL scripts open one. Shared by pymeasure_2450.py, pymeasure_ese.py and error_queue.py."""


def open_socket(cls, host, port):
    """An instance of the PyMeasure instrument class `cls` on TCPIP::host::port::SOCKET."""
    # Socket resources have no end-of-message signal: the reply terminator must be given.
    return cls(
        f"TCPIP::{host}::{port}::SOCKET",
        visa_library="@py",
        read_termination="\n",
        write_termination="\n",
        timeout=5000,
    )
