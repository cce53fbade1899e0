//! The `grpc-status` a fault gives gRPC clients (Envoy's mapping of the HTTP status unless an
//! override names one, resolved as the overrides' other fields are), and overrides' keys that
//! name one code or family twice.

use super::*;
use crate::schema::RawConfig;

fn compiled(json: &str) -> Result<ErrorSettings, crate::schema::ConfigError> {
    let raw: RawConfig = serde_json::from_str(json).expect("well-formed test JSON");
    ErrorSettings::compile(raw.errors, &raw.credentials)
}

fn grpc_status(settings: &ErrorSettings, id: FaultId) -> Option<u8> {
    render(&Fault::new(id), settings, None).grpc_status
}

#[test]
fn without_an_override_envoy_maps_the_http_status() {
    let settings = compiled("{}").unwrap();
    for id in [FaultId::ApiThrottled, FaultId::InvalidCredentials, FaultId::NotFound] {
        assert_eq!(grpc_status(&settings, id), None, "{id:?}");
    }
}

#[test]
fn an_override_names_the_grpc_status_by_family_code_or_id_the_most_specific_winning() {
    let settings = compiled(
        r#"{"errors":{"overrides":{
            "9008xx":{"grpc_status":8},
            "900802":{"message":"Slow down"},
            "900806":{"grpc_status":9},
            "api_throttled":{"status":503}}}}"#,
    )
    .unwrap();
    // The family's status for every throttling code, an override of another field keeping it.
    assert_eq!(grpc_status(&settings, FaultId::ApiThrottled), Some(8));
    let resource = render(&Fault::new(FaultId::ResourceThrottled), &settings, None);
    assert_eq!((resource.grpc_status, resource.body.contains("Slow down")), (Some(8), true));
    // A code's own wins over its family's.
    assert_eq!(grpc_status(&settings, FaultId::CustomPolicyThrottled), Some(9));
    // Other families keep Envoy's mapping.
    assert_eq!(grpc_status(&settings, FaultId::InvalidCredentials), None);
    assert_eq!(grpc_status(&settings, FaultId::NotFound), None);
}

#[test]
fn a_grpc_status_outside_1_to_16_is_refused_naming_the_field() {
    for status in [0, 17, 255] {
        let error = compiled(&format!(r#"{{"errors":{{"overrides":{{"9008xx":{{"grpc_status":{status}}}}}}}}}"#))
            .expect_err("refused");
        assert_eq!(error.field, "errors.overrides.9008xx.grpc_status", "{status}");
    }
    for status in [1, 8, 16] {
        assert!(compiled(&format!(r#"{{"errors":{{"overrides":{{"900901":{{"grpc_status":{status}}}}}}}}}"#)).is_ok());
    }
}

#[test]
fn two_keys_for_one_code_or_family_are_refused_naming_the_second() {
    for (first, second) in [("900901", "0900901"), ("900901", "+900901"), ("9008xx", "9008XX")] {
        let json =
            format!(r#"{{"errors":{{"overrides":{{"{first}":{{"status":555}},"{second}":{{"status":556}}}}}}}}"#);
        let error = compiled(&json).expect_err("ambiguous");
        // The keys are read in their sorted order: the later one is named.
        let later = if first < second { second } else { first };
        assert_eq!(error.field, format!("errors.overrides.{later}"), "{first} {second}");
    }
    assert!(compiled(r#"{"errors":{"overrides":{"9008xx":{"status":555},"90080x":{"status":556}}}}"#).is_ok());
}
