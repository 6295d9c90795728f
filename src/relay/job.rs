//! Serving one claimed request: reading it, having it checked
//! ([`super::envelope`]) and forwarded ([`super::forward`]), and writing
//! the answer atomically; and retention of old `.work` and response
//! files.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::envelope::{self, Refusal};
use super::forward::{Outcome, forward};
use super::scan::{Spool, file_stem, has_ext};
use super::{RelayConfig, Shared};
use crate::sys::dir::{Kind, SpoolDir, is_refusal};
use crate::wire::RelayAnswer;

/// One claimed request, served on a pool thread.
pub(super) struct Job {
    pub(super) cfg: RelayConfig,
    pub(super) agent: String,
    /// The agent's request directory, as verified when it was claimed.
    pub(super) dir: Arc<SpoolDir>,
    pub(super) work: String,
    pub(super) responses: Arc<SpoolDir>,
    /// `responses/<safe>`, verified when the request was claimed.
    pub(super) answers: SpoolDir,
    pub(super) safe: String,
    pub(super) shared: Arc<Shared>,
}

impl Job {
    /// Serves the claimed request file and writes its response.
    pub(super) fn run(&self) {
        let stem = file_stem(&self.work);
        let outcome = match self.read() {
            Err(reason) => Outcome::refused(stem.clone(), Refusal::invalid(reason)),
            Ok(bytes) => match envelope::parse(&bytes, &stem, self.cfg.allow_admin) {
                Err(r) => Outcome::refused(stem.clone(), r),
                Ok(env) => forward(&self.cfg, &self.shared, &env),
            },
        };
        let answer = RelayAnswer {
            request_id: &outcome.request_id,
            ok: outcome.ok,
            status: outcome.status,
            body: outcome.body.as_deref(),
            completed_at: crate::time::now(),
            error: outcome.error.clone(),
        };
        let text = crate::wire::to_python_json(&answer, true);
        drop(outcome);
        let name = format!("{stem}.json");
        // The answer goes only where the agent's response directory still
        // is: it may have been moved while the request was served.
        if !self.answers.is_at(&self.responses, &self.safe) {
            let rel = format!("responses/{}", self.safe);
            self.shared
                .refuse(&rel, "was moved while a request was served");
            return;
        }
        if let Err(e) = self.answers.write_atomic(&name, text.as_bytes()) {
            self.shared
                .fail(&format!("responses/{}/{name}", self.safe), &e);
        }
    }

    /// The claimed file's bytes, bounded by the configured maximum; the
    /// error is the reason the 400 response gives.
    fn read(&self) -> std::result::Result<Vec<u8>, String> {
        let max = self.cfg.max_request_bytes;
        self.dir.read_regular(&self.work, max).map_err(|e| {
            if e.kind() == std::io::ErrorKind::FileTooLarge {
                return format!("request file exceeds {max} bytes");
            }
            if is_refusal(&e) {
                let rel = format!("requests/{}/{}", self.agent, self.work);
                self.shared.refuse(&rel, &e.to_string());
            }
            e.to_string()
        })
    }
}

/// Deletes `.work` and response files older than `retention`: regular
/// files only, in real agent directories inside the spool only, ignoring
/// failures (some mounts refuse deletes; the spool stays correct anyway).
pub(super) fn cleanup(spool: &Spool, retention: Duration, shared: &Shared) {
    let now = SystemTime::now();
    let subs = [
        ("requests", &spool.requests, "work"),
        ("responses", &spool.responses, "json"),
    ];
    for (sub, dir, ext) in subs {
        let Some(dir) = dir else { continue };
        let Ok(agents) = dir.list(&|_| true) else {
            continue;
        };
        if sub == "responses" {
            let names = agents.iter().map(|e| e.name.clone()).collect();
            shared.forget_missing(sub, &names, None);
        }
        for a in agents {
            let rel = format!("{sub}/{}", a.name);
            if a.kind != Kind::Dir {
                shared.refuse(&rel, a.kind.refusal());
                continue;
            }
            let agent = match dir.open_subdir(&a.name) {
                Ok(d) => d,
                Err(e) => {
                    shared.fail(&rel, &e);
                    continue;
                }
            };
            let Ok(files) = agent.list(&|n| has_ext(n, ext)) else {
                continue;
            };
            let names = files.iter().map(|e| e.name.clone()).collect();
            shared.forget_missing(&rel, &names, Some(ext));
            for f in files {
                if f.kind != Kind::File {
                    shared.refuse(&format!("{rel}/{}", f.name), f.kind.refusal());
                } else if now.duration_since(f.mtime).is_ok_and(|age| age > retention) {
                    let _ = agent.remove_regular(&f.name);
                }
            }
        }
    }
}
