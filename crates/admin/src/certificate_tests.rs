//! Certificates, SNIs and CA certificates through the Kong Admin API, on SQLite and PostgreSQL:
//! validation with Kong's messages, the `snis` field and SNI-name addressing, keys sealed at
//! rest, the delete cascade, and the same entities under Konnect's paths.

use crate::gateway_tests::{env, stores};
use gatehouse_core::gateway::EntityKind;
use rcgen::{
    BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// A self-signed leaf for `name` with a new key of `alg`: (cert PEM, key PEM).
fn leaf(name: &str, alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let key = KeyPair::generate_for(alg).unwrap();
    let cert = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn ca() -> String {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

fn entity_errors(body: &Value) -> Vec<&str> {
    body["fields"]["@entity"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn certificates_validate_pairs_and_seal_their_keys() {
    for store in stores().await {
        let e = env(store).await;
        let b = e.backend;
        let (cert, key) = leaf("example.test", &PKCS_ECDSA_P256_SHA256);
        let (other_cert, other_key) = leaf("other.test", &PKCS_ECDSA_P256_SHA256);
        let (rsa_cert, rsa_key) = leaf("example.test", &PKCS_RSA_SHA256);

        let (s, err) = e
            .call(
                "POST",
                "/certificates",
                Some(json!({"cert": cert, "key": other_key})),
            )
            .await;
        assert_eq!(s, 400, "{b}: {err}");
        assert_eq!(
            entity_errors(&err),
            ["certificate does not match key"],
            "{b}"
        );
        let (s, err) = e
            .call(
                "POST",
                "/certificates",
                Some(json!({"cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "key": "nope"})),
            )
            .await;
        assert_eq!(s, 400);
        assert!(
            err["fields"]["cert"]
                .as_str()
                .unwrap()
                .starts_with("invalid certificate: "),
            "{err}"
        );
        assert!(
            err["fields"]["key"]
                .as_str()
                .unwrap()
                .starts_with("invalid key: "),
            "{err}"
        );
        let (s, err) = e.call("POST", "/certificates", Some(json!({}))).await;
        assert_eq!(s, 400);
        assert_eq!(err["fields"]["cert"], "required field missing");
        assert_eq!(err["fields"]["key"], "required field missing");
        let (s, err) = e
            .call(
                "POST",
                "/certificates",
                Some(json!({"cert": cert, "key": key, "cert_alt": other_cert})),
            )
            .await;
        assert_eq!(s, 400);
        assert_eq!(
            entity_errors(&err),
            ["all or none of these fields must be set: 'cert_alt', 'key_alt'"]
        );
        let (s, err) = e
            .call(
                "POST",
                "/certificates",
                Some(
                    json!({"cert": cert, "key": key, "cert_alt": other_cert, "key_alt": other_key}),
                ),
            )
            .await;
        assert_eq!(s, 400);
        assert!(
            entity_errors(&err)[0]
                .starts_with("certificate and alternative certificate need to have different type"),
            "{err}"
        );

        // Nothing invalid was stored.
        let (_, list) = e.call("GET", "/certificates", None).await;
        assert_eq!(list["data"], json!([]), "{b}");

        let (s, c) = e
            .call(
                "POST",
                "/certificates",
                Some(
                    json!({"cert": cert, "key": key, "cert_alt": rsa_cert, "key_alt": rsa_key,
                            "snis": ["Example.test", "*.wild.test"], "tags": ["edge"]}),
                ),
            )
            .await;
        assert_eq!(s, 201, "{b}: {c}");
        assert_eq!(c["snis"], json!(["*.wild.test", "example.test"]));
        assert_eq!(
            (c["key"].as_str(), c["key_alt"].as_str()),
            (Some(key.as_str()), Some(rsa_key.as_str()))
        );
        let id = Uuid::parse_str(c["id"].as_str().unwrap()).unwrap();

        // At rest the keys are sealed; the API shows them opened.
        let stored = e
            .store
            .get_core_entity(e.default_cp, EntityKind::Certificate, id)
            .await
            .unwrap()
            .unwrap();
        for field in ["key", "key_alt"] {
            let at_rest = stored.body[field].as_str().unwrap();
            assert!(at_rest.starts_with("gatehouse-sealed:v1:"), "{b}: {field}");
            assert!(!at_rest.contains("PRIVATE KEY"));
        }
        let (s, got) = e.call("GET", &format!("/certificates/{id}"), None).await;
        assert_eq!((s, &got["key"]), (200, &json!(key)));

        // Addressed by an SNI name; an unknown name is Kong's "SNI not found".
        let (s, by_name) = e.call("GET", "/certificates/example.test", None).await;
        assert_eq!((s, &by_name["id"]), (200, &c["id"]), "{b}");
        let (s, err) = e.call("GET", "/certificates/nobody.test", None).await;
        assert_eq!((s, err["message"].as_str()), (404, Some("SNI not found")));
        let (s, list) = e
            .call("GET", &format!("/certificates/{id}/snis"), None)
            .await;
        assert_eq!((s, list["data"].as_array().map(Vec::len)), (200, Some(2)));
        let (_, list) = e.call("GET", "/certificates", None).await;
        assert_eq!(list["data"][0]["snis"], c["snis"]);
    }
}

#[tokio::test]
async fn snis_belong_to_one_certificate_and_follow_it() {
    for store in stores().await {
        let e = env(store).await;
        let b = e.backend;
        let (cert, key) = leaf("example.test", &PKCS_ECDSA_P256_SHA256);
        let (s, first) = e
            .call(
                "POST",
                "/certificates",
                Some(json!({"cert": cert, "key": key, "snis": ["a.test"]})),
            )
            .await;
        assert_eq!(s, 201, "{b}: {first}");
        let first_id = first["id"].as_str().unwrap().to_owned();

        // A name another certificate holds: refused as a whole, nothing written.
        let (s, err) = e
            .call(
                "POST",
                "/certificates",
                Some(json!({"cert": cert, "key": key, "snis": ["b.test", "a.test"]})),
            )
            .await;
        assert_eq!(s, 400, "{b}: {err}");
        assert_eq!(
            err["fields"]["snis"],
            format!("a.test already associated with existing certificate '{first_id}'")
        );
        let (_, list) = e.call("GET", "/certificates", None).await;
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{b}");
        let (_, snis) = e.call("GET", "/snis", None).await;
        assert_eq!(snis["data"].as_array().unwrap().len(), 1, "{b}");
        let (s, err) = e
            .call(
                "POST",
                "/certificates",
                Some(json!({"cert": cert, "key": key, "snis": ["c.test", "C.test"]})),
            )
            .await;
        assert_eq!(
            (s, &err["fields"]["snis"]),
            (400, &json!("C.test is duplicated"))
        );

        // SNIs as entities: unique names, Kong's wildcard rules, a real certificate.
        let (s, err) = e
            .call(
                "POST",
                "/snis",
                Some(json!({"name": "a.test", "certificate": {"id": first_id}})),
            )
            .await;
        assert_eq!((s, err["code"].as_i64()), (409, Some(5)), "{b}: {err}");
        for (name, message) in [
            (
                "foo.*.test",
                "wildcard must be leftmost or rightmost character",
            ),
            ("*.foo.*", "only one wildcard must be specified"),
            ("10.0.0.1", "must not be an IP"),
            ("a.test:443", "must not have a port"),
        ] {
            let (s, err) = e
                .call(
                    "POST",
                    "/snis",
                    Some(json!({"name": name, "certificate": {"id": first_id}})),
                )
                .await;
            assert_eq!(
                (s, &err["fields"]["name"]),
                (400, &json!(message)),
                "{name}"
            );
        }
        let missing = Uuid::new_v4();
        let (s, err) = e
            .call(
                "POST",
                "/snis",
                Some(json!({"name": "d.test", "certificate": {"id": missing}})),
            )
            .await;
        assert_eq!((s, err["code"].as_i64()), (400, Some(4)), "{b}: {err}");
        let (s, sni) = e
            .call(
                "POST",
                &format!("/certificates/{first_id}/snis"),
                Some(json!({"name": "*.wild.test"})),
            )
            .await;
        assert_eq!(
            (s, &sni["certificate"]["id"]),
            (201, &json!(first_id)),
            "{b}: {sni}"
        );

        // PATCH without `snis` keeps them; with `snis` makes them exactly that list.
        let (s, p) = e
            .call(
                "PATCH",
                &format!("/certificates/{first_id}"),
                Some(json!({"tags": ["t"]})),
            )
            .await;
        assert_eq!(
            (s, &p["snis"]),
            (200, &json!(["*.wild.test", "a.test"])),
            "{b}: {p}"
        );
        let (s, p) = e
            .call(
                "PATCH",
                &format!("/certificates/{first_id}"),
                Some(json!({"snis": ["e.test", "a.test"]})),
            )
            .await;
        assert_eq!(
            (s, &p["snis"]),
            (200, &json!(["a.test", "e.test"])),
            "{b}: {p}"
        );
        let (_, snis) = e.call("GET", "/snis", None).await;
        let names: Vec<&str> = snis["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{b}: {names:?}");
        // PUT replaces the whole certificate: no `snis`, no SNIs.
        let (s, p) = e
            .call(
                "PUT",
                &format!("/certificates/{first_id}"),
                Some(json!({"cert": cert, "key": key})),
            )
            .await;
        assert_eq!((s, &p["snis"]), (200, &json!([])), "{b}: {p}");
        // PUT by an unknown name creates a certificate holding that name.
        let (s, p) = e
            .call(
                "PUT",
                "/certificates/new.test",
                Some(json!({"cert": cert, "key": key})),
            )
            .await;
        assert_eq!((s, &p["snis"]), (200, &json!(["new.test"])), "{b}: {p}");

        // Deleting a certificate takes its SNIs along.
        let (s, _) = e.call("DELETE", "/certificates/new.test", None).await;
        assert_eq!(s, 204);
        let (s, _) = e.call("GET", "/snis/new.test", None).await;
        assert_eq!(s, 404, "{b}");
        let (_, list) = e.call("GET", "/certificates", None).await;
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{b}");
    }
}

#[tokio::test]
async fn ca_certificates_must_be_one_current_ca() {
    for store in stores().await {
        let e = env(store).await;
        let b = e.backend;
        let base = format!("/v2/control-planes/{}/core-entities", e.default_cp);
        let authority = ca();
        let (s, c) = e
            .call(
                "POST",
                &format!("{base}/ca_certificates"),
                Some(json!({"cert": authority})),
            )
            .await;
        assert_eq!(s, 201, "{b}: {c}");
        let digest = c["cert_digest"].as_str().unwrap();
        assert_eq!(digest.len(), 64);
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
        let (s, err) = e
            .call("POST", "/ca_certificates", Some(json!({"cert": authority})))
            .await;
        assert_eq!(
            (s, &err["fields"]["cert_digest"]),
            (409, &json!(digest)),
            "{b}: {err}"
        );
        let (s, got) = e
            .call(
                "GET",
                &format!("/ca_certificates/{}", c["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!((s, &got["cert"]), (200, &json!(authority)));

        let (leaf_cert, _) = leaf("example.test", &PKCS_ECDSA_P256_SHA256);
        let (s, err) = e
            .call("POST", "/ca_certificates", Some(json!({"cert": leaf_cert})))
            .await;
        assert_eq!(s, 400);
        assert_eq!(
            entity_errors(&err),
            [
                "certificate does not appear to be a CA because it is missing the \"CA\" basic constraint"
            ]
        );
        let (s, err) = e
            .call(
                "POST",
                "/ca_certificates",
                Some(json!({"cert": format!("{authority}{}", ca())})),
            )
            .await;
        assert_eq!(
            (s, entity_errors(&err)),
            (400, vec!["please submit only one certificate at a time"])
        );
        let (s, _) = e.call("GET", "/ca_certificates/not-a-uuid", None).await;
        assert_eq!(s, 404);
        let (s, list) = e.call("GET", "/ca_certificates", None).await;
        assert_eq!(
            (s, list["data"].as_array().map(Vec::len)),
            (200, Some(1)),
            "{b}"
        );
    }
}
