//! The directory: who the API consumers are and what they may do. Applications, the OAuth2
//! client ids and API keys that lead to them, their subscriptions to APIs, the throttling
//! policies (tiers) and the blocking conditions, behind one query interface, [`Directory`], that
//! key validation and throttling ask.
//!
//! [`StaticDirectory`] is the directory written in the filter's configuration. A directory fed at
//! run time from a WSO2 control plane plugs in behind the same trait.

pub mod static_dir;

use std::fmt::Debug;
use std::rc::Rc;

use crate::cidr::IpRange;
use crate::vocab::{KeyType, KmId, SubscriptionState};
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
    /// Count across Envoy nodes (true) or per node (false); `None` follows the rate-limit
    /// service's `applies_to`.
    pub cluster_wide: Option<bool>,
}

impl PolicySpec {
    pub fn requests_per_second(limit: u64, cluster_wide: Option<bool>) -> PolicySpec {
        PolicySpec { limit, bytes: false, window_s: 1, burst: None, stop_on_quota_reach: true, cluster_wide }
    }
}

/// An application (API consumer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Application {
    /// WSO2's application id (UUID).
    pub id: Rc<str>,
    pub name: String,
    /// The subscriber: the user who owns the application.
    pub owner: String,
    /// Application-level throttling policy.
    pub policy: Option<String>,
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
    User(String),
    Ip(IpRange),
    Subscription {
        application: String,
        api: String,
    },
}

/// The directory's queries. Answers are cheap to clone (shared).
pub trait Directory: Debug {
    /// The application key of an OAuth2 client id.
    fn client(&self, client_id: &str) -> Option<AppKey>;
    /// The application key of an opaque API key, by the key's SHA-256 (compared in constant time).
    fn api_key(&self, hash: &[u8; 32]) -> Option<AppKey>;
    fn application(&self, id: &str) -> Option<Rc<Application>>;
    /// The subscription of an application to an API (`<name>:<version>`).
    fn subscription(&self, application: &str, api: &str) -> Option<Rc<Subscription>>;
    /// A throttling policy by name (`Unlimited` has none: it counts nothing).
    fn policy(&self, name: &str) -> Option<Rc<PolicySpec>>;
    /// Whether any policy is defined (otherwise tiers throttle nothing).
    fn has_policies(&self) -> bool;
    fn blocking(&self) -> &[BlockingCondition];
}
