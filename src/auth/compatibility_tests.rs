//! The codes `compatibility: microgateway` picks for a refused credential, as the WSO2 API
//! Microgateway 3.x answers them (its format's own tests are in `render::microgateway_tests`).

use super::{failure_fault, AuthFailure};
use crate::render::{render, ErrorSettings};
use crate::schema::{Compatibility, RawConfig};

/// With `compatibility: microgateway` a refused credential gets the Microgateway's codes, which
/// then render in the Microgateway's body (seed 000's table; docs/CONFIG.md `compatibility`).
#[test]
fn microgateway_compatibility_picks_its_codes() {
    let cases = [
        (AuthFailure::Missing, 900902, 900902),
        (AuthFailure::Invalid, 900901, 900901),
        (AuthFailure::Expired, 900901, 900903),
        (AuthFailure::Inactive, 900901, 900904),
        // API-M: no `Bearer` token found is a missing credential (OAuthAuthenticator).
        (AuthFailure::NoToken, 900902, 900912),
        (AuthFailure::BadFormat, 900901, 900912),
        (AuthFailure::BadScheme, 900902, 900917),
        (AuthFailure::KeyManagerUnavailable, 900900, 900900),
    ];
    let raw: RawConfig = serde_json::from_str(r#"{"errors":{"format":"microgateway"}}"#).unwrap();
    let mgw = ErrorSettings::compile(raw.errors, &raw.credentials).unwrap();
    for (failure, apim, microgateway) in cases {
        assert_eq!(failure_fault(failure, Compatibility::Apim).code, apim, "{failure:?}");
        let fault = failure_fault(failure, Compatibility::Microgateway);
        assert_eq!(fault.code, microgateway, "{failure:?}");
        let body: serde_json::Value = serde_json::from_str(&render(&fault, &mgw, None).body).unwrap();
        assert_eq!(body["fault"]["code"], microgateway, "{failure:?}");
    }
}
