//! API-M's API types in one full load: what the filter can serve as API-M does is served (HTTP;
//! WebSocket and event-stream topics when `event_apis` lets it count their connections), what it
//! cannot is not, each logged with its reason, and the load's other APIs are served whatever the
//! types beside them.

use super::*;
use crate::directory::control_plane::view::Loaded;

/// API-M's `/apis` with one API of each type.
const APIS: &str = r#"{"count":5,"list":[
  {"uuid":"a1","name":"PizzaShackAPI","version":"1.0.0","context":"/pizzashack/1.0.0","apiType":"HTTP","status":"PUBLISHED",
   "urlMappings":[{"authScheme":"Any","httpMethod":"GET","urlPattern":"/menu","scopes":[]}]},
  {"uuid":"a2","name":"Chat","version":"1.0.0","context":"/chat/1.0.0","apiType":"WS","status":"PUBLISHED",
   "urlMappings":[{"authScheme":"Any","httpMethod":"SUBSCRIBE","urlPattern":"/rooms/{room}","scopes":["chat:read"]},
                  {"authScheme":"Any","httpMethod":"PUBLISH","urlPattern":"/rooms/{room}","scopes":["chat:read"]}]},
  {"uuid":"a3","name":"Ticks","version":"1.0.0","context":"/ticks/1.0.0","apiType":"SSE","status":"PUBLISHED",
   "urlMappings":[{"authScheme":"Any","httpMethod":"SUBSCRIBE","urlPattern":"/*","scopes":[]}]},
  {"uuid":"a4","name":"StarWars","version":"1.0.0","context":"/swapi/1.0.0","apiType":"GRAPHQL","status":"PUBLISHED",
   "urlMappings":[{"authScheme":"Any","httpMethod":"QUERY","urlPattern":"hero","scopes":["admin"]},
                  {"authScheme":"Any","httpMethod":"MUTATION","urlPattern":"createReview","scopes":["admin"]}]},
  {"uuid":"a5","name":"Phone","version":"1.0.0","context":"/phone/1.0.0","apiType":"SOAPTOREST","status":"PUBLISHED",
   "urlMappings":[{"authScheme":"Any","httpMethod":"POST","urlPattern":"/checkPhoneNumber","scopes":[]}]}
],"pagination":null}"#;

/// The control plane's APIs loaded by one worker, with `event_apis` as given.
fn loaded(event_apis: Option<&str>) -> (CpWorker, Loaded) {
    let mut raw = serde_json::json!({
        "cluster": "cp", "username": "gw", "password": "secret", "endpoint_template": {"production": "live"}
    });
    if let Some(event_apis) = event_apis {
        raw["event_apis"] = event_apis.into();
    }
    let cp = ControlPlane::compile(serde_json::from_value(raw).unwrap(), &[], &mut Vec::new()).unwrap();
    let mut store = MemoryStore::default();
    load(&mut store, &cp, NOW, |fetch| match fetch {
        Fetch::Apis => Answer::Http { status: 200, body: APIS.as_bytes().to_vec() },
        other => ok(other),
    });
    let mut view = worker();
    let loaded = view.sync(&store, &cp, &[]).unwrap();
    (view, loaded)
}

/// By default WebSocket and event-stream APIs are not served: API-M counts their messages
/// against their tiers, which the filter does only with `event_apis: count_messages`.
#[test]
fn event_apis_are_not_served_unless_counting_connections_is_chosen() {
    let (view, loaded) = loaded(None);
    assert_eq!(loaded.apis, 1, "{:?}", loaded.skipped_apis);
    let [chat, ticks, graphql, soap_to_rest] = &loaded.skipped_apis[..] else { panic!("{:?}", loaded.skipped_apis) };
    for (event_api, label) in [(chat, "Chat:1.0.0"), (ticks, "Ticks:1.0.0")] {
        assert!(event_api.starts_with(label) && event_api.contains("event_apis: count_messages"), "{event_api}");
        assert!(view.routes.by_label(label).is_none());
    }
    assert!(graphql.starts_with("StarWars:1.0.0") && soap_to_rest.starts_with("Phone:1.0.0"));
    assert!(view.routes.by_label("PizzaShackAPI:1.0.0").is_some());
}

#[test]
fn each_api_type_is_served_as_api_m_serves_it_or_not_served_saying_why() {
    let (view, loaded) = loaded(Some("count_connections"));
    assert_eq!(loaded.apis, 3, "{:?}", loaded.skipped_apis);
    let chat = view.routes.by_label("Chat:1.0.0").unwrap();
    let [rooms] = &chat.resources[..] else { panic!("{:?}", chat.resources) };
    assert_eq!((rooms.method.as_str(), rooms.template.as_str()), ("GET", "/rooms/{room}"), "the handshake");
    assert_eq!(rooms.scopes, ["chat:read"]);
    let ticks = view.routes.by_label("Ticks:1.0.0").unwrap();
    assert_eq!(ticks.resources[0].method, "GET");
    let pizza = view.routes.by_label("PizzaShackAPI:1.0.0").unwrap();
    // API-M takes a WebSocket handshake's token from `access_token` in the query; nothing else's.
    assert!(
        chat.websocket_query_credentials && !ticks.websocket_query_credentials && !pizza.websocket_query_credentials
    );
    let [graphql, soap_to_rest] = &loaded.skipped_apis[..] else { panic!("{:?}", loaded.skipped_apis) };
    assert!(graphql.starts_with("StarWars:1.0.0") && graphql.contains("GraphQL"), "{graphql}");
    assert!(soap_to_rest.starts_with("Phone:1.0.0") && soap_to_rest.contains("SOAP"), "{soap_to_rest}");
    assert!(view.routes.by_label("StarWars:1.0.0").is_none() && view.routes.by_label("Phone:1.0.0").is_none());
    assert!(!chat.counts_websocket_frames && !ticks.counts_server_sent_events, "counting connections");
}

/// `count_messages`: a WebSocket API's frames and a server-sent-events API's events are counted,
/// not their handshakes.
#[test]
fn counting_messages_counts_websocket_frames_and_server_sent_events() {
    let (view, loaded) = loaded(Some("count_messages"));
    assert_eq!(loaded.apis, 3, "{:?}", loaded.skipped_apis);
    let chat = view.routes.by_label("Chat:1.0.0").unwrap();
    assert!(chat.counts_websocket_frames && !chat.counts_server_sent_events && chat.websocket_query_credentials);
    let ticks = view.routes.by_label("Ticks:1.0.0").unwrap();
    assert!(ticks.counts_server_sent_events && !ticks.counts_websocket_frames);
    let pizza = view.routes.by_label("PizzaShackAPI:1.0.0").unwrap();
    assert!(!pizza.counts_websocket_frames && !pizza.counts_server_sent_events);
}

/// A choice like every other in the configuration: refused naming the choices (at load, naming
/// the field: `config::a_refusal_names_the_field_that_was_written`), and listed in the JSON schema
/// (`docs/config.schema.json`) an editor checks a configuration against.
#[test]
fn an_unknown_event_apis_choice_is_refused_and_the_choices_are_listed() {
    let raw = serde_json::json!({
        "cluster": "cp", "username": "gw", "password": "secret", "event_apis": "count_events"
    });
    let error = serde_json::from_value::<crate::schema::RawControlPlane>(raw).err().unwrap().to_string();
    assert!(error.contains("count_connections"), "{error}");
    let schema = serde_json::to_value(schemars::schema_for!(crate::schema::RawControlPlane)).unwrap();
    let choices = schema.pointer("/$defs/EventApis/oneOf").and_then(|choices| choices.as_array()).cloned();
    let choices: Vec<_> = choices.unwrap_or_default().iter().map(|choice| choice["const"].clone()).collect();
    assert_eq!(choices, ["not_served", "count_connections", "count_messages"], "{schema}");
}

/// An API product (`apiType` `APIProduct`): API-M sends each of its resources to the backend of
/// the API it came from, which `/apis` does not say. `endpoint_template` would send them all to
/// one cluster named after the product: the product is not served then, saying why, and the
/// APIs beside it are; named in `control_plane.endpoints` it is served there.
#[test]
fn an_api_product_is_served_only_where_endpoints_name_its_cluster() {
    let apis = r#"{"count":2,"list":[
      {"uuid":"a1","name":"PizzaShackAPI","version":"1.0.0","context":"/pizzashack/1.0.0","apiType":"HTTP","status":"PUBLISHED",
       "urlMappings":[{"authScheme":"Any","httpMethod":"GET","urlPattern":"/menu","scopes":[]}]},
      {"uuid":"p1","name":"Bundle","version":"1.0.0","context":"/bundle/1.0.0","apiType":"APIProduct","status":"PUBLISHED",
       "urlMappings":[{"authScheme":"Any","httpMethod":"GET","urlPattern":"/menu","scopes":[]}]}
    ],"pagination":null}"#;
    for (named, served) in [(None, false), (Some("Bundle:1.0.0"), true), (Some("Bundle"), true)] {
        let mut raw = serde_json::json!({
            "cluster": "cp", "username": "gw", "password": "secret", "endpoint_template": {"production": "{name}"}
        });
        if let Some(named) = named {
            raw["endpoints"] = serde_json::json!({ named: {"production": "bundle-backends"} });
        }
        let cp = ControlPlane::compile(serde_json::from_value(raw).unwrap(), &[], &mut Vec::new()).unwrap();
        let mut store = MemoryStore::default();
        load(&mut store, &cp, NOW, |fetch| match fetch {
            Fetch::Apis => Answer::Http { status: 200, body: apis.as_bytes().to_vec() },
            other => ok(other),
        });
        let mut view = worker();
        let loaded = view.sync(&store, &cp, &[]).unwrap();
        assert!(view.routes.by_label("PizzaShackAPI:1.0.0").is_some(), "{named:?}");
        let bundle = view.routes.by_label("Bundle:1.0.0");
        assert_eq!(bundle.is_some(), served, "{named:?}: {:?}", loaded.skipped_apis);
        if served {
            assert_eq!(loaded.apis, 2, "{:?}", loaded.skipped_apis);
            assert_eq!(
                bundle.and_then(|api| api.endpoints.production.as_deref().map(str::to_string)).as_deref(),
                Some("bundle-backends")
            );
        } else {
            let [skipped] = &loaded.skipped_apis[..] else { panic!("{:?}", loaded.skipped_apis) };
            assert!(skipped.starts_with("Bundle:1.0.0 (an API product") && skipped.contains("endpoints"), "{skipped}");
        }
    }
}

/// An API product's context as API-M 4.0 to 4.2 write it: without its version (`/bundle`, version
/// `1.0.0`: `APIMappingUtil.fromDTOtoAPIProduct`), which Synapse serves at `/bundle/...`
/// (`APIConfigContext.setApiProductVelocityContext` puts the context, not a `{version}` template).
/// It is served there alone, and a blocking condition or JWT API key naming `/bundle` names it;
/// a product versioned as later updates write it (`/bundle/1.0.0`) is served as any API.
#[test]
fn a_product_whose_context_holds_no_version_is_served_at_its_context() {
    for (context, versioned_context) in [("/bundle", "/bundle"), ("/bundle/1.0.0", "/bundle/1.0.0")] {
        let apis = format!(
            r#"{{"count":1,"list":[{{"uuid":"p1","name":"Bundle","version":"1.0.0","context":"{context}",
            "apiType":"APIProduct","status":"PUBLISHED",
            "urlMappings":[{{"authScheme":"Any","httpMethod":"GET","urlPattern":"/menu","scopes":[]}}]}}]}}"#
        );
        let raw = serde_json::json!({"cluster": "cp", "username": "gw", "password": "secret",
            "endpoints": {"Bundle": {"production": "bundle-backends"}}});
        let cp = ControlPlane::compile(serde_json::from_value(raw).unwrap(), &[], &mut Vec::new()).unwrap();
        let mut store = MemoryStore::default();
        load(&mut store, &cp, NOW, |fetch| match fetch {
            Fetch::Apis => Answer::Http { status: 200, body: apis.as_bytes().to_vec() },
            other => ok(other),
        });
        let mut view = worker();
        view.sync(&store, &cp, &[]).unwrap();
        let bundle = view.routes.by_label("Bundle:1.0.0").unwrap();
        assert_eq!((bundle.context.as_str(), bundle.versioned_context.as_str()), ("/bundle", versioned_context));
        assert!(bundle.is_named_by(context), "{context}");
    }
}
