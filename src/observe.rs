//! What operators see of a request: its API-management context as access-log fields (Envoy
//! filter state `wasm.apim.*`, named after WSO2's analytics event where it has a name), and the
//! counters per API, per fault and level, and per application (bounded). Names are built so
//! Envoy's tag extraction turns them into labels (`envoy/envoy.yaml` ships the rules).

use std::collections::HashMap;

use crate::auth::authorize::Authorized;
use crate::catalogue::analytics::classify;
use crate::catalogue::Fault;
use crate::routing::table::stat_segment;
use crate::routing::{Api, Resource};
use crate::schema::RawObservability;

/// The compiled observability settings.
#[derive(Clone, Debug)]
pub struct Observability {
    pub api_stats: bool,
    pub application_stats: u32,
    pub access_log_fields: bool,
}

impl From<RawObservability> for Observability {
    fn from(raw: RawObservability) -> Self {
        Observability {
            api_stats: raw.api_stats,
            application_stats: raw.application_stats,
            access_log_fields: raw.access_log_fields,
        }
    }
}

impl Default for Observability {
    fn default() -> Self {
        Observability::from(RawObservability::default())
    }
}

/// An access-log field's name in Envoy's filter state, `apim.<name>` (`wasm.` is Envoy's), as a
/// constant (no name is built per request).
macro_rules! field {
    ($name:literal) => {
        concat!("apim.", $name)
    };
}

/// The backend's status field (set in the response phase).
pub const TARGET_RESPONSE_CODE: &str = field!("target_response_code");

/// The counter of a refusal at an API (`prefix`: its `stats_prefix`):
/// `<prefix>.refused.code.<code>.level.<level>`.
pub fn refused_stat(prefix: &str, fault: &Fault) -> String {
    format!("{prefix}.refused.code.{}.level.{}", fault.code, fault.id.level())
}

/// The applications a worker counts by name: at most `limit`; the others count as `_other`.
/// Each counted name's two counters are built once.
#[derive(Debug, Default)]
pub struct ApplicationNames {
    named: HashMap<String, [String; 2]>,
    other: Option<[String; 2]>,
}

fn application_stats(segment: &str) -> [String; 2] {
    [format!("apim.application.{segment}.allowed"), format!("apim.application.{segment}.refused")]
}

impl ApplicationNames {
    /// The counter for an application's outcome (`allowed` or `refused`), or `None` when
    /// application stats are off.
    pub fn stat(&mut self, limit: u32, application: &str, outcome: &str) -> Option<&str> {
        if limit == 0 {
            return None;
        }
        let index = usize::from(outcome != "allowed");
        if !self.named.contains_key(application) && self.named.len() < limit as usize {
            self.named.insert(application.to_string(), application_stats(&stat_segment(application, false)));
        }
        let names = if self.named.contains_key(application) {
            self.named.get(application)?
        } else {
            self.other.get_or_insert_with(|| application_stats("_other"))
        };
        names.get(index).map(String::as_str)
    }
}

/// The access-log fields of a request, as `(name, value)` pairs in the order they are set.
#[derive(Debug, Default)]
pub struct Record {
    /// The route's fields are due (they are read from the route when the record is handed over,
    /// not copied per request: see [`route_fields`]).
    pub route: bool,
    /// Other fields, by their names in Envoy's filter state.
    pub fields: Vec<(&'static str, String)>,
}

/// The fields of the API and resource matched, and of the path the client sent (before any
/// rewrite), handed to `set` by name in Envoy's filter state; empty values are left out.
pub fn route_fields(api: &Api, resource: &Resource, original_path: &str, mut set: impl FnMut(&'static str, &str)) {
    let fields = [
        (field!("api_name"), api.name.as_str()),
        (field!("api_version"), api.version.as_str()),
        (field!("api_context"), api.versioned_context.as_str()),
        (field!("api_id"), api.source_id.as_deref().unwrap_or(&api.label)),
        (field!("api_resource"), resource.template.as_str()),
        (field!("original_path"), original_path),
    ];
    for (name, value) in fields {
        if !value.is_empty() {
            set(name, value);
        }
    }
}

impl Record {
    fn put(&mut self, name: &'static str, value: &str) {
        if !value.is_empty() {
            self.fields.push((name, value.to_string()));
        }
    }

    /// The API and resource matched: their fields are due.
    pub fn route(&mut self) {
        self.route = true;
    }

    /// Who was authorized.
    pub fn caller(&mut self, authorized: &Authorized) {
        self.put(field!("application_id"), &authorized.application_id);
        self.put(field!("application_name"), &authorized.application_name);
        self.put(field!("application_owner"), &authorized.subscriber);
        self.put(field!("key_type"), authorized.key_type.name());
        self.put(field!("tier"), &authorized.tier);
        if let Some(user) = &authorized.end_user {
            self.put(field!("user_name"), user);
        }
    }

    /// The fault the filter answered with.
    pub fn fault(&mut self, fault: &Fault, status: u16) {
        let (error_type, error_message) = classify(fault.code, status);
        self.put(field!("error_code"), &fault.code.to_string());
        self.put(field!("error_type"), error_type);
        self.put(field!("error_message"), error_message);
        self.put(field!("level"), fault.id.level());
        // WSO2 reports -1 as the backend's status of a fault.
        self.put(TARGET_RESPONSE_CODE, "-1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_segments_keep_tag_extraction_unambiguous() {
        assert_eq!(stat_segment("Pizza.Shack API", false), "Pizza_Shack_API");
        assert_eq!(stat_segment("1.0.0", true), "1.0.0");
        assert_eq!(stat_segment("", false), "_");
    }

    #[test]
    fn application_names_are_bounded() {
        let mut names = ApplicationNames::default();
        assert_eq!(names.stat(2, "a", "allowed"), Some("apim.application.a.allowed"));
        assert_eq!(names.stat(2, "b.c", "refused"), Some("apim.application.b_c.refused"));
        assert_eq!(names.stat(2, "d", "allowed"), Some("apim.application._other.allowed"));
        assert_eq!(names.stat(2, "a", "refused"), Some("apim.application.a.refused"));
        assert_eq!(names.stat(0, "a", "allowed"), None);
    }
}
