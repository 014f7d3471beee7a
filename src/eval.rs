//! Accuracy on a labelled set (top-1, top-5) and throughput.

use std::time::Instant;

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
    for chunk in idx.chunks(batch.max(1)) {
        let (x, shape) = load_batch(data, chunk)?;
        let xt = Tensor::<4>::from_data(TensorData::new(x, shape), plan.device());
        let y = plan.forward(xt)?;
        let dims = y.dims();
        if dims.len() != 2 || dims[0] != chunk.len() {
            return Err(Error::Invalid(format!("the model's output has shape {dims:?}; evaluation needs [batch, classes] logits")));
        }
        classes = dims[1];
        let logits = y.to_host()?.to_f32_vec();
        for (row, &i) in logits.chunks(classes).zip(chunk) {
            let label = data.label(i) as usize;
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

/// Class indices sorted by decreasing logit (ties: lower index first, like `argmax`).
fn rank_desc(row: &[f32]) -> Vec<usize> {
    let mut r: Vec<usize> = (0..row.len()).collect();
    r.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
    r
}

#[cfg(test)]
mod tests {
    use super::rank_desc;

    #[test]
    fn ranking_breaks_ties_by_index() {
        assert_eq!(rank_desc(&[0.1, 0.9, 0.9, -1.0]), vec![1, 2, 0, 3]);
    }
}
