//! The static directory's tests: large directories, lookups, duplicates and their errors.

use super::*;
use crate::config::Config;
use crate::vocab::UNLIMITED;
use sha2::{Digest, Sha256};

const APIS: &str = r#"[
    {"name":"A","context":"/a","version":"1","endpoints":{"production":"a"},"security":["api_key"],
     "resources":[{"method":"GET","path":"/x"}]},
    {"name":"B","context":"/b","version":"1","endpoints":{"production":"b"},"security":["api_key"],
     "resources":[{"method":"GET","path":"/x"}]}]"#;

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// `count` applications, each with an API key, subscribed to A (and every third also to B).
fn config(count: usize, extra_keys: &[(usize, [u8; 32])], extra_subscriptions: &str) -> Result<Config, ConfigError> {
    let mut applications = Vec::new();
    let mut subscriptions = Vec::new();
    for i in 0..count {
        let mut keys = vec![crate::hashing::hex(&digest(&format!("key-{i}")))];
        keys.extend(extra_keys.iter().filter(|(app, _)| *app == i).map(|(_, key)| crate::hashing::hex(key)));
        let keys: Vec<String> = keys.iter().map(|key| format!(r#"{{"sha256":"{key}"}}"#)).collect();
        applications
            .push(format!(r#"{{"id":"app-{i}","name":"App {i}","owner":"o","api_keys":[{}]}}"#, keys.join(",")));
        subscriptions.push(format!(r#"{{"application":"app-{i}","api":"A:1","tier":"Gold"}}"#));
        if i % 3 == 0 {
            subscriptions.push(format!(r#"{{"application":"app-{i}","api":"B:1","tier":"Gold"}}"#));
        }
    }
    let json = format!(
        r#"{{"apis":{APIS},"policies":{{"Gold":{{"requests":5,"per":"minute"}}}},"applications":[{}],"subscriptions":[{}{extra_subscriptions}]}}"#,
        applications.join(","),
        subscriptions.join(",")
    );
    Config::from_json(json.as_bytes())
}

#[test]
fn every_key_and_subscription_of_a_large_directory_is_found_and_nothing_else() {
    // Two keys whose digests share their first 8 bytes (the lookup's bucket) with app 7's key.
    let mut near = digest("key-7");
    near[31] ^= 1;
    let mut nearer = digest("key-7");
    nearer[8] ^= 0x80;
    let config = config(2_000, &[(11, near), (12, nearer)], "").unwrap();
    let directory = config.directory.as_ref();
    let (a, b) = (config.routes.by_label("A:1").unwrap(), config.routes.by_label("B:1").unwrap());
    for i in 0..2_000 {
        let key = directory.api_key(&digest(&format!("key-{i}"))).unwrap();
        assert_eq!(&*key.application, format!("app-{i}"));
        let id = format!("app-{i}");
        assert_eq!(directory.subscription(&id, a).unwrap().tier, "Gold");
        assert_eq!(directory.subscription(&id, b).is_some(), i % 3 == 0, "app {i} on B");
        assert_eq!(directory.application(&id).unwrap().name(), format!("App {i}"));
    }
    assert_eq!(&*directory.api_key(&near).unwrap().application, "app-11");
    assert_eq!(&*directory.api_key(&nearer).unwrap().application, "app-12");
    assert!(directory.api_key(&digest("key-2000")).is_none());
    let mut unknown_near = digest("key-7");
    unknown_near[20] ^= 1;
    assert!(directory.api_key(&unknown_near).is_none());
    assert!(directory.subscription("app-2000", a).is_none());
}

#[test]
fn strings_with_escapes_are_read_like_plain_ones() {
    // Plain strings borrow from the text; escaped ones are decoded into owned strings.
    let json = format!(
        r#"{{"apis":{APIS},"policies":{{"Gold":{{"requests":5,"per":"minute"}}}},
            "applications":[{{"id":"app\u002d1","name":"App \"One\"","owner":"o\\p","policy":"G\u006fld",
                "api_keys":[{{"sha256":"{}"}}]}}],
            "subscriptions":[{{"application":"app-1","api":"A\u003a1","tier":"Gol\u0064"}},
                             {{"application":"app\u002d1","api":"B:1"}}]}}"#,
        crate::hashing::hex(&digest("key-1"))
    );
    let config = Config::from_json(json.as_bytes()).unwrap();
    let directory = config.directory.as_ref();
    let application = directory.application("app-1").unwrap();
    assert_eq!((application.name(), application.owner()), ("App \"One\"", "o\\p"));
    assert_eq!(application.policy(), Some("Gold"));
    assert_eq!(&*directory.api_key(&digest("key-1")).unwrap().application, "app-1");
    let (a, b) = (config.routes.by_label("A:1").unwrap(), config.routes.by_label("B:1").unwrap());
    assert_eq!(directory.subscription("app-1", a).unwrap().tier, "Gold");
    assert_eq!(directory.subscription("app-1", b).unwrap().tier, UNLIMITED);
}

#[test]
fn key_digests_are_64_lowercase_hex_characters() {
    let key = digest("k");
    assert_eq!(hex_digest(&crate::hashing::hex(&key)), Some(key));
    let upper = crate::hashing::hex(&key).to_uppercase();
    let mut wrong_character = crate::hashing::hex(&key);
    wrong_character.replace_range(63.., "g");
    let mut multibyte = crate::hashing::hex(&key);
    multibyte.replace_range(62.., "é");
    for refused in [upper.as_str(), &wrong_character, &multibyte, &crate::hashing::hex(&key)[..62], ""] {
        assert_eq!(hex_digest(refused), None, "{refused}");
    }
}

#[test]
fn subscriptions_in_any_order_reach_their_applications() {
    // Applications in order, subscriptions scrambled (the lookup tries the application after
    // the last one found before the map): each lands on its own application.
    let applications: Vec<String> =
        (0..50).map(|i| format!(r#"{{"id":"app-{i}","name":"App {i}","owner":"o"}}"#)).collect();
    let mut subscriptions = Vec::new();
    for step in 0..50 {
        let i = step * 7 % 50;
        subscriptions.push(format!(r#"{{"application":"app-{i}","api":"A:1","tier":"Gold"}}"#));
        if i % 2 == 0 {
            subscriptions.push(format!(r#"{{"application":"app-{}","api":"B:1"}}"#, (i + 1) % 50));
        }
    }
    let json = |extra: &str| {
        format!(
            r#"{{"apis":{APIS},"policies":{{"Gold":{{"requests":5,"per":"minute"}}}},"applications":[{}],"subscriptions":[{}{extra}]}}"#,
            applications.join(","),
            subscriptions.join(",")
        )
    };
    let config = Config::from_json(json("").as_bytes()).unwrap();
    let (a, b) = (config.routes.by_label("A:1").unwrap(), config.routes.by_label("B:1").unwrap());
    for i in 0..50 {
        let id = format!("app-{i}");
        assert_eq!(config.directory.subscription(&id, a).unwrap().tier, "Gold", "{id} on A");
        assert_eq!(config.directory.subscription(&id, b).is_some(), i % 2 == 1, "{id} on B");
    }
    let error = Config::from_json(json(r#",{"application":"app-50","api":"A:1"}"#).as_bytes()).unwrap_err();
    assert_eq!(error.field, format!("subscriptions[{}].application", subscriptions.len()));
}

#[test]
fn client_ids_and_application_ids_are_unique_and_each_found() {
    let km = r#""key_managers":[{"name":"k","issuer":"https://k","jwks":{"cluster":"k"}}]"#;
    let with = |applications: &str| {
        Config::from_json(format!(r#"{{"apis":{APIS},{km},"applications":[{applications}]}}"#).as_bytes())
    };
    // 3,000 applications, each with two clients (the index grows past its first size).
    let applications: Vec<String> = (0..3_000)
        .map(|i| format!(r#"{{"id":"app-{i}","name":"App {i}","client_ids":[{{"id":"c-{i}"}},{{"id":"d-{i}","key_type":"SANDBOX"}}]}}"#))
        .collect();
    let config = with(&applications.join(",")).unwrap();
    let directory = config.directory.as_ref();
    for i in 0..3_000 {
        let production = directory.client(&format!("c-{i}"), KmId(0)).unwrap();
        assert_eq!((&*production.application, production.key_type), (&*format!("app-{i}"), KeyType::Production));
        let sandbox = directory.client(&format!("d-{i}"), KmId(0)).unwrap();
        assert_eq!((&*sandbox.application, sandbox.key_type), (&*format!("app-{i}"), KeyType::Sandbox));
        assert_eq!(directory.application(&format!("app-{i}")).unwrap().name(), format!("App {i}"));
    }
    for unknown in ["c-3000", "c-", "", "app-1"] {
        assert!(directory.client(unknown, KmId(0)).is_none(), "{unknown}");
    }
    assert!(directory.application("c-1").is_none());
    let refused = [
        (
            r#"{"id":"a","name":"A","client_ids":[{"id":"c"}]},{"id":"b","name":"B","client_ids":[{"id":"c"}]}"#,
            "applications[1].client_ids[0].id",
        ),
        (r#"{"id":"a","name":"A","client_ids":[{"id":"c"},{"id":"c"}]}"#, "applications[0].client_ids[1].id"),
        (r#"{"id":"a","name":"A","client_ids":[{"id":""}]}"#, "applications[0].client_ids[0].id"),
        (r#"{"id":"a","name":"A"},{"id":"b","name":"B"},{"id":"a","name":"C"}"#, "applications[2].id"),
        (r#"{"id":"","name":"A"}"#, "applications[0].id"),
    ];
    for (applications, field) in refused {
        assert_eq!(with(applications).unwrap_err().field, field, "{applications}");
    }
}

#[test]
fn subscriptions_are_found_by_label_whatever_table_the_api_comes_from() {
    // The control plane's table numbers its APIs itself: there B has A's id here, and C B's.
    let config = config(10, &[], "").unwrap();
    let other = Config::from_json(
        br#"{"apis":[
        {"name":"B","context":"/b","version":"1","endpoints":{"production":"b"},"security":["api_key"],
         "resources":[{"method":"GET","path":"/x"}]},
        {"name":"C","context":"/c","version":"1","endpoints":{"production":"c"},"security":["api_key"],
         "resources":[{"method":"GET","path":"/x"}]}]}"#,
    )
    .unwrap();
    let (b, c) = (other.routes.by_label("B:1").unwrap(), other.routes.by_label("C:1").unwrap());
    assert_eq!((b.id, c.id), (config.routes.by_label("A:1").unwrap().id, config.routes.by_label("B:1").unwrap().id));
    let directory = config.directory.as_ref();
    assert!(directory.subscription("app-0", b).is_some());
    assert!(directory.subscription("app-1", b).is_none(), "app-1 is subscribed to A, not B");
    assert!(directory.subscription("app-0", c).is_none(), "no one is subscribed to C");
}

#[test]
fn identical_subscriptions_share_one_value() {
    let config = config(10, &[], "").unwrap();
    let a = config.routes.by_label("A:1").unwrap();
    let first = config.directory.subscription("app-0", a).unwrap();
    let second = config.directory.subscription("app-9", a).unwrap();
    assert!(Rc::ptr_eq(&first, &second));
}

#[test]
fn duplicates_are_refused_naming_the_first_repeat_in_the_configuration() {
    let repeated = digest("key-3");
    let error = config(10, &[(8, repeated)], "").unwrap_err();
    assert_eq!(error.field, "applications[8].api_keys[1].sha256");
    assert_eq!(error.reason, "the same key is configured twice");
    // Among keys sharing their first 8 bytes (what the index sorts by) too.
    let mut near = repeated;
    near[8] ^= 0x80;
    let error = config(10, &[(1, near), (8, repeated)], "").unwrap_err();
    assert_eq!(error.field, "applications[8].api_keys[1].sha256");
    let twice =
        r#",{"application":"app-5","api":"B:1","tier":"Gold"},{"application":"app-2","api":"A:1","tier":"Gold"}"#;
    let error = config(10, &[], twice).unwrap_err();
    // 10 subscriptions to A and 4 to B come first; app-5's to B is new, app-2's to A repeats.
    assert_eq!(error.field, "subscriptions[15]");
    let error = config(10, &[], r#",{"application":"app-99","api":"A:1","tier":"Gold"}"#).unwrap_err();
    assert_eq!(error.field, "subscriptions[14].application");
}

/// Applications are compiled as they are parsed and some checks wait for the rest of the
/// configuration: whatever fails, the error is still the first failure in the applications'
/// order (id, policy, each client, each key), and a JSON error anywhere comes before any.
#[test]
fn the_first_failing_check_in_the_applications_order_is_reported() {
    const TWO_KMS: &str = r#""key_managers":[{"name":"a","issuer":"https://a","jwks":{"cluster":"a"}},
        {"name":"b","issuer":"https://b","jwks":{"cluster":"b"}}]"#;
    const ONE_KM: &str = r#""key_managers":[{"name":"a","issuer":"https://a","jwks":{"cluster":"a"}}]"#;
    const GOLD: &str = r#""policies":{"Gold":{"requests":5,"per":"minute"}}"#;
    let bad_key = r#"{"sha256":"ABC"}"#;
    let cases = [
        // A policy waits for `policies`; a repeated id is found at once, later.
        (GOLD, r#"{"id":"x","name":"X","policy":"Iron"},{"id":"x","name":"X"}"#, "applications[0].policy", "Iron"),
        (GOLD, r#"{"id":"x","name":"X"},{"id":"x","name":"X","policy":"Iron"}"#, "applications[1].id", "twice"),
        // Within one application: the policy, then its clients, then its keys.
        (
            ONE_KM,
            r#"{"id":"x","name":"X","policy":"Iron","client_ids":[{"id":"c"},{"id":"c"}]}"#,
            "applications[0].policy",
            "Iron",
        ),
        (
            ONE_KM,
            &format!(r#"{{"id":"x","name":"X","client_ids":[{{"id":"c","key_manager":"z"}}],"api_keys":[{bad_key}]}}"#),
            "applications[0].client_ids[0].key_manager",
            "`z` is not defined",
        ),
        (
            ONE_KM,
            &format!(r#"{{"id":"x","name":"X","api_keys":[{bad_key}]}},{{"id":"y","name":"Y","policy":"Iron"}}"#),
            "applications[0].api_keys[0].sha256",
            "64 lowercase hex",
        ),
        // Key managers: none configured, one missing among two, one unknown, in client order.
        (
            "",
            r#"{"id":"x","name":"X"},{"id":"y","name":"Y","client_ids":[{"id":"c"}]}"#,
            "applications[1].client_ids",
            "need a key manager",
        ),
        (
            TWO_KMS,
            r#"{"id":"x","name":"X","client_ids":[{"id":"c","key_manager":"a"},{"id":"d"},{"id":"e","key_manager":"z"}]}"#,
            "applications[0].client_ids[1].key_manager",
            "is required",
        ),
        (
            TWO_KMS,
            r#"{"id":"x","name":"X","client_ids":[{"id":"c","key_manager":"z"}]},{"id":"y","name":"Y","client_ids":[{"id":"d"}]}"#,
            "applications[0].client_ids[0].key_manager",
            "`z` is not defined",
        ),
        (
            TWO_KMS,
            r#"{"id":"x","name":"X","client_ids":[{"id":"c","key_manager":"a"}]},{"id":"y","name":"Y","client_ids":[{"id":"c","key_manager":"a"},{"id":"d","key_manager":"z"}]}"#,
            "applications[1].client_ids[0].id",
            "unique",
        ),
        (
            TWO_KMS,
            r#"{"id":"x","name":"X"},{"id":"y","name":"Y","client_ids":[{"id":"c","key_manager":"a"},{"id":"c","key_manager":"a"},{"id":"e","key_manager":"z"}]}"#,
            "applications[1].client_ids[1].id",
            "unique",
        ),
        // A repeat before a failure in the same application.
        (
            ONE_KM,
            r#"{"id":"x","name":"X","client_ids":[{"id":"c"}]},{"id":"y","name":"Y","client_ids":[{"id":"c"},{"id":""}]}"#,
            "applications[1].client_ids[0].id",
            "unique",
        ),
        (
            GOLD,
            &format!(r#"{{"id":"x","name":"X"}},{{"id":"x","name":"X","api_keys":[{bad_key}]}}"#),
            "applications[1].id",
            "twice",
        ),
        // A JSON error after a failing check is still the one reported.
        (GOLD, r#"{"id":"x","name":"X","policy":"Iron"},{"id":"y","name":7}"#, "applications[1].name", "invalid type"),
    ];
    for (context, applications, field, reason) in cases {
        let separator = if context.is_empty() { "" } else { "," };
        let json = format!(r#"{{{context}{separator}"applications":[{applications}]}}"#);
        let error = Config::from_json(json.as_bytes()).err().unwrap_or_else(|| panic!("{json} loaded"));
        assert_eq!(error.field, field, "{json}");
        assert!(error.reason.contains(reason), "{json}: {}", error.reason);
    }
    // Clients name their key managers in any order and each gets its own.
    let json = format!(
        r#"{{{TWO_KMS},"applications":[{{"id":"x","name":"X","client_ids":[{{"id":"c","key_manager":"b"}},{{"id":"d","key_manager":"a"}}]}}]}}"#
    );
    let config = Config::from_json(json.as_bytes()).unwrap();
    assert_eq!(config.directory.client("c", KmId(1)).unwrap().key_manager, Some(KmId(1)));
    assert_eq!(config.directory.client("d", KmId(0)).unwrap().key_manager, Some(KmId(0)));
    assert!(config.directory.client("c", KmId(0)).is_none(), "no client c of key manager a");
}

/// The error of a configuration's applications as a plain reading would find it: every check in
/// the applications' order, stopping at the first failure (the reference for the test below).
fn first_failure(applications: &[serde_json::Value], key_managers: &[&str], policies: &[&str]) -> Option<String> {
    let mut ids = HashSet::new();
    // A client id is unique per key manager (one without a key manager is any's).
    let mut clients: Vec<(String, Option<String>)> = Vec::new();
    for (index, application) in applications.iter().enumerate() {
        let text = |value: &serde_json::Value, name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let id = text(application, "id").unwrap_or_default();
        if id.is_empty() || !ids.insert(id) {
            return Some(format!("applications[{index}].id"));
        }
        if text(application, "policy").is_some_and(|policy| !policies.contains(&policy.as_str())) {
            return Some(format!("applications[{index}].policy"));
        }
        let list = |name: &str| application.get(name).and_then(|v| v.as_array()).cloned().unwrap_or_default();
        for (client_index, client) in list("client_ids").iter().enumerate() {
            let client_id = text(client, "id").unwrap_or_default();
            let issuer = text(client, "key_manager");
            let repeated = clients
                .iter()
                .any(|(id, other)| *id == client_id && (issuer.is_none() || other.is_none() || *other == issuer));
            clients.push((client_id.clone(), issuer));
            if client_id.is_empty() || repeated {
                return Some(format!("applications[{index}].client_ids[{client_index}].id"));
            }
            if key_managers.is_empty() {
                return Some(format!("applications[{index}].client_ids"));
            }
            let named = text(client, "key_manager");
            if named.as_ref().map_or(key_managers.len() > 1, |name| !key_managers.contains(&name.as_str())) {
                return Some(format!("applications[{index}].client_ids[{client_index}].key_manager"));
            }
        }
        for (key_index, key) in list("api_keys").iter().enumerate() {
            let digest = text(key, "sha256").unwrap_or_default();
            if hex_digest(&digest).is_none() {
                return Some(format!("applications[{index}].api_keys[{key_index}].sha256"));
            }
        }
    }
    None
}

/// Many small configurations, each application drawing its id, policy, clients and keys from
/// pools where repeats, empty ids, unknown names and bad digests are common: the filter's error
/// names the field the plain reading above names (or both accept the configuration).
#[test]
fn the_reported_failure_is_the_one_a_plain_reading_finds_first() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut draw = |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound) as usize
    };
    let good_key = crate::hashing::hex(&digest("key"));
    for _ in 0..3_000 {
        let key_managers: &[&str] = [&[][..], &["a"][..], &["a", "b"][..]][draw(3)];
        let policies: &[&str] = [&[][..], &["Gold"][..]][draw(2)];
        let mut applications = Vec::new();
        for _ in 0..1 + draw(4) {
            let mut application = {
                let id = ["", "x", "y", "z", "w"][draw(5)];
                serde_json::json!({"id": id, "name": "N"})
            };
            if draw(3) == 0 {
                application["policy"] = serde_json::json!(["Gold", "Iron"][draw(2)]);
            }
            let clients: Vec<serde_json::Value> = (0..draw(3))
                .map(|_| {
                    let mut client = {
                        let id = ["", "c", "d", "e", "f", "g"][draw(6)];
                        serde_json::json!({ "id": id })
                    };
                    if draw(2) == 0 {
                        client["key_manager"] = serde_json::json!(["a", "b", "z"][draw(3)]);
                    }
                    client
                })
                .collect();
            let keys: Vec<serde_json::Value> = (0..draw(3))
                .map(|_| {
                    let unique = crate::hashing::hex(&digest(&format!("{}", draw(1 << 30))));
                    let sha256 = [unique.as_str(), "ABC", good_key.as_str()][draw(3)];
                    serde_json::json!({ "sha256": sha256 })
                })
                .collect();
            application["client_ids"] = serde_json::Value::Array(clients);
            application["api_keys"] = serde_json::Value::Array(keys);
            applications.push(application);
        }
        let expected = first_failure(&applications, key_managers, policies);
        let config = serde_json::json!({
            "key_managers": key_managers.iter().map(|name| serde_json::json!({"name": name, "issuer": format!("https://{name}"),
                "jwks": {"cluster": name}})).collect::<Vec<_>>(),
            "policies": policies.iter().map(|name| (name.to_string(), serde_json::json!({"requests": 5, "per": "minute"})))
                .collect::<serde_json::Map<_, _>>(),
            "applications": applications,
        });
        let text = config.to_string();
        match (Config::from_json(text.as_bytes()), expected) {
            (Ok(_), None) => {}
            (Err(error), Some(field)) => assert_eq!(error.field, field, "{text}"),
            // The same digest twice is checked after every application (the reference stops
            // at application failures only).
            (Err(error), None) => assert!(error.reason.contains("the same key is configured twice"), "{text}: {error}"),
            (Ok(_), Some(field)) => panic!("{text} loaded; expected a failure at {field}"),
        }
    }
}

/// An application's numeric id and attributes (for the backend JWT) are kept; an attribute that
/// is not text is refused at load, naming it.
#[test]
fn an_applications_numeric_id_and_text_attributes_are_kept() {
    let with = |extra: &str| {
        let json = format!(
            r#"{{"apis":{APIS},"applications":[{{"id":"app","name":"App"{extra}}}],
                "subscriptions":[{{"application":"app","api":"A:1"}}]}}"#
        );
        Config::from_json(json.as_bytes())
    };
    let config = with(r#","numeric_id":42,"attributes":{"region":"eu","team":""}"#).unwrap();
    let application = config.directory.application("app").unwrap();
    let attributes = serde_json::json!({"region": "eu", "team": ""});
    assert_eq!((application.number(), application.attributes()), (Some("42"), attributes.as_object()));
    let bare = with("").unwrap();
    let application = bare.directory.application("app").unwrap();
    assert_eq!((application.number(), application.attributes()), (None, None));
    let error = with(r#","attributes":{"region":"eu","tier":3}"#).unwrap_err();
    assert_eq!((error.field.as_str(), error.reason.as_str()), ("applications[0].attributes.tier", "must be a string"));
    assert!(with(r#","numeric_id":-1"#).is_err());
}
