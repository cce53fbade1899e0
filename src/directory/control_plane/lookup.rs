//! On-demand lookups: what a request brings that this Envoy does not know yet, asked of the
//! control plane as WSO2's gateway asks on a cache miss, one call at a time: the key mapping of a
//! client id (`/application-key-mappings?consumerKey=&keymanager=`), then its application
//! (`/applications?appId=`), then the subscription to the API
//! (`/subscriptions?apiUUID=&applicationUUID=`); and, before throttling, a policy no full load
//! brought (`/subscription-policies?policyName=`, ...). Each answer, found or not, is remembered for
//! every worker (not found only for `negative_ttl_s`); at most `lookups_per_second` calls are
//! made per Envoy. A lookup that cannot be made (over that budget, the control plane down, slow,
//! failing or answering garbage) refuses the request with 900900, never 401 or 403.

use super::store::{AppEntry, KeyEntry, Meta, SubEntry};
use super::view::{key_of_client, key_of_subscription, Cached, CpWorker, Trust};
use super::{wire, ControlPlane};
use crate::catalogue::{Fault, FaultId};
use crate::directory::PolicyLevel;
use crate::host::{warn_repeated, Answer, SharedStore, Step};
use crate::vocab::KmId;

/// What a request needs the directory to know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Need {
    /// An OAuth2 client id and the key manager that issued its token.
    pub client: Option<(KmId, String)>,
    /// An application known from the credential itself (a JWT API key).
    pub application: Option<String>,
    /// The control plane's UUID of the requested API (`None` for the configuration's APIs).
    pub api: Option<String>,
    /// Policies the request is subject to that no full load brought (a tier, application or
    /// API policy created since): looked up as WSO2's gateway fetches a missing policy
    /// (`/<level>-policies?policyName=`), before throttling.
    pub policies: Vec<(PolicyLevel, String)>,
}

/// The lookup under way: what was asked, and the generation of the shared data when it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub asked: Asked,
    pub generation: u64,
}

/// What a lookup asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asked {
    Key { key_manager: String, client_id: String },
    App { uuid: String, id: i64 },
    Sub { application: String, api: String },
    Policy { level: PolicyLevel, name: String },
}

/// What lookups work with.
pub struct Context<'a> {
    pub control_plane: &'a ControlPlane,
    pub worker: &'a mut CpWorker,
    pub store: &'a mut dyn SharedStore,
    pub now: u64,
}

pub type LookupStep = Step<(), Resume, Fault>;

fn unavailable() -> Fault {
    Fault::new(FaultId::AuthGeneralError)
}

/// Makes sure the directory knows what the request needs, looking up what it does not.
pub fn start(context: &mut Context<'_>, need: &Need) -> LookupStep {
    let trust = Trust { now: context.now, negative_ttl_s: context.control_plane.negative_ttl_s };
    for (level, name) in &need.policies {
        if context.worker.knows_policy(*level, name)
            || context.worker.learned_policy(context.store, *level, name, trust).is_some()
        {
            continue;
        }
        let call = context.control_plane.get(super::store::policy_resource(*level), &[("policyName", name)]);
        return ask(context, call, Asked::Policy { level: *level, name: name.clone() });
    }
    // The application: from the client id's key mapping, or from the credential.
    let application = match &need.client {
        Some((key_manager, client_id)) => {
            let Some(name) = context.worker.key_manager_name(*key_manager).map(String::from) else {
                return Step::Done(());
            };
            let key = key_of_client(&name, client_id);
            let entry = match context.worker.key(context.store, &key, trust) {
                Some(Cached::Present(entry)) => entry,
                Some(Cached::Absent { .. }) => return Step::Done(()),
                None => {
                    let call = context
                        .control_plane
                        .get("application-key-mappings", &[("consumerKey", client_id), ("keymanager", &name)]);
                    return ask(context, call, Asked::Key { key_manager: name, client_id: client_id.clone() });
                }
            };
            match context.worker.app(context.store, &entry.application, trust) {
                Some(Cached::Present(_)) => {}
                Some(Cached::Absent { .. }) => return Step::Done(()),
                None => {
                    let id = entry.application_id.to_string();
                    let call = context.control_plane.get("applications", &[("appId", &id)]);
                    return ask(context, call, Asked::App { uuid: entry.application, id: entry.application_id });
                }
            }
            entry.application
        }
        None => match &need.application {
            Some(application) => application.clone(),
            None => return Step::Done(()),
        },
    };
    let Some(api) = &need.api else { return Step::Done(()) };
    let key = key_of_subscription(&application, api);
    match context.worker.sub(context.store, &key, trust) {
        Some(_) => Step::Done(()),
        None => {
            let call =
                context.control_plane.get("subscriptions", &[("apiUUID", api), ("applicationUUID", &application)]);
            ask(context, call, Asked::Sub { application, api: api.clone() })
        }
    }
}

/// A call within this Envoy's lookup budget, else 900900.
fn ask(context: &mut Context<'_>, call: crate::host::Call, asked: Asked) -> LookupStep {
    // The shared data is another control plane's (this configuration's was replaced, and its
    // listener drains): an answer from this one, remembered there, would serve the other's
    // requests.
    let source = Meta::read(context.store).source;
    if source != 0 && source != context.control_plane.source {
        // Every such request of the draining listener's (up to Envoy's `drain_time`): paced.
        warn_repeated(context.store.gateway_scope(), "control_plane_replaced", context.now, || {
            "control plane lookup refused: this configuration's control plane is no longer the Envoy's".into()
        });
        return Step::Refused(unavailable());
    }
    let budget = context.control_plane.lookups_per_second;
    if crate::host::take_from_budget(context.store, super::store::BUDGET_KEY, budget, context.now) {
        Step::Call(call, Resume { asked, generation: Meta::read(context.store).generation })
    } else {
        warn_repeated(context.store.gateway_scope(), "control_plane_lookup_budget", context.now, || {
            format!("control plane lookup refused: more than {budget} a second")
        });
        Step::Refused(unavailable())
    }
}

/// Takes a lookup's answer, then goes on with what else the request needs.
pub fn resume(context: &mut Context<'_>, need: &Need, resume: Resume, answer: &Answer) -> LookupStep {
    // A policy API-M does not have may be answered 404 rather than with an empty list: it is
    // absent, not a failed lookup (which would ask again on every request).
    let not_found: &[u8] = br#"{"list":[]}"#;
    let body = match answer {
        Answer::Http { status: 200, body } => body.as_slice(),
        Answer::Http { status: 404, .. } if matches!(resume.asked, Asked::Policy { .. }) => not_found,
        Answer::Http { status, .. } => {
            warn_repeated(context.store.gateway_scope(), FAILED_LOOKUP, context.now, || {
                format!("control plane lookup failed: HTTP {status}")
            });
            return Step::Refused(unavailable());
        }
        Answer::Failed { code } => {
            warn_repeated(context.store.gateway_scope(), FAILED_LOOKUP, context.now, || {
                format!("control plane lookup failed: no answer ({code})")
            });
            return Step::Refused(unavailable());
        }
        Answer::Grpc { .. } | Answer::HttpStream { .. } => return Step::Refused(unavailable()),
    };
    // A full load landed while the call was out: its data is newer than this answer, which is
    // dropped (written over the load, it would stay until the next change). The request goes on
    // from the new data, asking again for what it still lacks.
    if Meta::read(context.store).generation != resume.generation {
        return start(context, need);
    }
    let until = context.now.saturating_add(context.control_plane.negative_ttl_s);
    let now = context.now;
    let generation = resume.generation;
    match resume.asked {
        Asked::Key { key_manager, client_id } => {
            let Some(list) = parse::<wire::KeyMapping>(context, body) else { return Step::Refused(unavailable()) };
            // The first mapping a full load would take: one with an application and a key type
            // (a mapping without an application must not join every such client to one).
            let found = list
                .into_iter()
                .filter(|mapping| {
                    mapping.consumer_key == client_id
                        && mapping.key_manager == key_manager
                        && !mapping.application_uuid.is_empty()
                })
                .find_map(|mapping| {
                    let key_type = wire::key_type(&mapping.key_type)?;
                    Some(Cached::Present(KeyEntry {
                        application: mapping.application_uuid,
                        application_id: mapping.application_id,
                        production: key_type == crate::vocab::KeyType::Production,
                    }))
                })
                .unwrap_or(Cached::Absent { until });
            context.worker.learn_key(context.store, &key_of_client(&key_manager, &client_id), found, now);
        }
        Asked::App { uuid, id } => {
            let Some(list) = parse::<wire::Application>(context, body) else { return Step::Refused(unavailable()) };
            let found = list
                .into_iter()
                .find(|application| application.uuid == uuid || (application.uuid.is_empty() && application.id == id))
                .map(|application| Cached::Present(AppEntry::from_wire(application)))
                .unwrap_or(Cached::Absent { until });
            context.worker.learn_app(context.store, &uuid, found, now);
        }
        Asked::Sub { application, api } => {
            let Some(list) = parse::<wire::Subscription>(context, body) else { return Step::Refused(unavailable()) };
            let found = list
                .into_iter()
                .find(|subscription| subscription.api_uuid == api && subscription.application_uuid == application)
                .map(|subscription| {
                    let state = super::store::state_index(wire::subscription_state(&subscription.subscription_state));
                    Cached::Present(SubEntry { tier: subscription.policy_id, state })
                })
                .unwrap_or(Cached::Absent { until });
            context.worker.learn_sub(context.store, &key_of_subscription(&application, &api), found, now);
        }
        Asked::Policy { level, name } => {
            let Some(list) = parse::<wire::Policy>(context, body) else { return Step::Refused(unavailable()) };
            let answer = list.iter().any(|policy| policy.name == name).then_some(body);
            context.worker.learn_policy(context.store, level, &name, answer, generation, (now, until));
        }
    }
    start(context, need)
}

fn parse<T: serde::de::DeserializeOwned>(context: &Context<'_>, body: &[u8]) -> Option<Vec<T>> {
    match crate::pieces::from_bytes::<wire::Envelope<T>>(body) {
        Ok(envelope) => Some(envelope.list),
        Err(_) => {
            warn_repeated(context.store.gateway_scope(), FAILED_LOOKUP, context.now, || {
                "control plane lookup failed: the answer is not WSO2's list JSON".into()
            });
            None
        }
    }
}

/// The kind of log line of a lookup the control plane failed (one now and then, not per request).
const FAILED_LOOKUP: &str = "control_plane_lookup_failed";
