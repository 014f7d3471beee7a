//! Seeded initial batches. A small self-contained generator (SplitMix64 + Box–Muller) keeps the bytes
//! identical across platforms and dependency upgrades: same seed, same distilled data.

/// How the input batch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// N(0, 1), as the paper says (the input lives in normalised space).
    Gaussian,
    /// Tiny uniform noise U(0, 1e-5), as the reference code started (DESIGN.md offers both).
    Uniform,
}

/// SplitMix64: a tiny, well-mixed 64-bit generator.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` values drawn from `init` with `seed`.
pub fn initial_batch(n: usize, init: Init, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    match init {
        Init::Gaussian => {
            let mut out = Vec::with_capacity(n + 1);
            while out.len() < n {
                let (u1, u2) = (rng.next_f64().max(f64::MIN_POSITIVE), rng.next_f64());
                let r = (-2.0 * u1.ln()).sqrt();
                let t = 2.0 * std::f64::consts::PI * u2;
                out.push((r * t.cos()) as f32);
                out.push((r * t.sin()) as f32);
            }
            out.truncate(n);
            out
        }
        Init::Uniform => (0..n).map(|_| (rng.next_f64() * 1e-5) as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_has_unit_moments_and_is_seeded() {
        let a = initial_batch(100_000, Init::Gaussian, 3);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "mean {mean} var {var}");
        assert_eq!(a, initial_batch(100_000, Init::Gaussian, 3));
        assert_ne!(a, initial_batch(100_000, Init::Gaussian, 4));
    }
}
