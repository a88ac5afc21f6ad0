//! Fuzzes the ICRF frame decoder: arbitrary bytes as a request or a response frame must give a
//! frame or an error, never a panic, and never allocate past what the bytes hold.
#![no_main]

use gos_gateway::frame::{self, FrameKind, Request, Response};
use libfuzzer_sys::fuzz_target;

/// The gateway's default request-header limit.
const MAX_HEADER: u32 = 256 << 10;

fuzz_target!(|data: &[u8]| {
    if let Ok((request, used)) = frame::decode::<Request>(data, FrameKind::Request, MAX_HEADER) {
        assert!(used <= data.len());
        // What decodes re-encodes, and decodes to the same request.
        let bytes = frame::encode(FrameKind::Request, &request).expect("re-encode");
        let (again, _) =
            frame::decode::<Request>(&bytes, FrameKind::Request, MAX_HEADER).expect("re-decode");
        assert_eq!(again, request);
    }
    let _ = frame::decode::<Response>(data, FrameKind::Response, MAX_HEADER);
    // And the header alone, as the gateway decodes it after reading the prefix.
    let _ = frame::decode_header::<Request>(data);
});
