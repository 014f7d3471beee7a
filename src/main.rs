//! The `zeroq` binary: a thin layer over the library. Errors print as one line (with their causes) and
//! exit with status 1; usage errors exit with 2 (clap).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keep_freed_memory();
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

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (the same slot in its v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to hand freed memory back to the OS, unless the user set
/// `MIMALLOC_PURGE_DELAY` themselves.
///
/// Why: by default mimalloc purges memory that has been free for a while (1 s in its v3, which zeroq
/// builds; 10 ms in v2), and with its arenas' coarser purging whole ranges go. Distillation frees and
/// reallocates the same large activations and gradients every iteration, so each iteration faulted
/// them in again: on EfficientNet-Lite0 (batch 8, 2 threads) 1.6–3.5 s of system time in 10
/// iterations and 503–615 ms per iteration, against 1.2–1.4 s and 458–513 ms without purging, for 5%
/// more peak RSS. The peak is what the process needs anyway; a CLI run ends soon after it.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option is thread-safe in mimalloc and takes plain integers.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

#[cfg(test)]
mod tests {
    /// The option index names the purge delay: it holds mimalloc's default for it (1000 ms in v3,
    /// 10 in v2) and the setter round-trips, so a renumbered enum in a later mimalloc shows here
    /// rather than as a silent no-op.
    #[test]
    fn purge_delay_option_slot() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: plain integer options, see `keep_freed_memory`.
        unsafe {
            let default = libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY);
            assert!(default == 1000 || default == 10, "option {} is {default}, not a purge delay", super::MI_OPTION_PURGE_DELAY);
            super::keep_freed_memory();
            assert_eq!(libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY), -1);
        }
    }
}
