//! Tests of loading: refusals that name their field, the verification fingerprint, sizes and
//! encodings refused before any allocation, and the warnings of a configuration that loads.

use super::*;
use crate::catalogue::FaultId;

fn error_of(json: &str) -> ConfigError {
    Config::from_json(json.as_bytes()).expect_err("config should be refused")
}

/// Condition groups count only where their policy is an API's or a resource's: a policy no
/// API or resource names (a subscription tier, say) is told at load that its groups count nothing.
#[test]
fn condition_groups_of_a_policy_no_api_names_are_warned_of() {
    let config = |api_policy: &str| {
        let json = format!(
            r#"{{"apis":[{{"name":"A","context":"/a","version":"1","endpoints":{{"production":"c"}}{api_policy},
                  "resources":[{{"method":"GET","path":"/r"}}]}}],
              "policies":{{"Gold":{{"requests":5,"per":"minute","condition_groups":[
                  {{"requests":1,"per":"minute","conditions":[{{"ip":"10.0.0.1"}}]}}]}}}}}}"#
        );
        Config::from_json(json.as_bytes()).unwrap()
    };
    let unnamed = config("");
    assert_eq!(unnamed.warnings().len(), 1, "{:?}", unnamed.warnings());
    assert!(unnamed.warnings()[0].contains("policies.Gold.condition_groups"), "{:?}", unnamed.warnings());
    assert!(config(r#","policy":"Gold""#).warnings().is_empty());
}

#[test]
fn a_configuration_of_any_declared_size_is_refused_not_allocated() {
    // Envoy says how large the configuration is before a byte is read; it hands none here.
    for size in [isize::MAX as usize + 1, usize::MAX] {
        let error = Config::from_source(size, &|_, _| None).expect_err("nothing to read");
        assert_eq!(error.field, "(root)", "{size}");
        assert_eq!(error.reason, format!("{size} bytes are more than the filter's memory can hold"));
    }
    // A size the host then cannot hand is its own refusal.
    let error = Config::from_source(100, &|_, _| None).expect_err("nothing to read");
    assert_eq!(error.reason, "the host could not hand the configuration");
}

#[test]
fn text_that_is_not_utf8_is_refused_naming_where() {
    let mut json = br#"{"applications":[{"id":"a","name":"caf"#.to_vec();
    json.extend_from_slice(b"\xe9\"}]}");
    let error = Config::from_json(&json).expect_err("not UTF-8");
    assert_eq!(error.field, "applications[0].name");
    assert_eq!(error.reason, "the configuration is not UTF-8 (at byte offset 38)");
    // The same text in UTF-8 is read (and refused further on for what it lacks, not for its bytes).
    let fine = r#"{"applications":[{"id":"a","name":"café"}]}"#;
    assert!(Config::from_json(fine.as_bytes()).is_ok());
}

const MINIMAL_API: &str = r#"{"name":"Pizza","context":"/pizzashack","version":"1.0.0",
    "endpoints":{"production":"pizza"},"resources":[{"method":"GET","path":"/menu"}]}"#;

#[test]
fn the_verification_fingerprint_follows_what_decides_verification_and_nothing_else() {
    let with = |key_managers: &str, applications: &str, backend_jwt: &str| {
        let json = format!(
            r#"{{"apis":[{MINIMAL_API}],"key_managers":{key_managers},"applications":{applications}{backend_jwt}}}"#
        );
        Config::from_json(json.as_bytes()).unwrap().auth.fingerprint
    };
    let km = |issuer: &str, secret: &str| {
        format!(r#"[{{"name":"km","issuer":"{issuer}","algorithms":["HS256"],"hmac_secret":"{secret}"}}]"#)
    };
    let apps = |id: &str| format!(r#"[{{"id":"{id}","name":"App","owner":"o","client_ids":[{{"id":"c-{id}"}}]}}]"#);
    const S1: &str = "a-secret-of-thirty-two-bytes-000";
    const S2: &str = "a-secret-of-thirty-two-bytes-001";
    let base = with(&km("https://a", S1), &apps("one"), "");
    assert_eq!(base.len(), 64);
    assert_eq!(base, with(&km("https://a", S1), &apps("one"), ""), "the same settings, the same fingerprint");
    assert_eq!(base, with(&km("https://a", S1), &apps("two"), ""), "the directory is not part of it");
    assert_ne!(base, with(&km("https://b", S1), &apps("one"), ""), "an issuer is");
    assert_ne!(base, with(&km("https://a", S2), &apps("one"), ""), "a key is");
    let copying = r#","backend_jwt":{"algorithm":"none","excluded_claims":["email"]}"#;
    assert_ne!(base, with(&km("https://a", S1), &apps("one"), copying), "the claims kept for the backend JWT are");
}

#[test]
fn empty_input_and_empty_object_are_valid_and_equal_the_default() {
    assert!(Config::from_json(b"").is_ok());
    let mut parsed = Config::from_json(b"{}").unwrap();
    // The fingerprint names the verification settings (for the shared verified-token cache).
    assert_eq!(parsed.auth.fingerprint.len(), 64);
    parsed.auth.fingerprint.clear();
    assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
    // A directory prints as its kind only: the empty one holds nothing.
    let directory = &parsed.directory;
    assert!(!directory.has_policies() && directory.blocking().is_empty() && directory.application("").is_none());
}

#[test]
fn compiled_parts_keep_no_raw_types_and_labels_are_built_once() {
    let config = Config::from_json(format!(r#"{{"apis":[{MINIMAL_API}]}}"#).as_bytes()).unwrap();
    let api = &config.routes.apis[0];
    assert_eq!(api.label, "Pizza:1.0.0");
    assert_eq!(api.resources[0].key, "/pizzashack/1.0.0/menu:GET");
}

#[test]
fn unknown_field_is_named_with_its_path() {
    let error = error_of(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
           "resources":[{"method":"GET","path":"/x","methd":"GET"}]}]}"#,
    );
    assert!(error.field.starts_with("apis[0].resources[0]"), "{error}");
    assert!(error.reason.contains("unknown field `methd`"), "{error}");
}

#[test]
fn bad_path_template_is_named() {
    let error = error_of(
        r#"{"apis":[{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"},
           "resources":[{"method":"GET","path":"/x/{id"}]}]}"#,
    );
    assert_eq!(error.field, "apis[0].resources[0].path");
}

#[test]
fn invalid_override_status_is_named() {
    let error = error_of(r#"{"errors":{"overrides":{"900800":{"status":99}}}}"#);
    assert_eq!(error.field, "errors.overrides.900800.status");
    let error = error_of(r#"{"errors":{"overrides":{"900800":{"status":600}}}}"#);
    assert_eq!(error.field, "errors.overrides.900800.status");
    // A fault is its body: a status that carries none would be sent with one (RFC 9110 forbids
    // it; an HTTP/2 client resets the stream, an HTTP/1.1 one reads it as the next response).
    for status in [204, 205, 304] {
        let error = error_of(&format!(r#"{{"errors":{{"overrides":{{"9008xx":{{"status":{status}}}}}}}}}"#));
        assert_eq!(error.field, "errors.overrides.9008xx.status", "{status}");
        assert!(error.to_string().contains("carries no content"), "{error}");
    }
}

#[test]
fn overrides_accept_codes_transport_codes_and_ids() {
    let config = Config::from_json(
        br#"{"errors":{"overrides":{"900800":{"status":555},"101507":{"status":599},
             "production_key_without_endpoint":{"message":"no prod"}}}}"#,
    )
    .unwrap();
    assert_eq!(config.errors.overrides_by_code[&900800].status, Some(555));
    assert!(config.errors.overrides_by_code.contains_key(&101507));
    assert!(config.errors.overrides_by_id.contains_key(&FaultId::ProductionKeyWithoutEndpoint));
    assert_eq!(error_of(r#"{"errors":{"overrides":{"123":{}}}}"#).field, "errors.overrides.123");
    assert_eq!(error_of(r#"{"errors":{"overrides":{"nope":{}}}}"#).field, "errors.overrides.nope");
    assert_eq!(error_of(r#"{"errors":{"overrides":{"7xx":{}}}}"#).field, "errors.overrides.7xx");
    assert!(Config::from_json(br#"{"errors":{"overrides":{"9008xx":{"status":555}}}}"#).is_ok());
}

#[test]
fn template_format_needs_a_template() {
    assert_eq!(error_of(r#"{"errors":{"format":"template"}}"#).field, "errors.template");
}

#[test]
fn unknown_format_is_refused() {
    let error = error_of(r#"{"errors":{"format":"soap"}}"#);
    assert_eq!(error.field, "errors.format");
}

#[test]
fn api_references_and_uniqueness_are_checked() {
    let twice = format!(r#"{{"apis":[{MINIMAL_API},{MINIMAL_API}]}}"#);
    assert_eq!(error_of(&twice).field, "apis[1].name");
    let no_policy = MINIMAL_API.replace(r#""version":"1.0.0","#, r#""version":"1.0.0","policy":"Gold","#);
    assert_eq!(error_of(&format!(r#"{{"apis":[{no_policy}]}}"#)).field, "apis[0].policy");
    let no_endpoint = MINIMAL_API.replace(r#""endpoints":{"production":"pizza"}"#, r#""endpoints":{}"#);
    assert_eq!(error_of(&format!(r#"{{"apis":[{no_endpoint}]}}"#)).field, "apis[0].endpoints");
    let bad_method = MINIMAL_API.replace(r#""GET""#, r#""FETCH""#);
    assert_eq!(error_of(&format!(r#"{{"apis":[{bad_method}]}}"#)).field, "apis[0].resources[0].method");
}

#[test]
fn contexts_are_checked() {
    for context in ["pizzashack", "/", "/pizza/", "/pi zza", "/a/../b", "/a//b", "/{id}"] {
        let api = MINIMAL_API.replace("/pizzashack", context);
        let error = error_of(&format!(r#"{{"apis":[{api}]}}"#));
        assert_eq!(error.field, "apis[0].context", "context {context}");
    }
}

#[test]
fn subscriptions_must_reference_known_things() {
    let json = format!(
        r#"{{"apis":[{MINIMAL_API}],"applications":[{{"id":"app1","name":"App"}}],
           "subscriptions":[{{"application":"app1","api":"Pizza:2.0.0"}}]}}"#
    );
    assert_eq!(error_of(&json).field, "subscriptions[0].api");
    let json = format!(
        r#"{{"apis":[{MINIMAL_API}],"applications":[{{"id":"app1","name":"App"}}],
           "subscriptions":[{{"application":"app1","api":"Pizza:1.0.0","tier":"Gold"}}]}}"#
    );
    assert_eq!(error_of(&json).field, "subscriptions[0].tier");
}

#[test]
fn api_key_hashes_are_checked() {
    let json = r#"{"applications":[{"id":"a","name":"A","api_keys":[{"sha256":"ABC"}]}]}"#;
    assert_eq!(error_of(json).field, "applications[0].api_keys[0].sha256");
}

#[test]
fn policies_are_checked() {
    assert_eq!(error_of(r#"{"policies":{"P":{"per":"minute"}}}"#).field, "policies.P");
    assert_eq!(error_of(r#"{"policies":{"P":{"requests":0,"per":"minute"}}}"#).field, "policies.P.requests");
    assert_eq!(
        error_of(r#"{"policies":{"P":{"requests":5,"per":"minute","burst":{"requests":1,"per":"hour"}}}}"#).field,
        "policies.P.burst.per"
    );
    assert_eq!(error_of(r#"{"policies":{"Unlimited":{"requests":5,"per":"minute"}}}"#).field, "policies.Unlimited");
}

#[test]
fn cors_wildcard_with_credentials_is_refused() {
    let error = error_of(r#"{"errors":{"cors":{"allow_origins":["*"],"allow_credentials":true}}}"#);
    assert_eq!(error.field, "errors.cors.allow_credentials");
}

#[test]
fn each_header_the_filter_sets_is_its_own() {
    // Found by a configuration fuzz: these loaded, and the later header was written over the
    // earlier one (every authorized request routed to a cluster named by a JWT or a tier).
    let cases = [
        (r#""routing":{"cluster_header":"x-jwt-assertion"},"backend_jwt":{"algorithm":"none"}"#, "backend_jwt.header"),
        (
            r#""routing":{"cluster_header":"x-apim-cluster"},"backend_jwt":{"algorithm":"none","header":"x-apim-cluster"}"#,
            "backend_jwt.header",
        ),
        (
            r#""routing":{"api_header":"x-apim-api"},"backend_jwt":{"algorithm":"none","header":"X_APIM_API"}"#,
            "backend_jwt.header",
        ),
        (r#""routing":{"cluster_header":"x-apim-tier"}"#, "credentials.context_header_prefix"),
        (r#""routing":{"api_header":"x-apim-application-id"}"#, "credentials.context_header_prefix"),
        (r#""routing":{"api_header":"x-apim-key-type"}"#, "credentials.context_header_prefix"),
        (r#""throttling":{"quota_exceeded_header":"x-apim-cluster"}"#, "throttling.quota_exceeded_header"),
        // A credentials header the filter sets would be taken from the client before it is read.
        (r#""throttling":{"quota_exceeded_header":"apikey"}"#, "throttling.quota_exceeded_header"),
        (r#""backend_jwt":{"algorithm":"none","header":"authorization"}"#, "backend_jwt.header"),
        // Nor a header requests depend on: the client's copy is removed from every request.
        (r#""backend_jwt":{"algorithm":"none","header":"Content-Type"}"#, "backend_jwt.header"),
        (r#""backend_jwt":{"algorithm":"none","header":"cookie"}"#, "backend_jwt.header"),
        (r#""backend_jwt":{"algorithm":"none","header":"Host"}"#, "backend_jwt.header"),
        (r#""throttling":{"quota_exceeded_header":"X-Forwarded-For"}"#, "throttling.quota_exceeded_header"),
        (r#""credentials":{"context_header_prefix":"x-envoy-"}"#, "credentials.context_header_prefix"),
        (r#""credentials":{"context_header_prefix":"content-"}"#, "credentials.context_header_prefix"),
    ];
    for (settings, field) in cases {
        let error = error_of(&format!("{{{settings}}}"));
        assert_eq!(error.field, field, "{settings}: {error}");
    }
    Config::from_json(br#"{"backend_jwt":{"algorithm":"none"}}"#).expect("the defaults are distinct");
}

#[test]
fn a_refusal_names_the_field_that_was_written() {
    let cases = [
        (
            r#"{"control_plane":{"cluster":"apim","username":"a","password":"p","base_path":"internal/data/v1"}}"#,
            "control_plane.base_path",
        ),
        (
            r#"{"control_plane":{"cluster":"apim","username":"a","password":"p","base_path":"//"}}"#,
            "control_plane.base_path",
        ),
        (
            r#"{"control_plane":{"cluster":"apim","username":"a","password":"p","event_apis":"count_events"}}"#,
            "control_plane.event_apis",
        ),
        // One tenant: API-M answers `ALL` with every tenant's APIs and policies, `*` with 400.
        (
            r#"{"control_plane":{"cluster":"apim","username":"a","password":"p","tenant":"ALL"}}"#,
            "control_plane.tenant",
        ),
        (r#"{"control_plane":{"cluster":"apim","username":"a","password":"p","tenant":"*"}}"#, "control_plane.tenant"),
        (
            r#"{"throttling":{"rate_limit_service":{"cluster":"rl"}},
                "policies":{"B":{"bytes":100,"per":"minute","burst":{"requests":4294967296,"per":"second"}}}}"#,
            "policies.B.burst.requests",
        ),
        (
            r#"{"throttling":{"rate_limit_service":{"cluster":"rl"}},"policies":{"B":{"requests":4294967296,"per":"minute"}}}"#,
            "policies.B.requests",
        ),
        (
            r#"{"key_managers":[{"name":"a","issuer":"https://a","jwks":{"cluster":"km","path":"jwks"}}]}"#,
            "key_managers[0].jwks.path",
        ),
    ];
    for (json, field) in cases {
        assert_eq!(error_of(json).field, field, "{json}");
    }
}

#[test]
fn values_are_not_echoed_in_type_errors() {
    let error = error_of(r#"{"applications":[{"id":"a","name":"A","api_keys":["sk_live_SECRET"]}]}"#);
    assert_eq!(error.field, "applications[0].api_keys[0]");
    assert!(!error.to_string().contains("sk_live_SECRET"), "{error}");
    assert!(error.reason.contains("invalid type: a string"), "{error}");
    let error = error_of(r#"{"applications":[{"id":"a","name":"A","api_keys":["se\"cr\"et-TAIL"]}]}"#);
    assert!(!error.to_string().contains("TAIL"), "{error}");
    // serde quotes variants and numbers in backticks: a secret pasted where an enum or a
    // number goes is not echoed either, and what was expected still is.
    let error = error_of(r#"{"errors":{"format":"sk_live_SECRET"}}"#);
    assert_eq!(error.field, "errors.format");
    assert!(!error.to_string().contains("sk_live_SECRET") && error.reason.contains("expected one of"), "{error}");
    for number in ["8675309123", "-8675309123", "8675309.123"] {
        let error = error_of(&format!(r#"{{"credentials":{{"realm":{number}}}}}"#));
        assert!(!error.to_string().contains("8675309"), "{error}");
        assert!(
            error.reason.starts_with("invalid type: an integer") || error.reason.starts_with("invalid type: a number"),
            "{error}"
        );
    }
}

#[test]
fn client_ids_name_their_key_manager_when_there_are_several() {
    let two = r#"{"key_managers":[{"name":"a","issuer":"https://a","jwks":{"cluster":"a"}},
        {"name":"b","issuer":"https://b","jwks":{"cluster":"b"}}],
        "applications":[{"id":"x","name":"X","client_ids":[{"id":"c"}]}]}"#;
    assert_eq!(error_of(two).field, "applications[0].client_ids[0].key_manager");
    let unknown = two.replace(r#"{"id":"c"}"#, r#"{"id":"c","key_manager":"z"}"#);
    assert_eq!(error_of(&unknown).field, "applications[0].client_ids[0].key_manager");
    let named = two.replace(r#"{"id":"c"}"#, r#"{"id":"c","key_manager":"b"}"#);
    let config = Config::from_json(named.as_bytes()).unwrap();
    assert_eq!(config.directory.client("c", crate::vocab::KmId(1)).unwrap().key_manager, Some(crate::vocab::KmId(1)));
    assert!(config.directory.client("c", crate::vocab::KmId(0)).is_none(), "b's client, not a's");
}

#[test]
fn routing_headers_must_not_be_reserved_or_credentials() {
    assert_eq!(error_of(r#"{"routing":{"cluster_header":"host"}}"#).field, "routing.cluster_header");
    assert_eq!(error_of(r#"{"routing":{"cluster_header":"Content-Length"}}"#).field, "routing.cluster_header");
    assert_eq!(error_of(r#"{"routing":{"api_header":"apikey"}}"#).field, "routing.api_header");
    assert_eq!(error_of(r#"{"routing":{"api_header":"x-envoy-upstream-rq-timeout-ms"}}"#).field, "routing.api_header");
}

/// The schema says object for every struct: one written as an array (which serde_json's own struct
/// reader takes, by position) is refused, naming the member, wherever it is.
#[test]
fn a_struct_written_as_an_array_is_refused() {
    let refused = error_of(r#"{"policies":{"P":[5,"minute"]}}"#);
    assert_eq!(refused.field, "policies.P");
    assert!(refused.reason.starts_with("invalid type: sequence, expected"), "{}", refused.reason);
    let api = MINIMAL_API.replace(r#"{"method":"GET","path":"/menu"}"#, r#"["GET","/menu"]"#);
    assert_eq!(error_of(&format!(r#"{{"apis":[{api}]}}"#)).field, "apis[0].resources[0]");
    let api = MINIMAL_API.replace(r#"{"production":"pizza"}"#, r#"["pizza"]"#);
    assert_eq!(error_of(&format!(r#"{{"apis":[{api}]}}"#)).field, "apis[0].endpoints");
    assert_eq!(error_of(r#"{"throttling":[]}"#).field, "throttling");
    assert_eq!(error_of(r#"{"applications":[["App","Unlimited"]]}"#).field, "applications[0]");
    // Other values refused an array are named as before (the array's first element is read).
    let api = MINIMAL_API.replace(r#""path":"/menu""#, r#""path":"/menu","scopes":[["x"]]"#);
    assert_eq!(error_of(&format!(r#"{{"apis":[{api}]}}"#)).field, "apis[0].resources[0].scopes[0]");
    assert_eq!(error_of(r#"{"gateway":[1]}"#).field, "gateway");
}

#[test]
fn trailing_garbage_is_refused() {
    assert_eq!(error_of("{} {}").field, "(root)");
    assert_eq!(error_of("[]").field, "(root)");
}

#[test]
fn base_paths_include_default_version_and_version_templates() {
    let api = MINIMAL_API.replace(r#""version":"1.0.0","#, r#""version":"1.0.0","default_version":true,"#);
    let config = Config::from_json(format!(r#"{{"apis":[{api}]}}"#).as_bytes()).unwrap();
    assert!(config.routes.base_paths.contains_key("/pizzashack/1.0.0"));
    assert!(config.routes.base_paths.contains_key("/pizzashack"));
    let api = MINIMAL_API.replace("/pizzashack", "/{version}/pizzashack");
    let config = Config::from_json(format!(r#"{{"apis":[{api}]}}"#).as_bytes()).unwrap();
    assert!(config.routes.base_paths.contains_key("/1.0.0/pizzashack"));
}

/// Mistakes that used to load and then fail on every request are refused at load, naming the
/// field.
#[test]
fn configurations_that_could_never_serve_are_refused_at_load() {
    let api = |extra: &str| format!(r#"{{"apis":[{}]{extra}}}"#, MINIMAL_API);
    let cases: Vec<(String, &str)> = vec![
        (api("").replace(r#""context":"/pizzashack""#, r#""context":"/pizzashack/1.0.0""#), "apis[0].context"),
        (api("").replace(r#""path":"/menu""#, r#""path":"/orders/:id""#), "apis[0].resources[0].path"),
        (
            api("").replace(r#""path":"/menu""#, r#""path":"/menu","security":["api_key"],"scopes":["read"]"#),
            "apis[0].resources[0].scopes",
        ),
        (
            api("").replace(r#""path":"/menu""#, r#""path":"/menu","security":[],"user_token_only":true"#),
            "apis[0].resources[0].user_token_only",
        ),
        (
            api("")
                .replace(r#""path":"/menu""#, r#""path":"/menu","user_token_only":true,"application_token_only":true"#),
            "apis[0].resources[0].application_token_only",
        ),
        (
            api("").replace(r#""version":"1.0.0","#, r#""version":"1.0.0","api_key_in_query":true,"#),
            "apis[0].api_key_in_query",
        ),
        (
            api(
                r#","applications":[{"id":"a","name":"A","api_keys":[{"sha256":"b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c","key_type":"SANDBOX"}]}],
                  "subscriptions":[{"application":"a","api":"Pizza:1.0.0"}]"#,
            ),
            "subscriptions[0]",
        ),
        (api(r#","blocking":[{"api":"/pizzashak/1.0.0"}]"#), "blocking[0].api"),
        (api(r#","blocking":[{"user":""}]"#), "blocking[0].user"),
        // Subscription conditions are matched by `<name>:<version>` only: naming the API by
        // a context (one holding `:`) would load and block nothing.
        (
            api(r#","blocking":[{"subscription":"app:/shop:v1"}]"#).replace("/pizzashack", "/shop:v1"),
            "blocking[0].subscription",
        ),
        (api(r#","blocking":[{"application":" "}]"#), "blocking[0].application"),
        (api(r#","applications":[{"id":"a","name":"A","client_ids":[{"id":"c"}]}]"#), "applications[0].client_ids"),
        (api(r#","key_managers":[{"name":"k","issuer":"https://k"}]"#), "key_managers[0]"),
    ];
    for (json, field) in cases {
        assert_eq!(error_of(&json).field, field, "{json}");
    }
    // The mixed application is fine: its production key works.
    let mixed = api(r#","applications":[{"id":"a","name":"A","api_keys":[
        {"sha256":"b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c","key_type":"SANDBOX"},
        {"sha256":"c5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"}]}],
        "subscriptions":[{"application":"a","api":"Pizza:1.0.0"}]"#);
    assert!(Config::from_json(mixed.as_bytes()).is_ok());
}

#[test]
fn secrets_are_taken_from_the_environment_or_inline_with_a_warning() {
    let km = |secret: &str| {
        format!(
            r#"{{"key_managers":[{{"name":"k","issuer":"https://k",
                "introspection":{{"cluster":"km","client_id":"gw","client_secret":{secret}}}}}]}}"#
        )
    };
    std::env::set_var("APIM_TEST_SECRET_A", "from-the-environment");
    let config = Config::from_json(km(r#"{"env":"APIM_TEST_SECRET_A"}"#).as_bytes()).unwrap();
    let introspection = config.auth.key_managers[0].introspection.as_ref().unwrap();
    assert_eq!(introspection.client_secret.0, b"from-the-environment");
    assert!(config.warnings().is_empty());
    assert!(!format!("{config:?}").contains("from-the-environment"), "never printed");
    let error = error_of(&km(r#"{"env":"APIM_TEST_SECRET_UNSET"}"#));
    assert_eq!(error.field, "key_managers[0].introspection.client_secret.env");
    let inline = Config::from_json(km(r#""inline-secret""#).as_bytes()).unwrap();
    assert!(inline.warnings()[0].contains("key_managers[0].introspection.client_secret"));
    assert!(!inline.warnings()[0].contains("inline-secret"));
    assert_eq!(error_of(&km(r#"{"env":"X","value":"y"}"#)).field, "key_managers[0].introspection.client_secret");
    // HMAC secrets are random bytes: base64.
    let hmac = |secret: &str| {
        format!(
            r#"{{"key_managers":[{{"name":"k","issuer":"https://k","algorithms":["HS256"],"hmac_secret":{secret}}}]}}"#
        )
    };
    let random = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xffu8; 32]);
    assert!(Config::from_json(hmac(&format!(r#"{{"value":"{random}","encoding":"base64"}}"#)).as_bytes()).is_ok());
    assert_eq!(error_of(&hmac(r#"{"value":"c2hvcnQ=","encoding":"base64"}"#)).field, "key_managers[0].hmac_secret");
    assert_eq!(error_of(&hmac(r#"{"value":"!!!","encoding":"base64"}"#)).field, "key_managers[0].hmac_secret");
}

#[test]
fn duplicate_base_paths_are_refused() {
    let other = MINIMAL_API.replace(r#""name":"Pizza""#, r#""name":"Other""#);
    let error = error_of(&format!(r#"{{"apis":[{MINIMAL_API},{other}]}}"#));
    assert_eq!(error.field, "apis[1].context");
}

/// A secret written as an array (a source's fields by position, which serde's derive of the
/// untagged enum took) is refused, as every struct written as an array is, naming its field.
#[test]
fn a_secret_written_as_an_array_is_refused_naming_its_field() {
    for secret in [r#"["NAME"]"#, r#"[null, "x", "base64"]"#, "[]", r#"[[], {}]"#] {
        let json = format!(r#"{{"control_plane":{{"cluster":"apim","password":{secret},"username":"a"}}}}"#);
        let refused = error_of(&json);
        assert_eq!(refused.field, "control_plane.password", "{json}");
        assert!(refused.reason.starts_with("data did not match any variant"), "{json}: {}", refused.reason);
    }
}

/// A secret of neither variant is named wherever it is written in its object, the last member
/// included (the error was placed past the object's end, which named the object).
#[test]
fn a_secret_of_neither_variant_is_named_written_last() {
    for secret in ["1", "true", r#"{"env":1}"#, r#"{"other":"x"}"#, r#"["NAME"]"#] {
        for (json, field) in [
            (
                format!(r#"{{"control_plane":{{"cluster":"apim","username":"a","password":{secret}}}}}"#),
                "control_plane.password",
            ),
            (
                format!("{{\"control_plane\":{{\"cluster\":\"apim\",\"username\":\"a\",\"password\":{secret} \n}}}}"),
                "control_plane.password",
            ),
            (
                format!(r#"{{"control_plane":{{"cluster":"apim","password":{secret} ,"username":"a"}}}}"#),
                "control_plane.password",
            ),
            (
                format!(r#"{{"key_managers":[{{"name":"km","issuer":"i","hmac_secret":{secret}}}]}}"#),
                "key_managers[0].hmac_secret",
            ),
        ] {
            let refused = error_of(&json);
            assert_eq!(refused.field, field, "{json}");
            assert!(refused.reason.starts_with("data did not match any variant"), "{json}: {}", refused.reason);
        }
    }
}

/// The backend JWT's JWKS is answered before routing: a `jwks_path` where an API has a resource
/// would take that resource's requests, so the configuration is refused naming the field.
#[test]
fn a_jwks_path_over_an_api_resource_is_refused() {
    let key = serde_json::to_string(include_str!("../../tests/fixtures/keys/rsa-a.pem")).unwrap();
    let with = |jwks_path: &str| {
        format!(r#"{{"apis":[{MINIMAL_API}],"backend_jwt":{{"private_key":{key},"jwks_path":{jwks_path}}}}}"#)
    };
    let error = error_of(&with(r#""/pizzashack/1.0.0/menu""#));
    assert_eq!(error.field, "backend_jwt.jwks_path", "{error}");
    assert!(error.to_string().contains("Pizza:1.0.0"), "{error}");
    for free in [r#""/jwks""#, r#""/pizzashack/1.0.0""#, "null"] {
        assert!(Config::from_json(with(free).as_bytes()).is_ok(), "{free}");
    }
}

/// With `unmatched: pass_through`, the JWKS path also hides whatever Envoy routes there: the
/// operator is told at load.
#[test]
fn a_jwks_path_beside_pass_through_is_warned_about() {
    let key = serde_json::to_string(include_str!("../../tests/fixtures/keys/rsa-a.pem")).unwrap();
    let with = |unmatched: &str| {
        format!(r#"{{"apis":[{MINIMAL_API}],"unmatched":"{unmatched}","backend_jwt":{{"private_key":{key}}}}}"#)
    };
    let warned = |unmatched: &str| {
        let config = Config::from_json(with(unmatched).as_bytes()).unwrap();
        config.warnings().iter().any(|line| line.contains("`backend_jwt.jwks_path` `/jwks`"))
    };
    assert!(warned("pass_through"));
    assert!(!warned("fault"));
}

/// The control plane's tables filter their resources' CORS methods by `errors.cors.allow_methods`,
/// as the configuration's own table does: the configuration hands the list over.
#[test]
fn the_control_plane_gets_the_cors_methods_the_configuration_allows() {
    let control_plane = r#""control_plane":{"cluster":"apim","username":"a","password":"p"}"#;
    let cors = r#""errors":{"cors":{"allow_origins":["*"],"allow_methods":["DELETE","GET"]}}"#;
    let with = Config::from_json(format!("{{{control_plane},{cors}}}").as_bytes()).unwrap();
    let allowed = with.control_plane.unwrap().cors_allow_methods;
    assert_eq!(allowed, Some(vec!["DELETE".to_string(), "GET".to_string()]));
    let without = Config::from_json(format!("{{{control_plane}}}").as_bytes()).unwrap();
    assert_eq!(without.control_plane.unwrap().cors_allow_methods, None);
}
