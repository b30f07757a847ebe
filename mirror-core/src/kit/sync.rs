//! Keyed single flight: one holder at a time per key, the table forgetting keys nobody holds.
//!
//! Used wherever concurrent calls of one process must not repeat an expensive step for the
//! same thing: the copy of one image ([`Mirror`](crate::Mirror)), the creation of one
//! repository (the provider kit's `CloudRegistry`). A poisoned table
//! (a panic while it was held, which only the map's own code could cause) is taken over as
//! it is: the map holds no invariant a panic could break.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// A lock per key (see the module docs).
#[derive(Debug)]
pub(crate) struct KeyedFlight<K> {
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyedFlight<K> {
    fn default() -> Self {
        KeyedFlight {
            locks: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> KeyedFlight<K> {
    /// Waits until no other holder of `key` is left, and holds it until the guard is dropped.
    pub async fn hold(&self, key: &K) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = match self.locks.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Forget locks nobody holds or waits for, so the map stays small.
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(key.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// How many keys are held or waited for now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let map = match self.locks.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.values().filter(|l| Arc::strong_count(l) > 1).count()
    }

    /// Whether no key is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_holder_per_key_and_keys_are_forgotten() {
        let flight = Arc::new(KeyedFlight::<String>::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (flight, inside, most) = (flight.clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _g = flight.hold(&"a".to_string()).await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(flight.is_empty());
        // Another key is not held up by the first.
        let _a = flight.hold(&"a".to_string()).await;
        let _b = flight.hold(&"b".to_string()).await;
        assert_eq!(flight.len(), 2);
    }
}
