//! The `zeroq` binary: a thin layer over the library. Errors print as one line (with their causes) and
//! exit with status 1; usage errors exit with 2 (clap).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zeroq: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

// The kernels allocate large temporary buffers per call; the system allocator hands them back to the OS
// and page-faults them in again on every layer (about a tenth of eval time in a profile). mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
