//! The 1,000-agent simulation.
use std::path::Path;
pub fn run(_dir: &Path, _quick: bool) {}
