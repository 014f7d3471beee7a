//! Options shared by the commands that quantize (`quantize`, `run`): activation bits, ranges, placement,
//! preset, and mixed-precision budgets.

use anyhow::bail;
use clap::{Args, ValueEnum};
use zeroq::data::Preprocess;
use zeroq::pareto::{fmt_bytes, Budget};
use zeroq::quant::{ActRange, Placement, QuantConfig, WeightRange};
use zeroq::reconstruct::{Method, ReconstructConfig};

use super::preprocess_arg::PreprocessArgs;

/// Where activations are quantized.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PlacementArg {
    /// Every activation input of a Conv/Gemm/MatMul (deployable).
    Deployable,
    /// After each ReLU/ReLU6 only (the ZeroQ reference code).
    Zeroq,
}

/// Weight range per output channel.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WeightRangeArg {
    /// Channel min/max, asymmetric (ZeroQ).
    Minmax,
    /// Max |w|, zero point 0 (integer kernels).
    Symmetric,
    /// Asymmetric clip with the least squared error.
    Mse,
}

impl From<WeightRangeArg> for WeightRange {
    fn from(a: WeightRangeArg) -> Self {
        match a {
            WeightRangeArg::Minmax => WeightRange::MinMax,
            WeightRangeArg::Symmetric => WeightRange::Symmetric,
            WeightRangeArg::Mse => WeightRange::Mse,
        }
    }
}

impl From<PlacementArg> for Placement {
    fn from(a: PlacementArg) -> Self {
        match a {
            PlacementArg::Deployable => Placement::Deployable,
            PlacementArg::Zeroq => Placement::ZeroQ,
        }
    }
}

/// How activations and ranges are quantized.
#[derive(Args, Debug)]
pub struct QuantArgs {
    /// Activation bits (4-8) or fp32 (weight-only).
    #[arg(long, default_value = "8")]
    pub abits: String,
    /// Activation placement.
    #[arg(long, value_enum, default_value = "deployable")]
    pub placement: PlacementArg,
    /// Weight range per output channel (also used when measuring sensitivity). Default: mse when
    /// reconstruction runs (it starts from the clipping with the least squared error, as BRECQ does; on
    /// ResNet20 W2A4 that is 64.5 instead of 51.5), else minmax.
    #[arg(long, value_enum)]
    pub weight_range: Option<WeightRangeArg>,
    /// Activation range: minmax, percentile:P (e.g. percentile:99.99) or mse.
    #[arg(long, default_value = "minmax")]
    pub act_range: String,
    /// The preprocessing: gives the exact range of the model input (pixels 0..255 normalised), used for
    /// the input quantizer instead of calibration, and the box distillation keeps its images in.
    #[command(flatten)]
    pub pre: PreprocessArgs,
    /// Quantize the model input and the classifier input at --abits too (by default they stay at 8 bits
    /// when --abits is lower).
    #[arg(long)]
    pub all_layers_abits: bool,
    /// Weight bits of the edge layers (every weight layer reading the model input, and the last one)
    /// when --wbits is lower: 8 is the convention of most published low-bit results. Default: --wbits.
    /// Not with --mp/--size-budget, whose choice sets every layer's bits.
    #[arg(long, value_name = "BITS")]
    pub edge_wbits: Option<u32>,
}

impl QuantArgs {
    /// The quantization settings (with `wbits`), validated; the input range comes with
    /// [`QuantArgs::preprocess`].
    pub fn config(&self, wbits: Vec<u32>) -> anyhow::Result<QuantConfig> {
        let cfg = QuantConfig {
            wbits,
            abits: parse_abits(&self.abits)?,
            weight_range: self.weight_range.map_or(WeightRange::MinMax, Into::into),
            act_range: parse_act_range(&self.act_range)?,
            placement: self.placement.into(),
            input_range: None,
            edge_abits: if self.all_layers_abits { None } else { Some(8) },
            edge_wbits: self.edge_wbits,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses --edge-wbits with mixed precision, whose choice sets every layer's bits.
    pub fn check_edge_wbits(&self, mixed: bool) -> anyhow::Result<()> {
        if let (Some(e), true) = (self.edge_wbits, mixed) {
            anyhow::bail!("--edge-wbits {e} applies to uniform --wbits; with --mp or --size-budget the mixed-precision choice sets every layer's bits (drop one of them)");
        }
        Ok(())
    }

    /// The weight range when none was asked for: MSE clipping where reconstruction will run.
    pub fn default_weight_range(&self, cfg: &mut QuantConfig, reconstructs: bool) {
        if self.weight_range.is_none() && reconstructs {
            cfg.weight_range = WeightRange::Mse;
        }
    }

    /// The model's preprocessing (recorded in `g`, so the quantized model keeps it), and the input
    /// range it gives `cfg`.
    pub fn preprocess(&self, g: &mut zeroq::ir::Graph, model: &str, cfg: &mut QuantConfig) -> anyhow::Result<Preprocess> {
        let p = self.pre.resolve_and_record(g, model)?;
        cfg.input_range = Some(p.input_range());
        Ok(p)
    }
}

/// Mixed-precision weights: a budget and the candidate widths.
#[derive(Args, Debug)]
pub struct MixedArgs {
    /// Mixed-precision weights with the size of uniform N-bit weights (ZeroQ's MP4 is `--mp 4`): one
    /// bit-width per layer from --mp-bits, minimising the summed sensitivity (measured with each layer's
    /// bias corrected when reconstruction runs, as reconstruction leaves the layer).
    #[arg(long, value_name = "N", conflicts_with_all = ["wbits", "size_budget"])]
    pub mp: Option<f64>,
    /// Mixed-precision weights within a size budget: 120KB, 0.12MB, 250KiB or 4.0bits (per weight).
    #[arg(long, value_name = "SIZE", conflicts_with = "wbits")]
    pub size_budget: Option<String>,
    /// Candidate bit-widths for mixed precision (and the sensitivity table). The default is finer than
    /// ZeroQ's {2, 4, 8}: on ResNet20, MP4/8 with these beats uniform W4A8 by 0.55 points, where {2, 4, 8}
    /// does not (QUANTIZATION.md).
    #[arg(long, value_delimiter = ',', default_value = "2,3,4,5,6,8")]
    pub mp_bits: Vec<u32>,
}

impl MixedArgs {
    /// The budget, when mixed precision was asked for.
    pub fn budget(&self) -> anyhow::Result<Option<Budget>> {
        if let Some(b) = self.mp_bits.iter().find(|b| !(2..=8).contains(*b)) {
            bail!("--mp-bits: bit-widths must be in 2..=8, got {b}");
        }
        budget_from(self.mp, self.size_budget.as_deref())
    }
}

/// `--abits`: 4..8 or fp32 (weight-only).
pub fn parse_abits(s: &str) -> anyhow::Result<Option<u32>> {
    match s {
        "fp32" | "32" => Ok(None),
        s => Ok(Some(s.parse::<u32>().map_err(|_| anyhow::anyhow!("--abits '{s}': expected 4-8 or fp32"))?)),
    }
}

pub fn parse_act_range(s: &str) -> anyhow::Result<ActRange> {
    match s {
        "minmax" => Ok(ActRange::MinMax),
        "mse" => Ok(ActRange::Mse),
        _ => match s.strip_prefix("percentile:").map(str::parse::<f32>) {
            Some(Ok(p)) if p > 50.0 && p <= 100.0 => Ok(ActRange::Percentile(p)),
            _ => bail!("--act-range '{s}': expected minmax, mse or percentile:P with 50 < P <= 100"),
        },
    }
}

/// `--mp N` / `--size-budget S` as a [`Budget`].
pub fn budget_from(mp: Option<f64>, size_budget: Option<&str>) -> anyhow::Result<Option<Budget>> {
    match (mp, size_budget) {
        (Some(b), _) if !(b.is_finite() && b > 0.0) => anyhow::bail!("--mp {b}: expected average bits per weight, e.g. 4"),
        (Some(b), _) => Ok(Some(Budget::BitsPerWeight(b))),
        (None, Some(s)) => Ok(Some(s.parse::<Budget>()?)),
        (None, None) => Ok(None),
    }
}

/// Refuses a budget below every layer at the smallest candidate, before any long work.
pub fn check_budget(g: &zeroq::ir::Graph, budget: Budget, candidates: &[u32]) -> anyhow::Result<()> {
    let params: usize = g.weight_layers().iter().map(|l| l.params).sum();
    let min_bits = candidates.iter().copied().min().unwrap_or(2);
    let smallest = params as u64 * min_bits as u64;
    if budget.to_bits(params) < smallest {
        bail!(
            "size budget {} is below the smallest possible weight size {} (all {params} weights at {min_bits} bits); raise the budget",
            fmt_bytes(budget.to_bits(params) as f64 / 8.0),
            fmt_bytes(smallest as f64 / 8.0)
        );
    }
    Ok(())
}

/// Which reconstruction runs after calibration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReconstructArg {
    /// BRECQ when any weight or activation is below 8 bits, else none.
    Auto,
    /// None: weights rounded to nearest, as calibrated.
    Off,
    /// Per-channel bias correction only (seconds).
    Bias,
    /// Learned rounding, layer by layer.
    Adaround,
    /// Learned rounding per block with LSQ activation steps and QDrop.
    Brecq,
}

/// Reconstruction settings (`quantize`, `run`).
#[derive(Args, Debug)]
pub struct ReconstructArgs {
    /// Reconstruction after calibration: learns the weight rounding (and low-bit activation steps)
    /// against the FP32 model on the calibration data.
    #[arg(long, value_enum, default_value = "auto")]
    pub reconstruct: ReconstructArg,
    /// Iterations per block (adaround, brecq); by default from the model's cost: 500 on the CIFAR
    /// ResNets, fewer on costlier models, at least 100.
    #[arg(long, value_name = "N")]
    pub recon_iters: Option<usize>,
    /// Images per iteration (at most the calibration images).
    #[arg(long, value_name = "N")]
    pub recon_batch: Option<usize>,
    /// Do not correct biases layer by layer before learning the rounding (adaround, brecq).
    #[arg(long)]
    pub recon_no_bias_first: bool,
    /// Learn every block's rounding with the biases already corrected (adaround, brecq). By default, in
    /// runs shorter than 500 iterations per block, a block of 3 bits or more learns with the FP32 biases
    /// and has them corrected once its rounding is fixed.
    #[arg(long)]
    pub recon_no_bias_after: bool,
    /// Probability that an activation is quantized while learning (QDrop; 1 disables it).
    #[arg(long, value_name = "P")]
    pub recon_qdrop: Option<f32>,
    /// Keep the calibrated activation steps (no LSQ).
    #[arg(long)]
    pub recon_no_lsq: bool,
    /// Adam learning rate of the rounding variables (adaround, brecq); by default 5 / iterations, within
    /// [0.001, 0.03].
    #[arg(long, value_name = "LR")]
    pub recon_lr: Option<f32>,
    /// Weight of the regulariser that drives each rounding to up or down (adaround, brecq); by default
    /// 0.01 from 500 iterations on, up to 0.1 at 150 and fewer.
    #[arg(long, value_name = "L")]
    pub recon_lambda: Option<f32>,
    /// Learn on the distilled images only. By default, on inputs of 56² and more, reconstruction (and
    /// the activation ranges before it) also sees a low-pass copy of each distilled image, blurred by
    /// side/112 px and kept in the valid input box: BN-matched images are pixel noise, photographs are
    /// not (QUANTIZATION.md).
    #[arg(long)]
    pub recon_no_lowpass: bool,
}

impl ReconstructArgs {
    /// Refuses bad settings before any long work.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.config_for(Method::Brecq, 0).validate()?;
        Ok(())
    }

    /// The settings for `g` learning on `images` calibration images, `None` when no reconstruction runs;
    /// `low` says whether some weight or activation is below 8 bits (what `auto` decides on). Without
    /// --recon-iters, the iterations follow the model's cost ([`zeroq::reconstruct::default_iters`]).
    pub fn config(&self, low: bool, seed: u64, g: &zeroq::ir::Graph, images: usize) -> anyhow::Result<Option<ReconstructConfig>> {
        let Some(method) = self.method(low) else { return Ok(None) };
        let mut cfg = self.config_for(method, seed);
        if self.recon_iters.is_none() {
            let per_image = zeroq::distill::budget::activations_per_image(g, zeroq::distill::input_chw(g)?)?;
            cfg.iters = zeroq::reconstruct::default_iters(per_image, cfg.batch.min(images.max(1)));
        }
        cfg.validate()?;
        Ok(Some(cfg))
    }

    /// Blur σ of the low-pass copies added to distilled calibration data for an input of `side` pixels
    /// when `reconstructs`; `None`: no copies.
    pub fn lowpass_sigma(&self, reconstructs: bool, side: usize) -> Option<f32> {
        if !reconstructs || self.recon_no_lowpass {
            return None;
        }
        zeroq::distill::lowpass::sigma_for(side)
    }

    /// The method that runs (`None`: none), `low` as in [`ReconstructArgs::config`].
    pub fn method(&self, low: bool) -> Option<Method> {
        match self.reconstruct {
            ReconstructArg::Auto if low => Some(Method::Brecq),
            ReconstructArg::Auto | ReconstructArg::Off => None,
            ReconstructArg::Bias => Some(Method::BiasCorrection),
            ReconstructArg::Adaround => Some(Method::AdaRound),
            ReconstructArg::Brecq => Some(Method::Brecq),
        }
    }

    fn config_for(&self, method: Method, seed: u64) -> ReconstructConfig {
        let mut cfg = ReconstructConfig::new(method);
        cfg.seed = seed;
        if let Some(n) = self.recon_iters {
            cfg.iters = n;
        }
        if let Some(n) = self.recon_batch {
            cfg.batch = n;
        }
        if let Some(p) = self.recon_qdrop {
            cfg.qdrop = (p < 1.0).then_some(p);
        }
        if let Some(lr) = self.recon_lr {
            cfg.round_lr = Some(lr);
        }
        if let Some(l) = self.recon_lambda {
            cfg.lambda = Some(l);
        }
        cfg.bias_first &= !self.recon_no_bias_first;
        cfg.bias_after &= !self.recon_no_bias_after;
        cfg.learn_act_scales &= !self.recon_no_lsq;
        cfg
    }
}
