//! The model argument every command shares: an ONNX path, `--arch A --weights F.pth`, or `--zoo NAME`.

use std::path::PathBuf;

use clap::Args;
use zeroq::arch::Arch;
use zeroq::ir::Graph;
use zeroq::source::ModelSource;

/// Which model to load (exactly one of MODEL, --arch with --weights, --zoo).
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// ONNX model with BatchNormalization nodes (or give --arch/--weights or --zoo instead).
    #[arg(value_name = "MODEL", required_unless_present_any = ["arch", "zoo"], conflicts_with_all = ["arch", "weights", "zoo"])]
    pub path: Option<PathBuf>,
    /// Built-in architecture of the --weights checkpoint: efficientnet-lite0|1|2, resnet18, resnet50, mobilenet-v2.
    #[arg(long, value_name = "ARCH", requires = "weights", conflicts_with = "zoo")]
    pub arch: Option<Arch>,
    /// PyTorch state_dict checkpoint (.pth, torch.save(model.state_dict())) of the --arch architecture.
    #[arg(long, value_name = "FILE", requires = "arch")]
    pub weights: Option<PathBuf>,
    /// A pretrained model by name (see `zeroq zoo list`); fetched into the cache on first use.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["arch", "weights"])]
    pub zoo: Option<String>,
}

impl ModelArgs {
    /// The library-level source.
    pub fn source(&self) -> anyhow::Result<ModelSource> {
        Ok(match (&self.path, self.arch, &self.weights, &self.zoo) {
            (Some(p), None, None, None) => ModelSource::Onnx(p.clone()),
            (None, Some(arch), Some(w), None) => ModelSource::Checkpoint { arch, weights: w.clone() },
            (None, None, None, Some(z)) => ModelSource::Zoo(z.clone()),
            _ => anyhow::bail!("give exactly one model: an ONNX path, --arch with --weights, or --zoo NAME"),
        })
    }

    /// Loads the graph, with the model named in the error.
    pub fn load(&self) -> anyhow::Result<Graph> {
        let src = self.source()?;
        let what = src.describe();
        // Name the model once: most load errors (a bad file, a missing one) already start with its path.
        src.load(&mut |m| eprintln!("{m}")).map_err(|e| {
            let named = e.to_string().contains(&what);
            let e = anyhow::Error::new(e);
            if named {
                e
            } else {
                e.context(format!("loading {what}"))
            }
        })
    }

    /// A short name for titles: the file name, or the zoo/architecture name.
    pub fn label(&self) -> String {
        match (&self.path, self.arch, &self.zoo) {
            (Some(p), _, _) => p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()),
            (_, _, Some(z)) => z.clone(),
            (_, Some(a), _) => a.name().to_string(),
            _ => self.display(),
        }
    }

    /// The model as written in messages and reports.
    pub fn display(&self) -> String {
        self.source().map(|s| s.describe()).unwrap_or_default()
    }
}
