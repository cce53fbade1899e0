//! The configuration's applications compiled while they are parsed, one at a time: the checks
//! that need other parts of the configuration (key managers, policies) wait for
//! [`StagedApplications::finish`]. Parsing the whole list first, then compiling it, was one more
//! pass over 100,000 parsed applications (about 10 ms of `on_configure`; bench/NOTES.md).

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use foldhash::fast::FixedState;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{client_id, hex_digest, key_type_bit, listed_id, Client, Context, Listed, PolicyNames};
use crate::directory::index::{offset, Index};
use crate::directory::{AppKey, Application, Wso2Details};
use crate::schema::{ConfigError, RawApplication};
use crate::vocab::KmId;

/// Where in the applications a check belongs, in the order the checks run: an application's
/// index, then its id (0), its policy (1), each client (2 + 3 × its index + the client's check:
/// id, key managers configured, key manager named) and each key after its clients. Of the
/// failures found, the first in this order is reported, as when every check ran in turn.
type Origin = (usize, usize);

const ID: usize = 0;
const POLICY: usize = 1;

fn client_step(client: usize, check: usize) -> usize {
    2 + 3 * client + check
}

/// A name the applications refer to, with the first place that names it.
struct Named {
    first: Origin,
    /// For a key manager, the id its clients hold until `finish` puts the configured one there.
    place: u32,
}

/// Applications compiled as they are parsed (see the module's comment). After the first failure
/// of a check that needs nothing else, the rest are only parsed.
#[derive(Default)]
pub struct StagedApplications {
    /// `listed` by application id, and `clients` by client id: built by `finish`, at their size.
    pub(super) applications: Index,
    pub(super) listed: Vec<Listed>,
    pub(super) client_ids: String,
    pub(super) clients: Vec<Client>,
    pub(super) client_index: Index,
    pub(super) api_keys: Vec<([u8; 32], AppKey)>,
    /// Each API key's application and key index, for the error naming a duplicate.
    pub(super) key_origins: Vec<(usize, usize)>,
    /// The policies the applications name.
    policies: HashMap<String, Named, FixedState>,
    /// The key managers the clients name; a client's `key_manager` holds the name's `place`
    /// until [`StagedApplications::finish`] puts the configured key manager's id there.
    key_managers: HashMap<String, Named, FixedState>,
    /// The first client, and the first client that names no key manager.
    first_client: Option<Origin>,
    first_client_unnamed: Option<Origin>,
    /// The first failure of a check that needs nothing but the applications.
    failure: Option<(Origin, ConfigError)>,
    /// How many applications were parsed.
    parsed: usize,
}

impl fmt::Debug for StagedApplications {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("StagedApplications").field("listed", &self.listed.len()).finish_non_exhaustive()
    }
}

impl StagedApplications {
    /// Compiles one application, or records the first failure and stops compiling.
    pub(crate) fn add(&mut self, application: RawApplication<'_>) {
        let index = self.parsed;
        self.parsed += 1;
        if self.failure.is_none() {
            if let Err(failure) = self.compile(index, application) {
                self.failure = Some(failure);
            }
        }
    }

    fn compile(&mut self, index: usize, mut application: RawApplication<'_>) -> Result<(), (Origin, ConfigError)> {
        let field = || format!("applications[{index}]");
        if application.id.is_empty() {
            return Err(((index, ID), ConfigError::new(format!("{}.id", field()), "must not be empty")));
        }
        if let Some((name, _)) = application.attributes.iter().find(|(_, value)| !value.is_string()) {
            let field = format!("{}.attributes.{name}", field());
            return Err(((index, ID), ConfigError::new(field, "must be a string")));
        }
        if let Some(policy) = &application.policy {
            note_name(&mut self.policies, policy, (index, POLICY), 0);
        }
        let id: Rc<str> = Rc::from(&*application.id);
        // Listed even when one of its clients or keys fails: the checks for repeated ids after
        // the parse then see its id and the clients before the failure (a place in `listed` is
        // an application's index).
        let compiled = self.compile_keys(index, &id, &application);
        let number = application.numeric_id.map(|number| number.to_string()).unwrap_or_default();
        let details = Wso2Details { number: &number, attributes: std::mem::take(&mut application.attributes) };
        let application = Application::with_details(
            id,
            &application.name,
            &application.owner,
            application.policy.as_deref(),
            details,
        );
        let key_types = compiled.as_ref().copied().unwrap_or_default();
        self.listed.push(Listed { application: Rc::new(application), key_types, subscriptions: (0, 0) });
        compiled.map(|_| ())
    }

    /// Compiles an application's clients and keys: the key types it holds (bit 0 production, bit
    /// 1 sandbox).
    fn compile_keys(
        &mut self,
        index: usize,
        id: &Rc<str>,
        application: &RawApplication<'_>,
    ) -> Result<u8, (Origin, ConfigError)> {
        let field = || format!("applications[{index}]");
        let mut key_types = 0u8;
        for (client_index, client) in application.client_ids.iter().enumerate() {
            if client.id.is_empty() {
                return Err(((index, client_step(client_index, 0)), client_id_error(index, client_index)));
            }
            self.first_client.get_or_insert((index, client_step(client_index, 1)));
            let named = (index, client_step(client_index, 2));
            let key_manager = match &client.key_manager {
                Some(name) => {
                    let next = offset(self.key_managers.len());
                    Some(KmId(note_name(&mut self.key_managers, name, named, next)))
                }
                None => {
                    self.first_client_unnamed.get_or_insert(named);
                    None
                }
            };
            key_types |= key_type_bit(client.key_type);
            let start = self.client_ids.len();
            self.client_ids.push_str(&client.id);
            self.clients.push(Client {
                id: (offset(start), offset(self.client_ids.len())),
                key: AppKey { application: Rc::clone(id), key_type: client.key_type, key_manager },
            });
        }
        let keys_from = client_step(application.client_ids.len(), 0);
        for (key_index, key) in application.api_keys.iter().enumerate() {
            let Some(digest) = hex_digest(&key.sha256) else {
                return Err((
                    (index, keys_from + key_index),
                    ConfigError::new(
                        format!("{}.api_keys[{key_index}].sha256", field()),
                        "must be 64 lowercase hex characters (a SHA-256 digest)",
                    ),
                ));
            };
            key_types |= key_type_bit(key.key_type);
            self.api_keys
                .push((digest, AppKey { application: Rc::clone(id), key_type: key.key_type, key_manager: None }));
            self.key_origins.push((index, key_index));
        }
        Ok(key_types)
    }

    /// Indexes the applications and the clients by id, each at its final size, and runs the
    /// checks that needed the rest of the configuration; gives each client the id of its key
    /// manager. The error is the first failure in the applications' order.
    pub(super) fn finish(&mut self, context: &Context<'_>, policies: &PolicyNames) -> Result<(), ConfigError> {
        let mut failures: Vec<(Origin, ConfigError)> = self.failure.take().into_iter().collect();
        failures.extend(self.index_applications());
        failures.extend(self.index_clients());
        let undefined_policies = self.policies.iter().filter(|(name, _)| !policies.contains(name.as_str()));
        failures.extend(undefined_policies.map(|(name, named)| {
            let reason = format!("policy `{name}` is not defined in `policies`");
            (named.first, ConfigError::new(format!("applications[{}].policy", named.first.0), reason))
        }));
        if let (Some(first), true) = (self.first_client, context.key_managers.is_empty()) {
            let reason = "OAuth2 clients need a key manager to verify their tokens (`key_managers`)";
            failures.push((first, ConfigError::new(format!("applications[{}].client_ids", first.0), reason)));
        }
        if let (Some(first), true) = (self.first_client_unnamed, context.key_managers.len() > 1) {
            let reason = "is required when more than one key manager is configured";
            failures.push((first, ConfigError::new(key_manager_field(first), reason)));
        }
        let mut resolved = vec![None; self.key_managers.len()];
        for (name, named) in &self.key_managers {
            match context.key_managers.iter().position(|km| km == name) {
                Some(position) => {
                    if let Some(slot) = resolved.get_mut(named.place as usize) {
                        *slot = Some(KmId(offset(position)));
                    }
                }
                None => failures.push((
                    named.first,
                    ConfigError::new(key_manager_field(named.first), format!("key manager `{name}` is not defined")),
                )),
            }
        }
        if let Some((_, error)) = failures.into_iter().min_by_key(|(origin, _)| *origin) {
            return Err(error);
        }
        // The lists grew by doubling while the applications were read: about a quarter of their
        // room at 100,000 applications, given back before the API keys are indexed and the
        // subscriptions compiled.
        self.listed.shrink_to_fit();
        self.client_ids.shrink_to_fit();
        self.clients.shrink_to_fit();
        self.api_keys.shrink_to_fit();
        for client in &mut self.clients {
            if let Some(KmId(place)) = client.key.key_manager {
                client.key.key_manager = resolved.get(place as usize).copied().flatten();
            }
        }
        Ok(())
    }

    /// Indexes the applications by id; the first id seen twice is a failure. Every application
    /// compiled is listed, so a place is an application's index.
    fn index_applications(&mut self) -> Option<(Origin, ConfigError)> {
        let listed = &self.listed;
        let mut index = Index::with_capacity(listed.len());
        for (place, application) in listed.iter().enumerate() {
            let id = &*application.application.id;
            let hash = index.hash(id);
            if index.find(hash, id, |at| listed_id(listed, at)).is_some() {
                let error = ConfigError::new(format!("applications[{place}].id"), format!("`{id}` is used twice"));
                return Some(((place, ID), error));
            }
            index.add(hash, offset(place), |at| listed_id(listed, at));
        }
        self.applications = index;
        None
    }

    /// Indexes the clients by id; the first id seen twice for one key manager is a failure. As in
    /// WSO2 (a key mapping is a consumer key and its key manager), two key managers may issue the
    /// same client id (two Keycloak realms' `web`) to two applications.
    fn index_clients(&mut self) -> Option<(Origin, ConfigError)> {
        let (ids, clients) = (&self.client_ids, &self.clients);
        let mut index = Index::with_capacity(clients.len());
        for place in 0..clients.len() {
            let id = client_id(ids, clients, offset(place)).unwrap_or_default();
            let key_manager = clients.get(place).and_then(|client| client.key.key_manager);
            let hash = index.hash(id);
            let same = |at: u32| {
                let other = clients.get(at as usize).and_then(|client| client.key.key_manager);
                client_id(ids, clients, at) == Some(id)
                    && (key_manager.is_none() || other.is_none() || other == key_manager)
            };
            if index.find_where(hash, same).is_some() {
                return Some(self.client_origin(place));
            }
            index.add(hash, offset(place), |at| client_id(ids, clients, at));
        }
        self.client_index = index;
        None
    }

    /// The failure of the repeated client at `place`: its application is the one listed under
    /// its key's id, and it is that application's n-th client.
    fn client_origin(&self, place: usize) -> (Origin, ConfigError) {
        let application = self.clients.get(place).map(|client| &client.key.application);
        let of_same = |client: &Client| application.is_some_and(|id| Rc::ptr_eq(id, &client.key.application));
        let before = self.clients.get(..place).unwrap_or_default();
        let client_index = before.iter().rev().take_while(|client| of_same(client)).count();
        let index = self
            .listed
            .iter()
            .position(|listed| application.is_some_and(|id| Rc::ptr_eq(id, &listed.application.id)))
            .unwrap_or_default();
        ((index, client_step(client_index, 0)), client_id_error(index, client_index))
    }
}

fn client_id_error(index: usize, client_index: usize) -> ConfigError {
    ConfigError::new(
        format!("applications[{index}].client_ids[{client_index}].id"),
        "must be non-empty and unique across applications (for its key manager)",
    )
}

/// The place `name` has among the names (`next` if it is new, recorded with `origin`).
fn note_name(names: &mut HashMap<String, Named, FixedState>, name: &str, origin: Origin, next: u32) -> u32 {
    match names.get(name) {
        Some(named) => named.place,
        None => {
            names.insert(name.to_string(), Named { first: origin, place: next });
            next
        }
    }
}

/// The `key_manager` field of the client at `origin`.
fn key_manager_field((index, step): Origin) -> String {
    format!("applications[{index}].client_ids[{}].key_manager", step.saturating_sub(2) / 3)
}

impl<'de> Deserialize<'de> for StagedApplications {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Stager;
        impl<'de> Visitor<'de> for Stager {
            type Value = StagedApplications;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StagedApplications, A::Error> {
                let mut staged = StagedApplications::default();
                while let Some(application) = seq.next_element::<RawApplication<'de>>()? {
                    staged.add(application);
                }
                Ok(staged)
            }
        }
        deserializer.deserialize_seq(Stager)
    }
}
