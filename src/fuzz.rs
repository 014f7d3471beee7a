//! A small mutation fuzzer for zeroq's file readers, on stable Rust and in process.
//!
//! Every reader of a user file (ONNX, PyTorch checkpoints, `.npy`, CIFAR-10 binary, `labels.txt`) must
//! answer any byte string with a value or an error: never a panic, never an allocation sized by what the
//! file claims rather than by what it holds. [`fuzz`] checks both: it mutates seed files (bit flips, byte
//! inserts and deletes, chunk copies, splices of two seeds, "interesting" integers written over the bytes,
//! dictionary tokens), runs the reader under `catch_unwind`, and measures each run's memory with
//! [`TrackingAlloc`] when that is the global allocator (the integration tests and `benches/fuzz.rs`
//! install it). Same seed, same inputs: a failure is replayed from the seed and iteration it reports.
//!
//! No `cargo fuzz`: that needs nightly and a sanitizer build. Coverage guidance is traded for
//! determinism and speed; the seeds (real models and checkpoints, tiny hand-made files) and the
//! format-aware dictionaries reach the code paths.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::distill::init::SplitMix64;

/// A deterministic generator (the distillation's SplitMix64): the fuzzer needs no RNG dependency and
/// replays exactly.
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Integers at the edges of the types formats store sizes in (lengths, dims, counts, offsets).
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Mutates seed inputs.
pub struct Mutator {
    rng: Rng,
    dict: Vec<Vec<u8>>,
    max_len: usize,
}

impl Mutator {
    /// A mutator with its own seed and a dictionary of tokens of the format (may be empty). Inputs never
    /// grow beyond `max_len` bytes.
    pub fn new(seed: u64, dict: &[&[u8]], max_len: usize) -> Self {
        Self { rng: Rng::new(seed), dict: dict.iter().map(|d| d.to_vec()).collect(), max_len }
    }

    /// A new input: one seed with 1 to 8 stacked mutations.
    pub fn mutate(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
        let mut b = seeds[self.rng.below(seeds.len())].clone();
        for _ in 0..1 + self.rng.below(8) {
            self.mutate_once(&mut b, seeds);
        }
        b.truncate(self.max_len);
        b
    }

    fn mutate_once(&mut self, b: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        let r = &mut self.rng;
        let at = |r: &mut Rng, b: &Vec<u8>| r.below(b.len() + 1);
        match r.below(10) {
            0 if !b.is_empty() => {
                let i = r.below(b.len());
                b[i] ^= 1 << r.below(8);
            }
            1 if !b.is_empty() => {
                let i = r.below(b.len());
                b[i] = r.next_u64() as u8;
            }
            2 => {
                let i = at(r, b);
                b.insert(i, r.next_u64() as u8);
            }
            3 if !b.is_empty() => {
                let i = r.below(b.len());
                let n = 1 + r.below((b.len() - i).min(64));
                b.drain(i..i + n);
            }
            4 if !b.is_empty() => {
                // Copy a chunk elsewhere (repeats a record, a protobuf field, a pickle opcode run).
                let i = r.below(b.len());
                let n = 1 + r.below((b.len() - i).min(256));
                let chunk = b[i..i + n].to_vec();
                let j = at(r, b);
                b.splice(j..j, chunk);
            }
            5 => {
                // Splice: the head of this input with the tail of another seed.
                let other = &seeds[r.below(seeds.len())];
                let i = at(r, b);
                let j = r.below(other.len() + 1);
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            6 | 7 if !b.is_empty() => {
                // An interesting integer, little-endian, 1/2/4/8 bytes wide, over the bytes at a random place.
                let v = INTERESTING[r.below(INTERESTING.len())];
                let v = if r.below(2) == 0 { v } else { v.wrapping_neg() };
                let width = [1, 2, 4, 8][r.below(4)];
                let i = r.below(b.len());
                for (k, byte) in v.to_le_bytes().iter().take(width).enumerate() {
                    if let Some(x) = b.get_mut(i + k) {
                        *x = *byte;
                    }
                }
            }
            8 if !self.dict.is_empty() => {
                let tok = self.dict[r.below(self.dict.len())].clone();
                let i = at(r, b);
                if r.below(2) == 0 {
                    b.splice(i..i, tok);
                } else {
                    let end = (i + tok.len()).min(b.len());
                    b.splice(i..end, tok);
                }
            }
            _ => {
                let n = r.below(b.len() + 1);
                b.truncate(n);
            }
        }
    }
}

/// One reader under test.
pub struct Target {
    /// Its name in reports (`onnx`, `torch`, `npy`, `cifar10`, `labels`).
    pub name: &'static str,
    /// The seed inputs.
    pub seeds: Vec<Vec<u8>>,
    /// Tokens of its format for the mutator.
    pub dict: &'static [&'static [u8]],
    /// Runs the reader on one input: true when it accepted the input, false for an error. Only a
    /// panic is a failure.
    pub run: fn(&[u8]) -> bool,
}

/// A panic the fuzzer found: the input, and how to replay it.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The input that panicked.
    pub input: Vec<u8>,
    /// The panic message.
    pub message: String,
    /// The iteration that produced it (with the run's seed, [`fuzz`] reproduces it).
    pub iteration: usize,
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The reader.
    pub target: &'static str,
    /// Inputs run.
    pub inputs: usize,
    /// Inputs the reader accepted (the rest were errors).
    pub accepted: usize,
    /// Panics, in order.
    pub panics: Vec<Finding>,
    /// Largest memory in use by one run beyond what was in use before it (bytes; 0 without
    /// [`TrackingAlloc`] as the global allocator).
    pub peak_bytes: usize,
    /// Wall time (seconds).
    pub seconds: f64,
}

impl Report {
    /// Inputs per second.
    pub fn inputs_per_s(&self) -> f64 {
        self.inputs as f64 / self.seconds.max(1e-9)
    }
}

/// Runs `target` on `iters` mutated inputs from `seed`, one thread. Each run may allocate at most
/// `cap_bytes` in one request (a larger request aborts the process with a message naming the target,
/// when [`TrackingAlloc`] is installed: that is the unbounded allocation this fuzzer looks for).
pub fn fuzz(target: &Target, iters: usize, seed: u64, cap_bytes: usize) -> Report {
    let max_len = target.seeds.iter().map(Vec::len).max().unwrap_or(0) * 2 + 4096;
    let mut m = Mutator::new(seed, target.dict, max_len);
    let start = Instant::now();
    let (mut accepted, mut panics, mut peak) = (0, Vec::new(), 0);
    for iteration in 0..iters {
        // The seeds themselves first: the reader must accept (or cleanly refuse) the originals.
        let input = match target.seeds.get(iteration) {
            Some(s) => s.clone(),
            None => m.mutate(&target.seeds),
        };
        let (result, used) = measure(cap_bytes, || catch_unwind(AssertUnwindSafe(|| (target.run)(&input))));
        peak = peak.max(used);
        match result {
            Ok(ok) => accepted += usize::from(ok),
            Err(p) => {
                let message = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
                panics.push(Finding { input, message, iteration });
            }
        }
    }
    Report { target: target.name, inputs: iters, accepted, panics, peak_bytes: peak, seconds: start.elapsed().as_secs_f64() }
}

/// The ONNX reader: decode, import (constant folding and checks included) and the `inspect` summary.
pub fn read_onnx(b: &[u8]) -> bool {
    crate::onnx::from_bytes(b, None).map(|g| crate::model::summarize(&g)).is_ok()
}

/// The PyTorch checkpoint reader (zip and legacy pickle formats).
pub fn read_torch(b: &[u8]) -> bool {
    crate::torch::read_state_dict(b, Path::new("fuzz.pth")).is_ok()
}

/// The `.npy` reader.
pub fn read_npy(b: &[u8]) -> bool {
    crate::data::npy::decode_f32(b).is_ok()
}

/// The CIFAR-10 reader: open, then the first and last image and label.
pub fn read_cifar(b: &[u8]) -> bool {
    use crate::data::Dataset;
    let Ok(d) = crate::data::Cifar10::from_bytes(b.to_vec(), PathBuf::from("fuzz.bin"), crate::data::Preprocess::cifar10()) else { return false };
    [0, d.len().saturating_sub(1)].into_iter().all(|i| {
        let _ = d.label(i);
        d.image(i).is_ok()
    })
}

/// The `labels.txt` parser.
pub fn read_labels(b: &[u8]) -> bool {
    crate::data::parse_labels(&String::from_utf8_lossy(b)).is_ok()
}

/// Dictionary of `.npy` header tokens.
pub const NPY_DICT: &[&[u8]] = &[
    b"\x93NUMPY",
    b"'descr': '<f4'",
    b"'descr': '>f8'",
    b"'fortran_order': True",
    b"'shape': (",
    b"(1000000000, 1000000000)",
    b"(18446744073709551615,)",
    b"()",
    b",",
    b")",
    b"-1",
    b"0",
];

/// Dictionary of `labels.txt` tokens.
pub const LABELS_DICT: &[&[u8]] = &[b"\n", b" ", b"\t", b"#", b"-1", b"4294967296", b"99999999999999999999", b"a.png", b"\r\n", b"\xff\xfe"];

/// Dictionary of pickle opcodes and names a state_dict uses (and some it must refuse).
pub const TORCH_DICT: &[&[u8]] = &[
    b"\x80\x02",
    b"ctorch._utils\n_rebuild_tensor_v2\n",
    b"ccollections\nOrderedDict\n",
    b"cos\nsystem\n",
    b"ctorch\nFloatStorage\n",
    b"(",
    b"t",
    b"R",
    b"}",
    b"]",
    b"q\x00",
    b"h\x00",
    b"J\xff\xff\xff\x7f",
    b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"data.pkl",
    b"archive/data/0",
];

/// Dictionary of protobuf fragments: varints at the edges, and field tags of ONNX's TensorProto dims.
pub const ONNX_DICT: &[&[u8]] = &[
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\x80\x80\x80\x80\x08",
    b"\x08\xff\xff\xff\xff\x0f",
    b"\x08\x00",
    b"Conv",
    b"BatchNormalization",
    b"ConstantOfShape",
    b"Range",
    b"Pad",
    b"Reshape",
];

// ---- memory accounting -------------------------------------------------------------------------------

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static CAP: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A global allocator that counts, per thread, the bytes in use and their peak, and refuses a single
/// request larger than the cap [`measure`] sets. Install it with `#[global_allocator]` to let [`fuzz`]
/// check memory; without it the counts stay 0.
pub struct TrackingAlloc;

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping only touches const-initialised
// thread-local cells (no allocation, no destructor), so it cannot recurse into the allocator.
unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(layout.size(), || unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted(layout.size(), || unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !admit(new_size) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// A fresh allocation of `size` bytes by `f`, if admitted, counted when it succeeds.
fn counted(size: usize, f: impl FnOnce() -> *mut u8) -> *mut u8 {
    if !admit(size) {
        return std::ptr::null_mut();
    }
    let p = f();
    if !p.is_null() {
        track(size as isize);
    }
    p
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

/// False (and a message on stderr, written without allocating) for a request above this thread's cap.
fn admit(size: usize) -> bool {
    let cap = CAP.try_with(Cell::get).unwrap_or(usize::MAX);
    if size <= cap {
        return true;
    }
    use std::io::Write;
    let mut buf = [0u8; 160];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = writeln!(cur, "zeroq fuzz: one allocation of {size} bytes exceeds the cap of {cap} bytes: an unbounded allocation");
    let n = cur.position() as usize;
    let _ = std::io::stderr().write_all(&buf[..n]);
    false
}

/// Runs `f` with single requests capped at `cap_bytes` on this thread; returns its result and the peak
/// bytes in use during it beyond those in use before.
pub fn measure<R>(cap_bytes: usize, f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let old = CAP.with(|c| c.replace(cap_bytes));
    let r = f();
    CAP.with(|c| c.set(old));
    let peak = PEAK.with(Cell::get);
    (r, (peak - base).max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_inputs() {
        let seeds = vec![b"hello world".to_vec(), vec![0u8; 32]];
        let mut a = Mutator::new(7, NPY_DICT, 100);
        let mut b = Mutator::new(7, NPY_DICT, 100);
        let xs: Vec<Vec<u8>> = (0..200).map(|_| a.mutate(&seeds)).collect();
        let ys: Vec<Vec<u8>> = (0..200).map(|_| b.mutate(&seeds)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| x.len() <= 100));
        // The mutations do change things: most inputs differ from both seeds.
        assert!(xs.iter().filter(|x| !seeds.contains(x)).count() > 150);
    }

    #[test]
    fn a_panicking_reader_is_caught_and_reported() {
        fn picky(b: &[u8]) -> bool {
            assert!(b.len() != 3, "three bytes");
            b.len() > 3
        }
        let t = Target { name: "picky", seeds: vec![vec![1, 2], vec![1, 2, 3, 4]], dict: &[], run: picky };
        let r = fuzz(&t, 500, 1, usize::MAX);
        assert_eq!(r.inputs, 500);
        assert!(r.accepted > 0 && r.accepted + r.panics.len() < 500, "{} accepted", r.accepted);
        assert!(!r.panics.is_empty() && r.panics.iter().all(|f| f.input.len() == 3 && f.message == "three bytes"), "{:?}", r.panics.first());
    }
}
