//! The committed references are what the code generates: `docs/ERROR-CODES.md` from the
//! catalogue, `docs/CONFIG.md` and `docs/config.schema.json` from the configuration types.
//! `make docs` (UPDATE_DOCS=1) rewrites them. And what they say holds: every table has rows, the
//! transport table names every flag classified, and every integer field's range is the loader's.

// Test code: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

mod common;

use apim_filter::docs;
use common::repo_root;

fn check(relative: &str, generated: String) {
    let path = repo_root().join(relative);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).expect("write generated doc");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "{relative} is stale: run `make docs` and commit the result");
}

#[test]
fn error_code_reference_is_current() {
    check("docs/ERROR-CODES.md", docs::error_code_reference());
}

#[test]
fn config_reference_is_current() {
    check("docs/CONFIG.md", docs::config_reference());
}

#[test]
fn config_schema_is_current() {
    check("docs/config.schema.json", docs::config_schema());
}

#[test]
fn the_error_reference_lists_every_catalogue_code() {
    let reference = docs::error_code_reference();
    for id in apim_filter::catalogue::ALL {
        assert!(reference.contains(&format!("`{}`", id.spec().id)), "{} missing", id.spec().id);
    }
}

/// The `.count(…)` calls of the filter's own code (test modules left out): each argument's text.
fn counted_in_sources() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut folders = vec![repo_root().join("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "tests" {
                    folders.push(path);
                }
                continue;
            }
            if !name.ends_with(".rs") || name.ends_with("tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap();
            for (at, _) in code.match_indices(".count(") {
                let rest = &code[at + ".count(".len()..];
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map(|(end, _)| end)
                    .unwrap();
                let argument: String = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
                if !argument.is_empty() {
                    found.push((path.strip_prefix(repo_root()).unwrap().display().to_string(), argument));
                }
            }
        }
    }
    found
}

#[test]
fn every_counter_the_filter_keeps_is_documented() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let howto = std::fs::read_to_string(repo_root().join("docs/HOWTO.md")).unwrap();
    // Counters built from the configuration (src/routing/table.rs, src/observe.rs; their names are
    // unit-tested there), the glue's hand-over to Envoy, and a named gateway's (src/host.rs: the
    // same names under `apim.gw.<name>.`).
    let built = ["&api.stats_allowed", "&observe::refused_stat(&api.stats_prefix, fault)", "stat", "name"];
    for documented in [
        "apim.api.<name>.version.<version>.allowed",
        "apim.api.<name>.version.<version>.refused.code.<code>.level.<level>",
        "apim.application.<name>.owner.<owner>.allowed|refused",
    ] {
        assert!(readme.contains(documented), "README lacks `{documented}`");
    }
    let counted = counted_in_sources();
    assert!(counted.len() >= 8, "the scan finds the counters: {counted:?}");
    for (file, argument) in counted {
        let literal = argument.split('"').nth(1);
        let Some(name) = literal.filter(|name| name.starts_with("apim.")) else {
            assert!(
                built.contains(&argument.as_str()),
                "{file} counts `{argument}`: name it in a literal, or list it here"
            );
            continue;
        };
        // `format!("apim.fault.{}", …)` is documented as `apim.fault.<code>`.
        let documented = match name.find('{') {
            Some(open) => format!("{}<", &name[..open]),
            None => name.to_string(),
        };
        for (doc, text) in [("README.md", &readme), ("docs/HOWTO.md", &howto)] {
            assert!(text.contains(&documented), "{file} counts `{name}`, which {doc} does not list");
        }
    }
}

/// Every table of the generated references has rows: a table whose rows the generator could not
/// make (an untagged enum's shapes, which have no value to list) printed a header alone, as
/// CONFIG.md's `Secret` did.
#[test]
fn every_table_of_the_references_has_rows() {
    for (name, text) in [("ERROR-CODES.md", docs::error_code_reference()), ("CONFIG.md", docs::config_reference())] {
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            if line.starts_with("|---") {
                let row = lines.get(at + 1).copied().unwrap_or_default();
                assert!(row.starts_with('|'), "{name}: the table `{}` has no rows", lines[at - 1]);
            }
        }
    }
}

/// The error-code reference's transport table names every response flag and code detail the
/// response phase classifies (README: a stream's idle timeout, `max_stream_duration`, a cluster's
/// `drop_overloads` become transport faults), so an operator who sees the flag in Envoy's access
/// log finds the fault it became.
#[test]
fn the_transport_table_names_every_flag_and_detail_the_classification_reads() {
    let reference = docs::error_code_reference();
    let table: Vec<&str> = reference
        .split("## Transport codes")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| state") && !line.starts_with("| REQUEST_"))
        .collect();
    let flag_cells: Vec<&str> =
        table.iter().flat_map(|line| line.split('|').nth(1).unwrap().split(',')).map(str::trim).collect();
    for (_, name, _) in apim_filter::transport::FLAGS_READ {
        assert!(flag_cells.contains(&name), "ERROR-CODES.md's transport table lacks the flag {name}: {table:#?}");
    }
    for details in apim_filter::transport::DETAILS_READ {
        if details != apim_filter::transport::FROM_UPSTREAM {
            assert!(table.iter().any(|line| line.contains(details)), "the table lacks the details {details}");
        }
    }
}

/// The README's "Not verified" note on other Envoy versions names every `response.code_details`
/// value the response phase reads: they are what another version could spell differently.
#[test]
fn the_readme_names_every_code_detail_the_response_phase_reads() {
    let readme = common::read_repo_file("README.md");
    let note = readme.split("**Other Envoy versions.**").nth(1).unwrap().split("\n\n").next().unwrap();
    for details in apim_filter::transport::DETAILS_READ {
        assert!(
            note.contains(&format!("`{details}`")),
            "the README's note on Envoy versions omits `{details}`: {note}"
        );
    }
}

/// A configuration with one integer field set to `#V#`, per field of the schema
/// (`<definition>.<field>`), everything else minimal.
fn with_integer(field: &str) -> Option<String> {
    let rsa = r#"{"kty":"RSA","e":"AQAB","n":"lUd--WDBOUKj7m-jUI5D4bd6cwv9wxBlwKOw3SH3ccebtCUnqq92fHC-YW-U07oV_ZejIIeno2CT5Z670zzC-nZnf9kjR8nHA3Xh6D1HT74auxlfh1QrR-_3PehY1IIaqeGFEF1EEg0Xobkn0VxLXWSWhyV1H__0l9ZDal2mj9GZ5VDmgNJhcq7ydDkGKX39r7TDso2CzUrrvG9vPN9yN1lGsL90TK1bRSC_5_dBgkX2AJMsNHDIt0X5bspkQ2YQ7Ks2aDYhrckyt9C_KGeCX4RZZmuchMe-T-be_6xnOXEKzRYkIrjlE_WU5XcWfTg1XpsjzREzjXV1tPSQ8VlUjw"}"#;
    let hmac = r#""hmac_secret":"01234567890123456789012345678901""#;
    let api = r#"{"name":"A","context":"/a","version":"1","endpoints":{"production":"c"}}"#;
    let introspection = |member: &str| {
        format!(
            r#"{{"key_managers":[{{"name":"k","issuer":"i","introspection":{{"cluster":"km","client_id":"g","client_secret":"s",{member}}}}}]}}"#
        )
    };
    let control_plane = |member: &str| {
        format!(r#"{{"control_plane":{{"cluster":"apim","username":"u","password":{{"value":"p"}},{member}}}}}"#)
    };
    let condition_group = |member: &str| {
        format!(
            r#"{{"policies":{{"p":{{"requests":1,"per":"minute","condition_groups":[{{"per":"minute",{member},"conditions":[{{"ip":"10.0.0.1"}}]}}]}}}}}}"#
        )
    };
    Some(match field {
        "KeyManager.clock_skew_s" => format!(r#"{{"key_managers":[{{"name":"k","issuer":"i",{hmac},"clock_skew_s":#V#}}]}}"#),
        "Jwks.refresh_s" => r#"{"key_managers":[{"name":"k","issuer":"i","jwks":{"cluster":"km","refresh_s":#V#}}]}"#.into(),
        "Jwks.timeout_ms" => r#"{"key_managers":[{"name":"k","issuer":"i","jwks":{"cluster":"km","timeout_ms":#V#}}]}"#.into(),
        "Introspection.timeout_ms" => introspection(r#""timeout_ms":#V#"#),
        "Introspection.cache_ttl_s" => introspection(r#""cache_ttl_s":#V#"#),
        "Introspection.negative_cache_ttl_s" => introspection(r#""negative_cache_ttl_s":#V#"#),
        "Introspection.calls_per_second" => introspection(r#""calls_per_second":#V#"#),
        "ApiKeyJwt.clock_skew_s" => format!(r#"{{"api_key_jwt":{{"keys":[{rsa}],"clock_skew_s":#V#}}}}"#),
        "BackendJwt.lifetime_s" => r#"{"backend_jwt":{"algorithm":"none","renew_before_s":0,"lifetime_s":#V#}}"#.into(),
        "BackendJwt.renew_before_s" => r#"{"backend_jwt":{"algorithm":"none","lifetime_s":86400,"renew_before_s":#V#}}"#.into(),
        "BackendJwt.cache_entries" => r#"{"backend_jwt":{"algorithm":"none","cache_entries":#V#}}"#.into(),
        "Observability.application_stats" => r#"{"observability":{"application_stats":#V#}}"#.into(),
        "Policy.requests" => r#"{"policies":{"p":{"requests":#V#,"per":"minute"}}}"#.into(),
        "Policy.bytes" => r#"{"policies":{"p":{"bytes":#V#,"per":"minute"}}}"#.into(),
        "Policy.unit_count" => r#"{"policies":{"p":{"requests":1,"per":"minute","unit_count":#V#}}}"#.into(),
        "ConditionGroup.requests" => condition_group(r#""requests":#V#"#),
        "ConditionGroup.bytes" => condition_group(r#""bytes":#V#"#),
        "ConditionGroup.unit_count" => condition_group(r#""requests":1,"unit_count":#V#"#),
        "Burst.requests" => {
            r#"{"policies":{"p":{"requests":18446744073709551615,"per":"minute","burst":{"requests":#V#,"per":"second"}}}}"#
                .into()
        }
        "ControlPlane.refresh_s" => control_plane(r#""refresh_s":#V#"#),
        "ControlPlane.timeout_ms" => control_plane(r#""timeout_ms":#V#"#),
        "ControlPlane.negative_ttl_s" => control_plane(r#""negative_ttl_s":#V#"#),
        "ControlPlane.lookups_per_second" => control_plane(r#""lookups_per_second":#V#"#),
        "Override.status" => r#"{"errors":{"overrides":{"900800":{"status":#V#}}}}"#.into(),
        "Override.code" => r#"{"errors":{"overrides":{"900800":{"code":#V#}}}}"#.into(),
        "Override.grpc_status" => r#"{"errors":{"overrides":{"900800":{"grpc_status":#V#}}}}"#.into(),
        "Cors.max_age_s" => r#"{"errors":{"cors":{"allow_origins":["*"],"max_age_s":#V#}}}"#.into(),
        "Credentials.max_token_bytes" => r#"{"credentials":{"max_token_bytes":#V#}}"#.into(),
        "Credentials.verified_cache_entries" => r#"{"credentials":{"verified_cache_entries":#V#}}"#.into(),
        "CustomPolicy.requests" => r#"{"custom_policies":[{"name":"c","key":"$userId","per":"minute","requests":#V#}]}"#.into(),
        "CustomPolicy.bytes" => r#"{"custom_policies":[{"name":"c","key":"$userId","per":"minute","bytes":#V#}]}"#.into(),
        "CustomPolicy.unit_count" => {
            r#"{"custom_policies":[{"name":"c","key":"$userId","per":"minute","requests":1,"unit_count":#V#}]}"#.into()
        }
        "HardLimit.requests_per_second" => format!(r#"{{"apis":[{api}],"hard_limits":[{{"api":"A:1","requests_per_second":#V#}}]}}"#),
        "Application.numeric_id" => r#"{"applications":[{"id":"a","name":"A","numeric_id":#V#}]}"#.into(),
        "Throttling.cas_retries" => r#"{"throttling":{"cas_retries":#V#}}"#.into(),
        "Throttling.counter_slots" => r#"{"throttling":{"counter_slots":#V#}}"#.into(),
        "Throttling.worker_lease_share_percent" => r#"{"throttling":{"worker_lease_share_percent":#V#}}"#.into(),
        "Throttling.worker_lease_max" => r#"{"throttling":{"worker_lease_max":#V#}}"#.into(),
        "RateLimitService.timeout_ms" => r#"{"throttling":{"rate_limit_service":{"cluster":"rl","timeout_ms":#V#}}}"#.into(),
        "RateLimitService.lease_share_percent" => {
            r#"{"throttling":{"rate_limit_service":{"cluster":"rl","lease_share_percent":#V#}}}"#.into()
        }
        "RateLimitService.lease_max" => r#"{"throttling":{"rate_limit_service":{"cluster":"rl","lease_max":#V#}}}"#.into(),
        _ => return None,
    })
}

/// Every integer field's range is the same in the loader, the JSON Schema and CONFIG.md: the
/// schema's `minimum` and `maximum` (or its type's) load, one past them is refused at load, and
/// a bound narrower than the type's is written in the field's description. The loader refused
/// `backend_jwt.lifetime_s` over a day, `credentials.max_token_bytes` under 64, `cas_retries`
/// over 1000, ... while the schema let an editor accept them and CONFIG.md did not say.
#[test]
fn every_integer_fields_range_is_the_loaders_the_schemas_and_the_references() {
    let schema: serde_json::Value = serde_json::from_str(&docs::config_schema()).unwrap();
    let mut checked = 0;
    for (definition, body) in schema["$defs"].as_object().unwrap() {
        let Some(properties) = body["properties"].as_object() else { continue };
        for (name, property) in properties {
            let kinds = match &property["type"] {
                serde_json::Value::String(kind) => vec![kind.as_str()],
                serde_json::Value::Array(kinds) => kinds.iter().filter_map(|kind| kind.as_str()).collect(),
                _ => vec![],
            };
            if !kinds.contains(&"integer") {
                continue;
            }
            let field = format!("{definition}.{name}");
            let template = with_integer(&field).unwrap_or_else(|| panic!("no configuration to try {field} in"));
            let type_max = match property["format"].as_str() {
                Some("uint8") => u64::from(u8::MAX),
                Some("uint16") => u64::from(u16::MAX),
                Some("uint32") => u64::from(u32::MAX),
                _ => u64::MAX,
            };
            let low = property["minimum"].as_u64().unwrap_or(0);
            let high = property["maximum"].as_u64().unwrap_or(type_max);
            let load = |value: u64| {
                apim_filter::config::Config::from_json(template.replace("#V#", &value.to_string()).as_bytes())
            };
            assert!(load(low).is_ok(), "{field}: the schema's minimum {low} is refused: {:?}", load(low).err());
            if low > 0 {
                assert!(load(low - 1).is_err(), "{field}: {} loads, below the schema's minimum", low - 1);
            }
            // A bound another field sets (less than `lifetime_s`, below the policy's `requests`).
            let bounded_by_another = ["BackendJwt.renew_before_s", "Burst.requests"].contains(&field.as_str());
            if !bounded_by_another {
                assert!(load(high).is_ok(), "{field}: the schema's maximum {high} is refused: {:?}", load(high).err());
            }
            if high < type_max {
                assert!(load(high + 1).is_err(), "{field}: {} loads, above the schema's maximum", high + 1);
            }
            let description = property["description"].as_str().unwrap_or_default();
            for bound in [low, high].into_iter().filter(|bound| *bound > 1 && *bound < type_max) {
                assert!(
                    description.contains(&bound.to_string()),
                    "{field}: CONFIG.md does not say {bound}: {description}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "the integer fields are found ({checked})");
}
