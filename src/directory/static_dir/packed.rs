//! The configuration's subscriptions as they are read: their strings packed into one string (an
//! API or a tier repeated from the subscription before is kept once), compiled from there. A list
//! of parsed subscriptions was 4 MB more at the peak of compiling 100,000 of them in a VM.

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::schema::RawSubscription;
use crate::vocab::SubscriptionState;

/// The subscriptions, in the configuration's order.
#[derive(Default)]
pub struct PackedSubscriptions {
    text: String,
    entries: Vec<Packed>,
}

/// One subscription: where its strings are in the text.
struct Packed {
    application: (u32, u32),
    api: (u32, u32),
    tier: (u32, u32),
    state: SubscriptionState,
}

/// One subscription, its strings borrowed from [`PackedSubscriptions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionView<'a> {
    pub application: &'a str,
    pub api: &'a str,
    pub tier: &'a str,
    pub state: SubscriptionState,
}

impl PackedSubscriptions {
    /// Adds a subscription, after the ones added before.
    pub fn add(&mut self, subscription: &RawSubscription<'_>) {
        let last = self.entries.last().map(|last| (last.api, last.tier));
        let application = self.push(&subscription.application);
        let api = self.push_or_repeat(last.map(|(api, _)| api), &subscription.api);
        let tier = self.push_or_repeat(last.map(|(_, tier)| tier), &subscription.tier);
        self.entries.push(Packed { application, api, tier, state: subscription.state });
    }

    /// Gives back the room the lists grew into beyond what they hold.
    pub fn finish(&mut self) {
        self.text.shrink_to_fit();
        self.entries.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = SubscriptionView<'_>> {
        self.entries.iter().map(|packed| SubscriptionView {
            application: self.get(packed.application),
            api: self.get(packed.api),
            tier: self.get(packed.tier),
            state: packed.state,
        })
    }

    /// `value`'s place in the text, in 32 bits (a VM's whole memory is at most 4 GiB).
    fn push(&mut self, value: &str) -> (u32, u32) {
        let start = self.text.len();
        self.text.push_str(value);
        let at = |offset: usize| u32::try_from(offset).unwrap_or(u32::MAX);
        (at(start), at(self.text.len()))
    }

    /// `value`'s place: the one `before` when it holds the same string.
    fn push_or_repeat(&mut self, before: Option<(u32, u32)>, value: &str) -> (u32, u32) {
        match before {
            Some(place) if self.get(place) == value => place,
            _ => self.push(value),
        }
    }

    fn get(&self, (start, end): (u32, u32)) -> &str {
        self.text.get(start as usize..end as usize).unwrap_or_default()
    }
}

impl fmt::Debug for PackedSubscriptions {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_list().entries(self.iter()).finish()
    }
}

impl<'de> Deserialize<'de> for PackedSubscriptions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Packer;
        impl<'de> Visitor<'de> for Packer {
            type Value = PackedSubscriptions;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PackedSubscriptions, A::Error> {
                let mut packed = PackedSubscriptions::default();
                while let Some(subscription) = seq.next_element::<RawSubscription<'de>>()? {
                    packed.add(&subscription);
                }
                packed.finish();
                Ok(packed)
            }
        }
        deserializer.deserialize_seq(Packer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_read_back_as_written_with_repeats_kept_once() {
        let json = r#"[{"application":"a","api":"P:1","tier":"Gold"},{"application":"b","api":"P:1","tier":"Gold"},
            {"application":"b","api":"Q:1","tier":"Gold","state":"BLOCKED"},{"application":"c","api":"P:1"}]"#;
        let packed: PackedSubscriptions = serde_json::from_str(json).unwrap();
        let read: Vec<_> = packed.iter().map(|s| (s.application, s.api, s.tier, s.state)).collect();
        assert_eq!(
            read,
            [
                ("a", "P:1", "Gold", SubscriptionState::Unblocked),
                ("b", "P:1", "Gold", SubscriptionState::Unblocked),
                ("b", "Q:1", "Gold", SubscriptionState::Blocked),
                ("c", "P:1", "Unlimited", SubscriptionState::Unblocked),
            ]
        );
        // Applications are always written; "P:1" and "Gold" of the second are the first's, "Gold" of
        // the third is the second's.
        assert_eq!(packed.text, "aP:1GoldbbQ:1cP:1Unlimited");
    }
}
