//! End-to-end tests of station-sync across real processes, one module per
//! suite and their shared [`fixtures`]: the agent's log under SIGKILL
//! (`crash`), sync with the hub or the device killed (`crash_sync`), and the
//! seven Nedong stations converging over weak links (`convergence`).

#![allow(clippy::unwrap_used, missing_docs)]

mod convergence;
mod crash;
mod crash_sync;
mod fixtures;
