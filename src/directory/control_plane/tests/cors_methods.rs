//! The control plane's APIs get the CORS methods of their resources' templates, filtered by the
//! configuration's `errors.cors.allow_methods`, as the configuration's own APIs do.

use super::*;

/// API-M's `/apis` with one API whose `/items` takes `GET`, `POST` and `DELETE`.
const APIS: &str = r#"{"count":1,"list":[
  {"uuid":"a1","name":"Items","version":"1.0.0","context":"/items/1.0.0","apiType":"HTTP","status":"PUBLISHED",
   "urlMappings":[{"authScheme":"Any","httpMethod":"GET","urlPattern":"/items","scopes":[]},
                  {"authScheme":"Any","httpMethod":"POST","urlPattern":"/items","scopes":[]},
                  {"authScheme":"Any","httpMethod":"GET","urlPattern":"/items/{id}","scopes":[]},
                  {"authScheme":"Any","httpMethod":"DELETE","urlPattern":"/items","scopes":[]}]}
],"pagination":null}"#;

/// Each resource's `<method> <template>` and its CORS methods, after a worker compiled the
/// control plane's APIs under a CORS policy allowing `allow_methods` (`None`: no policy).
fn cors_methods(allow_methods: Option<&[&str]>) -> Vec<String> {
    let raw = serde_json::json!({
        "cluster": "cp", "username": "gw", "password": "secret", "endpoint_template": {"production": "live"}
    });
    let mut cp = ControlPlane::compile(serde_json::from_value(raw).unwrap(), &[], &mut Vec::new()).unwrap();
    // As the configuration sets it from `errors.cors` (`config::tests` checks that it does).
    cp.cors_allow_methods = allow_methods.map(|methods| methods.iter().map(|method| method.to_string()).collect());
    let cp = &cp;
    let mut store = MemoryStore::default();
    load(&mut store, cp, NOW, |fetch| match fetch {
        Fetch::Apis => Answer::Http { status: 200, body: APIS.as_bytes().to_vec() },
        other => ok(other),
    });
    let mut view = worker();
    let loaded = view.sync(&store, cp, &[]).unwrap();
    assert_eq!(loaded.apis, 1, "{:?}", loaded.skipped_apis);
    let api = view.routes.by_label("Items:1.0.0").unwrap();
    let first = api.resources.first().unwrap();
    let shared = api.resources.iter().filter(|resource| Rc::ptr_eq(&resource.cors_methods, &first.cors_methods));
    assert_eq!(shared.count(), 3, "one string per template, shared by its resources");
    api.resources
        .iter()
        .map(|resource| format!("{} {} {}", resource.method, resource.template.as_str(), resource.cors_methods))
        .collect()
}

#[test]
fn the_control_planes_resources_allow_their_templates_methods_that_cors_allows() {
    assert_eq!(
        cors_methods(Some(&["DELETE", "GET"])),
        ["GET /items GET,DELETE", "POST /items GET,DELETE", "GET /items/{id} GET", "DELETE /items GET,DELETE"]
    );
    assert_eq!(
        cors_methods(None),
        [
            "GET /items GET,POST,DELETE",
            "POST /items GET,POST,DELETE",
            "GET /items/{id} GET",
            "DELETE /items GET,POST,DELETE"
        ]
    );
}
