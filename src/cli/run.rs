//! `zeroq run`: the whole job into one folder, with a report a person reads.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::ProgressStyle;
use zeroq::data;
use zeroq::distill::DistillConfig;
use zeroq::pareto::fmt_bytes;
use zeroq::pipeline::{self, files, EvalSet, Progress, RunConfig, StageRecord, Timeline, WeightBits};
use zeroq::sensitivity::SensitivityConfig;

use super::model_arg::ModelArgs;
use super::quant_args::{check_budget, MixedArgs, QuantArgs, ReconstructArgs};
use super::output::Bar;
use super::Output;

/// Arguments of `zeroq run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The model: ONNX path, --arch/--weights or --zoo.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output folder (created; refused if it holds files, unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace zeroq's files in an existing output folder.
    #[arg(long)]
    pub force: bool,
    /// Uniform weight bits (2-8). The default when neither --mp nor --size-budget is given: 8.
    #[arg(long)]
    pub wbits: Option<u32>,
    #[command(flatten)]
    pub mixed: MixedArgs,
    #[command(flatten)]
    pub quant: QuantArgs,
    #[command(flatten)]
    pub recon: ReconstructArgs,
    /// Also measure top-1 of FP32 and of the exported model on labelled data (cifar10:PATH or folder:DIR).
    #[arg(long)]
    pub eval: Option<String>,
    /// With --eval: an evenly strided subset of N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per distilled batch (one calibration batch and one held-out batch). (Default: 32, fewer
    /// for models costlier than the CIFAR ResNet56; `zeroq inspect` shows it.)
    #[arg(long)]
    pub batch: Option<usize>,
    /// Adam iterations per distilled batch at most (a batch stops earlier once its BN match stops
    /// improving).
    #[arg(long)]
    pub iters: Option<usize>,
    /// Seed of the distillation (the held-out batch uses seed + 1).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// One progress line per stage; a bar with ETA while a long stage runs.
/// Where stderr is not a terminal (a log file, CI), the bar is hidden and a line is printed at every
/// tenth of a long stage instead, with the ETA.
struct StageProgress<'a> {
    out: &'a Output,
    bar: Bar,
    label: String,
    steps: u64,
    started: std::time::Instant,
    last_tenth: u64,
}

impl Progress for StageProgress<'_> {
    fn stage(&mut self, name: &str, index: usize, count: usize, steps: Option<u64>) {
        self.label = format!("[{index}/{count}] {name}");
        (self.steps, self.started, self.last_tenth) = (steps.unwrap_or(0), std::time::Instant::now(), 0);
        self.bar = match steps {
            Some(n) => {
                let pb = self.out.progress(n, name);
                pb.set_style(ProgressStyle::with_template("{prefix:<18} [{bar:30}] {pos}/{len} eta {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
                pb
            }
            None => {
                let pb = self.out.progress(1, name);
                pb.set_style(ProgressStyle::with_template("{prefix:<18} {spinner} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
                pb.enable_steady_tick(std::time::Duration::from_millis(120));
                pb
            }
        };
        self.bar.set_prefix(self.label.clone());
    }

    fn step(&mut self, done: u64) {
        self.bar.set_position(done);
        if self.bar.is_hidden() && self.steps > 0 {
            let tenth = done * 10 / self.steps;
            if tenth > self.last_tenth && done < self.steps {
                self.last_tenth = tenth;
                let spent = self.started.elapsed().as_secs_f64();
                let eta = spent / done.max(1) as f64 * (self.steps - done) as f64;
                self.out.say(format!("{:<18} {:>3}% ({done}/{}), eta {eta:.0} s", self.label, tenth * 10, self.steps));
            }
        }
    }

    fn finished(&mut self, r: &StageRecord) {
        self.bar.finish_and_clear();
        let mem = r.peak_rss_bytes.map_or(String::new(), |b| format!(", peak {:.0} MiB", b as f64 / (1024.0 * 1024.0)));
        self.out.say(format!("{:<18} {:>7.1} s{mem}", self.label, r.seconds));
    }
}

pub fn run(a: RunArgs, out: &Output) -> anyhow::Result<()> {
    // Everything that can be refused is refused before any long work.
    super::ensure_limit(a.limit)?;
    let wbits = match (a.wbits, a.mixed.budget()?) {
        (_, Some(b)) => WeightBits::Mixed(b),
        (w, None) => WeightBits::Uniform(w.unwrap_or(8)),
    };
    let mut quant = a.quant.config(vec![if let WeightBits::Uniform(w) = wbits { w } else { 8 }])?;
    a.quant.check_edge_wbits(matches!(wbits, WeightBits::Mixed(_)))?;
    let mut mp_bits = a.mixed.mp_bits.clone();
    if let WeightBits::Uniform(w) = wbits {
        // The uniform choice (and its edge layers' bits) are points of the sensitivity table too.
        for b in std::iter::once(w).chain(a.quant.edge_wbits) {
            if !mp_bits.contains(&b) {
                mp_bits.push(b);
            }
        }
        mp_bits.sort_unstable();
    }
    // Refuse an occupied folder before the work, create it only once the model has loaded and fits.
    check_out_dir(&a.out, a.force)?;

    let mut progress = StageProgress { out, bar: Bar::hidden(), label: String::new(), steps: 0, started: std::time::Instant::now(), last_tenth: 0 };
    let low = matches!(wbits, WeightBits::Mixed(_) | WeightBits::Uniform(0..=7)) || quant.abits.is_some_and(|b| b < 8);
    a.recon.validate()?;
    a.quant.default_weight_range(&mut quant, a.recon.method(low).is_some());
    let mut timeline = Timeline::new(&mut progress, 1 + pipeline::stage_count(a.eval.is_some(), a.recon.method(low).is_some()));
    let mut g = timeline.stage("load", None, |_| Ok(a.model.load()))??;
    let preprocess = a.quant.preprocess(&mut g, &a.model.display(), &mut quant)?;
    let eval_data = a.eval.as_deref().map(|spec| data::open_dataset(spec, preprocess.clone())).transpose()?;
    if let WeightBits::Mixed(b) = wbits {
        check_budget(&g, b, &mp_bits)?;
    }
    zeroq::model::require_batch_norm(&g, "zeroq run (ZeroQ distils data from BatchNorm statistics)")?;
    prepare_out_dir(&a.out, a.force)?;
    let (batch, iters) = super::distill::sized(&g, a.batch, a.iters)?;
    // Reconstruction learns on the calibration batch and, on large inputs, its low-pass copies.
    let side = zeroq::distill::input_chw(&g).map(|[_, h, w]| h.min(w))?;
    let lowpass = a.recon.lowpass_sigma(a.recon.method(low).is_some(), side);
    let reconstruct = a.recon.config(low, a.seed, &g, if lowpass.is_some() { 2 * batch } else { batch })?;
    let cfg = RunConfig {
        distill: DistillConfig { batch, iters, seed: a.seed, ..DistillConfig::default() },
        sensitivity: SensitivityConfig { bits: mp_bits, weight_range: quant.weight_range, bias_corrected: reconstruct.is_some(), ..SensitivityConfig::default() },
        wbits,
        quant,
        lowpass,
        reconstruct,
        preprocess,
    };
    let eval_set = eval_data.as_deref().map(|d| EvalSet { data: d, idx: data::strided_subset(d.len(), a.limit) });
    let r = pipeline::run(&g, &a.model.label(), &cfg, &a.out, eval_set, &mut timeline)?;
    out.result(&r, || {
        let mut t = format!("{} → {}: {} {}\n", r.model, a.out.join(files::MODEL).display(), r.config, fmt_bytes(r.quantized_size_bytes));
        t += &format!("weights {} → {}; agreement with FP32 on held-out distilled images: {:.1}% top-1, mean KL {:.2e}\n", fmt_bytes(r.fp32_size_bytes), fmt_bytes(r.quantized_size_bytes), r.holdout_agreement.top1_match, r.holdout_agreement.mean_kl);
        if let Some(acc) = &r.accuracy {
            t += &format!("top-1 on {} images: FP32 {:.2}%  quantized {:.2}%  ({:+.2})\n", acc.images, acc.fp32_top1, acc.quantized_top1, acc.quantized_top1 - acc.fp32_top1);
        }
        t + &format!("{:.1} s in all; open {}\n", r.total_seconds, a.out.join(files::REPORT_HTML).display())
    })
}

/// Refuses an output folder that holds files (unless `force`) or a path that is not a folder.
fn check_out_dir(dir: &std::path::Path, force: bool) -> anyhow::Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{}: exists and is not a folder; choose another --out", dir.display());
        }
        let non_empty = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_some();
        if non_empty && !force {
            bail!("{}: the output folder already holds files; pass --force to replace zeroq's files in it, or choose another --out", dir.display());
        }
    }
    Ok(())
}

/// Creates the output folder; with `force`, zeroq's own files in it are removed first (nothing else is
/// touched).
fn prepare_out_dir(dir: &std::path::Path, force: bool) -> anyhow::Result<()> {
    check_out_dir(dir, force)?;
    if dir.exists() {
        for f in files::ALL {
            let p = dir.join(f);
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(())
}
