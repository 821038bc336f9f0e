//! One test per class of config error, and the example configs in config/ parse and validate.

use super::*;

const DEMO: &str = include_str!("../../../../config/demo.toml");

fn err(text: &str) -> ConfigError {
    parse(text, Some(Path::new("test.toml"))).expect_err("config should be rejected")
}

#[test]
fn demo_config_validates_to_the_paper_test() {
    let c = parse(DEMO, None).expect("demo config is valid");
    assert_eq!(c.load_function.total_s(), 32.0);
    assert_eq!(c.load_function.peak_load_un(), 6000.0);
    assert_eq!(c.expected_samples(), 32_000);
    assert_eq!(c.raw.bias.voltage_v, 5.0);
    assert_eq!(c.raw.simulation.seed, 42);
    assert!((c.pillar.stress_mpa(6000.0) - 1909.86).abs() < 0.1);
}

#[test]
fn every_example_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut n = 0;
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("config dir readable") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "toml") && p.file_name().is_some_and(|f| f != "nanoecrd.toml")
            {
                load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
    }
    assert!(n >= 14, "expected demo + 13 campaign configs, found {n}");
}

#[test]
fn syntax_error_names_the_line() {
    let e = err("[sample\nmaterial = 1\n");
    assert_eq!(e.kind, ConfigErrorKind::Syntax);
    assert_eq!(e.line, Some(1));
    assert!(e.to_string().starts_with("test.toml:1:"), "{e}");
}

#[test]
fn unknown_key_is_rejected_with_its_line() {
    let text = DEMO.replace("max_displacement_nm = 600.0", "max_displacement_nm = 600.0\nmax_lod_un = 5.0");
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::UnknownKey);
    assert_eq!(e.key, "limits.max_lod_un");
    let line = text.lines().position(|l| l.starts_with("max_lod_un")).expect("line") + 1;
    assert_eq!(e.line, Some(line));
    assert!(e.expected.contains("max_load_un"), "{e}");
    // Not offered: a removed key, refused when set (limits.rs).
    assert!(!e.expected.contains("missed_deadline_fraction"), "{e}");
}

#[test]
fn a_removed_simulation_key_names_what_replaced_it() {
    let text = DEMO.replace("[simulation]\n", "[simulation]\np_fraction_load = 0.7\n");
    assert_ne!(text, DEMO, "the demo has a [simulation] table");
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::UnknownKey);
    assert_eq!(e.key, "simulation.p_fraction_load");
    assert!(e.message.contains("was removed"), "{e}");
    assert!(e.expected.contains("p_fraction_stress_rate_mpa_per_s"), "{e}");
}

#[test]
fn wrong_type_names_key_value_and_unit() {
    let text = DEMO.replace("voltage_v = 5.0", "voltage_v = \"five\"");
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::WrongType);
    assert_eq!(e.key, "bias.voltage_v");
    assert_eq!(e.value.as_deref(), Some("\"five\""));
    assert!(e.expected.contains('V'), "{e}");
}

#[test]
fn missing_key_is_named() {
    let text = DEMO.replace("diameter_um = 2.0\n", "");
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::Missing);
    assert_eq!(e.key, "sample.diameter_um");
    assert!(e.expected.contains("µm"), "{e}");
}

#[test]
fn missing_trapezoid_key_is_named() {
    let text = DEMO.replace("hold_s = 10.0\n", "");
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::Missing);
    assert_eq!(e.key, "load_function.hold_s");
}

#[test]
fn negative_duration_is_out_of_range_with_unit() {
    let text = DEMO.replace("unload_s = 10.0", "unload_s = -3.0");
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::OutOfRange);
    assert_eq!(e.key, "load_function.unload_s");
    assert_eq!(e.value.as_deref(), Some("-3"));
    assert!(e.expected.ends_with(" s"), "{e}");
    let line = text.lines().position(|l| l.starts_with("unload_s")).expect("line") + 1;
    assert_eq!(e.line, Some(line));
}

#[test]
fn zero_rate_is_out_of_range() {
    let e = err(&DEMO.replace("rate_hz = 1000", "rate_hz = 0"));
    assert_eq!(e.kind, ConfigErrorKind::OutOfRange);
    assert_eq!(e.key, "acquisition.rate_hz");
    assert!(e.expected.contains("Hz"));
}

#[test]
fn rates_up_to_100_khz_are_accepted_and_above_rejected() {
    let c = parse(&DEMO.replace("rate_hz = 1000", "rate_hz = 100000"), None).expect("100 kHz accepted");
    assert_eq!(c.expected_samples(), 3_200_000);
    let e = err(&DEMO.replace("rate_hz = 1000", "rate_hz = 100001"));
    assert_eq!(e.key, "acquisition.rate_hz");
}

#[test]
fn peak_above_max_load_is_inconsistent() {
    let e = err(&DEMO.replace("peak_load_un = 6000.0", "peak_load_un = 9000.0"));
    assert_eq!(e.kind, ConfigErrorKind::Inconsistent);
    assert_eq!(e.key, "load_function.peak_load_un");
    assert!(e.to_string().contains("8000 µN"), "{e}");
}

#[test]
fn explicit_segments_build_the_program_and_errors_point_into_them() {
    let base = DEMO.replace(
        "peak_load_un = 6000.0\nload_s = 10.0\nhold_s = 10.0\nunload_s = 10.0\n",
        "[[load_function.segments]]\nkind = \"load\"\nduration_s = 5.0\ntarget_load_un = 3000.0\n\n\
         [[load_function.segments]]\nkind = \"hold\"\nduration_s = 2.0\n\n\
         [[load_function.segments]]\nkind = \"unload\"\nduration_s = 4.0\n",
    );
    let c = parse(&base, None).expect("segments valid");
    assert_eq!(c.load_function.segments.len(), 3);
    assert_eq!(c.load_function.total_s(), 13.0);
    assert_eq!(c.load_function.setpoint_at(8.0), (Segment::Hold, 3000.0));

    let bad = base.replace("duration_s = 2.0", "duration_s = 0.0");
    let e = err(&bad);
    assert_eq!(e.key, "load_function.segments[1].duration_s");
    let line = bad.lines().position(|l| l == "duration_s = 0.0").expect("line") + 1;
    assert_eq!(e.line, Some(line));
}

#[test]
fn both_forms_of_load_function_are_inconsistent() {
    let text = DEMO.replace(
        "unload_s = 10.0",
        "unload_s = 10.0\nsegments = [{ kind = \"load\", duration_s = 1.0, target_load_un = 10.0 }]",
    );
    assert_eq!(err(&text).kind, ConfigErrorKind::Inconsistent);
}

#[test]
fn unknown_template_placeholder_is_rejected() {
    let e = err(&DEMO.replace("{seed}.h5", "{sed}.h5"));
    assert_eq!(e.key, "output.file_template");
    assert!(e.message.contains("{sed}"));
}

#[test]
fn unreadable_file_is_an_io_error() {
    let e = load(Path::new("/nonexistent/nanoecr.toml")).expect_err("no such file");
    assert_eq!(e.kind, ConfigErrorKind::Io);
    assert!(e.to_string().contains("/nonexistent/nanoecr.toml"));
}

#[test]
fn file_name_fills_the_template() {
    let c = parse(DEMO, None).expect("valid");
    assert_eq!(c.file_name("20261125T100000Z"), "20261125T100000Z_Zr55Cu30Ni5Al10_6000uN_seed42.h5");
}

#[test]
fn set_seed_updates_the_stored_source() {
    let mut c = parse(DEMO, None).expect("valid");
    c.set_seed(7);
    assert_eq!(c.raw.simulation.seed, 7);
    let again = parse(&c.source_toml, None).expect("edited source still valid");
    assert_eq!(again.raw.simulation.seed, 7);
}

#[test]
fn merge_gap_defaults_and_out_of_range_is_named() {
    let c = parse(DEMO, None).expect("demo");
    assert_eq!(c.raw.detection.merge_gap_s, 9e-4, "default when the key is absent");
    let text = format!("{DEMO}\n[detection]\nmerge_gap_s = 0.5\n");
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::OutOfRange);
    assert_eq!(e.key, "detection.merge_gap_s");
}

#[test]
fn min_duration_defaults_and_out_of_range_is_named() {
    let c = parse(DEMO, None).expect("demo");
    assert_eq!(c.raw.detection.min_duration_s, 2e-4, "default when the key is absent");
    let text = format!("{DEMO}\n[detection]\nmin_duration_s = 0.002\n");
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::OutOfRange);
    assert_eq!(e.key, "detection.min_duration_s");
    assert!(e.to_string().contains("0.002"), "{e}");
}

#[test]
fn the_removed_deadline_budget_key_names_its_replacements() {
    let e = err(&DEMO.replace("[limits]\n", "[limits]\nmissed_deadline_fraction = 0.05\n"));
    assert_eq!(e.key, "limits.missed_deadline_fraction");
    let text = e.to_string();
    for replacement in ["limits.max_late_fraction", "limits.max_command_gap_ms", "limits.max_tracking_error_un"] {
        assert!(text.contains(replacement), "{text}");
    }
}

#[test]
fn timing_interlocks_have_defaults_can_be_switched_off_and_reject_nonsense() {
    let c = parse(DEMO, None).expect("demo");
    let l = &c.raw.limits;
    assert_eq!(
        (l.max_command_gap_ms, l.max_late_fraction, l.late_window_s, l.max_tracking_error_un, l.max_tracking_error_ms),
        (20.0, 0.2, 1.0, 500.0, 50.0)
    );
    let off =
        parse(&DEMO.replace("[limits]\n", "[limits]\nmax_command_gap_ms = inf\nmax_tracking_error_un = inf\n"), None)
            .expect("inf switches an interlock off");
    assert!(off.raw.limits.max_command_gap_ms.is_infinite() && off.raw.limits.max_tracking_error_un.is_infinite());
    for (line, key, unit) in [
        ("max_command_gap_ms = 0.0", "limits.max_command_gap_ms", "ms"),
        ("max_command_gap_ms = -inf", "limits.max_command_gap_ms", "ms"),
        ("max_tracking_error_un = -5.0", "limits.max_tracking_error_un", "µN"),
        ("max_tracking_error_ms = inf", "limits.max_tracking_error_ms", "ms"),
        ("max_late_fraction = 1.5", "limits.max_late_fraction", ""),
        ("late_window_s = 0.0", "limits.late_window_s", "s"),
    ] {
        let e = err(&DEMO.replace("[limits]\n", &format!("[limits]\n{line}\n")));
        assert_eq!(e.key, key, "{line}: {e}");
        assert!(e.expected.contains(unit), "{line}: {e}");
    }
}

#[test]
fn the_meter_lag_bound_defaults_to_250_ms_and_bad_values_name_key_and_unit() {
    let c = parse(DEMO, None).expect("demo");
    assert_eq!(c.raw.limits.max_meter_lag_ms, 250.0, "default when the key is absent");
    let set = parse(&DEMO.replace("[limits]\n", "[limits]\nmax_meter_lag_ms = 1000.0\n"), None).expect("in range");
    assert_eq!(set.raw.limits.max_meter_lag_ms, 1000.0);
    for value in ["0.0", "19.9", "2001.0", "inf", "nan", "-250.0"] {
        let e = err(&DEMO.replace("[limits]\n", &format!("[limits]\nmax_meter_lag_ms = {value}\n")));
        assert_eq!(e.key, "limits.max_meter_lag_ms", "{value}: {e}");
        assert_eq!(e.kind, ConfigErrorKind::OutOfRange, "{value}: {e}");
        assert!(e.expected.contains("20 to 2000 ms"), "{value}: {e}");
    }
}

#[test]
fn acquisition_cpu_must_exist_on_this_machine() {
    let n = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let ok = parse(&DEMO.replace("[acquisition]\n", "[acquisition]\ncpu = 0\n"), None).expect("CPU 0 exists");
    assert_eq!(ok.raw.acquisition.cpu, Some(0));
    let e = err(&DEMO.replace("[acquisition]\n", &format!("[acquisition]\ncpu = {n}\n")));
    assert_eq!(e.key, "acquisition.cpu");
    assert!(e.to_string().contains(&format!("0 to {}", n - 1)), "{e}");
}

#[test]
fn the_wakeup_period_of_a_batching_loop_is_bounded_and_named_with_its_unit() {
    let ok = parse(&DEMO.replace("[acquisition]\n", "[acquisition]\nwakeup_period_us = 100\n"), None).expect("100 µs");
    assert_eq!(ok.raw.acquisition.wakeup_period_us, 100.0);
    let dflt = parse(DEMO, None).expect("demo");
    assert_eq!(dflt.raw.acquisition.wakeup_period_us, DEFAULT_WAKEUP_PERIOD_US);
    for bad in ["50.0", "1000.5", "nan", "-200.0"] {
        let e = err(&DEMO.replace("[acquisition]\n", &format!("[acquisition]\nwakeup_period_us = {bad}\n")));
        assert_eq!(e.key, "acquisition.wakeup_period_us", "{bad}: {e}");
        assert!(e.expected.contains("100 to 1000 µs"), "{bad}: {e}");
    }
}

#[test]
fn the_spin_window_is_optional_and_bounded_by_the_wake_up_period() {
    let with = |rate_hz: &str, spin: &str| {
        DEMO.replace("rate_hz = 1000\n", &format!("rate_hz = {rate_hz}\nspin_us = {spin}\n"))
    };
    assert_eq!(parse(DEMO, None).expect("demo").raw.acquisition.spin_us, None);
    let ok = parse(&with("100000", "150"), None).expect("150 µs of 400");
    assert_eq!(ok.raw.acquisition.spin_us, Some(150.0));
    parse(&with("10000", "75"), None).expect("75 µs of 100");
    // 100 kHz with 400 µs wake-ups: up to 300 µs; 10 kHz (one tick per 100 µs): up to 75 µs;
    // 1 kHz: three quarters of 1 ms would be 750 µs, the cap is 500.
    for (rate_hz, spin, max) in
        [("100000", "301", "0 to 300 µs"), ("10000", "76", "0 to 75 µs"), ("1000", "501", "0 to 500 µs")]
    {
        let e = err(&with(rate_hz, spin));
        assert_eq!(e.key, "acquisition.spin_us", "{rate_hz} Hz, {spin} µs: {e}");
        assert!(e.expected.contains(max), "{rate_hz} Hz, {spin} µs: {e}");
    }
    for bad in ["-1.0", "nan", "inf"] {
        assert_eq!(err(&with("1000", bad)).key, "acquisition.spin_us", "{bad}");
    }
}

#[test]
fn a_program_longer_than_a_day_is_refused_naming_the_duration_key() {
    let e = err(&DEMO.replace("\nload_s = 10.0", "\nload_s = 1e9"));
    assert_eq!(e.kind, ConfigErrorKind::OutOfRange);
    assert_eq!(e.key, "load_function.load_s");
    assert_eq!(e.line, DEMO.lines().position(|l| l.starts_with("load_s")).map(|i| i + 1));
    assert!(e.to_string().contains("86400 s"), "{e}");
    // Just inside the limit is accepted: 2 s settle + 86 000 + 388 + 10 = 86 400 s.
    let ok = DEMO.replace("\nload_s = 10.0", "\nload_s = 86000.0").replace("hold_s = 10.0", "hold_s = 388.0");
    assert_eq!(parse(&ok, None).expect("24 h is allowed").load_function.total_s(), 86_400.0);
    // Explicit segments: the longest segment is named.
    let segs = DEMO.replace(
        "peak_load_un = 6000.0\nload_s = 10.0\nhold_s = 10.0\nunload_s = 10.0",
        "[[load_function.segments]]\nkind = \"load\"\nduration_s = 5.0\ntarget_load_un = 100.0\n\
         [[load_function.segments]]\nkind = \"hold\"\nduration_s = 1e7\n",
    );
    let e = err(&segs);
    assert_eq!(e.key, "load_function.segments[1].duration_s", "{e}");
}

#[test]
fn too_many_samples_are_refused_naming_the_rate() {
    // 10 h at 100 kHz: 3.6e9 samples.
    let text = DEMO.replace("\nload_s = 10.0", "\nload_s = 36000.0").replace("rate_hz = 1000", "rate_hz = 100000");
    let e = err(&text);
    assert_eq!(e.key, "acquisition.rate_hz", "{e}");
    assert!(e.to_string().contains("400000000 samples"), "{e}");
}

#[test]
fn config_text_over_one_mib_is_refused_before_parsing() {
    let mut text = DEMO.to_string();
    text.push_str(&"#".repeat(MAX_CONFIG_BYTES as usize));
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::Io);
    assert!(e.to_string().contains("1048576-byte limit"), "{e}");
}

#[test]
fn an_unclosed_array_or_string_is_reported_where_it_opens() {
    let text = DEMO.replace("peak_load_un = 6000.0", "peak_load_un = [6000");
    let e = err(&text);
    let line = DEMO.lines().position(|l| l.starts_with("peak_load_un")).map(|i| i + 1);
    assert_eq!(e.line, line, "{e}");
    assert_eq!(e.key, "load_function.peak_load_un", "{e}");
    let e = err(&DEMO.replace("peak_load_un = 6000.0", "peak_load_un = \"\"\"6000"));
    assert_eq!(e.line, line, "{e}");
    // One line: toml's "\nexpected …" continuation is folded in.
    assert!(!e.to_string().contains('\n'), "{e}");
}

#[test]
fn messages_use_no_rust_type_names_and_say_one_of_once() {
    let e = err(&DEMO.replace("max_load_un", "max_lod_un"));
    assert!(e.to_string().contains("(expected one of `max_load_un`"), "{e}");
    assert!(!e.to_string().contains("one of one of"), "{e}");
    let e = err(&DEMO.replace("rate_hz = 1000", "rate_hz = \"fast\""));
    assert!(e.to_string().contains("(expected a number in Hz)"), "{e}");
    let e = err(&DEMO.replace("seed = 42", "seed = -1"));
    assert!(e.to_string().contains("a whole number ≥ 0"), "{e}");
    let no_limits = DEMO.replace("[limits]\nmax_load_un = 8000.0\nmax_displacement_nm = 600.0\n", "");
    let e = err(&format!("limits = 5\n{no_limits}"));
    assert!(e.to_string().contains("(expected a table)"), "{e}");
    for internal in ["LimitsConfig", "f64", "u64", "struct "] {
        assert!(!e.to_string().contains(internal), "{e}");
    }
}

const HIL_B2900: &str = include_str!("../../../../config/hil-b2900.toml");

#[test]
fn a_real_meter_model_bounds_the_run_and_the_integration_time_with_the_line_of_the_key() {
    let c = parse(HIL_B2900, None).expect("the B2900 example is valid");
    // 2 s settle + 30 s program + 1.5 s longest safe unload (3000 µN at 2000 µN/s) + 1 s.
    assert_eq!(c.smu_readings_needed(), 34_500);
    // 120 s at 1 kHz cannot fit the B2900's 100 000-reading trace buffer.
    let long = HIL_B2900.replace("hold_s = 10.0", "hold_s = 120.0");
    let e = err(&long);
    assert_eq!((e.kind, e.key.as_str()), (ConfigErrorKind::Inconsistent, "hardware.smu.model"));
    assert!(e.to_string().contains("keysight-b2900") && e.expected.contains("100000 samples"), "{e}");
    assert_eq!(e.line, HIL_B2900.lines().position(|l| l.starts_with("model = ")).map(|i| i + 1));
    // 0.1 PLC is 2 ms at 50 Hz: longer than the 1 ms period.
    let e = err(&HIL_B2900.replace("nplc = 0.01", "nplc = 0.1"));
    assert_eq!(e.key, "hardware.smu.nplc");
    assert!(e.to_string().contains("2.000 ms") && e.to_string().contains("PLC"), "{e}");
}

#[test]
fn an_unknown_table_is_named_once_not_twice() {
    // `[biass]` was reported as `biass.biass`, a key that exists nowhere in the file.
    let text = DEMO.replace("[bias]\n", "[biass]\n");
    assert_ne!(text, DEMO);
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::UnknownKey);
    assert_eq!(e.key, "biass", "{e}");
    assert_eq!(e.line, Some(text.lines().position(|l| l == "[biass]").expect("header") + 1));
    // A misspelt sub-table keeps its parent: `[hardware.smuu]`, not `hardware.smuu.smuu`.
    let text = DEMO.replace("[hardware]\n", "[hardware]\n[hardware.smuu]\nmodel = \"keithley-2450\"\n");
    let e = err(&text);
    assert_eq!(e.kind, ConfigErrorKind::UnknownKey);
    assert_eq!(e.key, "hardware.smuu", "{e}");
}

#[test]
fn a_unit_typo_names_the_key_with_the_right_unit() {
    for (from, to, typo, right, unit) in [
        ("peak_load_un = 6000.0", "peak_load_mn = 6.0", "peak_load_mn", "peak_load_un", "µN"),
        ("voltage_v = 5.0", "voltage_mv = 5000.0", "voltage_mv", "voltage_v", "V"),
        ("rate_hz = 1000", "rate_khz = 1", "rate_khz", "rate_hz", "Hz"),
    ] {
        let text = DEMO.replace(from, to);
        assert_ne!(text, DEMO, "{from}");
        let e = err(&text);
        assert_eq!(e.kind, ConfigErrorKind::UnknownKey, "{e}");
        assert!(e.key.ends_with(typo), "{e}");
        assert!(e.expected.contains(&format!("did you mean `{right}` (in {unit})")), "{e}");
    }
    // No guess when nothing shares the stem.
    let e = err(&DEMO.replace("max_displacement_nm = 600.0", "max_displacement_nm = 600.0\nmax_lod_un = 5.0"));
    assert!(!e.expected.contains("did you mean"), "{e}");
}

#[test]
fn a_range_is_written_as_an_operator_writes_it() {
    // `bias.compliance_a` accepts 1e-12 to 1 A (docs/config.md); the message said 0.000000000001.
    let e = err(&DEMO.replace("compliance_a = 1e-4", "compliance_a = 5.0"));
    assert_eq!(e.kind, ConfigErrorKind::OutOfRange);
    assert_eq!(e.expected, "1e-12 to 1 A", "{e}");
    assert_eq!(check::num(100000.0), "100000");
    assert_eq!(check::num(0.5), "0.5");
    assert_eq!(check::num(0.0), "0");
}
