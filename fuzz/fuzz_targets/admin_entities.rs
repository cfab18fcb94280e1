//! `admin_entities`: the admin API's JSON bodies into core entity validation
//! (`gatehouse_core::gateway::{Service, Route, Consumer}::from_input`), and PATCH bodies
//! merged into an accepted entity first (`merge_patch`).
//!
//! For every input that is JSON it checks, for each of the three kinds, that:
//! - validation never panics (a refusal is a `FieldErrors`);
//! - an accepted entity's names (`name`, `username`, `custom_id`) and tags are at most 512
//!   characters, the documented limit (`kong_schema::MAX_NAME_CHARS`);
//! - validation is idempotent: the entity's JSON (what the Admin API returns and the store
//!   keeps) is accepted again as the same entity, with the same JSON, as a client that GETs
//!   an entity and PUTs it back expects;
//! - the entity's JSON merged with the same body as a PATCH validates like the body itself
//!   (a PATCH with every field is a PUT).
//!
//! Input: any bytes; those that are not JSON are skipped.
#![no_main]

use gatehouse_core::gateway::{Consumer, Route, Service, merge_patch};
use gatehouse_core::kong_schema::{FieldErrors, MAX_NAME_CHARS};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt::Debug;
use uuid::Uuid;

const ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_2345_6789_abcd);
const CREATED: i64 = 1_700_000_000;
const NOW: i64 = 1_700_000_100;

/// What the target needs of each kind.
trait Entity: Serialize + DeserializeOwned + PartialEq + Debug {
    fn validate(input: Value) -> Result<Self, FieldErrors>;
    /// The names and tags the 512-character limit applies to.
    fn names(&self) -> Vec<&str>;
}

fn tags(tags: &Option<Vec<String>>) -> impl Iterator<Item = &str> {
    tags.iter().flatten().map(String::as_str)
}

impl Entity for Service {
    fn validate(input: Value) -> Result<Self, FieldErrors> {
        Service::from_input(ID, input, CREATED, NOW)
    }
    fn names(&self) -> Vec<&str> {
        self.name
            .as_deref()
            .into_iter()
            .chain(tags(&self.tags))
            .collect()
    }
}

impl Entity for Route {
    fn validate(input: Value) -> Result<Self, FieldErrors> {
        Route::from_input(ID, input, CREATED, NOW)
    }
    fn names(&self) -> Vec<&str> {
        self.name
            .as_deref()
            .into_iter()
            .chain(tags(&self.tags))
            .collect()
    }
}

impl Entity for Consumer {
    fn validate(input: Value) -> Result<Self, FieldErrors> {
        Consumer::from_input(ID, input, CREATED, NOW)
    }
    fn names(&self) -> Vec<&str> {
        self.username
            .as_deref()
            .into_iter()
            .chain(self.custom_id.as_deref())
            .chain(tags(&self.tags))
            .collect()
    }
}

fn check<E: Entity>(input: &Value) {
    let Ok(entity) = E::validate(input.clone()) else {
        return;
    };
    for name in entity.names() {
        assert!(
            name.chars().count() <= MAX_NAME_CHARS,
            "a name or tag of {} characters was accepted",
            name.chars().count()
        );
    }
    let json = serde_json::to_value(&entity).expect("an entity serialises");
    let again = match E::validate(json.clone()) {
        Ok(again) => again,
        Err(e) => panic!("its own JSON {json} is refused: {}", e.summary()),
    };
    assert_eq!(again, entity, "accepted again as another entity");
    assert_eq!(
        serde_json::to_value(&again).expect("serialises"),
        json,
        "different JSON"
    );
    // The stored JSON also reads back through serde, as the store and the proxy's snapshot
    // read it.
    let stored: E = serde_json::from_value(json.clone()).expect("the stored JSON deserialises");
    assert_eq!(stored, entity, "the stored JSON reads as another entity");

    if let Ok(patched) = merge_patch(&json, input.clone()) {
        match E::validate(patched.clone()) {
            Ok(p) => assert_eq!(p, entity, "PATCH with the whole body differs from it"),
            Err(e) => panic!("PATCH {patched} refused: {}", e.summary()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check::<Service>(&input);
    check::<Route>(&input);
    check::<Consumer>(&input);
});
