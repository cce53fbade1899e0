//! The configuration read from Envoy in pieces ([`crate::pieces`]): its two big lists,
//! `applications` and `subscriptions`, are taken element by element and never held as text (the
//! applications compiled as they come, the subscriptions packed into one string); every other
//! member is gathered, as text, into a small object parsed as the whole configuration is.
//!
//! Anything this reading does not take as it is (a JSON error, a repeated member, a list that is
//! not an array) is left to the whole text: [`super::Config::from_source`] then reads it whole,
//! so a refused configuration gets the same error, naming the same field, either way.

use std::io::Read;

use serde::de::Error as _;

use crate::directory::static_dir::{PackedSubscriptions, StagedApplications};
use crate::pieces::{Borrowing, Pieces};
use crate::schema::{RawApplication, RawSubscription};

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
            packed.finish();
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
