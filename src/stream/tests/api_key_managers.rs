//! An API's allowed key managers (`apis[].key_managers`): another key manager's token refused.

use super::*;

const SECRET_A: &str = "secret-of-key-manager-a-32-bytes-long!";
const SECRET_B: &str = "secret-of-key-manager-b-32-bytes-long!";
const API_KEY: &str = "the-shops-api-key";

/// Two key managers, `a` and `b`, each with a client of `App`, which subscribed to `Shop` (only
/// `a`'s tokens, `allowed`) and `Mall` (every key manager's); both take OAuth2 and API keys.
fn config(allowed: serde_json::Value) -> Rc<Config> {
    let key_hash = crate::hashing::hex(&<sha2::Sha256 as sha2::Digest>::digest(API_KEY.as_bytes()));
    let km = |name: &str, secret: &str| serde_json::json!({"name": name, "issuer": format!("https://{name}"), "hmac_secret": secret, "algorithms": ["HS256"]});
    let api = |name: &str| {
        serde_json::json!({"name": name, "context": format!("/{}", name.to_lowercase()), "version": "1",
            "security": ["oauth2", "api_key"], "endpoints": {"production": "prod"},
            "resources": [{"method": "GET", "path": "/*"}]})
    };
    let mut shop = api("Shop");
    shop["key_managers"] = allowed;
    let json = serde_json::json!({
        "key_managers": [km("a", SECRET_A), km("b", SECRET_B)],
        "apis": [shop, api("Mall")],
        "applications": [{"id": "app", "name": "App", "client_ids": [
            {"id": "client-a", "key_manager": "a"}, {"id": "client-b", "key_manager": "b"}],
            "api_keys": [{"sha256": key_hash}]}],
        "subscriptions": [{"application": "app", "api": "Shop:1"}, {"application": "app", "api": "Mall:1"}]
    });
    Rc::new(Config::from_json(json.to_string().as_bytes()).unwrap())
}

fn token(key_manager: &str, secret: &str) -> String {
    let claims = serde_json::json!({"iss": format!("https://{key_manager}"), "exp": 10_000,
        "azp": format!("client-{key_manager}")});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

/// What the filter answers a `GET` of `path` with `headers`: the fault it counted, or the cluster.
fn answer(config: &Rc<Config>, path: &str, headers: &[(&str, &str)]) -> Result<Vec<u8>, Vec<u32>> {
    let mut host = FakeHost { now: 1_000, ..Default::default() };
    let worker = Rc::new(RefCell::new(Worker::new(config)));
    let mut pairs = vec![(":method", "GET"), (":path", path)];
    pairs.extend_from_slice(headers);
    host.request = pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
    let mut stream = Stream::new(Rc::clone(config), worker);
    match stream.on_request_headers(&mut host, true) {
        Flow::Continue => host.request.get("x-apim-cluster").cloned().ok_or(vec![]),
        _ => Err(host.counted.clone()),
    }
}

/// API-M's `OAuthAuthenticator` refuses a JWT whose key manager is not in the API's list
/// (`DataHolder.getKeyManagersFromUUID`, from the API's deployment: "Elected KeyManager ... not
/// found in API level list") as invalid credentials, 900901, and goes on to the API key
/// authenticator (binodmx/wso2-carbon-apimgt 389d4e225143445c50f913257ae9c2e21914a640,
/// components/apimgt/org.wso2.carbon.apimgt.gateway/.../handlers/security/oauth/OAuthAuthenticator.java).
#[test]
fn an_api_refuses_the_tokens_of_key_managers_it_does_not_name() {
    let prod = Ok(b"prod".to_vec());
    let (a, b) = (token("a", SECRET_A), token("b", SECRET_B));
    let (bearer_a, bearer_b) = (format!("Bearer {a}"), format!("Bearer {b}"));
    let only_a = config(serde_json::json!(["a"]));
    assert_eq!(answer(&only_a, "/shop/1/items", &[("authorization", &bearer_a)]), prod);
    assert_eq!(answer(&only_a, "/shop/1/items", &[("authorization", &bearer_b)]), Err(vec![900901]));
    // The API key beside the refused token is tried, as API-M's next authenticator.
    assert_eq!(answer(&only_a, "/shop/1/items", &[("authorization", &bearer_b), ("apikey", API_KEY)]), prod);
    // An API that names none takes every key manager's tokens.
    assert_eq!(answer(&only_a, "/mall/1/items", &[("authorization", &bearer_b)]), prod);
    let both = config(serde_json::json!(["b", "a"]));
    for bearer in [&bearer_a, &bearer_b] {
        assert_eq!(answer(&both, "/shop/1/items", &[("authorization", bearer)]), prod);
    }
}

/// A list that no token could pass is refused at load, naming the field.
#[test]
fn an_empty_or_unknown_key_manager_list_is_refused_at_load() {
    for (allowed, field) in
        [(serde_json::json!([]), "apis[0].key_managers"), (serde_json::json!(["a", "c"]), "apis[0].key_managers[1]")]
    {
        let json = serde_json::json!({
            "key_managers": [{"name": "a", "issuer": "https://a", "hmac_secret": SECRET_A, "algorithms": ["HS256"]}],
            "apis": [{"name": "Shop", "context": "/shop", "version": "1", "key_managers": allowed,
                "endpoints": {"production": "prod"}, "resources": [{"method": "GET", "path": "/*"}]}]
        });
        let error = Config::from_json(json.to_string().as_bytes()).err().unwrap();
        assert_eq!(error.field, field, "{error:?}");
    }
}
