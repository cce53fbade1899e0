//! The configuration read from Envoy in pieces ([`crate::pieces`]): its two big lists,
//! `applications` and `subscriptions`, are taken element by element and never held as text (the
//! applications compiled as they come, the subscriptions packed into one string); every other
//! member is gathered, as text, into a small object parsed as the whole configuration is.
//!
//! Anything this reading does not take as it is (a JSON error, a repeated member, a list that is
//! not an array) is left to the whole text: [`super::Config::from_source`] then reads it whole,
//! so a refused configuration gets the same error, naming the same field, either way.

use std::borrow::Cow;
use std::io::Read;

use serde::de::Error as _;

use crate::directory::static_dir::StagedApplications;
use crate::pieces::{Borrowing, Pieces};
use crate::schema::{RawApplication, RawSubscription};
use crate::vocab::SubscriptionState;

/// A configuration read in pieces.
pub(super) struct Streamed {
    /// The configuration's other members, as a JSON object.
    pub rest: String,
    pub applications: StagedApplications,
    pub subscriptions: PackedSubscriptions,
}

struct ApplicationOf;
impl Borrowing for ApplicationOf {
    type Value<'de> = RawApplication<'de>;
}

struct SubscriptionOf;
impl Borrowing for SubscriptionOf {
    type Value<'de> = RawSubscription<'de>;
}

/// Reads the configuration object from `reader`, `chunk` bytes at a time.
pub(super) fn read<R: Read>(reader: R, chunk: usize) -> Result<Streamed, serde_json::Error> {
    let mut input = Pieces::new(reader, chunk);
    let mut rest = String::from("{");
    let mut applications = None;
    let mut subscriptions = None;
    input.object(|input, key| match key.as_str() {
        "applications" if applications.is_none() => {
            let mut staged = StagedApplications::default();
            input.array(|input| input.borrowed::<ApplicationOf>(|app, _| staged.add(app)))?;
            applications = Some(staged);
            Ok(())
        }
        "subscriptions" if subscriptions.is_none() => {
            let mut packed = PackedSubscriptions::default();
            input.array(|input| input.borrowed::<SubscriptionOf>(|sub, _| packed.add(&sub)))?;
            subscriptions = Some(packed);
            Ok(())
        }
        "applications" | "subscriptions" => Err(serde_json::Error::custom("a repeated member")),
        _ => {
            if rest.len() > 1 {
                rest.push(',');
            }
            rest.push_str(&serde_json::to_string(&key)?);
            rest.push(':');
            input.copy_value(&mut rest)
        }
    })?;
    input.end()?;
    rest.push('}');
    Ok(Streamed {
        rest,
        applications: applications.unwrap_or_default(),
        subscriptions: subscriptions.unwrap_or_default(),
    })
}

/// The subscriptions, their strings in one string (an API or a tier repeated from the
/// subscription before is kept once).
#[derive(Default)]
pub(super) struct PackedSubscriptions {
    text: String,
    entries: Vec<Packed>,
}

/// One subscription: where its strings are in the text.
struct Packed {
    application: (usize, usize),
    api: (usize, usize),
    tier: (usize, usize),
    state: SubscriptionState,
}

impl PackedSubscriptions {
    fn add(&mut self, subscription: &RawSubscription<'_>) {
        let last = self.entries.last().map(|last| (last.api, last.tier));
        let application = self.push(&subscription.application);
        let api = self.push_or_repeat(last.map(|(api, _)| api), &subscription.api);
        let tier = self.push_or_repeat(last.map(|(_, tier)| tier), &subscription.tier);
        self.entries.push(Packed { application, api, tier, state: subscription.state });
    }

    fn push(&mut self, value: &str) -> (usize, usize) {
        let start = self.text.len();
        self.text.push_str(value);
        (start, self.text.len())
    }

    /// `value`'s place: the one `before` when it holds the same string.
    fn push_or_repeat(&mut self, before: Option<(usize, usize)>, value: &str) -> (usize, usize) {
        match before {
            Some(place) if self.get(place) == value => place,
            _ => self.push(value),
        }
    }

    fn get(&self, (start, end): (usize, usize)) -> &str {
        self.text.get(start..end).unwrap_or_default()
    }

    /// The subscriptions as the configuration's parser gives them, borrowing from the text.
    pub(super) fn list(&self) -> Vec<RawSubscription<'_>> {
        let borrowed = |place| Cow::Borrowed(self.get(place));
        self.entries
            .iter()
            .map(|packed| RawSubscription {
                application: borrowed(packed.application),
                api: borrowed(packed.api),
                tier: borrowed(packed.tier),
                state: packed.state,
            })
            .collect()
    }
}
