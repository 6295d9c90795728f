//! The integration suite: one test binary (see "Delete Cargo Integration
//! Tests"). Every test starts its own hub on 127.0.0.1:0 with its own temp
//! directory, or the real `arc` binary on its own port.

mod compat;
mod core;
mod dag;
mod dashboard;
mod guard;
mod hooks_install;
mod hostile;
mod hostile_client;
mod hostile_proc;
mod hostile_spool;
mod hostile_spool2;
mod hot;
mod house;
mod lifecycle;
mod live;
mod mcp;
mod mcp2026;
mod mcp_tools;
mod relay;
mod reserve;
mod robust;
mod support;
mod wake;
mod wake_recipes;
