//! Accuracy on a labelled set (top-1, top-5) and throughput.

use std::time::Instant;

use rayon::prelude::*;

use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use crate::data::{load_batch, Dataset};
use crate::engine::Plan;
use crate::error::{Error, Result};

/// Result of an evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Images evaluated.
    pub n: usize,
    /// Top-1 accuracy in percent.
    pub top1: f64,
    /// Top-5 accuracy in percent.
    pub top5: f64,
    /// Throughput over the whole run (loading included).
    pub images_per_s: f64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Number of classes (logits per image).
    pub classes: usize,
    /// Predicted class per image.
    #[serde(skip)]
    pub predictions: Vec<u32>,
    /// Logits `[n, classes]` row-major, when requested.
    #[serde(skip)]
    pub logits: Option<Vec<f32>>,
}

/// Activation bytes per layer that [`auto_batch`] aims for.
///
/// Why: the engine runs a batch layer by layer, so each layer's output is written to memory and read
/// back by the next. While one activation of the whole batch stays in the caches, that round trip is
/// cheap; once it spills to DRAM the convolutions wait on memory. Measured on ResNet20 (2 threads,
/// 10,000 CIFAR-10 images, direct convolutions, the batch run as one): batch 250 (16 MiB per
/// activation) 3.4k images/s, 64 (4 MiB) 3.6k, 32 (2 MiB) 3.8k, 16 3.5k. ONNX Runtime shows the same
/// curve (2.7k at 500, 3.8k at 32). [`evaluate`] now splits each batch into two slices per thread, so
/// a slice's activations are 0.5 MiB, within the 1 MiB L2 cache of one core here.
const ACTIVATION_BUDGET: usize = 2 << 20;

/// Largest batch [`auto_batch`] picks.
const MAX_AUTO_BATCH: usize = 256;

/// Images per forward pass for `plan` when the caller has no preference: as many as keep the model's
/// largest activation within [`ACTIVATION_BUDGET`], but at least two per thread (below that the
/// per-image parallelism starves; EfficientNet-Lite0 at 224², 4.8 MB per image, runs best at 4 on two
/// threads) and at most [`MAX_AUTO_BATCH`]. The largest activation is measured by running the first
/// image of `idx` once (no shape inference needed, so it holds for any graph the engine runs).
pub fn auto_batch(plan: &Plan, data: &dyn Dataset, idx: &[usize]) -> Result<usize> {
    let Some(&first) = idx.first() else { return Ok(1) };
    let (x, shape) = load_batch(data, &[first])?;
    let xt = Tensor::<4>::from_data(TensorData::new(x, shape), plan.device());
    let computed: Vec<_> = plan.graph().nodes.iter().flat_map(|n| n.outputs.iter().copied()).collect();
    let (_, taps) = plan.forward_with_taps(xt, &computed)?;
    let largest = taps.values().map(|t| t.dims().iter().product::<usize>()).max().unwrap_or(1).max(1);
    let per_thread = 2 * rayon::current_num_threads();
    let fit = ACTIVATION_BUDGET / (largest * std::mem::size_of::<f32>());
    Ok(fit.clamp(per_thread, MAX_AUTO_BATCH.max(per_thread)).min(idx.len()))
}

/// Runs `plan` over the images `idx` of `data` in batches of `batch`. `progress(done, total)` is called
/// after each batch.
pub fn evaluate(
    plan: &Plan,
    data: &dyn Dataset,
    idx: &[usize],
    batch: usize,
    keep_logits: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    if idx.is_empty() {
        return Err(Error::Invalid(format!("{}: no images to evaluate", data.describe())));
    }
    let start = Instant::now();
    let (mut top1, mut top5, mut classes) = (0usize, 0usize, 0usize);
    let mut predictions = Vec::with_capacity(idx.len());
    let mut all_logits = keep_logits.then(Vec::new);
    let threads = rayon::current_num_threads();
    for chunk in idx.chunks(batch.max(1)) {
        // Slices of the batch, each run through the whole network on its own: no hand-over between
        // threads at every layer, and a slice's activations stay in its core's cache. Two slices per
        // thread, so a thread that finishes first takes another's second slice: this machine's cores
        // run at uneven speeds, and with one slice each the faster one waited (ResNet20, 4 alternating
        // runs: 3605–4512 images/s with one slice per thread, 4280–4792 with two; Lite0 on
        // imagenet-sample1000 58.9, 69.1 against 66.7, 74.6). The kernels' own parallelism still fills
        // a thread that runs out of work.
        let (x, [n, c, h, w]) = load_batch(data, chunk)?;
        if c * h * w == 0 {
            return Err(Error::Invalid(format!("{}: the images have shape [{c}, {h}, {w}], with no pixels", data.describe())));
        }
        let per = n.div_ceil(2 * threads).max(1);
        let outs: Vec<Result<(Vec<f32>, Vec<usize>)>> = x
            .par_chunks(per * c * h * w)
            .map(|part| {
                let shape = [part.len() / (c * h * w), c, h, w];
                let xt = Tensor::<4>::from_data(TensorData::new(part.to_vec(), shape), plan.device());
                let y = plan.forward(xt)?;
                let dims = y.dims();
                Ok((y.to_host()?.to_f32_vec(), dims))
            })
            .collect();
        let parts: Vec<&[usize]> = chunk.chunks(per).collect();
        let mut logits = Vec::new();
        for (part, out) in parts.iter().zip(outs) {
            let (l, dims) = out?;
            if dims.len() != 2 || dims[0] != part.len() || dims[1] == 0 {
                return Err(Error::Invalid(format!("the model's output has shape {dims:?}; evaluation needs [batch, classes] logits")));
            }
            classes = dims[1];
            logits.extend_from_slice(&l);
        }
        for (row, &i) in logits.chunks(classes).zip(chunk) {
            let label = data.label(i) as usize;
            if label >= classes {
                return Err(Error::Invalid(format!(
                    "{}: {} has label {label}, but the model has {classes} classes (0-{}): fix the labels or evaluate with the matching model",
                    data.describe(),
                    data.item_name(i),
                    classes.saturating_sub(1)
                )));
            }
            let ranked = rank_desc(row);
            predictions.push(ranked[0] as u32);
            top1 += usize::from(ranked[0] == label);
            top5 += usize::from(ranked.iter().take(5).any(|&c| c == label));
        }
        if let Some(all) = all_logits.as_mut() {
            all.extend_from_slice(&logits);
        }
        progress(predictions.len(), idx.len());
    }
    let seconds = start.elapsed().as_secs_f64();
    let n = idx.len();
    Ok(EvalReport {
        n,
        top1: 100.0 * top1 as f64 / n as f64,
        top5: 100.0 * top5 as f64 / n as f64,
        images_per_s: n as f64 / seconds,
        seconds,
        classes,
        predictions,
        logits: all_logits,
    })
}

/// How closely a model follows a reference on the same inputs; needs no labels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Agreement {
    /// Images compared.
    pub n: usize,
    /// Share of images with the same top-1 class, in percent.
    pub top1_match: f64,
    /// Mean KL(softmax(reference) ‖ softmax(model)) in nats.
    pub mean_kl: f64,
}

/// Compares `logits` with `reference` (both `[n, classes]` row-major).
pub fn agreement(reference: &[f32], logits: &[f32], classes: usize) -> Agreement {
    let classes = classes.max(1);
    let n = reference.len().min(logits.len()) / classes;
    let (mut same, mut kl) = (0usize, 0f64);
    for (p, q) in reference.chunks_exact(classes).zip(logits.chunks_exact(classes)) {
        same += usize::from(argmax(p) == argmax(q));
        kl += kl_divergence(p, q);
    }
    let n_f = n.max(1) as f64;
    Agreement { n, top1_match: 100.0 * same as f64 / n_f, mean_kl: kl / n_f }
}

/// KL(softmax(p) ‖ softmax(q)) for one row of logits, in f64 and from log-softmax (no overflow).
pub fn kl_divergence(p: &[f32], q: &[f32]) -> f64 {
    let lp = log_softmax(p);
    let lq = log_softmax(q);
    lp.iter().zip(&lq).map(|(&a, &b)| a.exp() * (a - b)).sum::<f64>().max(0.0)
}

fn log_softmax(x: &[f32]) -> Vec<f64> {
    let m = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let lse = m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    x.iter().map(|&v| v as f64 - lse).collect()
}

fn argmax(row: &[f32]) -> usize {
    rank_desc(row)[0]
}

/// Class indices sorted by decreasing logit (ties: lower index first, like `argmax`).
fn rank_desc(row: &[f32]) -> Vec<usize> {
    let mut r: Vec<usize> = (0..row.len()).collect();
    r.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_is_zero_for_equal_rows_and_matches_hand_value() {
        assert_eq!(kl_divergence(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
        // p = softmax([0, 0]) = (½, ½), q = softmax([0, ln 3]) = (¼, ¾): KL = ½ln2 + ½ln(2/3).
        let want = 0.5 * (0.5f64 / 0.25).ln() + 0.5 * (0.5f64 / 0.75).ln();
        assert!((kl_divergence(&[0.0, 0.0], &[0.0, 3f32.ln()]) - want).abs() < 1e-6);
        let a = agreement(&[0.0, 1.0, 1.0, 0.0], &[0.0, 2.0, 0.0, 1.0], 2);
        assert_eq!((a.n, a.top1_match), (2, 50.0));
    }

    #[test]
    fn ranking_breaks_ties_by_index() {
        assert_eq!(rank_desc(&[0.1, 0.9, 0.9, -1.0]), vec![1, 2, 0, 3]);
    }
}
