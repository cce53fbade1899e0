//! What operators see of a request: its API-management context as access-log fields (Envoy
//! filter state `wasm.apim.*`, or one `google.protobuf.Struct` `wasm.apim`; named after WSO2's
//! analytics event where it has a name), and the counters per API, per fault and level, and per
//! application (bounded). Names are built so Envoy's tag extraction turns them into labels
//! (`envoy/envoy.yaml` ships the rules).

use std::collections::HashMap;
use std::rc::Rc;

use prost::Message;

use crate::auth::authorize::Authorized;
use crate::catalogue::analytics::classify;
use crate::catalogue::Fault;
use crate::directory::Application;
use crate::host::log_line;
use crate::routing::table::stat_segment;
use crate::routing::{Api, Resource};
use crate::schema::{AccessLogEncoding, RawObservability};

/// The compiled observability settings.
#[derive(Clone, Debug)]
pub struct Observability {
    pub api_stats: bool,
    pub application_stats: u32,
    pub access_log_fields: bool,
    pub access_log_encoding: AccessLogEncoding,
}

impl From<RawObservability> for Observability {
    fn from(raw: RawObservability) -> Self {
        Observability {
            api_stats: raw.api_stats,
            application_stats: raw.application_stats,
            access_log_fields: raw.access_log_fields,
            access_log_encoding: raw.access_log_encoding,
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

/// The fields naming the application (WSO2's analytics `Application`: id, name, owner, key type).
const APPLICATION_FIELDS: [&str; 4] =
    [field!("application_id"), field!("application_name"), field!("application_owner"), field!("key_type")];

/// The backend's status field (set in the response phase).
pub const TARGET_RESPONSE_CODE: &str = field!("target_response_code");

/// The counter of a refusal at an API (`prefix`: its `stats_prefix`):
/// `<prefix>.refused.code.<code>.level.<level>`.
pub fn refused_stat(prefix: &str, fault: &Fault) -> String {
    format!("{prefix}.refused.code.{}.level.{}", fault.code, fault.id.level())
}

/// The applications a worker counts: at most `limit`, told apart by id (two applications of one
/// name, owned by two users, are two); the others count as `_other`. An application's counters
/// are labelled with its name and owner (`apim.application.<name>.owner.<owner>.<outcome>`, each
/// a [`stat_segment`]), built once.
#[derive(Debug, Default)]
pub struct ApplicationNames {
    counted: HashMap<Rc<str>, [String; 2]>,
    other: Option<[String; 2]>,
}

fn application_stats(name: &str, owner: &str) -> [String; 2] {
    let prefix = format!("apim.application.{name}.owner.{owner}");
    [format!("{prefix}.allowed"), format!("{prefix}.refused")]
}

impl ApplicationNames {
    /// The counter for an application's outcome (`allowed` or `refused`), or `None` when
    /// application stats are off.
    pub fn stat(&mut self, limit: u32, application: &Application, outcome: &str) -> Option<&str> {
        if limit == 0 {
            return None;
        }
        let index = usize::from(outcome != "allowed");
        if !self.counted.contains_key(&application.id) && self.counted.len() < limit as usize {
            let stats =
                application_stats(&stat_segment(application.name(), false), &stat_segment(application.owner(), false));
            self.counted.insert(Rc::clone(&application.id), stats);
        }
        let names = match self.counted.get(&application.id) {
            Some(names) => names,
            None => self.other.get_or_insert_with(|| application_stats("_other", "_other")),
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
    /// The fields handed over so far, as one `Struct` (when they are handed over that way).
    pub encoded: Vec<u8>,
}

/// The fields of the API and resource matched (a request refused before a resource matched has
/// none), and of the path the client sent (before any rewrite), handed to `set` by name in Envoy's
/// filter state; empty values are left out.
pub fn route_fields<'r>(
    api: &'r Api,
    resource: Option<&'r Resource>,
    original_path: &'r str,
    mut set: impl FnMut(&'static str, &'r str),
) {
    let fields = [
        (field!("api_name"), api.name.as_str()),
        (field!("api_version"), api.version.as_str()),
        (field!("api_context"), api.versioned_context.as_str()),
        (field!("api_id"), api.source_id.as_deref().unwrap_or(&api.label)),
        (field!("api_resource"), resource.map_or("", |resource| resource.template.as_str())),
        (field!("original_path"), original_path),
    ];
    for (name, value) in fields {
        if !value.is_empty() {
            set(name, value);
        }
    }
}

impl Record {
    /// Sets a field (replacing an earlier value of the same field); empty values are left out.
    /// Control characters are written as escapes ([`log_line`]): an application's name is its
    /// developer's choice in API-M's developer portal, and a CR/LF in it would forge lines of a
    /// plain-text access log. (The route's fields are checked at load.)
    fn put(&mut self, name: &'static str, value: &str) {
        if value.is_empty() {
            return;
        }
        let value = log_line(value);
        match self.fields.iter_mut().find(|(field, _)| *field == name) {
            Some((_, earlier)) => value.as_ref().clone_into(earlier),
            None => self.fields.push((name, value.into_owned())),
        }
    }

    /// The backend's status.
    pub fn target_response_code(&mut self, status: u16) {
        self.put(TARGET_RESPONSE_CODE, &status.to_string());
    }

    /// The API and resource matched: their fields are due.
    pub fn route(&mut self) {
        self.route = true;
    }

    /// Who was authorized.
    pub fn caller(&mut self, authorized: &Authorized) {
        self.put(field!("application_id"), authorized.application_id());
        self.put(field!("application_name"), authorized.application_name());
        self.put(field!("application_owner"), authorized.subscriber());
        self.put(field!("key_type"), authorized.key_type.name());
        self.put(field!("tier"), authorized.tier());
        if let Some(user) = &authorized.end_user {
            self.put(field!("user_name"), user);
        }
    }

    /// The fault the filter answered with (classified by its code alone, as WSO2 does: an
    /// operator's status override does not move it between categories). An `AUTH` fault names no
    /// application, even one authorized before it (a key offered to an API without its key
    /// type's endpoint, 900901): WSO2's `AuthFaultDataCollector` publishes every auth fault with
    /// the `UNKNOWN` application, which is an absent field here.
    pub fn fault(&mut self, fault: &Fault) {
        let (error_type, error_message) = classify(fault.code);
        if error_type == "AUTH" {
            self.fields.retain(|(name, _)| !APPLICATION_FIELDS.contains(name));
        }
        self.put(field!("error_code"), &fault.code.to_string());
        self.put(field!("error_type"), error_type);
        self.put(field!("error_message"), error_message);
        self.put(field!("level"), fault.id.level());
        // WSO2 reports -1 as the backend's status of a fault.
        self.put(TARGET_RESPONSE_CODE, "-1");
    }
}

/// The name of the one property holding every field as a `google.protobuf.Struct` (Envoy's
/// filter state `wasm.apim`).
pub const STRUCT_PROPERTY: &str = "apim";

/// Envoy's `declare_property` foreign function's arguments (`DeclarePropertyArguments` in
/// Envoy's `source/extensions/common/wasm/declare_property.proto`).
#[derive(Clone, PartialEq, Message)]
struct DeclarePropertyArguments {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bool, tag = "2")]
    readonly: bool,
    /// `WasmType`: 3 is `Protobuf`.
    #[prost(int32, tag = "3")]
    r#type: i32,
    /// The message's type URL.
    #[prost(bytes = "vec", tag = "4")]
    schema: Vec<u8>,
    /// `LifeSpan`: 0 is `FilterChain` (the request, for an HTTP filter).
    #[prost(int32, tag = "5")]
    span: i32,
}

impl Observability {
    /// The `declare_property` arguments Envoy needs before the fields can be handed over as one
    /// `Struct`; `None` when they are not handed over that way.
    pub fn struct_declaration(&self) -> Option<Vec<u8>> {
        (self.access_log_fields && self.access_log_encoding == AccessLogEncoding::Struct).then(struct_declaration)
    }
}

/// The arguments that declare [`STRUCT_PROPERTY`] a writable `google.protobuf.Struct` living as
/// long as the request, so that Envoy's CEL reads its fields.
fn struct_declaration() -> Vec<u8> {
    DeclarePropertyArguments {
        name: STRUCT_PROPERTY.to_string(),
        readonly: false,
        r#type: 3,
        schema: b"type.googleapis.com/google.protobuf.Struct".to_vec(),
        span: 0,
    }
    .encode_to_vec()
}

/// `google.protobuf.Struct`, its map written as the repeated entries it is on the wire.
#[derive(Clone, PartialEq, Message)]
struct StructMessage {
    #[prost(message, repeated, tag = "1")]
    fields: Vec<StructEntry>,
}

#[derive(Clone, PartialEq, Message)]
struct StructEntry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<StringValue>,
}

/// `google.protobuf.Value` holding a string (`string_value`, field 3 of its `kind`).
#[derive(Clone, PartialEq, Message)]
struct StringValue {
    #[prost(string, tag = "3")]
    string_value: String,
}

/// Appends the fields to `message` as a `google.protobuf.Struct` keyed by the field's name
/// without `apim.` (appended to an encoded `Struct`, they are merged into it).
pub fn encode_struct<'f>(fields: impl IntoIterator<Item = (&'static str, &'f str)>, message: &mut Vec<u8>) {
    let fields = fields
        .into_iter()
        .map(|(name, value)| StructEntry {
            key: name.strip_prefix("apim.").unwrap_or(name).to_string(),
            value: Some(StringValue { string_value: value.to_string() }),
        })
        .collect();
    let fields = StructMessage { fields };
    message.reserve(fields.encoded_len());
    // A Vec grows as needed: encoding into it cannot fail.
    let _ = fields.encode(message);
}

/// Decodes [`encode_struct`]'s output as a map (a later entry wins, as in protobuf maps); empty
/// when it does not decode.
#[cfg(test)]
pub fn decode_struct(bytes: &[u8]) -> HashMap<String, String> {
    let fields = StructMessage::decode(bytes).map(|message| message.fields).unwrap_or_default();
    fields.into_iter().map(|entry| (entry.key, entry.value.unwrap_or_default().string_value)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_holds_each_field_by_its_short_name() {
        let mut bytes = Vec::new();
        encode_struct([(field!("api_name"), "Pizza"), (TARGET_RESPONSE_CODE, "200")], &mut bytes);
        let fields = decode_struct(&bytes);
        assert_eq!(fields.len(), 2);
        assert_eq!(fields["api_name"], "Pizza");
        assert_eq!(fields["target_response_code"], "200");
        // Appended, later fields are merged in: new ones added, a repeated one replaced.
        encode_struct([(TARGET_RESPONSE_CODE, "-1"), (field!("tier"), "Gold")], &mut bytes);
        let fields = decode_struct(&bytes);
        assert_eq!(fields.len(), 3);
        assert_eq!(fields["api_name"], "Pizza");
        assert_eq!(fields["target_response_code"], "-1");
    }

    #[test]
    fn the_struct_is_declared_only_when_the_fields_are_handed_over_as_one() {
        let observability = |fields: bool, encoding: AccessLogEncoding| Observability {
            access_log_fields: fields,
            access_log_encoding: encoding,
            ..Observability::default()
        };
        assert_eq!(observability(true, AccessLogEncoding::Properties).struct_declaration(), None);
        assert_eq!(observability(false, AccessLogEncoding::Struct).struct_declaration(), None);
        let declared = observability(true, AccessLogEncoding::Struct).struct_declaration().unwrap_or_default();
        let arguments = DeclarePropertyArguments::decode(declared.as_slice()).unwrap();
        assert_eq!((arguments.name.as_str(), arguments.readonly, arguments.r#type), (STRUCT_PROPERTY, false, 3));
        assert_eq!(arguments.schema, b"type.googleapis.com/google.protobuf.Struct");
    }

    #[test]
    fn a_field_holds_no_control_character() {
        let mut record = Record::default();
        record.put(field!("application_name"), "App\r\n[2026-12-07] forged line");
        record.put(field!("user_name"), "plain");
        assert_eq!(record.fields[0].1, "App\\r\\n[2026-12-07] forged line", "one line in a text access log");
        assert_eq!(record.fields[1].1, "plain");
    }

    #[test]
    fn an_auth_fault_names_no_application_and_a_throttled_one_keeps_it() {
        let mut record = Record::default();
        for name in APPLICATION_FIELDS {
            record.put(name, "x");
        }
        record.put(field!("tier"), "Gold");
        record.fault(&Fault::new(crate::catalogue::FaultId::SandboxKeyWithoutEndpoint));
        let names: Vec<&str> = record.fields.iter().map(|(name, _)| *name).collect();
        assert!(names.iter().all(|name| !APPLICATION_FIELDS.contains(name)), "{names:?}");
        assert!(names.contains(&field!("tier")) && names.contains(&field!("error_code")), "{names:?}");
        let mut record = Record::default();
        record.put(field!("application_name"), "App");
        record.fault(&Fault::new(crate::catalogue::FaultId::SubscriptionThrottled));
        assert_eq!(record.fields[0], (field!("application_name"), "App".to_string()));
    }

    #[test]
    fn a_field_set_again_replaces_its_value() {
        let mut record = Record::default();
        record.target_response_code(200);
        record.put(field!("tier"), "Gold");
        record.put(TARGET_RESPONSE_CODE, "-1");
        record.put(field!("user_name"), "");
        assert_eq!(record.fields, vec![(TARGET_RESPONSE_CODE, "-1".to_string()), (field!("tier"), "Gold".to_string())]);
    }

    #[test]
    fn stat_segments_name_one_text_each_and_keep_tag_extraction_unambiguous() {
        assert_eq!(stat_segment("PizzaShack-API_2", false), "PizzaShack-API_2", "ordinary names stay");
        assert_eq!(stat_segment("1.0.0", true), "1.0.0");
        assert_eq!(stat_segment("Pizza.Shack API", false), "Pizza%2EShack%20API");
        assert_eq!(stat_segment("注文", false), "%E6%B3%A8%E6%96%87");
        assert_eq!(stat_segment("", false), "_");
        assert_eq!(stat_segment("_other", false), "%5Fother", "the filter's own segments start with `_`");
        // One segment per text: the ones that clean to the same letters stay apart.
        let texts = [
            "Pizza Shack",
            "Pizza_Shack",
            "Pizza%20Shack",
            "Pizza.Shack",
            "注文",
            "在庫",
            "_",
            "",
            "_other",
            "%5Fother",
        ];
        let segments: std::collections::HashSet<String> = texts.iter().map(|text| stat_segment(text, false)).collect();
        assert_eq!(segments.len(), texts.len(), "{segments:?}");
        for segment in &segments {
            assert!(!segment.contains('.') && !segment.is_empty(), "{segment}");
        }
        assert!(segments.iter().filter(|segment| segment.starts_with('_')).count() == 1, "only the empty text's");
    }

    #[test]
    fn applications_are_counted_by_id_up_to_the_bound_and_labelled_by_name_and_owner() {
        let application = |id: &str, name: &str, owner: &str| Application::new(Rc::from(id), name, owner, None);
        let (alice, bob) =
            (application("a1", "DefaultApplication", "alice"), application("b2", "DefaultApplication", "bob"));
        let mut names = ApplicationNames::default();
        assert_eq!(names.stat(2, &alice, "allowed"), Some("apim.application.DefaultApplication.owner.alice.allowed"));
        assert_eq!(names.stat(2, &bob, "refused"), Some("apim.application.DefaultApplication.owner.bob.refused"));
        // The bound counts applications, not names: a third one of the same name is `_other`.
        let carol = application("c3", "DefaultApplication", "carol");
        assert_eq!(names.stat(2, &carol, "allowed"), Some("apim.application._other.owner._other.allowed"));
        assert_eq!(names.stat(2, &alice, "refused"), Some("apim.application.DefaultApplication.owner.alice.refused"));
        let dotted = application("d4", "b.c", "dave@example.com");
        assert_eq!(
            names.stat(3, &dotted, "allowed"),
            Some("apim.application.b%2Ec.owner.dave%40example%2Ecom.allowed")
        );
        assert_eq!(names.stat(0, &alice, "allowed"), None);
    }
}
