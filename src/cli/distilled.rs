//! Distilled data for the commands that need it: read a `.npy` from `zeroq distill`, or distil on the fly.

use std::path::Path;

use anyhow::bail;
use zeroq::distill::{self, DistillConfig, InputDomain};
use zeroq::ir::Graph;

use super::preprocess_arg::PreprocessArgs;
use super::Output;

/// Distilled images `[N, C, H, W]` for `g`, with a description of where they came from.
pub struct Distilled {
    pub data: Vec<f32>,
    pub shape: [usize; 4],
    pub source: String,
}

/// Reads `path` (checking it fits the model's input) or, without one, distils one default batch with
/// `seed`, inside the input box of the model's preprocessing. `why` names the stage for the no-BatchNorm error.
pub fn load_or_distill(g: &Graph, model: &str, path: Option<&Path>, pre: &PreprocessArgs, seed: u64, why: &'static str, out: &Output) -> anyhow::Result<Distilled> {
    let [c, h, w] = distill::input_chw(g)?;
    if let Some(p) = path {
        let (data, s) = zeroq::data::npy::read_f32(p)?;
        if s.len() != 4 || s[1..] != [c, h, w] || s[0] == 0 {
            bail!("{}: distilled data has shape {s:?}, the model needs [N, {c}, {h}, {w}] with N ≥ 1", p.display());
        }
        // A NaN or Inf pixel would poison every activation range and sensitivity computed from it.
        if let Some(k) = data.iter().position(|x| !x.is_finite()) {
            let per = c * h * w;
            bail!("{}: value {} at index {k} (image {}): distilled data must be finite; distil it again with zeroq distill", p.display(), data[k], k / per);
        }
        return Ok(Distilled { data, shape: [s[0], c, h, w], source: format!("distilled:{}", p.display()) });
    }
    zeroq::model::require_batch_norm(g, why)?;
    let domain = InputDomain::from_preprocess(&pre.resolve(g, model)?, c);
    let (batch, iters) = super::distill::sized(g, None, None)?;
    let cfg = DistillConfig { seed, domain: Some(domain), batch, iters, ..DistillConfig::default() };
    out.say(format!("distilling data ({} iterations, batch {})…", cfg.iters, cfg.batch));
    let pb = out.progress(cfg.iters as u64, "distill");
    let d = distill::distill(g, &cfg, &mut |_, it, loss, _| {
        pb.set_position(it as u64 + 1);
        pb.set_message(format!("loss {loss:.3}"));
    })?;
    pb.finish_and_clear();
    Ok(Distilled { data: d.data, shape: d.shape, source: "distilled (on the fly)".to_string() })
}
