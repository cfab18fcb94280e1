#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::test_support::*;
use bytes::Bytes;
use gatehouse_listener::body::{BodyFailure, failure};
use serde_json::json;

fn instance(config: Value) -> Arc<dyn Plugin> {
    let stored = Factory.validate(config).unwrap();
    Factory.build(&stored).unwrap()
}

async fn run(p: &Arc<dyn Plugin>, req: &mut ProxyRequest) -> Flow {
    let snap = snapshot(&[]);
    let mut ctx = ctx(&snap);
    p.access(&mut ctx, req).await.unwrap()
}

#[test]
fn defaults_units_and_bad_configs() {
    assert_eq!(
        Factory.validate(json!({})).unwrap(),
        json!({"allowed_payload_size": 128, "size_unit": "megabytes", "require_content_length": false})
    );
    assert_eq!(
        (Factory.name(), Factory.priority()),
        ("request-size-limiting", 951)
    );
    let err = |c: Value| Factory.validate(c).unwrap_err().into_value();
    assert_eq!(
        err(json!({"size_unit": "gigabytes"}))["size_unit"],
        "expected one of: megabytes, kilobytes, bytes"
    );
    assert!(
        err(json!({"allowed_payload_size": -1}))
            .get("allowed_payload_size")
            .is_some()
    );
    assert_eq!(err(json!({"other": 1}))["other"], "unknown field");
    let (c, _) = parse(json!({"allowed_payload_size": 3, "size_unit": "kilobytes"})).unwrap();
    assert_eq!(c.max, 3 * 1024);
    let (c, _) = parse(json!({"allowed_payload_size": 2})).unwrap();
    assert_eq!(c.max, 2 << 20);
}

#[tokio::test]
async fn an_announced_length_over_the_limit_is_refused_before_reading() {
    let p = instance(json!({"allowed_payload_size": 10, "size_unit": "bytes"}));
    let mut at_limit = request("POST", "/", &[("content-length", "10")], "0123456789");
    continued(run(&p, &mut at_limit).await).await;
    let mut over = request(
        "POST",
        "/",
        &[("content-length", "11"), ("accept", "application/json")],
        "01234567890",
    );
    let resp = responded(run(&p, &mut over).await);
    assert_eq!(resp.status(), 413);
    assert_eq!(
        body_json(resp.into_body()).await["message"],
        "Request size limit exceeded"
    );
    // A client waiting for 100-continue is told 417, as by Kong.
    let mut waiting = request(
        "POST",
        "/",
        &[("content-length", "11"), ("expect", "100-continue")],
        "01234567890",
    );
    assert_eq!(responded(run(&p, &mut waiting).await).status(), 417);
}

#[tokio::test]
async fn an_unannounced_body_is_cut_at_the_limit_as_it_streams() {
    let p = instance(json!({"allowed_payload_size": 10, "size_unit": "bytes"}));
    let mut small = request("POST", "/", &[], "0123456789");
    continued(run(&p, &mut small).await).await;
    assert_eq!(
        body_bytes(std::mem::replace(&mut small.body, empty_body())).await,
        Bytes::from_static(b"0123456789")
    );

    let mut big = request("POST", "/", &[], "0123456789x");
    continued(run(&p, &mut big).await).await;
    let err = big.body.collect().await.expect_err("the body is cut");
    assert_eq!(failure(&*err), BodyFailure::TooLarge);

    // require_content_length refuses it instead.
    let strict = instance(json!({"require_content_length": true}));
    let mut chunked = request("POST", "/", &[], "abc");
    let resp = responded(run(&strict, &mut chunked).await);
    assert_eq!(resp.status(), 411);
}
