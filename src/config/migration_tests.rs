//! What a team moving from WSO2 API Manager writes by habit: each mistake is refused at load,
//! naming the field and why, or loads and works; none loads and then fails every request.

use super::*;
use crate::directory::BlockingCondition;

fn error_of(json: &str) -> ConfigError {
    Config::from_json(json.as_bytes()).expect_err("config should be refused")
}

const API: &str = r#"{"name":"Pizza","context":"/pizzashack","version":"1.0.0",
    "endpoints":{"production":"pizza"},"resources":[{"method":"GET","path":"/menu"}]}"#;

fn with_api(extra: &str) -> String {
    format!(r#"{{"apis":[{API}]{extra}}}"#)
}

/// WSO2 names endpoints, key managers and services by URL; Envoy reaches them through clusters.
/// A URL where a cluster goes used to load, and every call then went to a cluster Envoy does not
/// have (503s, 900900s, uncounted requests).
#[test]
fn a_url_where_an_envoy_cluster_goes_is_refused_naming_the_field() {
    let km = |jwks: &str, introspection: &str| {
        with_api(&format!(
            r#","key_managers":[{{"name":"Resident Key Manager","issuer":"https://localhost:9443/oauth2/token",
                "jwks":{jwks}{introspection}}}]"#
        ))
    };
    let introspect = |fields: &str| {
        km(r#"{"cluster":"km"}"#, &format!(r#","introspection":{{"client_id":"gw","client_secret":"s",{fields}}}"#))
    };
    let control_plane =
        |fields: &str| with_api(&format!(r#","control_plane":{{"username":"admin","password":"p",{fields}}}"#));
    let cases = [
        (
            with_api_raw(&API.replace(r#""production":"pizza""#, r#""production":"http://localhost:9080/pizzashack""#)),
            "apis[0].endpoints.production",
        ),
        (km(r#"{"cluster":"https://localhost:9443/oauth2/jwks"}"#, ""), "key_managers[0].jwks.cluster"),
        (km(r#"{"cluster":"km","authority":"https://localhost:9443"}"#, ""), "key_managers[0].jwks.authority"),
        (km(r#"{"cluster":"km","authority":"km/oauth2"}"#, ""), "key_managers[0].jwks.authority"),
        (introspect(r#""cluster":"https://km:9443/oauth2/introspect""#), "key_managers[0].introspection.cluster"),
        (introspect(r#""cluster":"km","authority":"https://km:9443""#), "key_managers[0].introspection.authority"),
        (control_plane(r#""cluster":"https://apim:9443""#), "control_plane.cluster"),
        (control_plane(r#""cluster":"apim","authority":"https://apim:9443""#), "control_plane.authority"),
        (
            control_plane(r#""cluster":"apim","endpoints":{"Pizza:1.0.0":{"production":"http://pizza:8080"}}"#),
            "control_plane.endpoints.Pizza:1.0.0",
        ),
        (
            control_plane(r#""cluster":"apim","endpoint_template":{"production":"https://{name}:8080"}"#),
            "control_plane.endpoint_template",
        ),
        (
            with_api(r#","throttling":{"rate_limit_service":{"cluster":"grpc://ratelimit:8081"}}"#),
            "throttling.rate_limit_service.cluster",
        ),
    ];
    for (json, field) in cases {
        let error = error_of(&json);
        assert_eq!(error.field, field, "{json}: {error}");
    }
    // A cluster name stays a name: Istio's, with `|`, loads.
    let istio = km(r#"{"cluster":"outbound|9443||km.example.svc.cluster.local"}"#, "");
    Config::from_json(istio.as_bytes()).expect("an Istio cluster name");
}

fn with_api_raw(api: &str) -> String {
    format!(r#"{{"apis":[{api}]}}"#)
}

/// A call's `:authority` defaults to its cluster's name. Istio's cluster names
/// (`outbound|9443||km.example.svc.cluster.local`) are no host: sent as `Host`, WSO2's Tomcat
/// answers 400 and every JWKS fetch and introspection failed. Istio's names give their service
/// host; other names that are no host are refused, asking for `authority`.
#[test]
fn a_call_sends_a_host_as_its_authority() {
    let config =
        |jwks: &str| with_api(&format!(r#","key_managers":[{{"name":"k","issuer":"https://k","jwks":{jwks}}}]"#));
    let loaded = Config::from_json(config(r#"{"cluster":"outbound|9443||km.example.svc.cluster.local"}"#).as_bytes())
        .expect("an Istio cluster");
    let jwks = loaded.auth.key_managers[0].remote_jwks.as_ref().expect("fetched keys");
    assert_eq!(jwks.authority, "km.example.svc.cluster.local");
    let plain = Config::from_json(config(r#"{"cluster":"km_cluster"}"#).as_bytes()).expect("a plain name");
    assert_eq!(plain.auth.key_managers[0].remote_jwks.as_ref().expect("fetched").authority, "km_cluster");
    for (jwks, field) in [
        (r#"{"cluster":"km cluster"}"#, "key_managers[0].jwks.cluster"),
        (r#"{"cluster":"a|b"}"#, "key_managers[0].jwks.cluster"),
        (r#"{"cluster":"a|b","authority":"km.example.com:9443"}"#, ""),
        (r#"{"cluster":"km","authority":"[::1]:9443"}"#, ""),
    ] {
        match Config::from_json(config(jwks).as_bytes()) {
            Ok(_) => assert_eq!(field, "", "{jwks} loads"),
            Err(error) => assert_eq!(error.field, field, "{jwks}: {error}"),
        }
    }
}

/// The control plane fills `{name}` and `{version}` into `endpoint_template`, and finds APIs in
/// `endpoints` by name: anything else would name clusters no API ever gets.
#[test]
fn control_plane_endpoints_name_apis_and_placeholders_it_fills() {
    let control_plane = |fields: &str| {
        with_api(&format!(r#","control_plane":{{"cluster":"apim","username":"admin","password":"p",{fields}}}"#))
    };
    for (fields, field) in [
        (r#""endpoint_template":{"production":"{context}"}"#, "control_plane.endpoint_template"),
        (r#""endpoint_template":{"sandbox":"{name}-{apiVersion}"}"#, "control_plane.endpoint_template"),
        (r#""endpoints":{"/pizzashack/1.0.0":{"production":"pizza"}}"#, "control_plane.endpoints./pizzashack/1.0.0"),
    ] {
        assert_eq!(error_of(&control_plane(fields)).field, field, "{fields}");
    }
    Config::from_json(control_plane(r#""endpoint_template":{"production":"{name}-{version}"}"#).as_bytes())
        .expect("the placeholders it fills");
}

/// WSO2's deployment.toml writes references as `$env{NAME}` (and `$sys{..}`, `$secret{..}`):
/// copied into a secret field, the text itself was taken as the secret (a warning said it was
/// inline), and every introspection or control-plane call then failed authentication.
#[test]
fn a_secret_written_as_a_wso2_reference_is_refused_pointing_at_env() {
    let introspection = |secret: &str| {
        with_api(&format!(
            r#","key_managers":[{{"name":"k","issuer":"https://k",
                "introspection":{{"cluster":"km","client_id":"gw","client_secret":{secret}}}}}]"#
        ))
    };
    for secret in
        [r#""$env{KM_SECRET}""#, r#""$sys{km.secret}""#, r#""$secret{km_secret}""#, r#"{"value":"${KM_SECRET}"}"#]
    {
        let error = error_of(&introspection(secret));
        assert_eq!(error.field, "key_managers[0].introspection.client_secret", "{secret}");
        assert!(error.reason.contains(r#"{"env": "NAME"}"#), "{error}");
    }
    let password =
        with_api(r#","control_plane":{"cluster":"apim","username":"admin","password":"$env{APIM_PASSWORD}"}"#);
    assert_eq!(error_of(&password).field, "control_plane.password");
    // Secrets that merely hold such characters are secrets.
    for secret in [r#""p$env{x""#, r#""$env{}""#, r#""a$env{X}""#] {
        Config::from_json(introspection(secret).as_bytes()).unwrap_or_else(|error| panic!("{secret}: {error}"));
    }
}

/// WSO2's blocking conditions name an application as `<owner>:<name>`; this configuration's
/// `application` took only an id, so `admin:DefaultApplication` loaded and blocked nothing.
#[test]
fn a_blocked_application_is_named_by_id_or_as_wso2_names_it() {
    let config = |blocking: &str| {
        with_api(&format!(
            r#","applications":[{{"id":"3f1c","name":"DefaultApplication","owner":"admin"}}],
               "blocking":[{blocking}]"#
        ))
    };
    let named = Config::from_json(config(r#"{"application":"admin:DefaultApplication"}"#).as_bytes()).unwrap();
    assert_eq!(
        named.directory.blocking(),
        &[BlockingCondition::ApplicationNamed { owner: "admin".into(), name: "DefaultApplication".into() }]
    );
    let by_id = Config::from_json(config(r#"{"application":"3f1c"}"#).as_bytes()).unwrap();
    assert_eq!(by_id.directory.blocking(), &[BlockingCondition::Application("3f1c".into())]);
    for (blocking, field) in [
        (r#"{"application":"DefaultApplication"}"#, "blocking[0].application"),
        (r#"{"application":"nobody:nothing"}"#, "blocking[0].application"),
        (r#"{"application":"Admin:DefaultApplication"}"#, "blocking[0].application"),
        (r#"{"subscription":"DefaultApplication:Pizza:1.0.0"}"#, "blocking[0].subscription"),
    ] {
        assert_eq!(error_of(&config(blocking)).field, field, "{blocking}");
    }
    // With a control plane, an id may be one of its applications.
    let with_control_plane = config(r#"{"application":"9d2e-uuid"}"#).replacen(
        '{',
        r#"{"control_plane":{"cluster":"apim","username":"a","password":"p"},"#,
        1,
    );
    Config::from_json(with_control_plane.as_bytes()).expect("an application of the control plane");
}

/// A resource path is below the API's base path; WSO2's full resource URL copied as the path
/// loaded and was served at `/pizzashack/1.0.0/pizzashack/1.0.0/menu`.
#[test]
fn a_resource_path_written_from_the_root_is_refused() {
    for (context, path) in [
        ("/pizzashack", "/pizzashack/1.0.0/menu"),
        ("/pizzashack", "/pizzashack/1.0.0"),
        ("/{version}/tpl", "/1.0.0/tpl/items/{id}"),
    ] {
        let api = API.replace("/pizzashack", context).replace(r#""path":"/menu""#, &format!(r#""path":"{path}""#));
        let error = error_of(&with_api_raw(&api));
        assert_eq!(error.field, "apis[0].resources[0].path", "{path}: {error}");
    }
    // A path that only begins like the context is the API's own.
    let api = API.replace(r#""path":"/menu""#, r#""path":"/pizzashack/menu""#);
    Config::from_json(with_api_raw(&api).as_bytes()).expect("below the base path");
}

/// Durations are in the unit their name ends with. Milliseconds written into a field of seconds
/// made a clock skew of 16 hours (`60000`): tokens that expired hours ago were taken. And an
/// audience no `aud` can equal (empty, spaces) refused every token.
#[test]
fn a_clock_skew_in_milliseconds_and_an_audience_no_token_carries_are_refused() {
    let km = |fields: &str| {
        format!(r#"{{"key_managers":[{{"name":"k","issuer":"https://k","jwks":{{"cluster":"km"}},{fields}}}]}}"#)
    };
    for (fields, field) in [
        (r#""clock_skew_s":60000"#, "key_managers[0].clock_skew_s"),
        (r#""audiences":[""]"#, "key_managers[0].audiences"),
        (r#""audiences":["gateway "]"#, "key_managers[0].audiences"),
    ] {
        let error = error_of(&km(fields));
        assert_eq!(error.field, field, "{fields}: {error}");
    }
    Config::from_json(km(r#""clock_skew_s":3600,"audiences":["gateway"]"#).as_bytes()).expect("an hour at most");
    // RFC 7519 lets an audience or issuer be any string: one with a space inside loads.
    let spaced = km(r#""audiences":["My API"]"#).replace("https://k", "WSO2 KM");
    Config::from_json(spaced.as_bytes()).expect("spaces inside an audience or issuer");
    let padded = km(r#""audiences":["gateway"]"#).replace("https://k", " https://k");
    assert_eq!(error_of(&padded).field, "key_managers[0].issuer", "a space at either end");
    let refresh =
        km(r#""audiences":["gateway"]"#).replace(r#"{"cluster":"km"}"#, r#"{"cluster":"km","refresh_s":300000}"#);
    assert_eq!(error_of(&refresh).field, "key_managers[0].jwks.refresh_s");
    let api_key = r#"{"api_key_jwt":{"clock_skew_s":300000,"keys":[]}}"#;
    assert_eq!(error_of(api_key).field, "api_key_jwt.clock_skew_s");
}

/// Origins are compared exactly with what browsers send (`https://app.example`): an allowed
/// origin with a trailing `/`, a path or capitals loaded and matched no request, so no fault
/// carried CORS headers for it.
#[test]
fn an_allowed_origin_no_browser_sends_is_refused() {
    let cors =
        |origin: &str| format!(r#"{{"errors":{{"cors":{{"allow_origins":["https://ok.example","{origin}"]}}}}}}"#);
    for origin in ["https://app.example/", "https://app.example/path", "https://App.example", "app.example"] {
        assert_eq!(error_of(&cors(origin)).field, "errors.cors.allow_origins[1]", "{origin}");
    }
    for origin in ["*", "null", "http://localhost:3000", "https://app.example"] {
        Config::from_json(cors(origin).as_bytes()).unwrap_or_else(|error| panic!("{origin}: {error}"));
    }
}

/// A browser serializes an origin without its scheme's default port and with its host in ASCII
/// (punycode): `https://app.example:443` or `https://bücher.example` loaded and matched no
/// request. A port that is not the default, and IPv6 literals, load.
#[test]
fn an_allowed_origin_with_a_default_port_or_a_unicode_host_is_refused() {
    let cors =
        |origin: &str| format!(r#"{{"errors":{{"cors":{{"allow_origins":["https://ok.example","{origin}"]}}}}}}"#);
    for origin in [
        "https://app.example:443",
        "http://app.example:80",
        "wss://app.example:443",
        "https://app.example:08443",
        "https://app.example:",
        "https://app.example:99999",
        "https://b\u{fc}cher.example",
        "https://\u{ff41}pp.example",
    ] {
        assert_eq!(error_of(&cors(origin)).field, "errors.cors.allow_origins[1]", "{origin}");
    }
    for origin in
        ["https://app.example:8443", "http://app.example:443", "http://[::1]:8080", "https://xn--bcher-kva.example"]
    {
        Config::from_json(cors(origin).as_bytes()).unwrap_or_else(|error| panic!("{origin}: {error}"));
    }
}

/// Methods are case-sensitive (RFC 9110 9.1) and a preflight's answer lists the resource's
/// methods (`GET`) the configuration allows: `allow_methods: ["get"]` loaded and every preflight
/// was answered with no method allowed.
#[test]
fn a_cors_method_in_lowercase_is_refused() {
    let cors = |method: &str| {
        with_api(&format!(
            r#","errors":{{"cors":{{"allow_origins":["https://ok.example"],"allow_methods":["GET","{method}"]}}}}"#
        ))
    };
    for method in ["post", "Put", "GET POST", ""] {
        assert_eq!(error_of(&cors(method)).field, "errors.cors.allow_methods[1]", "{method}");
    }
    for method in ["POST", "PROPFIND", "*"] {
        Config::from_json(cors(method).as_bytes()).unwrap_or_else(|error| panic!("{method}: {error}"));
    }
}

/// A JWT API key names its application by id (`application.uuid`) without the configuration
/// holding it: a blocking condition on such an application's id loads, as with a control plane.
#[test]
fn a_blocked_application_may_be_one_only_jwt_api_keys_name() {
    use crate::auth::keys::testkeys::jwk;
    let keys = serde_json::json!({"keys": [jwk("rsa-b.pem", jsonwebtoken::Algorithm::RS256, "apikey-b")]});
    for blocking in [r#"{"application":"9d2e-uuid"}"#, r#"{"subscription":"9d2e-uuid:Pizza:1.0.0"}"#] {
        let config = with_api(&format!(r#","api_key_jwt":{keys},"blocking":[{blocking}]"#));
        Config::from_json(config.as_bytes()).unwrap_or_else(|error| panic!("{blocking}: {error}"));
    }
}

/// WSO2's gateway reads `Unlimited` in any case (`UNLIMITED_TIER.equalsIgnoreCase`), and so does
/// the filter at run time (a control plane's or a JWT API key's `unlimited` counts nothing): an
/// API's `unlimited` was refused as not defined, and a policy defined as `unlimited` loaded and
/// counted where the same name from the control plane counted nothing.
#[test]
fn unlimited_is_one_policy_in_any_case() {
    let api = r#"{"name":"Pizza","context":"/pizzashack","version":"1.0.0","policy":"unlimited",
        "endpoints":{"production":"pizza"},"resources":[{"method":"GET","path":"/menu","policy":"UNLIMITED"}]}"#;
    Config::from_json(with_api_raw(api).as_bytes()).unwrap_or_else(|error| panic!("{error}"));
    for name in ["unlimited", "UNLIMITED"] {
        let defined = with_api(&format!(r#","policies":{{"{name}":{{"requests":1,"per":"minute"}}}}"#));
        assert_eq!(error_of(&defined).field, format!("policies.{name}"));
    }
}

/// A URL pasted where a cluster or an authority goes may carry a password (`user:password@`):
/// the refusal names the field and shows the value without it, as it goes to Envoy's log.
#[test]
fn a_refused_url_or_authority_is_shown_without_its_password() {
    let km = |jwks: &str| with_api(&format!(r#","key_managers":[{{"name":"k","issuer":"https://k","jwks":{jwks}}}]"#));
    let control_plane =
        |fields: &str| with_api(&format!(r#","control_plane":{{"username":"admin","password":"p",{fields}}}"#));
    for json in [
        with_api_raw(&API.replace(r#""production":"pizza""#, r#""production":"https://admin:s3cret@pizza:8443/x""#)),
        km(r#"{"cluster":"https://admin:s3cret@km:9443/oauth2/jwks"}"#),
        km(r#"{"cluster":"https://admin:s3/cr#et@km:9443/oauth2/jwks"}"#),
        km(r#"{"cluster":"km","authority":"admin:s3cret@km:9443"}"#),
        control_plane(r#""cluster":"apim","authority":"admin:s3cret@apim""#),
        control_plane(r#""cluster":"apim","endpoint_template":{"production":"https://admin:s3cret@{name}:8080"}"#),
    ] {
        let error = error_of(&json).to_string();
        assert!(!error.contains("s3cret") && !error.contains("cr#et"), "{error}");
        assert!(error.contains('…') || error.contains("endpoint_template"), "{error}");
    }
}
