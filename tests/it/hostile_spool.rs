//! A spool writer must never reach outside the spool. Each test plants
//! something a sandboxed agent could plant (a symlinked agent directory, a
//! symlinked `requests/`, a FIFO posing as a request, thousands of idle
//! agent directories) and checks that the relay touches nothing outside
//! the spool and keeps serving everyone else. Canary files live in temp
//! directories outside the spool and must keep their names and content.
//! Unix only: the attacks need symlinks, FIFOs and directory timestamps.

#![cfg(unix)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use arc_hub::client::Client;
use arc_hub::client::RelayClient;
use serde_json::json;

use crate::relay::{await_response, drop_request, envelope, relay_hub, spool};
use crate::support::{TempDir, eventually};

/// What a sandboxed agent might point a symlink at: an app's settings.
const CANARIES: &[(&str, &str)] = &[
    ("settings.json", "{\"theme\": \"dark\"}\n"),
    (
        "package.json",
        "{\"name\": \"victim\", \"version\": \"1.0.0\"}\n",
    ),
    (
        "tsconfig.json",
        "{\"compilerOptions\": {\"strict\": true}}\n",
    ),
];

/// Long enough for a few relay scans (10 ms apart while busy, at most
/// 100 ms apart when idle). Used only to give a relay the chance to do
/// something it must never do; no test asserts that anything is fast.
const SETTLE: Duration = Duration::from_millis(1200);

/// Writes `files` into `dir`, each with a modification time `age` ago.
fn plant(dir: &Path, files: &[(&str, &str)], age: Duration) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        set_age(&p, age);
    }
}

fn set_age(p: &Path, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// `dir` holds exactly `files`, with their original content.
#[track_caller]
fn assert_untouched(dir: &Path, files: &[(&str, &str)]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "contents of {}", dir.display());
    for (name, text) in files {
        let got = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(got, *text, "{name} in {}", dir.display());
    }
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[track_caller]
fn assert_symlink(p: &Path) {
    let meta = std::fs::symlink_metadata(p).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "{} must stay a symlink",
        p.display()
    );
}

fn mkfifo(p: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", p.display());
}

/// A request any relay would serve.
fn hub_info_request() -> Vec<u8> {
    envelope("GET", "/v1/hub-info", None, "2026-01-01T00:00:00Z")
}

/// Another agent is served through the relay (bounded by `timeout`).
#[track_caller]
fn assert_bystander_served(sp: &Path, agent: &str) {
    let mut rc = RelayClient::new(sp, agent);
    rc.margin = Duration::from_secs(2);
    let r = rc
        .call("GET", "/v1/hub-info", None, Duration::from_secs(10))
        .unwrap();
    assert_eq!(r["status"], 200, "{r}");
}

#[test]
fn retention_never_deletes_through_a_symlinked_agent_directory() {
    let old = Duration::from_secs(7200);
    let config = TempDir::new("host-config"); // stands for ~/.config/app
    plant(config.path(), CANARIES, old);
    let cache = TempDir::new("host-cache");
    let work_canaries: &[(&str, &str)] = &[("build.work", "keep\n"), ("index.work", "keep\n")];
    plant(cache.path(), work_canaries, old);
    let h = relay_hub(|c| {
        // A sweep every second, so the test sees two of them quickly.
        c.relay_retention = Duration::from_secs(4);
        let sp = c.spool_dir.clone();
        plant(&sp.join("responses/legit"), &[("stale.json", "{}")], old);
        plant(&sp.join("requests/legit"), &[("stale.work", "{}")], old);
        symlink(config.path(), &sp.join("responses/victim"));
        symlink(cache.path(), &sp.join("requests/victim"));
    });
    let sp = spool(&h);
    let legit = sp.join("responses/legit");
    eventually(Duration::from_secs(10), "first retention sweep", || {
        (!legit.join("stale.json").exists() && !sp.join("requests/legit/stale.work").exists())
            .then_some(())
    });
    // A second sweep has certainly finished the first one.
    plant(&legit, &[("stale2.json", "{}")], old);
    eventually(Duration::from_secs(10), "second retention sweep", || {
        (!legit.join("stale2.json").exists()).then_some(())
    });
    assert_untouched(config.path(), CANARIES);
    assert_untouched(cache.path(), work_canaries);
    // The planted links are refused, never removed or replaced.
    assert_symlink(&sp.join("responses/victim"));
    assert_symlink(&sp.join("requests/victim"));
}

#[test]
fn responses_are_never_written_through_a_symlinked_agent_directory() {
    let app = TempDir::new("host-app");
    plant(app.path(), CANARIES, Duration::ZERO);
    let h = relay_hub(|c| {
        let responses = c.spool_dir.join("responses");
        std::fs::create_dir_all(&responses).unwrap();
        symlink(app.path(), &responses.join("victim"));
    });
    h.register("victim");
    let sp = spool(&h);
    for (i, stem) in ["first", "second", "third"].iter().enumerate() {
        let body = json!({"from_agent": "victim", "channel": "general", "body": stem});
        let created = format!("2026-01-01T00:00:0{i}Z");
        drop_request(
            &sp,
            "victim",
            &format!("{stem}.json"),
            &envelope("POST", "/v1/messages", Some(body), &created),
        );
    }
    // Nothing is written through the link. (The relay does not even claim
    // these requests: their answers would have nowhere to go.)
    std::thread::sleep(SETTLE);
    assert_untouched(app.path(), CANARIES);
    assert_symlink(&sp.join("responses/victim"));
    assert_bystander_served(&sp, "bystander");
    // Once the link is gone the agent is served, in order, inside the spool.
    std::fs::remove_file(sp.join("responses/victim")).unwrap();
    for stem in ["first", "second", "third"] {
        let r = await_response(&sp, "victim", stem, Duration::from_secs(10));
        assert_eq!(r["status"], 201, "{stem}: {r}");
    }
    assert!(sp.join("responses/victim").is_dir());
    assert_untouched(app.path(), CANARIES);
    let bodies: Vec<String> = h
        .get("/v1/messages?channel=general&limit=10")
        .result()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies, ["first", "second", "third"]);
}

#[test]
fn a_requests_directory_that_is_a_symlink_at_start_is_refused() {
    let project = TempDir::new("project");
    let app = project.path().join("app");
    let text = String::from_utf8(hub_info_request()).unwrap();
    let files: Vec<(&str, &str)> = CANARIES
        .iter()
        .copied()
        .chain([("request.json", text.as_str())])
        .collect();
    plant(&app, &files, Duration::ZERO);
    let h = relay_hub(|c| {
        std::fs::create_dir_all(&c.spool_dir).unwrap();
        symlink(project.path(), &c.spool_dir.join("requests"));
    });
    let sp = spool(&h);
    std::thread::sleep(SETTLE);
    assert_untouched(&app, &files);
    assert!(!sp.join("responses/app").exists());
    assert_symlink(&sp.join("requests"));
    // Once the link is gone, the relay re-creates a real `requests/` and
    // serves again; the project is still untouched.
    std::fs::remove_file(sp.join("requests")).unwrap();
    assert_bystander_served(&sp, "after-the-link");
    assert!(
        std::fs::symlink_metadata(sp.join("requests"))
            .unwrap()
            .is_dir()
    );
    assert_untouched(&app, &files);
}

/// Replaces the directory `target` with the symlink `link`, retrying if
/// the relay re-creates `target` between the two renames (bounded).
fn swap_in(target: &Path, link: &Path) {
    for attempt in 0..50 {
        let aside = target.with_file_name(format!("requests.old{attempt}"));
        let _ = std::fs::rename(target, &aside);
        if std::fs::rename(link, target).is_ok() {
            return;
        }
    }
    panic!("could not swap {} in", link.display());
}

#[test]
fn a_requests_directory_swapped_for_a_symlink_while_running_is_refused() {
    let project = TempDir::new("project");
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let mut c = Client::over_relay("worker", &sp);
    c.timeout = Duration::from_secs(10);
    c.register(None, true, None, None).unwrap();
    let link = sp.join("requests.link");
    symlink(project.path(), &link);
    swap_in(&sp.join("requests"), &link);
    // The hostile writer drops a request through the link, next to the
    // project's own JSON files.
    let text = String::from_utf8(hub_info_request()).unwrap();
    let files: Vec<(&str, &str)> = CANARIES
        .iter()
        .copied()
        .chain([("evil.json", text.as_str())])
        .collect();
    plant(&sp.join("requests/worker"), &files, Duration::ZERO);
    std::thread::sleep(SETTLE);
    assert_untouched(&project.path().join("worker"), &files);
    assert!(!sp.join("responses/worker/evil.json").exists());
    assert_symlink(&sp.join("requests"));
}

#[test]
fn fifos_posing_as_requests_block_no_one_and_the_hub_still_stops() {
    let mut h = relay_hub(|_| {});
    let sp = spool(&h);
    let fifos = [
        sp.join("requests/pipe-agent/stuck.json"),
        sp.join("requests/link-agent/pipe"),
        sp.join("requests/fifo-dir"),
        sp.join("pipe-in-root"),
    ];
    std::fs::create_dir_all(sp.join("requests/pipe-agent")).unwrap();
    std::fs::create_dir_all(sp.join("requests/link-agent")).unwrap();
    for f in &fifos {
        mkfifo(f);
    }
    // A request that is a symlink to a FIFO inside the spool, and one that
    // points at a FIFO through a symlinked agent directory.
    symlink(Path::new("pipe"), &sp.join("requests/link-agent/req.json"));
    symlink(
        Path::new("../../pipe-in-root"),
        &sp.join("requests/link-agent/up.json"),
    );
    // Another agent is answered promptly all the same.
    let mut rc = RelayClient::new(&sp, "bystander");
    rc.margin = Duration::from_secs(2);
    let r = rc
        .call("GET", "/v1/hub-info", None, Duration::from_secs(10))
        .unwrap();
    // And the hub stops within a generous bound.
    let hub = h.hub.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        hub.shutdown();
        let _ = tx.send(());
    });
    let stopped = rx.recv_timeout(Duration::from_secs(10)).is_ok();
    if !stopped {
        // Free a relay stuck in open(2) so the rest of the suite goes on.
        for f in fifos.clone() {
            std::thread::spawn(move || drop(std::fs::File::options().write(true).open(f)));
        }
    }
    assert_eq!(r["status"], 200, "another agent was not served: {r}");
    assert!(stopped, "the hub did not stop within 10 s");
    for f in &fifos {
        use std::os::unix::fs::FileTypeExt;
        let t = std::fs::symlink_metadata(f).unwrap().file_type();
        assert!(t.is_fifo(), "{} must be left alone", f.display());
    }
    assert_symlink(&sp.join("requests/link-agent/req.json"));
}

#[test]
fn idle_agent_directories_cost_a_bounded_number_of_stats_per_scan() {
    // Thousands of agent directories that nobody uses any more: an idle
    // scan must look at a bounded slice of them, not stat every one.
    const DIRS: usize = 3000;
    let h = relay_hub(|c| {
        let requests = c.spool_dir.join("requests");
        std::fs::create_dir_all(&requests).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..DIRS {
            let d = requests.join(format!("idle{i:05}"));
            std::fs::create_dir(&d).unwrap();
            std::fs::File::open(&d).unwrap().set_modified(old).unwrap();
        }
        std::fs::File::open(&requests)
            .unwrap()
            .set_modified(old)
            .unwrap();
    });
    let sp = spool(&h);
    let stats = || h.hub().relay_stats().expect("the relay runs");
    // The first sweep lists each directory once (nothing is known about
    // it yet), spread over many scans.
    let swept = eventually(Duration::from_secs(60), "first sweep", || {
        let s = stats();
        (s.agents == DIRS && s.listings > DIRS as u64).then_some(s)
    });
    assert!(
        swept.scans > 2,
        "the first sweep was spread over scans: {swept:?}"
    );
    // From then on, idle scans list nothing and stat a bounded slice.
    let s0 = stats();
    let s1 = eventually(Duration::from_secs(60), "20 idle scans", || {
        let s = stats();
        (s.scans >= s0.scans + 20).then_some(s)
    });
    let scans = s1.scans - s0.scans;
    let probes = s1.probes - s0.probes;
    assert!(
        probes <= scans * 256,
        "{probes} agent directory stats in {scans} idle scans ({DIRS} directories)"
    );
    // At most the periodic full listing of requests/ may fall in here.
    assert!(s1.listings - s0.listings <= 1, "{s0:?} -> {s1:?}");
    assert_eq!(s1.hot, 0, "{s1:?}");
    // A request in one of the cold directories is still served.
    let mut rc = RelayClient::new(&sp, "idle01234");
    rc.margin = Duration::from_secs(2);
    let r = rc
        .call("GET", "/v1/hub-info", None, Duration::from_secs(10))
        .unwrap();
    assert_eq!(r["status"], 200, "{r}");
}
