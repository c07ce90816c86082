//! One command through Ananta's command policy and Linux sandbox, as a black box:
//!
//! ```sh
//! cargo run -p ananta-examples --example exec -- [--mode read_only|approve|auto|off] [--workspace DIR] \
//!     [--allow-network] [--timeout SECS] -- 'COMMAND'
//! ```
//!
//! Prints one JSON line: the containment the policy assumed (the strict sandbox, when this
//! kernel gives one), the policy's decision, rule and reasons, and — when it ran, in a
//! strict sandbox confined to the workspace (a new temporary directory by default) — exit
//! code, signal, timed_out, stdout/stderr byte counts, truncated and duration. Exit status 0
//! whenever the line was printed; 2 for unusable arguments.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use ananta_examples::exec_cli::{ExecArgs, USAGE, run_exec};

#[tokio::main]
async fn main() {
    let args = match ExecArgs::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    match run_exec(&args).await {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
