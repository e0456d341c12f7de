//! Any bytes, under any of the Content-Types callers send, through both envelope parsers: they
//! must return Ok or Err, never panic, hang or blow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prefront::soap::envelope::{parse_call, parse_his_answer};

const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("text/xml; charset=utf-8"),
    Some("application/soap+xml; charset=GBK"),
    Some("text/xml; charset=gb2312"),
];

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.split_first() {
        Some((b, rest)) => (CONTENT_TYPES[*b as usize % CONTENT_TYPES.len()], rest),
        None => (None, data),
    };
    let _ = parse_call(body, ct);
    let _ = parse_his_answer(body, ct);
});
