//! Credentials in a query (an API key, a WebSocket handshake's `access_token`): every spelling of
//! their pairs leaves the upstream path and the logged ones.

use super::*;

/// `;` separates pairs too (API-M's WebSocket gateway reads `x=1;apikey=k` as two pairs, as many
/// backends do): the key goes in that spelling, and the other pairs keep their separators.
#[test]
fn a_credential_after_a_semicolon_is_stripped() {
    assert_eq!(strip_query_params("/menu?x=1;apikey=k", &["apikey"]), "/menu?x=1");
    assert_eq!(strip_query_params("/menu?apikey=k;x=1&y=2", &["apikey"]), "/menu?x=1&y=2");
    assert_eq!(strip_query_params("/menu?x=1;apikey=k&y=2;z=3", &["apikey"]), "/menu?x=1&y=2;z=3");
    assert_eq!(strip_query_params("/menu?x=1&apikey=k&apikey=j;api%6Bey=i", &["apikey"]), "/menu?x=1");
    assert_eq!(strip_query_params("/menu?x=a;b", &["apikey"]), "/menu?x=a;b");
}

/// Every request's path is searched for credentials for the access log, the API key's name and
/// `access_token`: a query without them costs no allocation, however its names are escaped
/// (`filter%5Bname%5D=`, as forms and PHP-style arrays send them).
#[test]
fn a_query_without_credentials_is_searched_without_allocating() {
    use crate::host::testing::allocations_in;
    let path = "/menu?filter%5Bname%5D=pepperoni&page%5Bsize%5D=20&q=a%20b&%61ccess=1";
    let mut searched = None;
    let allocations = allocations_in(|| searched = Some(request::without_query_credentials(path, "apikey")));
    assert_eq!(searched.as_deref(), Some(path));
    assert_eq!(allocations, 0);
}

/// The API key and `access_token` leave a path in one pass over its query: one new path, however
/// many of them it carries.
#[test]
fn a_query_with_both_credentials_is_stripped_in_one_pass() {
    use crate::host::testing::allocations_in;
    let path = "/menu?apikey=k&x=1;access_token=t&y=2";
    let mut stripped = None;
    let allocations = allocations_in(|| stripped = Some(request::without_query_credentials(path, "apikey")));
    assert_eq!(stripped.as_deref(), Some("/menu?x=1&y=2"));
    assert_eq!(allocations, 1);
}

/// A config whose API takes API keys in the query, and an application with `SECRET_KEY`.
pub(super) const SECRET_KEY: &str = "k-SECRET-0123456789";

pub(super) fn api_key_config(extra: &str) -> Rc<Config> {
    let json = format!(
        r#"{{{extra}"apis":[{{"name":"P","context":"/p","version":"1","api_key_in_query":true,
            "security":["api_key"],"endpoints":{{"production":"backend"}},
            "resources":[{{"method":"GET","path":"/menu"}}]}}],
          "applications":[{{"id":"app-1","name":"App","api_keys":[{{"sha256":"{}"}}]}}],
          "subscriptions":[{{"application":"app-1","api":"P:1"}}]}}"#,
        crate::hashing::hex(&credential_hash(SECRET_KEY))
    );
    Rc::new(Config::from_json(json.as_bytes()).unwrap())
}

#[test]
fn an_api_key_in_the_query_reaches_no_access_log_field_and_no_refused_path() {
    for encoding in ["properties", "struct"] {
        let extra = format!(r#""observability":{{"access_log_encoding":"{encoding}"}},"#);
        let original_path = |host: &FakeHost| match encoding {
            "struct" => crate::observe::decode_struct(&host.properties[crate::observe::STRUCT_PROPERTY])
                ["original_path"]
                .clone(),
            _ => String::from_utf8(host.properties["apim.original_path"].clone()).unwrap(),
        };
        // Allowed: the key leaves the upstream path and the field.
        let mut host =
            FakeHost::request(&[(":method", "GET"), (":path", &format!("/p/1/menu?x=1&apikey={SECRET_KEY}"))]);
        let mut allowed = stream(api_key_config(&extra));
        assert_eq!(allowed.on_request_headers(&mut host, true), Flow::Continue);
        assert_eq!(host.req(":path"), "/menu?x=1");
        assert_eq!(original_path(&host), "/p/1/menu?x=1", "{encoding}");
        // A failed upstream answered with a fault: the request's `:path` stays what went upstream.
        host.response.insert(":status".into(), b"503".to_vec());
        host.properties.insert("response.flags".into(), 32u64.to_le_bytes().to_vec());
        host.properties.insert("response.code_details".into(), b"upstream_reset_before_response_started{x}".to_vec());
        assert_eq!(allowed.on_response_headers(&mut host), Flow::Answered);
        assert_eq!(host.req(":path"), "/menu?x=1");
        // Refused (a wrong key, spelled `api%6Bey`): neither the field nor Envoy's `:path`, which
        // its access log prints, holds the guess.
        let mut host = FakeHost::request(&[(":method", "GET"), (":path", "/p/1/menu?api%6Bey=guess-SECRET")]);
        assert_eq!(stream(api_key_config(&extra)).on_request_headers(&mut host, true), Flow::Answered);
        assert_eq!(original_path(&host), "/p/1/menu", "{encoding}");
        assert_eq!(host.req(":path"), "/p/1/menu");
    }
}
