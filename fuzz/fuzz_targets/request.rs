//! Every request line goes through `parse_request`: whatever the bytes, it returns a request or
//! one error line, and typed params decode or give `invalid params`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nanoecr_proto::jsonrpc::Outcome;
use nanoecr_proto::methods as m;
use nanoecr_proto::{codes, parse_request, Frame, LineDecoder};

fuzz_target!(|data: &[u8]| {
    let mut frames = Vec::new();
    let mut d = LineDecoder::new(nanoecr_proto::MAX_LINE_BYTES);
    d.push(data, &mut |f| frames.push(f));
    d.finish(&mut |f| frames.push(f));
    for f in frames {
        let Frame::Line(line) = f else { continue };
        match parse_request(&line) {
            Ok(r) => {
                let results = [
                    r.params::<m::NoParams>().err(),
                    r.params::<m::RunStartParams>().err(),
                    r.params::<m::RunAbortParams>().err(),
                    r.params::<m::SubscribeParams>().err(),
                    r.params::<m::RunsListParams>().err(),
                ];
                for e in results.into_iter().flatten() {
                    assert_eq!(e.code, codes::INVALID_PARAMS);
                }
            }
            Err(resp) => {
                let Outcome::Error(e) = &resp.outcome else { panic!("an error response") };
                assert!([codes::PARSE_ERROR, codes::INVALID_REQUEST].contains(&e.code));
                let out = resp.to_line();
                assert_eq!(out.matches('\n').count(), 1);
            }
        }
    }
});
