//! # ananta-benches — criterion benches for Ananta
//!
//! `cargo bench -p ananta-benches`. This library holds helpers the benches share, e.g. an
//! executor that does no I/O so a bench can measure the Hub's own overhead.
//!
//! ```
//! use ananta_core::Executor;
//! use ananta_core::exec::ExecRequest;
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let outcome = ananta_benches::NoopExecutor.run(ExecRequest::new("true"), None).await?;
//! assert_eq!(outcome.exit_code, Some(0));
//! # Ok::<(), ananta_core::ExecError>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use ananta_core::exec::{ExecOutcome, ExecRequest, OutputSink};
use ananta_core::{ExecError, Executor};

/// An executor that runs nothing and answers exit code 0 with the command echoed as stdout.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopExecutor;

#[async_trait::async_trait]
impl Executor for NoopExecutor {
    async fn run(
        &self,
        request: ExecRequest,
        _output: Option<OutputSink>,
    ) -> Result<ExecOutcome, ExecError> {
        Ok(ExecOutcome {
            exit_code: Some(0),
            stdout: request.command,
            ..ExecOutcome::default()
        })
    }
}
