//! The values of referenced Secrets and ConfigMaps, kept between reconciles so that many objects sharing one
//! Secret read it once (issue 14: 10,000 SmtpSettings and one password Secret cost one GET, not 10,000).
//!
//! Only objects a reconcile asked for get an entry (an unreferenced Secret is never read nor kept), an entry
//! nobody asked for within [`UNUSED`] is dropped, and values are zeroed when dropped. Freshness comes from the
//! metadata watches that already trigger reconciles (src/controller/run.rs): every event of a cached object
//! drops its value, so the next reconcile reads it again. A read that was in flight when such an event came is
//! not kept (each entry counts its invalidations), so a value older than the last event is never served.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeroize::Zeroize;

use crate::validate::{RefKind, RefObject};

/// How long an entry is kept without a reconcile asking for it.
const UNUSED: Duration = Duration::from_secs(600);

type Key = (RefKind, String, String);

struct Entry {
    /// Bumped by every watch event of the object.
    epoch: u64,
    /// `None`: not read since the last event (or missing at the last read: then it is read again).
    value: Option<RefObject>,
    used: Instant,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(v) = self.value.as_mut() {
            v.data.values_mut().for_each(Zeroize::zeroize);
        }
    }
}

#[derive(Default)]
pub struct RefCache {
    entries: Mutex<HashMap<Key, Entry>>,
    swept: Mutex<Option<Instant>>,
}

/// What a lookup found: the value, or the epoch to hand back to [`RefCache::keep`] with a fresh read.
pub enum Lookup {
    Hit(RefObject),
    Miss(u64),
}

impl RefCache {
    fn key(kind: RefKind, ns: &str, name: &str) -> Key {
        (kind, ns.to_owned(), name.to_owned())
    }

    pub fn lookup(&self, kind: RefKind, ns: &str, name: &str) -> Lookup {
        self.sweep();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e =
            entries.entry(Self::key(kind, ns, name)).or_insert(Entry { epoch: 0, value: None, used: Instant::now() });
        e.used = Instant::now();
        match &e.value {
            Some(v) => Lookup::Hit(v.clone()),
            None => Lookup::Miss(e.epoch),
        }
    }

    /// Keeps a value read after [`RefCache::lookup`] returned `Miss(epoch)`, unless an event came meanwhile.
    pub fn keep(&self, kind: RefKind, ns: &str, name: &str, epoch: u64, value: &RefObject) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get_mut(&Self::key(kind, ns, name))
            && e.epoch == epoch
        {
            e.value = Some(value.clone());
        }
    }

    /// A watch event of the object: its value is read again when next asked for.
    pub fn invalidate(&self, kind: RefKind, ns: &str, name: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get_mut(&Self::key(kind, ns, name)) {
            e.epoch += 1;
            if let Some(mut v) = e.value.take() {
                v.data.values_mut().for_each(Zeroize::zeroize);
            }
        }
    }

    /// Drops the entries nobody asked for within [`UNUSED`]; runs at most once a minute.
    fn sweep(&self) {
        {
            let mut swept = self.swept.lock().unwrap_or_else(|e| e.into_inner());
            if swept.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
                return;
            }
            *swept = Some(Instant::now());
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| e.used.elapsed() < UNUSED);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: &str) -> RefObject {
        RefObject {
            data: [("password".to_owned(), v.as_bytes().to_vec())].into(),
            annotations: Default::default(),
            resource_version: v.to_owned(),
        }
    }

    fn hit(c: &RefCache) -> Option<String> {
        match c.lookup(RefKind::Secret, "ns", "s") {
            Lookup::Hit(v) => Some(v.resource_version),
            Lookup::Miss(_) => None,
        }
    }

    #[test]
    fn a_value_is_served_until_an_event_of_its_object() {
        let c = RefCache::default();
        let Lookup::Miss(epoch) = c.lookup(RefKind::Secret, "ns", "s") else { panic!("empty cache hit") };
        c.keep(RefKind::Secret, "ns", "s", epoch, &value("1"));
        assert_eq!(hit(&c).as_deref(), Some("1"));
        assert_eq!(hit(&c).as_deref(), Some("1"));
        c.invalidate(RefKind::Secret, "ns", "s");
        assert_eq!(hit(&c), None, "an event drops the value");
        // other kinds and names are other entries
        c.invalidate(RefKind::ConfigMap, "ns", "s");
        assert!(matches!(c.lookup(RefKind::ConfigMap, "ns", "s"), Lookup::Miss(_)));
    }

    #[test]
    fn a_read_overtaken_by_an_event_is_not_kept() {
        let c = RefCache::default();
        let Lookup::Miss(epoch) = c.lookup(RefKind::Secret, "ns", "s") else { panic!() };
        c.invalidate(RefKind::Secret, "ns", "s"); // the Secret changed while the GET was in flight
        c.keep(RefKind::Secret, "ns", "s", epoch, &value("old"));
        assert_eq!(hit(&c), None);
    }

    #[test]
    fn events_of_objects_nobody_asked_for_create_nothing() {
        let c = RefCache::default();
        c.invalidate(RefKind::Secret, "ns", "unrelated");
        assert!(c.is_empty());
    }
}
