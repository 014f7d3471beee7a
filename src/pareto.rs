//! Mixed precision (ZeroQ §3.3): one weight bit-width per layer, minimising the total sensitivity
//! Σ Ω_i(k_i) under a size budget Σ P_i·k_i.
//!
//! Solved exactly by keeping, layer after layer, the non-dominated (size, Σ Ω) set of every prefix of
//! the network: a prefix assignment that is both larger and more sensitive than another can never be
//! part of an optimum. The final set is the whole Pareto frontier; any budget is answered by the
//! smallest Σ Ω on it whose size fits. Sizes are integers (bits), so nothing is discretised.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sensitivity::Sensitivity;

/// One bit assignment with its size and total sensitivity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// Weight storage in bits (Σ P_i·k_i).
    pub size_bits: u64,
    /// Σ Ω_i(k_i).
    pub omega: f64,
    /// Bit-width per layer, in network order.
    pub bits: Vec<u32>,
}

impl Assignment {
    /// Weight storage in bytes.
    pub fn size_bytes(&self) -> f64 {
        self.size_bits as f64 / 8.0
    }
}

/// The Pareto frontier of size vs. Σ Ω, smallest size first (Σ Ω strictly decreasing).
pub struct Frontier {
    points: Vec<(u64, f64)>,
    /// Per layer, per point of that prefix's set: (index in the previous layer's set, bit index).
    back: Vec<Vec<(u32, u8)>>,
    bits: Vec<u32>,
}

impl Frontier {
    /// Computes the frontier of `sens` over its candidate bit-widths.
    pub fn new(sens: &Sensitivity) -> Result<Self> {
        sens.validate("sensitivity table")?;
        let mut points: Vec<(u64, f64)> = vec![(0, 0.0)];
        let mut back = Vec::with_capacity(sens.layers.len());
        let mut cand: Vec<(u64, f64, u32, u8)> = Vec::new();
        for layer in &sens.layers {
            cand.clear();
            for (pi, &(size, omega)) in points.iter().enumerate() {
                for (j, (&b, &o)) in sens.bits.iter().zip(&layer.omega).enumerate() {
                    cand.push((size + layer.params as u64 * b as u64, omega + o, pi as u32, j as u8));
                }
            }
            cand.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let mut next = Vec::new();
            let mut ptr = Vec::new();
            for &(size, omega, pi, j) in &cand {
                // Keep a point only if it is strictly less sensitive than every smaller one.
                if next.last().is_none_or(|&(_, best): &(u64, f64)| omega < best) {
                    next.push((size, omega));
                    ptr.push((pi, j));
                }
            }
            points = next;
            back.push(ptr);
        }
        Ok(Self { points, back, bits: sens.bits.clone() })
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the frontier is empty (never, for a valid table).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// (size in bits, Σ Ω) of every point, smallest size first.
    pub fn points(&self) -> &[(u64, f64)] {
        &self.points
    }

    /// The full assignment of point `i`.
    pub fn assignment(&self, i: usize) -> Assignment {
        let (size_bits, omega) = self.points[i];
        let mut bits = vec![0; self.back.len()];
        let mut at = i;
        for (layer, ptr) in self.back.iter().enumerate().rev() {
            let (prev, j) = ptr[at];
            bits[layer] = self.bits[j as usize];
            at = prev as usize;
        }
        Assignment { size_bits, omega, bits }
    }

    /// The least sensitive assignment of at most `budget_bits`; an error giving the smallest possible
    /// size when even that does not fit.
    pub fn best_within(&self, budget_bits: u64) -> Result<Assignment> {
        let fits = self.points.partition_point(|&(size, _)| size <= budget_bits);
        if fits == 0 {
            let min = self.points.first().map_or(0, |p| p.0);
            return Err(Error::Invalid(format!(
                "size budget {} is below the smallest possible weight size {} (every layer at {} bits); raise the budget",
                fmt_bytes(budget_bits as f64 / 8.0),
                fmt_bytes(min as f64 / 8.0),
                self.bits.first().copied().unwrap_or(0)
            )));
        }
        Ok(self.assignment(fits - 1))
    }
}

/// What `zeroq pareto` writes: the frontier (thinned for plotting), the uniform points and the chosen one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The model.
    pub model: String,
    /// Candidate bit-widths.
    pub bits: Vec<u32>,
    /// Total number of weights.
    pub params: usize,
    /// Points on the exact frontier.
    pub frontier_points: usize,
    /// (size in bytes, Σ Ω) along the frontier, at most a few hundred evenly spread by size.
    pub frontier: Vec<(f64, f64)>,
    /// Every layer at each candidate bit-width.
    pub uniform: Vec<PointSummary>,
    /// The configuration picked for the budget, if one was given.
    pub chosen: Option<PointSummary>,
}

/// One configuration in a [`Summary`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointSummary {
    /// Weight bytes.
    pub size_bytes: f64,
    /// Average bits per weight.
    pub avg_bits: f64,
    /// Σ Ω.
    pub omega: f64,
    /// (layer name, bits) in network order.
    pub layers: Vec<(String, u32)>,
}

impl Summary {
    /// Summarises `front` for `sens`, keeping at most `max_points` frontier points (always the two ends).
    pub fn new(sens: &Sensitivity, front: &Frontier, chosen: Option<&Assignment>, max_points: usize) -> Self {
        let params = sens.total_params();
        let point = |a: &Assignment| PointSummary {
            size_bytes: a.size_bytes(),
            avg_bits: a.size_bits as f64 / params.max(1) as f64,
            omega: a.omega,
            layers: sens.layers.iter().zip(&a.bits).map(|(l, &b)| (l.name.clone(), b)).collect(),
        };
        let pts = front.points();
        let step = pts.len().div_ceil(max_points.max(2)).max(1);
        let mut frontier: Vec<(f64, f64)> = pts.iter().step_by(step).map(|&(s, o)| (s as f64 / 8.0, o)).collect();
        if let Some(&(s, o)) = pts.last() {
            if pts.len() > 1 && !(pts.len() - 1).is_multiple_of(step) {
                frontier.push((s as f64 / 8.0, o));
            }
        }
        Self {
            model: sens.model.clone(),
            bits: sens.bits.clone(),
            params,
            frontier_points: pts.len(),
            frontier,
            uniform: sens.bits.iter().filter_map(|&b| uniform(sens, b)).map(|a| point(&a)).collect(),
            chosen: chosen.map(point),
        }
    }
}

/// The assignment with every layer at `bits` (which must be a candidate of `sens`).
pub fn uniform(sens: &Sensitivity, bits: u32) -> Option<Assignment> {
    assignment(sens, &vec![bits; sens.layers.len()])
}

/// The assignment of `bits` per layer (in the table's order), or `None` if one of them is not among the
/// table's bit-widths or the count does not match.
pub fn assignment(sens: &Sensitivity, bits: &[u32]) -> Option<Assignment> {
    if bits.len() != sens.layers.len() {
        return None;
    }
    let omega = bits.iter().enumerate().map(|(i, &b)| sens.omega(i, b)).sum::<Option<f64>>()?;
    let size_bits = sens.layers.iter().zip(bits).map(|(l, &b)| l.params as u64 * b as u64).sum();
    Some(Assignment { size_bits, omega, bits: bits.to_vec() })
}

/// A weight-size budget as users write it: `120KB`, `0.12MB`, `100000B` (decimal units, KiB/MiB binary)
/// or `4.0bits` (average bits per weight, i.e. the size of uniform 4-bit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Bytes of weight storage.
    Bytes(f64),
    /// Average bits per weight.
    BitsPerWeight(f64),
}

impl Budget {
    /// The budget in bits for a model with `params` weights.
    pub fn to_bits(self, params: usize) -> u64 {
        match self {
            Budget::Bytes(b) => (b * 8.0).floor() as u64,
            Budget::BitsPerWeight(k) => (k * params as f64).floor() as u64,
        }
    }
}

impl FromStr for Budget {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || Error::Invalid(format!("invalid size budget '{s}': write e.g. 120KB, 0.12MB, 250KiB, 90000B or 4.0bits"));
        let v: f64 = num.parse().map_err(|_| bad())?;
        if !v.is_finite() || v <= 0.0 {
            return Err(bad());
        }
        let bytes = |m: f64| Ok(Budget::Bytes(v * m));
        match unit.trim().to_ascii_lowercase().as_str() {
            "b" | "bytes" => bytes(1.0),
            "kb" => bytes(1e3),
            "mb" => bytes(1e6),
            "kib" => bytes(1024.0),
            "mib" => bytes(1024.0 * 1024.0),
            "bits" | "bit" => Ok(Budget::BitsPerWeight(v)),
            _ => Err(bad()),
        }
    }
}

/// Bytes as `12.34 KB` / `1.23 MB` (decimal units, like the budget syntax).
pub fn fmt_bytes(b: f64) -> String {
    if b >= 1e6 {
        format!("{:.3} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.2} KB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::WeightRange;
    use crate::sensitivity::LayerSensitivity;

    /// A random table: `layers` layers with small parameter counts (so sizes collide often) and
    /// sensitivities that sometimes tie.
    fn random_table(seed: u64, layers: usize, bits: &[u32]) -> Sensitivity {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let layers = (0..layers)
            .map(|i| {
                let params = 1 + (next() % 6) as usize;
                let mut omega: Vec<f64> = bits.iter().map(|_| (next() % 50) as f64 / 8.0).collect();
                omega.sort_by(|a, b| b.total_cmp(a)); // more bits, less sensitive (ties allowed)
                LayerSensitivity { name: format!("l{i}"), op_type: "Conv".into(), params, omega }
            })
            .collect();
        Sensitivity { model: "random".into(), bits: bits.to_vec(), weight_range: WeightRange::MinMax, images: 1, layers, context_bits: None, bias_corrected: false }
    }

    /// Every assignment as (size in bits, Σ Ω).
    fn enumerate(sens: &Sensitivity) -> Vec<(u64, f64)> {
        let mut all = vec![(0u64, 0f64)];
        for l in &sens.layers {
            all = all.iter().flat_map(|&(s, o)| sens.bits.iter().zip(&l.omega).map(move |(&b, &w)| (s + l.params as u64 * b as u64, o + w))).collect();
        }
        all
    }

    #[test]
    fn frontier_matches_brute_force() {
        for seed in 0..40 {
            let bits: &[u32] = if seed % 2 == 0 { &[2, 4, 8] } else { &[2, 3, 4, 6, 8] };
            let sens = random_table(seed, 2 + (seed as usize % 5), bits);
            let all = enumerate(&sens);
            let front = Frontier::new(&sens).unwrap();
            let sizes: std::collections::BTreeSet<u64> = all.iter().map(|a| a.0).collect();
            for &budget in &sizes {
                let want = all.iter().filter(|a| a.0 <= budget).map(|a| a.1).fold(f64::INFINITY, f64::min);
                let got = front.best_within(budget).unwrap();
                assert!((got.omega - want).abs() < 1e-9, "seed {seed} budget {budget}: {} vs brute force {want}", got.omega);
                assert!(got.size_bits <= budget);
                // The assignment is real: its size and Σ Ω recomputed from the table agree.
                let size: u64 = sens.layers.iter().zip(&got.bits).map(|(l, &b)| l.params as u64 * b as u64).sum();
                let omega: f64 = (0..sens.layers.len()).map(|i| sens.omega(i, got.bits[i]).unwrap()).sum();
                assert_eq!(size, got.size_bits);
                assert!((omega - got.omega).abs() < 1e-9);
            }
            // Every frontier point is non-dominated, and points are sorted with Σ Ω strictly decreasing.
            for w in front.points().windows(2) {
                assert!(w[0].0 < w[1].0 && w[0].1 > w[1].1, "seed {seed}: {w:?}");
            }
            for &(s, o) in front.points() {
                assert!(!all.iter().any(|a| a.0 <= s && a.1 < o - 1e-9), "seed {seed}: ({s}, {o}) is dominated");
            }
            // Below the all-smallest size: a clear error giving that size.
            let min = sizes.iter().next().copied().unwrap();
            let err = front.best_within(min - 1).unwrap_err().to_string();
            assert!(err.contains("smallest possible weight size"), "{err}");
        }
    }

    #[test]
    fn uniform_points_lie_on_or_above_the_frontier() {
        let sens = random_table(7, 6, &[2, 4, 8]);
        let front = Frontier::new(&sens).unwrap();
        for b in [2, 4, 8] {
            let u = uniform(&sens, b).unwrap();
            assert!(front.best_within(u.size_bits).unwrap().omega <= u.omega + 1e-12);
        }
    }

    #[test]
    fn budgets_parse() {
        assert_eq!("120KB".parse::<Budget>().unwrap(), Budget::Bytes(120e3));
        assert_eq!("0.12MB".parse::<Budget>().unwrap(), Budget::Bytes(120e3));
        assert_eq!("2KiB".parse::<Budget>().unwrap(), Budget::Bytes(2048.0));
        assert_eq!("4.0bits".parse::<Budget>().unwrap(), Budget::BitsPerWeight(4.0));
        assert_eq!(Budget::BitsPerWeight(4.0).to_bits(10), 40);
        for bad in ["", "KB", "12 parsecs", "-3KB", "0bits", "1.2.3MB"] {
            assert!(bad.parse::<Budget>().is_err(), "{bad}");
        }
    }
}
