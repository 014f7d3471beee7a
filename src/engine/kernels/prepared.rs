//! A cache of what the direct convolution derives from a weight tensor alone: its packed weights and
//! the layout tables ([`Prepared`]), kept per weight tensor across calls.
//!
//! Why: an inference plan runs every convolution with the same weight tensor on batch after batch,
//! and distillation runs each one forward and backward on every iteration with constant weights.
//! Repacking the weights and rebuilding the mask tables on each call was 4.4% of ResNet20 eval (each
//! thread runs its own 16-image slice, so the per-call work is not amortised over a large batch).
//!
//! A weight is identified by its storage: burn's CPU tensors hold their bytes in an `Arc`, and the
//! cache keeps a [`Weak`] to it. While that `Weak` exists the allocation cannot be reused for other
//! data, and the bytes cannot change in place either: `Arc::get_mut` refuses while a `Weak` exists
//! and `Arc::make_mut` moves the data to a new allocation, so a key that still upgrades names the very
//! bytes it was built from. Entries whose tensor is gone are dropped on the next insert.

use std::any::Any;
use std::sync::{Arc, Mutex, Weak};

use super::conv::Conv2dParams;
use super::direct::Prepared;

/// Identity of a weight: its storage and the element range of that storage it occupies.
pub struct WeightKey {
    owner: Weak<dyn Any + Send + Sync>,
    range: (usize, usize),
}

impl WeightKey {
    /// The key of the elements `range` of the storage `owner`.
    pub fn new<T: Any + Send + Sync>(owner: &Arc<T>, range: (usize, usize)) -> Self {
        let owner: Weak<dyn Any + Send + Sync> = Arc::downgrade(owner) as Weak<dyn Any + Send + Sync>;
        Self { owner, range }
    }

    fn same(&self, other: &WeightKey) -> bool {
        self.range == other.range && other.owner.strong_count() > 0 && Weak::ptr_eq(&self.owner, &other.owner)
    }
}

/// What a cached [`Prepared`] was built for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// The forward convolution, Winograd allowed (inference) or not (training).
    Forward { winograd: bool },
    /// The input gradient (the flipped, transposed weight).
    InputGrad,
}

struct Entry {
    key: WeightKey,
    /// The geometry, batch size set to 0 (a prepared weight serves every batch size).
    params: Conv2dParams,
    used_for: Use,
    value: Arc<Prepared>,
}

/// Entries kept at most; the oldest goes first beyond it. Dead entries go on every insert, so this
/// only binds when more than this many weight tensors are alive and in use (a large model's
/// distillation and its inference plan at once).
const CAPACITY: usize = 512;

static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The cached [`Prepared`] for `key`, `p` and `used_for`, or the one `build` makes (then cached).
/// Without a key (a weight with no identity, such as a converted copy) it is built and not cached.
/// `None` when `build` gives none (the direct kernel does not apply), which is not cached: the caller
/// checks eligibility from the shapes first, so this is rare.
pub(super) fn get_or_build(
    key: Option<&WeightKey>,
    p: &Conv2dParams,
    used_for: Use,
    build: impl FnOnce() -> Option<Prepared>,
) -> Option<Arc<Prepared>> {
    let Some(key) = key else { return build().map(Arc::new) };
    let params = Conv2dParams { n: 0, ..*p };
    let find = |cache: &[Entry]| {
        cache
            .iter()
            .find(|e| e.used_for == used_for && e.params == params && e.key.same(key))
            .map(|e| Arc::clone(&e.value))
    };
    // A poisoned lock only means another thread panicked mid-lookup; the entries stay valid.
    if let Some(hit) = find(&CACHE.lock().unwrap_or_else(|e| e.into_inner())) {
        return Some(hit);
    }
    // Built outside the lock: two threads may build the same entry once, which is harmless.
    let value = Arc::new(build()?);
    if key.owner.strong_count() == 0 {
        return Some(value);
    }
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(hit) = find(&cache) {
        return Some(hit);
    }
    cache.retain(|e| e.key.owner.strong_count() > 0);
    if cache.len() >= CAPACITY {
        cache.remove(0);
    }
    let key = WeightKey { owner: Weak::clone(&key.owner), range: key.range };
    cache.push(Entry { key, params, used_for, value: Arc::clone(&value) });
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(cin: usize) -> Conv2dParams {
        Conv2dParams {
            n: 3,
            cin,
            hw: [8, 8],
            cout: 4,
            kernel: [3, 3],
            strides: [1, 1],
            pads: [1, 1, 1, 1],
            dilations: [1, 1],
            groups: 1,
        }
    }

    /// Hits for the same live storage and geometry (any batch), misses for another storage, another
    /// range, another geometry or use, and never for a storage that was dropped.
    #[test]
    fn keyed_by_live_storage_and_geometry() {
        if !super::super::direct::available() {
            println!("direct conv: no AVX-512F on this CPU, test skipped");
            return;
        }
        let p = params(2);
        let w = vec![0.5f32; 4 * 2 * 9];
        let built = std::cell::Cell::new(0);
        let build = || {
            built.set(built.get() + 1);
            super::super::direct::prepare_with(&w, &p, false)
        };
        let a = Arc::new(vec![0u8; 4]);
        let b = Arc::new(vec![0u8; 4]);
        let ka = WeightKey::new(&a, (0, 72));
        let first = get_or_build(Some(&ka), &p, Use::Forward { winograd: true }, build).expect("eligible");
        let again = get_or_build(Some(&ka), &Conv2dParams { n: 7, ..p }, Use::Forward { winograd: true }, build).expect("eligible");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(built.get(), 1);
        get_or_build(Some(&WeightKey::new(&b, (0, 72))), &p, Use::Forward { winograd: true }, build);
        get_or_build(Some(&WeightKey::new(&a, (72, 144))), &p, Use::Forward { winograd: true }, build);
        get_or_build(Some(&ka), &p, Use::InputGrad, build);
        assert_eq!(built.get(), 4);
        drop(a);
        let a2 = Arc::new(vec![0u8; 4]);
        get_or_build(Some(&WeightKey::new(&a2, (0, 72))), &p, Use::Forward { winograd: true }, build);
        get_or_build(Some(&ka), &p, Use::Forward { winograd: true }, build);
        assert_eq!(built.get(), 6, "a dropped storage never hits");
        get_or_build(None, &p, Use::Forward { winograd: true }, build);
        get_or_build(None, &p, Use::Forward { winograd: true }, build);
        assert_eq!(built.get(), 8, "without a key nothing is cached");
    }
}
