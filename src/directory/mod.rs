//! The directory: who the API consumers are and what they may do. Applications, the OAuth2
//! client ids and API keys that lead to them, their subscriptions to APIs, the throttling
//! policies (tiers) and the blocking conditions, behind one query interface, [`Directory`], that
//! key validation and throttling ask.
//!
//! [`StaticDirectory`] is the directory written in the filter's configuration;
//! [`control_plane`] reads one from a WSO2 API Manager at run time, once per Envoy, and
//! [`Layered`] answers from both (the configuration first).

pub mod control_plane;
mod index;
pub mod static_dir;

use std::fmt::{self, Debug};
use std::rc::Rc;

use std::net::IpAddr;

use crate::cidr::IpRange;
use crate::conditions::ConditionGroup;
use crate::routing::Api;
use crate::vocab::{KeyType, KmId, SubscriptionState};
use serde_json::{Map, Value};
pub use static_dir::StaticDirectory;

/// A compiled throttling policy: a request or byte budget per window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySpec {
    /// Requests (or bytes) per window.
    pub limit: u64,
    /// A bandwidth policy: `limit` counts request and response body bytes.
    pub bytes: bool,
    pub window_s: u64,
    /// Burst control: (requests, window seconds).
    pub burst: Option<(u64, u64)>,
    pub stop_on_quota_reach: bool,
    /// As an API's or a resource's policy, each user has the limit, counted apart (WSO2's
    /// advanced policies applied per user, `applicableLevel: userLevel`); else the API or
    /// resource as a whole has it. The other levels are per application (and user) already.
    pub per_user: bool,
    /// Count across Envoy nodes (true) or per node (false); `None` follows the rate-limit
    /// service's `applies_to`.
    pub cluster_wide: Option<bool>,
    /// Condition groups (an API's or a resource's policy): a request matching any counts in
    /// each group it matches instead of under `limit`, which counts the requests matching none
    /// ([`crate::conditions::UNLIMITED`]: they count nowhere).
    pub groups: Vec<ConditionGroup>,
}

impl PolicySpec {
    pub fn requests_per_second(limit: u64, cluster_wide: Option<bool>) -> PolicySpec {
        PolicySpec {
            limit,
            bytes: false,
            window_s: 1,
            burst: None,
            stop_on_quota_reach: true,
            per_user: false,
            cluster_wide,
            groups: Vec::new(),
        }
    }
}

/// An application (API consumer). Its name, owner, policy and WSO2's numeric id are kept in one
/// string (one allocation instead of four: a static directory holds 100,000 applications and
/// more).
#[derive(Clone, PartialEq, Eq)]
pub struct Application {
    /// WSO2's application id (UUID).
    pub id: Rc<str>,
    /// The name, then the owner, then the policy, then WSO2's numeric id (decimal).
    text: Box<str>,
    name_end: u32,
    owner_end: u32,
    policy_end: u32,
    has_policy: bool,
    /// WSO2's application attributes (string values) and their JSON, `None` when it has none.
    attributes: Option<Box<Attributes>>,
}

/// An application's attributes and their JSON (made once, at load).
type Attributes = (Map<String, Value>, Box<str>);

/// What WSO2 knows of an application beyond its name, owner and policy: the backend JWT sends
/// them (`applicationid`, `applicationAttributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wso2Details<'a> {
    /// WSO2's numeric application id, empty when unknown.
    pub number: &'a str,
    /// The application's attributes; empty when it has none.
    pub attributes: Map<String, Value>,
}

impl Application {
    /// `owner` is the subscriber, the user who owns the application; `policy` the
    /// application-level throttling policy.
    pub fn new(id: Rc<str>, name: &str, owner: &str, policy: Option<&str>) -> Application {
        Application::with_details(id, name, owner, policy, Wso2Details::default())
    }

    /// An application with its numeric id and attributes.
    pub fn with_details(
        id: Rc<str>,
        name: &str,
        owner: &str,
        policy: Option<&str>,
        details: Wso2Details<'_>,
    ) -> Application {
        let policy_text = policy.unwrap_or_default();
        let text = [name, owner, policy_text, details.number].concat().into_boxed_str();
        let end = |length: usize| u32::try_from(length).unwrap_or(u32::MAX);
        let owner_end = name.len().saturating_add(owner.len());
        Application {
            id,
            text,
            name_end: end(name.len()),
            owner_end: end(owner_end),
            policy_end: end(owner_end.saturating_add(policy_text.len())),
            has_policy: policy.is_some(),
            attributes: (!details.attributes.is_empty()).then(|| {
                let json = serde_json::to_string(&details.attributes).unwrap_or_default().into_boxed_str();
                Box::new((details.attributes, json))
            }),
        }
    }

    pub fn name(&self) -> &str {
        self.text.get(..self.name_end as usize).unwrap_or_default()
    }

    /// The subscriber: the user who owns the application.
    pub fn owner(&self) -> &str {
        self.text.get(self.name_end as usize..self.owner_end as usize).unwrap_or_default()
    }

    /// Application-level throttling policy.
    pub fn policy(&self) -> Option<&str> {
        self.has_policy.then(|| self.text.get(self.owner_end as usize..self.policy_end as usize).unwrap_or_default())
    }

    /// WSO2's numeric application id (`"7"`), when known.
    pub fn number(&self) -> Option<&str> {
        self.text.get(self.policy_end as usize..).filter(|number| !number.is_empty())
    }

    /// WSO2's application attributes, when it has any.
    pub fn attributes(&self) -> Option<&Map<String, Value>> {
        self.attributes.as_deref().map(|(attributes, _)| attributes)
    }

    /// The attributes as JSON (made once, at load), empty when it has none.
    pub fn attributes_json(&self) -> &str {
        self.attributes.as_deref().map_or("", |(_, json)| json)
    }
}

impl fmt::Debug for Application {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Application")
            .field("id", &self.id)
            .field("name", &self.name())
            .field("owner", &self.owner())
            .field("policy", &self.policy())
            .field("number", &self.number())
            .field("attributes", &self.attributes())
            .finish()
    }
}

/// A subscription of an application to an API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The subscription policy (tier).
    pub tier: String,
    pub state: SubscriptionState,
}

/// What a client id or an API key leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppKey {
    pub application: Rc<str>,
    pub key_type: KeyType,
    /// The key manager a client id belongs to (`None`: any, for API keys or a single key manager).
    pub key_manager: Option<KmId>,
}

/// A blocking condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockingCondition {
    /// An API by context, context and version, or `<name>:<version>`.
    Api(String),
    Application(String),
    /// An application by `<owner>:<name>` (how WSO2's control plane names it).
    ApplicationNamed {
        owner: String,
        name: String,
    },
    /// The user a request acts for (the end user, else the application's owner), compared with
    /// the gateway's tenant taken off both (WSO2 qualifies both with it): in the super tenant
    /// `bob@carbon.super` blocks `bob` and the reverse.
    User(String),
    Ip(IpRange),
    /// Addresses from `low` to `high` (WSO2's `IP` is both ends equal and inclusive; its
    /// `IPRANGE` excludes its ends); `invert` blocks every other address instead.
    IpBetween {
        low: IpAddr,
        high: IpAddr,
        inclusive: bool,
        invert: bool,
    },
    Subscription {
        application: String,
        api: String,
    },
}

/// Which level asks for a policy: WSO2 keeps API (and resource), subscription and application
/// policies apart, and a name may exist at more than one level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyLevel {
    Api,
    Subscription,
    Application,
}

/// The directory's queries. Answers are cheap to clone (shared).
pub trait Directory {
    /// The application key of an OAuth2 client id issued by `key_manager`.
    fn client(&self, client_id: &str, key_manager: KmId) -> Option<AppKey>;
    /// The application key of an opaque API key, by the key's SHA-256 (compared in constant time).
    fn api_key(&self, hash: &[u8; 32]) -> Option<AppKey>;
    fn application(&self, id: &str) -> Option<Rc<Application>>;
    /// The subscription of an application to an API.
    fn subscription(&self, application: &str, api: &Api) -> Option<Rc<Subscription>>;
    /// A throttling policy by level and name (`Unlimited` has none: it counts nothing).
    fn policy(&self, level: PolicyLevel, name: &str) -> Option<Rc<PolicySpec>>;
    /// Whether a policy of that name is defined at that level, one that counts or one that
    /// counts nothing (`Unlimited`, in any letter case, always is).
    fn knows_policy(&self, level: PolicyLevel, name: &str) -> bool;
    /// Whether any policy is defined (otherwise tiers throttle nothing).
    fn has_policies(&self) -> bool;
    fn blocking(&self) -> &[BlockingCondition];
}

/// A directory prints as its kind only: a `Debug` supertrait put every directory's derived
/// `Debug` (its maps and entries) into the `.wasm` through the trait's vtable, and nothing prints
/// a directory outside tests.
impl Debug for dyn Directory + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Directory")
    }
}

/// The configuration's directory first, then the control plane's (when there is one).
#[derive(Debug)]
pub struct Layered<'a> {
    pub fixed: &'a dyn Directory,
    pub control_plane: Option<&'a control_plane::view::CpWorker>,
}

impl Directory for Layered<'_> {
    fn client(&self, client_id: &str, key_manager: KmId) -> Option<AppKey> {
        self.fixed.client(client_id, key_manager).or_else(|| self.control_plane?.client(client_id, key_manager))
    }
    fn api_key(&self, hash: &[u8; 32]) -> Option<AppKey> {
        self.fixed.api_key(hash)
    }
    fn application(&self, id: &str) -> Option<Rc<Application>> {
        self.fixed.application(id).or_else(|| self.control_plane?.application(id))
    }
    fn subscription(&self, application: &str, api: &Api) -> Option<Rc<Subscription>> {
        self.fixed.subscription(application, api).or_else(|| self.control_plane?.subscription(application, api))
    }
    fn policy(&self, level: PolicyLevel, name: &str) -> Option<Rc<PolicySpec>> {
        self.fixed.policy(level, name).or_else(|| self.control_plane?.policy(level, name))
    }
    fn knows_policy(&self, level: PolicyLevel, name: &str) -> bool {
        self.fixed.knows_policy(level, name)
            || self.control_plane.is_some_and(|control_plane| control_plane.knows_policy(level, name))
    }
    fn has_policies(&self) -> bool {
        self.fixed.has_policies() || self.control_plane.is_some_and(control_plane::view::CpWorker::has_policies)
    }
    fn blocking(&self) -> &[BlockingCondition] {
        match self.control_plane {
            // The control plane's list holds the configuration's conditions too.
            Some(worker) => worker.blocking(),
            None => self.fixed.blocking(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_reads_back_its_name_owner_and_policy() {
        let cases = [
            ("App", "bob", Some("Gold")),
            ("", "", None),
            ("", "", Some("")),
            ("Ünïcødé ☃", "o\\p", None),
            ("a", "", Some("b")),
        ];
        for (name, owner, policy) in cases {
            let application = Application::new(Rc::from("id"), name, owner, policy);
            assert_eq!((application.name(), application.owner(), application.policy()), (name, owner, policy));
            assert_eq!((&*application.id, application.number(), application.attributes()), ("id", None, None));
            let mut attributes = Map::new();
            attributes.insert("tier".into(), Value::from("gold"));
            let details = Wso2Details { number: "42", attributes: attributes.clone() };
            let described = Application::with_details(Rc::from("id"), name, owner, policy, details);
            assert_eq!((described.name(), described.owner(), described.policy()), (name, owner, policy));
            assert_eq!((described.number(), described.attributes()), (Some("42"), Some(&attributes)));
            assert_eq!((described.attributes_json(), application.attributes_json()), (r#"{"tier":"gold"}"#, ""));
            // Empty attributes are none.
            let details = Wso2Details { number: "", attributes: Map::new() };
            let bare = Application::with_details(Rc::from("id"), name, owner, policy, details);
            assert_eq!(bare, application);
        }
        // Equal strings split differently are different applications.
        let (a, b) =
            (Application::new(Rc::from("x"), "ab", "c", None), Application::new(Rc::from("x"), "a", "bc", None));
        assert_ne!(a, b);
    }
}
