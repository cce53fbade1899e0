//! One tenant's data: API-M answers the tenant of the user it authenticates, whatever
//! `xWSO2Tenant` asks (`SubscriptionValidationDataUtil.validateTenantDomain`, binodmx/wso2-carbon-apimgt
//! 389d4e225143445c50f913257ae9c2e21914a640, components/apimgt/org.wso2.carbon.apimgt.internal.service),
//! so an API of another tenant than `control_plane.tenant` is not served, and says why.

use super::*;

/// `/apis` as API-M answers it: a `wso2.com` API, an `acme.com` one, one without `organization`
/// (API-M before it carried one).
const APIS: &str = r#"{"count":3,"list":[
  {"uuid":"w","name":"PizzaShackAPI","version":"1.0.0","context":"/t/wso2.com/pizzashack/1.0.0","apiType":"HTTP",
   "status":"PUBLISHED","organization":"wso2.com",
   "urlMappings":[{"authScheme":"Any","httpMethod":"GET","urlPattern":"/menu","scopes":[]}]},
  {"uuid":"a","name":"Acme","version":"1.0.0","context":"/t/acme.com/acme/1.0.0","apiType":"HTTP",
   "status":"PUBLISHED","organization":"acme.com",
   "urlMappings":[{"authScheme":"Any","httpMethod":"GET","urlPattern":"/menu","scopes":[]}]},
  {"uuid":"o","name":"Old","version":"1.0.0","context":"/t/wso2.com/old/1.0.0","apiType":"HTTP","status":"PUBLISHED",
   "urlMappings":[{"authScheme":"Any","httpMethod":"GET","urlPattern":"/menu","scopes":[]}]}
],"pagination":null}"#;

#[test]
fn another_tenants_apis_are_not_served() {
    let raw = serde_json::json!({"cluster": "cp", "username": "gw", "password": "secret", "tenant": "WSO2.com",
        "endpoint_template": {"production": "live"}});
    let cp = ControlPlane::compile(serde_json::from_value(raw).unwrap(), &[], &mut Vec::new()).unwrap();
    let mut store = MemoryStore::default();
    let calls = load(&mut store, &cp, NOW, |fetch| match fetch {
        Fetch::Apis => Answer::Http { status: 200, body: APIS.as_bytes().to_vec() },
        other => ok(other),
    });
    let Call::Http { headers, .. } = &calls[0] else { panic!() };
    assert!(headers.contains(&("xwso2tenant".into(), "WSO2.com".into())), "{headers:?}");
    let mut view = worker();
    let loaded = view.sync(&store, &cp, &[]).unwrap();
    assert_eq!(loaded.apis, 2, "{:?}", loaded.skipped_apis);
    assert_eq!(loaded.skipped_apis, vec!["Acme:1.0.0 (of tenant `acme.com`, not control_plane.tenant)".to_string()]);
    assert!(view.routes.by_label("Acme:1.0.0").is_none());
    for served in ["PizzaShackAPI:1.0.0", "Old:1.0.0"] {
        assert!(view.routes.by_label(served).is_some(), "{served}");
    }
}
