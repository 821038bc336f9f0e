//! The shim's instrument models over a real TCP socket on 127.0.0.1, with byte strings taken
//! from the instruments' manuals (cited at each assertion). The test plays the load frame: it
//! resets the wire and pulses it sample by sample through [`Meter::trigger`], so every reading
//! is deterministic and no assertion depends on the host keeping time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use smu_shim::{serve_tcp, Meter, MeterConfig, Model};

const R_OHM: f64 = 5e6;
const RATE_HZ: f64 = 1000.0;

struct Rig {
    meter: Arc<Meter>,
    stop: Arc<AtomicBool>,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Rig {
    fn new(model: Model) -> Self {
        let meter = Arc::new(Meter::new(MeterConfig {
            model,
            circuit_resistance_ohm: R_OHM,
            gate_on_frame_reset: true,
            ..MeterConfig::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let server = serve_tcp(meter.clone(), "127.0.0.1:0".parse().expect("addr"), stop.clone()).expect("listen");
        let writer = TcpStream::connect(server.addr).expect("connect");
        // Bounds a missing reply so a failing test ends instead of hanging.
        writer.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let reader = BufReader::new(writer.try_clone().expect("clone"));
        Self { meter, stop, reader, writer }
    }

    fn send(&mut self, msg: &str) {
        self.writer.write_all(msg.as_bytes()).expect("write");
        self.writer.write_all(b"\n").expect("write");
    }

    fn query(&mut self, msg: &str) -> String {
        self.send(msg);
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("reply");
        assert!(line.ends_with('\n'), "reply {line:?} to {msg:?} is not terminated");
        line.trim_end().to_string()
    }

    /// The frame's Modbus reset, once every message sent so far has been executed (`*OPC?`,
    /// IEEE 488.2 §12.5.3, answers only after them).
    fn frame_reset(&mut self) {
        assert_eq!(self.query("*OPC?"), "1");
        self.meter.reset_trigger();
    }

    /// Pulse the trigger wire once per frame sample `seq` with the pillar at `factor` × V/R.
    fn pulse(&self, seq: u64, factor: f64) {
        self.meter.trigger(seq, seq as f64 / RATE_HZ, factor);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn numbers(reply: &str) -> Vec<f64> {
    reply.split(',').map(|v| v.trim().parse::<f64>().unwrap_or_else(|_| panic!("number in {reply:?}"))).collect()
}

#[test]
fn k2450_identity_language_and_error_queue() {
    let mut k = Rig::new(Model::Keithley2450);
    // 2450 RM appendix B "Common commands", "*IDN?" (p. B-5): manufacturer, model, serial
    // number, firmware revision (the Rev. B example's "INC." left out, as later firmware does).
    assert_eq!(k.query("*IDN?"), "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b");
    // 2450 RM appendix B "*LANG" (p. B-5): the active command set.
    assert_eq!(k.query("*LANG?"), "SCPI");
    // The empty queue's text: SCPI-99 Vol. 2 §21.8 `0,"No error"`; the 2450's own page for
    // `:SYSTem:ERRor[:NEXT]?` is unverified (its `:SYSTem:EVENtlog:NEXT?`, RM p. 6-101, answers
    // `0,"No error;0,0,0"`).
    assert_eq!(k.query(":SYST:ERR?"), "0,\"No error\"");
    // SCPI-99 Vol. 2 §21.8: -113 undefined header, -222 data out of range (2450 RM §6
    // `:SOURce[1]:VOLTage`: −210 to 210 V), -109 missing parameter, -108 parameter not allowed,
    // -102 syntax error.
    k.send(":SOURce:VOLTage:BOGUS 1");
    k.send(":SOUR:VOLT 1000");
    k.send(":SENS:CURR:NPLC");
    k.send(":OUTP ON, OFF");
    k.send(":SOUR:VOLT# 1");
    assert_eq!(k.query(":SYST:ERR:COUN?"), "5");
    assert_eq!(k.query(":SYSTem:ERRor:NEXT?"), "-113,\"Undefined header\"");
    assert_eq!(k.query(":syst:err:next?"), "-222,\"Data out of range\"");
    assert_eq!(k.query(":SYST:ERR?"), "-109,\"Missing parameter\"");
    assert_eq!(k.query(":SYST:ERR?"), "-108,\"Parameter not allowed\"");
    assert_eq!(k.query(":SYST:ERR?"), "-102,\"Syntax error\"");
    assert_eq!(k.query(":SYST:ERR:COUN?"), "0");
    // IEEE 488.2 §11.5.1: the command errors set CME (bit 5), the range error EXE (bit 4).
    assert_eq!(k.query("*ESR?"), "48");
    assert_eq!(k.query("*ESR?"), "0");
    assert_eq!(k.query("*OPC?"), "1");
}

#[test]
fn k2450_long_short_forms_case_compound_messages_and_crlf() {
    let mut k = Rig::new(Model::Keithley2450);
    // SCPI-99 Vol. 1 §6.2.5: the short form, the long form, any letter case, optional nodes.
    k.send(":SOURce:VOLTage:LEVel:IMMediate:AMPLitude 2.5");
    assert_eq!(numbers(&k.query(":sour:volt?")), vec![2.5]);
    k.send("SOUR:VOLT 10 mV");
    assert_eq!(numbers(&k.query(":SOURCE:VOLTAGE?")), vec![0.01]);
    // SCPI-99 Vol. 1 §6.2.4: the header path of a compound message; `ILIM` continues from
    // `:SOUR:VOLT:`'s path and `*CLS` leaves it alone. Responses are joined by ';'
    // (IEEE 488.2 §8.4.1).
    assert_eq!(k.query(":SOUR:VOLT:RANG 20;ILIM 1e-5;*CLS;ILIM?;:SOUR:VOLT:RANG?"), "1.00000000E-05;2.00000000E+01");
    // A message may end in \r\n (the terminator is \n; the \r is stripped).
    k.writer.write_all(b":TRAC:ACT? \"defbuffer1\"\r\n").expect("write");
    let mut line = String::new();
    k.reader.read_line(&mut line).expect("reply");
    assert_eq!(line, "0\n");
    assert_eq!(k.query(":TRACe:ACTual? 'defbuffer1'"), "0");
    // 2450 RM §6 `:SENSe[1]:FUNCtion[:ON]`: a string parameter in either quote style.
    k.send(":SENS:FUNC 'CURR'");
    assert_eq!(k.query(":SENS:FUNC?"), "\"CURR:DC\"");
    assert_eq!(k.query(":SYST:ERR?"), "0,\"No error\"");
}

/// The set-up of SMU-CONTRACT.md ("Keithley 2450"), every line from 2450 RM §6.
fn k2450_external_setup(k: &mut Rig, count: u64) {
    for line in [
        "*RST",
        "*CLS",
        ":SOUR:FUNC VOLT",
        ":SOUR:VOLT:RANG 5",
        ":SOUR:VOLT 5",
        ":SOUR:VOLT:ILIM 1e-4",
        ":SENS:FUNC \"CURR\"",
        ":SENS:CURR:RANG 1e-4",
        ":SENS:CURR:NPLC 0.01",
        ":SENS:CURR:AZER OFF",
        ":TRAC:POIN 100000, \"defbuffer1\"",
        ":TRAC:CLE \"defbuffer1\"",
        ":DIG:LINE1:MODE TRIG, IN",
        ":TRIG:DIG1:IN:EDGE FALL",
        ":TRIG:LOAD \"Empty\"",
        ":TRIG:BLOC:BUFF:CLE 1, \"defbuffer1\"",
        ":TRIG:BLOC:WAIT 2, DIGIO1",
        ":TRIG:BLOC:MDIG 3, \"defbuffer1\", 1",
        &format!(":TRIG:BLOC:BRAN:COUN 4, {count}, 2"),
    ] {
        k.send(line);
    }
    assert_eq!(k.query(":SYST:ERR:NEXT?"), "0,\"No error\"");
}

#[test]
fn k2450_trigger_model_takes_one_reading_per_frame_sample_with_1_based_indices() {
    let mut k = Rig::new(Model::Keithley2450);
    k2450_external_setup(&mut k, 6);
    k.send(":OUTP ON");
    // Before :INIT the trigger model is idle: pulses take no reading.
    assert_eq!(k.query("*OPC?"), "1");
    k.pulse(0, 1.0);
    k.send(":INIT");
    assert_eq!(k.query(":TRIG:STAT?"), "WAITING;WAITING;2");
    // Armed before the frame's reset (SMU-CONTRACT.md "Alignment"): the frame's pulses of the
    // old run are not readings of the new one.
    k.pulse(7, 1.0);
    assert_eq!(k.query(":TRAC:ACT:END? \"defbuffer1\""), "0");
    k.frame_reset();
    let factors = [1.0, 0.99, 1.02, 50.0, 1.0];
    for (seq, f) in factors.iter().enumerate() {
        k.pulse(seq as u64, *f);
    }
    // 2450 RM §6 `:TRACe:ACTual:STARt?`/`:END?`: 1-based indices of the first and last reading.
    assert_eq!(k.query(":TRAC:ACT:STAR? \"defbuffer1\""), "1");
    assert_eq!(k.query(":TRACe:ACTual:END? \"defbuffer1\""), "5");
    assert_eq!(k.query(":TRAC:ACT? \"defbuffer1\""), "5");
    let v = numbers(&k.query(":TRAC:DATA? 1, 5, \"defbuffer1\", READ, REL, SOURSTAT"));
    assert_eq!(v.len(), 15);
    for (i, f) in factors.iter().enumerate() {
        let (reading, rel, stat) = (v[3 * i], v[3 * i + 1], v[3 * i + 2] as u32);
        // RM §8 `bufferVar.relativetimestamps`: relative to the first reading in the buffer.
        assert!((rel - i as f64 / RATE_HZ).abs() < 1e-9, "reading {i}: rel {rel}");
        if *f == 50.0 {
            // 50 × V/R = 50 µA is under the limit; the output still is not limited.
            assert!((reading - 5e-5).abs() < 1e-12);
        } else {
            assert!((reading - f * 5.0 / R_OHM).abs() < 1e-14, "reading {i}: {reading}");
        }
        // RM §8 `bufferVar.sourcestatuses`: bit 7 (128) output on; bit 5 (32) not set.
        assert_eq!(stat, 128);
    }
    // Index 0 does not exist in a 1-based buffer; neither does 6.
    k.send(":TRAC:DATA? 0, 5, \"defbuffer1\", READ");
    k.send(":TRAC:DATA? 1, 6, \"defbuffer1\", READ");
    assert_eq!(k.query(":SYST:ERR?"), "-222,\"Data out of range\"");
    assert_eq!(k.query(":SYST:ERR?"), "-222,\"Data out of range\"");
    // A current above the limit: the source is limited (SOURSTAT bit 5, 32) and reads the limit.
    k.pulse(5, 200.0);
    let v = numbers(&k.query(":TRAC:DATA? 6, 6, \"defbuffer1\", READ, SOURSTAT"));
    assert_eq!(v, vec![1e-4, 160.0]);
    // The branch counter has run out (6 readings): the model is idle, further pulses are lost.
    assert_eq!(k.query(":TRIG:STAT?"), "IDLE;IDLE;0");
    k.pulse(6, 1.0);
    assert_eq!(k.query(":TRAC:ACT:END? \"defbuffer1\""), "6");
    k.send(":ABOR;:OUTP OFF");
    assert_eq!(k.query(":OUTP?"), "0");
}

#[test]
fn k2450_overflow_reads_9_9e37() {
    let mut k = Rig::new(Model::Keithley2450);
    k2450_external_setup(&mut k, 10);
    // Limit 1 A on the 1 µA range: 10 µA is over range (105 % of the range), 9.9E37.
    k.send(":SOUR:VOLT:ILIM 1;:SENS:CURR:RANG 1e-6;:OUTP ON;:INIT");
    k.frame_reset();
    k.pulse(0, 10.0);
    let v = numbers(&k.query(":TRAC:DATA? 1, 1, \"defbuffer1\", READ, STAT"));
    assert_eq!(v[0], 9.9e37);
    // RM §8 `bufferVar.statuses`: questionable (2) and front terminal (8).
    assert_eq!(v[1], 10.0);
}

#[test]
fn k2450_other_command_sets_answer_only_ieee_common_commands() {
    let meter = Meter::new(MeterConfig { model: Model::Keithley2450, lang: "TSP".into(), ..MeterConfig::default() });
    assert_eq!(meter.handle("*LANG?"), Some(b"TSP".to_vec()));
    assert_eq!(meter.handle(":SOUR:VOLT?"), None);
    assert_eq!(meter.handle("*IDN?").map(|b| b.starts_with(b"KEITHLEY")), Some(true));
}

/// The set-up of SMU-CONTRACT.md ("Keysight B2900"), every line from the B2900 SCPI Command
/// Reference, chapter 4.
fn b2900_external_setup(b: &mut Rig, count: u64) {
    for line in [
        "*RST",
        "*CLS",
        ":SOUR:FUNC:MODE VOLT",
        ":SOUR:VOLT 5",
        ":SENS:FUNC \"CURR\"",
        ":SENS:CURR:PROT 1e-4",
        ":SENS:CURR:RANG:AUTO OFF",
        ":SENS:CURR:RANG 1e-4",
        ":SENS:CURR:NPLC 0.01",
        ":TRIG:SOUR EXT1",
        &format!(":TRIG:COUN {count}"),
        ":ARM:COUN 1",
        ":TRAC:FEED SENS",
        &format!(":TRAC:POIN {count}"),
        ":TRAC:FEED:CONT NEXT",
        ":FORM:DATA REAL,64",
        ":FORM:BORD NORM",
        ":FORM:ELEM:SENS CURR,TIME,STAT",
    ] {
        b.send(line);
    }
    assert_eq!(b.query(":SYST:ERR:NEXT?"), "+0,\"No error\"");
}

/// Read one IEEE 488.2 definite-length block (§8.7.9.2: `#`, one digit n, n digits of length,
/// the bytes) and the terminator after it.
fn read_block(b: &mut Rig) -> Vec<u8> {
    let mut head = [0u8; 2];
    b.reader.read_exact(&mut head).expect("block header");
    assert_eq!(head[0], b'#');
    let digits = usize::from(head[1] - b'0');
    let mut len = vec![0u8; digits];
    b.reader.read_exact(&mut len).expect("block length");
    let len: usize = std::str::from_utf8(&len).expect("ascii").parse().expect("length");
    let mut data = vec![0u8; len];
    b.reader.read_exact(&mut data).expect("block data");
    let mut term = [0u8; 1];
    b.reader.read_exact(&mut term).expect("terminator");
    assert_eq!(&term, b"\n");
    data
}

#[test]
fn b2900_identity_errors_and_ascii_format() {
    let mut b = Rig::new(Model::KeysightB2900);
    assert_eq!(b.query("*IDN?"), "Keysight Technologies,B2901A,MY12345678,3.4.2011.5100");
    // The B2900 prints the error code with its sign: CR chapter 5 "Error Messages" (p. 5-2,
    // Agilent edition 2), "the instrument responds with +0, "No error"" when the queue is empty
    // (whether a space follows the comma on the wire is unverified; the shim sends none).
    assert_eq!(b.query(":SYST:ERR?"), "+0,\"No error\"");
    b.send(":TRAC:BOGUS?");
    assert_eq!(b.query(":SYST:ERR?"), "-113,\"Undefined header\"");
    b.send(":TRAC:POIN 100001");
    assert_eq!(b.query(":SYST:ERR?"), "-222,\"Data out of range\"");
    // ASCII data: NR3 values, comma-separated, in the fixed element order whatever the order
    // given (CR §4 `:FORMat:ELEMents:SENSe`).
    b2900_external_setup(&mut b, 3);
    b.send(":FORM:DATA ASC;:FORM:ELEM:SENS STAT,CURR;:OUTP ON;:INIT");
    b.frame_reset();
    b.pulse(0, 1.0);
    assert_eq!(b.query(":TRAC:POIN:ACT?"), "1");
    assert_eq!(b.query(":TRAC:DATA? 0,1"), "+1.000000E-06,+0.000000E+00");
    assert_eq!(b.query(":FORM:ELEM:SENS?"), "CURR,STAT");
}

#[test]
fn b2900_binary_trace_with_status_word_and_byte_order() {
    let mut b = Rig::new(Model::KeysightB2900);
    b2900_external_setup(&mut b, 4);
    b.send(":OUTP ON;:INIT");
    b.frame_reset();
    b.pulse(0, 1.0);
    b.pulse(1, 1.5);
    b.pulse(2, 1000.0); // 1 mA wanted, limited to 100 µA: compliance.
    assert_eq!(b.query(":TRAC:POIN:ACT?"), "3");
    b.send(":TRAC:DATA? 0,3");
    let data = read_block(&mut b);
    // 3 readings × (current, time, status) × 8 bytes (CR §1 "Data Output Format", REAL,64).
    assert_eq!(data.len(), 72);
    let v: Vec<f64> = data.chunks(8).map(|c| f64::from_be_bytes(c.try_into().expect("8 bytes"))).collect();
    assert!((v[0] - 1e-6).abs() < 1e-15);
    assert!((v[3] - 1.5e-6).abs() < 1e-15);
    assert_eq!(v[6], 1e-4);
    // Status word bits 1–2: compliance (CR §1 Table 1-2); bit 1 set here.
    assert_eq!((v[2], v[5], v[8]), (0.0, 0.0, 2.0));
    // Timestamps step by the frame's sample period.
    assert!(((v[4] - v[1]) - 1e-3).abs() < 1e-9 && ((v[7] - v[4]) - 1e-3).abs() < 1e-9);
    // SWAPped: byte 8 first.
    b.send(":FORM:BORD SWAP;:TRAC:DATA? 1,1");
    let data = read_block(&mut b);
    assert_eq!(data.len(), 24);
    assert!((f64::from_le_bytes(data[..8].try_into().expect("8 bytes")) - 1.5e-6).abs() < 1e-15);
    // Beyond the stored data.
    b.send(":TRAC:DATA? 2,2");
    assert_eq!(b.query(":SYST:ERR?"), "-222,\"Data out of range\"");
    // The fourth trigger ends the sequence; a fifth pulse is not a reading.
    b.pulse(3, 1.0);
    b.pulse(4, 1.0);
    assert_eq!(b.query(":TRAC:POIN:ACT?"), "4");
}

#[test]
fn b2900_overflow_sets_bit_13_and_reads_9_9e37() {
    let mut b = Rig::new(Model::KeysightB2900);
    b2900_external_setup(&mut b, 1);
    b.send(":SENS:CURR:PROT 1;:SENS:CURR:RANG 1e-6;:FORM:DATA ASC;:OUTP ON;:INIT");
    b.frame_reset();
    b.pulse(0, 10.0);
    let v = numbers(&b.query(":TRAC:DATA?"));
    assert_eq!((v[0], v[2]), (9.9e37, 8192.0));
}

/// Poll `query` until `done` holds: waits on a condition, bounded for a loaded machine.
fn wait_until(rig: &mut Rig, query: &str, done: impl Fn(&str) -> bool) -> String {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = rig.query(query);
        if done(&r) {
            return r;
        }
        assert!(std::time::Instant::now() < end, "gave up waiting on {query:?} (last {r:?})");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn k2450_timer_trigger_paces_readings_from_its_own_clock() {
    let mut k = Rig::new(Model::Keithley2450);
    k2450_external_setup(&mut k, 3);
    // SMU-CONTRACT.md timer variant; 2450 RM §6 `:TRIGger:TIMer<n>:…` and WAIT on TIMer1.
    for line in [
        ":DIG:LINE1:MODE DIG, IN",
        ":TRIG:TIM1:DEL 2e-3",
        ":TRIG:TIM1:COUN 0",
        ":TRIG:TIM1:STAR:STIM NONE",
        ":TRIG:TIM1:STAR:GEN OFF",
        ":TRIG:TIM1:STAT ON",
        ":TRIG:BLOC:WAIT 2, TIMER1",
        ":OUTP ON",
        ":INIT",
    ] {
        k.send(line);
    }
    assert_eq!(k.query(":SYST:ERR?"), "0,\"No error\"");
    // The frame's wire does not pace a timer-triggered model (line 1 is no trigger input now).
    k.frame_reset();
    k.pulse(0, 1.0);
    wait_until(&mut k, ":TRIG:STAT?", |r| r == "IDLE;IDLE;0");
    assert_eq!(k.query(":TRAC:ACT? \"defbuffer1\""), "3");
    let v = numbers(&k.query(":TRAC:DATA? 1, 3, \"defbuffer1\", REL"));
    // Timer expiries are exact multiples of the delay on the meter's clock.
    assert!((v[1] - 2e-3).abs() < 1e-9 && (v[2] - 4e-3).abs() < 1e-9, "{v:?}");
}

#[test]
fn b2900_timer_trigger_takes_the_first_reading_at_init() {
    let mut b = Rig::new(Model::KeysightB2900);
    b2900_external_setup(&mut b, 3);
    b.send(":TRIG:SOUR TIM;:TRIG:TIM 2e-3;:FORM:DATA ASC;:FORM:ELEM:SENS TIME;:OUTP ON;:INIT");
    wait_until(&mut b, ":TRAC:POIN:ACT?", |r| r == "3");
    let v = numbers(&b.query(":TRAC:DATA? 0,3"));
    // CR §4 `:TRIGger:TIMer`: the interval between triggers; TIME counts from :INIT here.
    assert!(v[0].abs() < 1e-9 && (v[1] - 2e-3).abs() < 1e-9 && (v[2] - 4e-3).abs() < 1e-9, "{v:?}");
}
