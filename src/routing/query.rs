//! A request's query string: its pairs (`&` or `;` between them), a parameter's name compared
//! percent-decoded, and a value percent-decoded. Credentials in the query, their stripping and
//! throttling conditions on a parameter all read a query through these.

/// What separates a query's pairs: `&`, and `;` as API-M's WebSocket gateway (Netty's
/// `QueryStringDecoder`) and many backends read a query. A credential is read, and stripped, in
/// either spelling, so one the filter does not read never reaches a backend or a log.
pub const QUERY_SEPARATORS: [char; 2] = ['&', ';'];

/// The first non-empty value of a query parameter, percent-decoded: the API key in the query,
/// and what a throttling condition on a parameter reads.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split(QUERY_SEPARATORS).find_map(|pair| {
        let (_, value) = pair.split_once('=')?;
        (is_param_named(pair, name) && !value.is_empty()).then(|| percent_decode(value))
    })
}

/// Whether a query pair (`name=value`) is the parameter `name`: its name percent-decoded, as its
/// value is, and compared exactly (parameter names are case-sensitive). Reading the API key and
/// stripping it upstream both ask this, so what is stripped as the key is what is read as it.
///
/// It runs for every request with a query (the access log's path), so an escaped name is decoded
/// byte by byte against `name`, never into a new string.
pub fn is_param_named(pair: &str, name: &str) -> bool {
    let key = pair.split('=').next().unwrap_or_default();
    if key == name || !key.contains('%') {
        return key == name;
    }
    // Names are plain ASCII (`credentials.api_key_query_param` is checked at load; `access_token`),
    // and invalid UTF-8, which `percent_decode` replaces, never decodes to ASCII.
    decoded_bytes(key).eq(name.bytes())
}

/// Percent-decodes a query component (`+` is a space); invalid UTF-8 is replaced, never refused.
pub fn percent_decode(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    out.extend(decoded_bytes(text));
    String::from_utf8_lossy(&out).into_owned()
}

/// A query component's bytes percent-decoded (`+` is a space), one at a time.
fn decoded_bytes(text: &str) -> impl Iterator<Item = u8> + '_ {
    let bytes = text.as_bytes();
    let mut index = 0;
    std::iter::from_fn(move || {
        let byte = *bytes.get(index)?;
        match (byte == b'%').then(|| super::matcher::hex_pair(bytes, index + 1)).flatten() {
            Some(decoded) => {
                index += 3;
                Some(decoded)
            }
            None => {
                index += 1;
                Some(if byte == b'+' { b' ' } else { byte })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b+c%zz"), "a b c%zz");
        assert_eq!(query_param(Some("x=1&apikey=k%2B1"), "apikey").as_deref(), Some("k+1"));
        assert_eq!(query_param(Some("apikey="), "apikey"), None);
        // `;` separates pairs as `&` does, as API-M's WebSocket gateway reads a query.
        assert_eq!(query_param(Some("x=1;apikey=k"), "apikey").as_deref(), Some("k"));
        assert_eq!(query_param(Some("apikey=k;x=1"), "apikey").as_deref(), Some("k"));
    }

    /// A name decoded byte by byte is the name `percent_decode` gives, whatever its escapes.
    #[test]
    fn an_escaped_name_is_compared_as_decoded() {
        for name in ["apikey", "access_token", "api-key"] {
            for key in [
                "api%6Bey",
                "api%6bey",
                "%61pikey",
                "api%6Key",
                "api%6",
                "apikey%",
                "apikey%00",
                "api+key",
                "api%2Dkey",
                "%61ccess%5Ftoken",
                "access%5ftoken",
                "access%5Ftokens",
                "%C3%A9",
                "%FFapikey",
                "",
                "%",
            ] {
                let expected = percent_decode(key) == name;
                assert_eq!(is_param_named(&format!("{key}=v"), name), expected, "{key} as {name}");
            }
        }
    }
}
