//! The `microgateway` format against the WSO2 API Microgateway 3.x's own answers.

use super::*;
use crate::schema::RawConfig;

fn settings(json: &str) -> ErrorSettings {
    let raw: RawConfig = serde_json::from_str(json).expect("well-formed test JSON");
    ErrorSettings::compile(raw.errors, &raw.credentials).expect("valid settings")
}

/// wso2/product-microgateway v3.2.10, the CLI's templates: `noProdAvailableError.mustache` and
/// `noSandAvailableError.mustache` lines 1-9 (403, `ERROR_CODE`/`ERROR_MESSAGE`, no `fault`),
/// `apiNotFoundService.mustache` lines 28-31 with `faultResponses.mustache` lines 1-6.
#[test]
fn microgateway_key_type_refusals_and_unknown_apis_have_its_template_bodies() {
    let mgw = settings(r#"{"errors":{"format":"microgateway"}}"#);
    let production = render(&Fault::new(FaultId::ProductionKeyWithoutEndpoint), &mgw, None);
    assert_eq!(production.status, 403);
    assert_eq!(
        production.body,
        r#"{"ERROR_CODE":"900901","ERROR_MESSAGE":"Production key offered to the API with no production endpoint"}"#
    );
    let sandbox = render(&Fault::new(FaultId::SandboxKeyWithoutEndpoint), &mgw, None);
    assert_eq!(
        (sandbox.status, sandbox.body.as_str()),
        (403, r#"{"ERROR_CODE":"900901","ERROR_MESSAGE":"Sandbox key offered to the API with no sandbox endpoint"}"#)
    );
    let unknown = render(&Fault::new(FaultId::NotFound), &mgw, None);
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (
            404,
            r#"{"code":404,"type":"Status report","message":"Runtime Error","description":"No matching resource found for given API Request"}"#
        )
    );
}
