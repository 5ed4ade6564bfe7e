//! The values of referenced Secrets and ConfigMaps, kept between reconciles so that many objects sharing one
//! Secret read it once (issue 14: 10,000 SmtpSettings and one password Secret cost one GET, not 10,000).
//!
//! Only objects a reconcile asked for get an entry (an unreferenced Secret is never read nor kept), an entry
//! nobody asked for within [`UNUSED`] is dropped, and values are zeroed when dropped. Freshness comes from the
//! metadata watches that already trigger reconciles (src/controller/run.rs): every event of a cached object
//! drops its value, so the next reconcile reads it again. A read that was in flight when such an event came is
//! not kept (each entry counts its invalidations), so a value older than the last event is never served.
//!
//! Reads are single-flight: reconciles that miss the same object at the same time (the first reconciles of a
//! namespace's objects, all sharing its one Secret) wait for the first one's read instead of each sending a GET.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
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
    /// Held by the one reconcile reading the object; the others that missed wait on it, then look again.
    turn: Arc<tokio::sync::Mutex<()>>,
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
        let e = entries.entry(Self::key(kind, ns, name)).or_insert_with(|| Entry {
            epoch: 0,
            value: None,
            used: Instant::now(),
            turn: Arc::default(),
        });
        e.used = Instant::now();
        match &e.value {
            Some(v) => Lookup::Hit(v.clone()),
            None => Lookup::Miss(e.epoch),
        }
    }

    fn turn(&self, kind: RefKind, ns: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&Self::key(kind, ns, name)).map(|e| e.turn.clone()).unwrap_or_default()
    }

    /// The cached value, else the result of `read` (kept when found). Of the callers that miss one object at
    /// the same time, one reads and the others wait for it and take what it kept; when it found nothing or
    /// failed, the next one reads.
    pub async fn get_or_read<F, Fut, E>(
        &self,
        kind: RefKind,
        ns: &str,
        name: &str,
        read: F,
    ) -> Result<Option<RefObject>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<RefObject>, E>>,
    {
        if let Lookup::Hit(v) = self.lookup(kind, ns, name) {
            return Ok(Some(v));
        }
        let turn = self.turn(kind, ns, name);
        let _reading = turn.lock().await;
        let epoch = match self.lookup(kind, ns, name) {
            Lookup::Hit(v) => return Ok(Some(v)),
            Lookup::Miss(epoch) => epoch,
        };
        let value = read().await?;
        if let Some(v) = &value {
            self.keep(kind, ns, name, epoch, v);
        }
        Ok(value)
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

    /// Ten reconciles missing one Secret together (one task, so all ten are polled before the first read
    /// ends): one read; a later event makes the next caller read again.
    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_misses_of_one_object_read_it_once() {
        let c = RefCache::default();
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let read = || async {
            let n = reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            for _ in 0..5 {
                tokio::task::yield_now().await; // the GET in flight: the other callers run meanwhile
            }
            Ok::<_, ()>(Some(value(&n.to_string())))
        };
        let got = futures::future::join_all((0..10).map(|_| c.get_or_read(RefKind::Secret, "ns", "s", read))).await;
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(got.iter().all(|g| g.as_ref().unwrap().as_ref().unwrap().resource_version == "1"));
        c.invalidate(RefKind::Secret, "ns", "s");
        let again = c.get_or_read(RefKind::Secret, "ns", "s", read).await.unwrap().unwrap();
        assert_eq!(again.resource_version, "2");
    }

    /// A read that found nothing is not kept: the waiters read in turn (a missing Secret may be created).
    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_object_is_read_by_each_caller() {
        let c = RefCache::default();
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<_, ()>(None)
        };
        let got = futures::future::join_all((0..3).map(|_| c.get_or_read(RefKind::Secret, "ns", "s", read))).await;
        assert!(got.iter().all(|g| matches!(g, Ok(None))));
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn events_of_objects_nobody_asked_for_create_nothing() {
        let c = RefCache::default();
        c.invalidate(RefKind::Secret, "ns", "unrelated");
        assert!(c.is_empty());
    }
}
