//! Micro-benchmarks of the token hot paths without HTTP: minting a JWT with each signing
//! algorithm, and checking one (the work of an introspection cache miss).
//!
//! Run with `cargo bench -p gatehouse-identity --bench jwt`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_core::identity::SigningAlgorithm;
use gatehouse_identity::jwt;
use gatehouse_identity::keys::{self, MasterKey};
use std::hint::black_box;
use uuid::Uuid;

const ALGORITHMS: [SigningAlgorithm; 5] = [
    SigningAlgorithm::RS256,
    SigningAlgorithm::PS256,
    SigningAlgorithm::ES256,
    SigningAlgorithm::EdDSA,
    SigningAlgorithm::RS512,
];

/// The claim set of the seed's walkthrough token: registered claims, a scope and one custom claim.
fn claims() -> serde_json::Value {
    serde_json::json!({
        "aud": ["http://myhttpbin.dev"],
        "client_id": "0oa5ixv3nbhk8mqc",
        "exp": 1_900_000_300,
        "iat": 1_900_000_000,
        "iss": "http://127.0.0.1:8002/a1b2c3d4e5f6g7h8",
        "jti": Uuid::now_v7().to_string(),
        "nbf": 1_900_000_000,
        "scope": "my-scope",
        "sub": "0oa5ixv3nbhk8mqc",
        "test-claim": "test",
    })
}

fn mint_and_verify(c: &mut Criterion) {
    let master = MasterKey::parse(&"42".repeat(32)).unwrap();
    let claims = claims();
    let mut mint = c.benchmark_group("mint");
    let mut keys = Vec::new();
    for alg in ALGORITHMS {
        let (_, key) = keys::generate(&master, Uuid::new_v4(), alg).unwrap();
        mint.bench_function(alg.as_str(), |b| {
            b.iter(|| jwt::sign(black_box(&key), black_box(&claims)).unwrap())
        });
        keys.push(key);
    }
    mint.finish();

    let mut verify = c.benchmark_group("verify");
    for key in &keys {
        let token = jwt::sign(key, &claims).unwrap();
        verify.bench_function(key.algorithm.as_str(), |b| {
            b.iter(|| {
                let parsed = jwt::parse(black_box(&token)).unwrap();
                assert!(key.verify(
                    parsed.alg,
                    parsed.signing_input.as_bytes(),
                    &parsed.signature
                ));
            })
        });
    }
    verify.finish();
}

criterion_group!(benches, mint_and_verify);
criterion_main!(benches);
