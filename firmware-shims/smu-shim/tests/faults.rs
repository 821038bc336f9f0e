//! Fault injection on the real-instrument models: garbage replies, the compliance fault and the
//! LAN drop. The test drives the trigger wire itself, so device time is what it says.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use smu_shim::{serve_tcp, Meter, MeterConfig, Model};

#[test]
fn the_nth_reply_is_garbage_once() {
    let meter =
        Meter::new(MeterConfig { model: Model::Keithley2450, garbage_after: Some(2), ..MeterConfig::default() });
    let ok = meter.reply_bytes("*IDN?").expect("reply");
    // 2450 RM appendix B "*IDN?" (p. B-5).
    assert!(ok.starts_with(b"KEITHLEY INSTRUMENTS,MODEL 2450"));
    let bad = meter.reply_bytes("*IDN?").expect("reply");
    assert!(!bad.starts_with(b"KEITHLEY") && bad.ends_with(b"\n"), "{bad:?}");
    assert_eq!(meter.reply_bytes("*IDN?"), Some(ok));
    // Commands without a reply do not count as queries.
    assert_eq!(meter.reply_bytes(":OUTP ON"), None);
}

#[test]
fn compliance_fault_limits_the_output_from_its_device_time() {
    let meter =
        Meter::new(MeterConfig { model: Model::KeysightB2900, compliance_at_s: Some(0.002), ..MeterConfig::default() });
    for cmd in [":SENS:CURR:PROT 1e-4", ":SOUR:VOLT 5", ":TRIG:SOUR EXT1", ":TRIG:COUN 4", ":TRAC:FEED:CONT NEXT"] {
        assert_eq!(meter.handle(cmd), None);
    }
    meter.handle(":FORM:ELEM:SENS CURR,STAT;:OUTP ON;:INIT");
    meter.reset_trigger();
    for seq in 0..4u64 {
        meter.trigger(seq, seq as f64 * 1e-3, 1.0);
    }
    let reply = String::from_utf8(meter.handle(":TRAC:DATA? 0,4").expect("data")).expect("ascii");
    let v: Vec<f64> = reply.split(',').map(|x| x.parse().expect("number")).collect();
    // Samples at 0 and 1 ms read V/R = 1 µA; from 2 ms on the output is limited (status bit 1).
    assert_eq!(v, vec![1e-6, 0.0, 1e-6, 0.0, 1e-4, 2.0, 1e-4, 2.0]);
    assert_eq!(meter.compliance_onsets_s(), vec![0.002]);
}

#[test]
fn held_readings_are_stored_when_the_hold_ends_with_their_own_time_and_value() {
    let meter = Meter::new(MeterConfig {
        model: Model::KeysightB2900,
        hold_readings_at_s: Some(0.002),
        hold_readings: Duration::from_millis(3),
        ..MeterConfig::default()
    });
    for cmd in [":SOUR:VOLT 5", ":TRIG:SOUR EXT1", ":TRIG:COUN 8", ":TRAC:FEED:CONT NEXT"] {
        assert_eq!(meter.handle(cmd), None);
    }
    meter.handle(":FORM:ELEM:SENS CURR,TIME;:OUTP ON;:INIT");
    // A pulse before the frame's reset, at a device time inside the hold, belongs to no run.
    meter.trigger(3, 0.003, 1.0);
    meter.reset_trigger();
    let count = |m: &Meter| String::from_utf8(m.handle(":TRAC:POIN:ACT?").expect("count")).expect("ascii");
    for seq in 0..5u64 {
        meter.trigger(seq, seq as f64 * 1e-3, 1.0 + seq as f64);
    }
    // Samples 2, 3, 4 (2 ms to 4 ms) are held: the buffer holds the first two only.
    assert_eq!(count(&meter).trim().trim_start_matches('+'), "2");
    meter.trigger(5, 0.005, 6.0);
    assert_eq!(count(&meter).trim().trim_start_matches('+'), "6");
    let reply = String::from_utf8(meter.handle(":TRAC:DATA? 0,6").expect("data")).expect("ascii");
    let v: Vec<f64> = reply.split(',').map(|x| x.parse().expect("number")).collect();
    // Each reading is the current of its own trigger (factor · 1 µA), one period after the last.
    for seq in 0..6usize {
        let (current_a, time_s) = (v[2 * seq], v[2 * seq + 1] - v[1]);
        assert!((current_a / ((1.0 + seq as f64) * 1e-6) - 1.0).abs() < 1e-6, "reading {seq}: {current_a}");
        assert!((time_s - seq as f64 * 1e-3).abs() < 1e-8, "reading {seq}: {time_s}");
    }
}

#[test]
fn lan_drop_closes_the_connection_at_its_device_time_and_later_connections_work() {
    let meter = Arc::new(Meter::new(MeterConfig {
        model: Model::Keithley2450,
        drop_after_s: Some(0.010),
        ..MeterConfig::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve_tcp(meter.clone(), "127.0.0.1:0".parse().expect("addr"), stop.clone()).expect("listen");
    let mut conn = TcpStream::connect(server.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    conn.write_all(b"*IDN?\n").expect("write");
    reader.read_line(&mut line).expect("idn");
    assert!(line.starts_with("KEITHLEY"));
    // Before the frame's reset there is no run, so no device time at which to drop.
    meter.trigger(50, 0.050, 1.0);
    conn.write_all(b"*OPC?\n").expect("write");
    line.clear();
    reader.read_line(&mut line).expect("opc");
    assert_eq!(line, "1\n");
    meter.reset_trigger();
    for seq in 0..=10u64 {
        meter.trigger(seq, seq as f64 * 1e-3, 1.0);
    }
    // Device time 10 ms reached: the shim closes the socket (end of stream, or a reset).
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    // The drop happens once: a reconnecting host is served.
    let mut again = TcpStream::connect(server.addr).expect("reconnect");
    again.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    again.write_all(b"*LANG?\n").expect("write");
    let mut reply = [0u8; 5];
    again.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, b"SCPI\n");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}
