//! REST query strings as the gateway reads them: Go's url.Values decoding, pin options,
//! add parameters, the `?filter=` status and allocation filters and Go durations.
//! Besides "never panics", checks that what we print we can read back: pin options and
//! add parameters survive `to_query` -> `from_query`; a status filter's query string
//! reads back to at least the same statuses.
#![no_main]

use ipfs_cluster_api::{
    parse_go_duration, AddParams, PinOptions, PinTypeFilter, QueryParams, TrackerStatusFilter,
};
use ipfs_cluster_gateway::{backend::from_grpc, rest::query::Query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    let q = QueryParams::parse(s);
    // Go's Values.Encode output must decode to the same values.
    assert_eq!(QueryParams::parse(&q.encode()), q, "encode/parse of {s:?}");

    let gq = Query::parse(Some(s));
    let _ = gq.is_true("local");
    if let Ok(po) = gq.pin_options() {
        let again = PinOptions::from_query(&po.to_query())
            .unwrap_or_else(|e| panic!("to_query of {s:?} does not parse back: {e:?}"));
        assert_eq!(again.to_query(), po.to_query(), "pin options of {s:?}");
    }

    if let Ok(ap) = AddParams::from_query(s) {
        let again = AddParams::from_query(&ap.to_query())
            .unwrap_or_else(|e| panic!("add params of {s:?} do not parse back: {e:?}"));
        assert_eq!(again.to_query(), ap.to_query(), "add params of {s:?}");
    }

    // The Go client writes a mixed filter as every name sharing a bit with it, composites
    // included, so reading it back may widen it (as upstream) but never narrow it.
    let f = TrackerStatusFilter::parse(s);
    let back = TrackerStatusFilter::parse(&f.to_query_string());
    assert_eq!(
        back.0 & f.0,
        f.0,
        "status filter {s:?} narrowed to {back:?}"
    );
    let _ = from_grpc::status_filter(s);
    let _ = from_grpc::allocation_filter(s);
    let _ = PinTypeFilter::parse(s);
    let _ = parse_go_duration(s);
});
