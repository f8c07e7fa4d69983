//! [`Lru`]: a map of bounded size that, when full, forgets the entry used least
//! recently, for the hub's caches (run states, what the runs stream told).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// At most `capacity` entries; inserting one more forgets the least recently used.
/// Reading ([`Lru::get`]) and writing count as uses; [`Lru::peek`] does not.
pub(crate) struct Lru<K, V> {
    capacity: usize,
    /// Each entry with the tick of its last use.
    entries: HashMap<K, (V, u64)>,
    /// The entries by the tick of their last use, oldest first.
    by_use: BTreeMap<u64, K>,
    tick: u64,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map of at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Lru<K, V> {
        Lru {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
        }
    }

    /// The value of `key`, now its most recent use.
    pub(crate) fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.tick += 1;
        let (value, used) = self.entries.get_mut(key)?;
        if let Some(k) = self.by_use.remove(used) {
            self.by_use.insert(self.tick, k);
        }
        *used = self.tick;
        Some(value)
    }

    /// The value of `key`, without counting it as a use.
    pub(crate) fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(value, _)| value)
    }

    /// Sets `key` to `value`, its most recent use; when that makes one entry too many,
    /// forgets the least recently used.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.tick += 1;
        if let Some((_, used)) = self.entries.get(&key) {
            self.by_use.remove(used);
        }
        self.by_use.insert(self.tick, key.clone());
        self.entries.insert(key, (value, self.tick));
        if self.entries.len() > self.capacity
            && let Some((_, oldest)) = self.by_use.pop_first()
        {
            self.entries.remove(&oldest);
        }
    }

    /// Forgets `key`.
    pub(crate) fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some((_, used)) = self.entries.remove(key) {
            self.by_use.remove(&used);
        }
    }

    /// How many entries it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn when_full_it_forgets_the_entry_used_least_recently() {
        let mut lru = Lru::new(3);
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            lru.insert(k, v);
        }
        // `a` is read, `b` is only peeked at: `b` is now the least recently used.
        assert_eq!(lru.get("a"), Some(&1));
        assert_eq!(lru.peek("b"), Some(&2));
        lru.insert("d", 4);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.peek("b"), None, "the least recently used goes");
        assert_eq!(
            [lru.peek("a"), lru.peek("c"), lru.peek("d")],
            [Some(&1), Some(&3), Some(&4)]
        );
        // Writing an entry again is a use, and does not grow the map.
        lru.insert("c", 30);
        lru.insert("e", 5);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.peek("a"), None);
        assert_eq!(lru.peek("c"), Some(&30));
        lru.remove("c");
        lru.remove("nothing");
        assert_eq!(lru.len(), 2);
        lru.insert("f", 6);
        assert_eq!(
            [lru.peek("d"), lru.peek("e"), lru.peek("f")],
            [Some(&4), Some(&5), Some(&6)]
        );
    }

    #[test]
    fn a_capacity_of_zero_keeps_one() {
        let mut lru = Lru::new(0);
        lru.insert(1, "one");
        lru.insert(2, "two");
        assert_eq!((lru.len(), lru.peek(&2)), (1, Some(&"two")));
    }
}
