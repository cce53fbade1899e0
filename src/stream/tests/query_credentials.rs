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
