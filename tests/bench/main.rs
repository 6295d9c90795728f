//! Benchmarks that print figures (no timed assertions anywhere).
//!
//! Run with `cargo bench --bench bench` (add `-- quick` for a short run,
//! and section names to run only those). The hub under test is the real
//! `arc` binary in its own process, so its CPU time and RSS are measured
//! from /proc without the load generator. With `ARC_REFERENCE_PYTHON` set
//! to a Python that has the reference installed (the interop venv), the
//! request-path sections run against the reference too, side by side.
//!
//! Sections:
//! * `wake`, `cross`, `load`, `relay`: the wake path (wake.rs);
//! * `hooks`: `arc hook` processes as a harness runs them (hooks.rs);
//! * `page`, `post`, `close`, `threads`, `release`: the plain request
//!   path (hot.rs);
//! * `start`: spawn, `arc ensure` and `arc stop` (life.rs);
//! * `reserve`: reservations and their check with 1,000 held (reserve.rs);
//! * `sim`: 1,000 agents at once (sim.rs).

mod common;
mod hooks;
mod hot;
mod life;
mod load;
mod reserve;
mod sim;
mod wake;

use common::Hub;

const SECTIONS: [&str; 13] = [
    "wake", "cross", "load", "relay", "hooks", "page", "post", "close", "threads", "release",
    "start", "reserve", "sim",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("bench: skipped (run `cargo bench --bench bench`)");
        return;
    }
    let quick = args.iter().any(|a| a == "quick");
    let dir = std::env::temp_dir().join(format!("arc-bench-{}", arc_hub::ids::uuid4_hex()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "arc bench ({}), {} cores",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!();
    let named: Vec<&str> = SECTIONS
        .iter()
        .copied()
        .filter(|s| args.iter().any(|a| a == s))
        .collect();
    let want = |s: &str| named.is_empty() || named.contains(&s);
    if ["wake", "cross", "load"].iter().any(|s| want(s)) {
        let hub = Hub::spawn(&dir.join("a"), &dir.join("arc.sqlite3"), &[]);
        if want("wake") {
            wake::wake_latency(&hub, 1, if quick { 20 } else { 200 });
            wake::wake_latency(&hub, 100, if quick { 5 } else { 30 });
        }
        if want("cross") {
            let other = Hub::spawn(&dir.join("b"), &dir.join("arc.sqlite3"), &[]);
            wake::cross_hub(&hub, &other, if quick { 10 } else { 50 });
        }
        if want("load") {
            wake::parked_load(
                &hub,
                if quick { 200 } else { 1000 },
                if quick { 10 } else { 50 },
                if quick { 50 } else { 300 },
            );
        }
    }
    if want("relay") {
        wake::relay_round_trip(
            &dir,
            if quick { 50 } else { 300 },
            if quick { 4 } else { 12 },
        );
    }
    if want("hooks") {
        hooks::run(&dir, quick);
    }
    let hot: Vec<&str> = ["page", "post", "close", "threads", "release"]
        .into_iter()
        .filter(|s| want(s))
        .collect();
    if !hot.is_empty() {
        hot::run(&dir, &hot, quick);
    }
    if want("start") {
        life::run(&dir, if quick { 5 } else { 20 });
    }
    if want("reserve") {
        reserve::run(&dir, quick);
    }
    if want("sim") {
        sim::run(&dir, quick);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
