//! The models on a real pseudo-terminal (the serial transport of the rig), as a client opens it.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smu_shim::{serve_pty, Meter, MeterConfig, Model};

fn ask(port: &mut Box<dyn serialport::SerialPort>, msg: &[u8]) -> String {
    port.write_all(msg).expect("write");
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        port.read_exact(&mut byte).expect("reply byte");
        reply.push(byte[0]);
    }
    String::from_utf8(reply).expect("ascii")
}

#[test]
fn k2450_answers_on_a_pseudo_terminal_with_crlf() {
    let meter = Arc::new(Meter::new(MeterConfig {
        model: Model::Keithley2450,
        terminator: "\r\n".into(),
        ..MeterConfig::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve_pty(meter, stop.clone()).expect("pty");
    let mut port = serialport::new(&server.path, 115_200).timeout(Duration::from_secs(30)).open().expect("open pty");
    // 2450 RM appendix B "*IDN?" (p. B-5); the reply ends in the configured terminator.
    assert_eq!(ask(&mut port, b"*IDN?\r\n"), "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b\r\n");
    assert_eq!(ask(&mut port, b":sour:volt 5;volt?\n"), "5.00000000E+00\r\n");
    stop.store(true, Ordering::Relaxed);
    server.thread.join().expect("server thread");
}
