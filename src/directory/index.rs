//! Indexes of the static directory's lists: entries found by a string they hold, through a table
//! of their places.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

/// Places in a list, found by a string each entry holds: a table of 4-byte places, the strings
/// staying where the list keeps them (std's maps own their keys: a copy and an allocation each).
#[derive(Debug, Default)]
pub struct Index {
    table: HashTable<u32>,
    hasher: FixedState,
}

impl Index {
    pub fn with_capacity(capacity: usize) -> Index {
        Index { table: HashTable::with_capacity(capacity), hasher: FixedState::default() }
    }

    pub fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The place whose entry holds `key` (`hash` is [`Index::hash`] of it; `key_at` reads the
    /// string an entry holds).
    pub fn find<'k>(&self, hash: u64, key: &str, key_at: impl Fn(u32) -> Option<&'k str>) -> Option<u32> {
        self.table.find(hash, |at| key_at(*at) == Some(key)).copied()
    }

    /// The first place of `hash` that `matches` (for entries that share a key: a client id each
    /// key manager may issue).
    pub fn find_where(&self, hash: u64, matches: impl Fn(u32) -> bool) -> Option<u32> {
        self.table.find(hash, |at| matches(*at)).copied()
    }

    /// Adds a place whose key is not in the index yet (`hash` is of that key).
    pub fn add<'k>(&mut self, hash: u64, place: u32, key_at: impl Fn(u32) -> Option<&'k str>) {
        let Index { table, hasher } = self;
        table.insert_unique(hash, place, |at| key_at(*at).map_or(0, |key| hasher.hash_one(key)));
    }
}

/// A place in a list (they hold fewer than 2^32 entries: wasm32's memory).
pub fn offset(place: usize) -> u32 {
    u32::try_from(place).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_found_by_their_key_after_the_table_grows() {
        let keys: Vec<String> = (0..5_000).map(|i| format!("key-{i}")).collect();
        let key_at = |at: u32| keys.get(usize::try_from(at).ok()?).map(String::as_str);
        let mut index = Index::with_capacity(1);
        for (place, key) in keys.iter().enumerate() {
            let hash = index.hash(key);
            assert_eq!(index.find(hash, key, key_at), None);
            index.add(hash, offset(place), key_at);
        }
        for (place, key) in keys.iter().enumerate() {
            assert_eq!(index.find(index.hash(key), key, key_at), Some(offset(place)));
        }
        assert_eq!(index.find(index.hash("key-5000"), "key-5000", key_at), None);
        assert_eq!(offset(usize::MAX), u32::MAX);
    }
}
