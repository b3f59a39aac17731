//! End-to-end tests of station-sync across real processes, one module per
//! suite and their shared [`fixtures`]: the agent's log under SIGKILL
//! (`crash`), sync with the hub or the device killed (`crash_sync`), the
//! seven Nedong stations converging over weak links (`convergence`), the
//! district directory's delta reaching a phone over a link that keeps
//! cutting (`directory_weaklink`), and the agent's and the hub's logs
//! through power cuts that drop unsynced data (`powercut`).

#![allow(clippy::unwrap_used, missing_docs)]

mod convergence;
mod crash;
mod crash_sync;
mod directory_weaklink;
mod fixtures;
mod powercut;
