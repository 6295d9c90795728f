//! The schema of the reference's tables, frozen (docs/PROTOCOL.md, "Data
//! model"): no column is ever added, removed or reordered, and
//! `PRAGMA user_version` stays 0, so a Python hub can open the same file.
//! New features keep their state in tables of their own, prefixed `arc_`
//! (docs/PROTOCOL.md, "Extension tables").

/// Highest message id the protocol allows (2^53 − 1, exact in JavaScript).
pub const MAX_MESSAGE_ID: i64 = (1 << 53) - 1;

/// Longest lease we grant: ten years, well inside the timestamp range.
pub const MAX_TTL_SEC: i64 = 315_360_000;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels(
  name TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  created_by TEXT,
  metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS messages(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts TEXT NOT NULL,
  from_agent TEXT NOT NULL,
  to_agent TEXT,
  channel TEXT NOT NULL,
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  attachments_json TEXT NOT NULL DEFAULT '[]',
  reply_to INTEGER,
  thread_id TEXT,
  metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS ix_m_ch ON messages(channel,id);
CREATE INDEX IF NOT EXISTS ix_m_to ON messages(to_agent,id);
CREATE INDEX IF NOT EXISTS ix_m_th ON messages(thread_id,id);
CREATE TABLE IF NOT EXISTS sessions(
  session_id TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  display_name TEXT NOT NULL,
  capabilities_json TEXT NOT NULL DEFAULT '[]',
  metadata_json TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  last_seen TEXT NOT NULL,
  active INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS ix_s_ag ON sessions(agent_id);
CREATE INDEX IF NOT EXISTS ix_s_ac ON sessions(active,last_seen);
CREATE TABLE IF NOT EXISTS claims(
  claim_key TEXT PRIMARY KEY,
  thread_id TEXT,
  task_message_id INTEGER,
  owner_agent_id TEXT NOT NULL,
  claimed_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  released_at TEXT,
  metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS ix_c_th ON claims(thread_id);
CREATE TABLE IF NOT EXISTS locks(
  file_path TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  locked_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  released_at TEXT,
  metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS ix_l_ag ON locks(agent_id);
CREATE TABLE IF NOT EXISTS tasks(
  task_id INTEGER PRIMARY KEY,
  parent_task_id INTEGER,
  channel TEXT NOT NULL,
  thread_id TEXT,
  status TEXT NOT NULL DEFAULT 'open',
  created_at TEXT NOT NULL,
  completed_at TEXT,
  FOREIGN KEY(parent_task_id) REFERENCES tasks(task_id));
CREATE INDEX IF NOT EXISTS ix_t_par ON tasks(parent_task_id);
CREATE INDEX IF NOT EXISTS ix_t_st ON tasks(status);
";

pub(super) const MSG_COLS: &str = "id, ts, from_agent, to_agent, channel, kind, body, attachments_json, reply_to, thread_id, metadata_json";
pub(super) const SESSION_COLS: &str = "session_id, agent_id, display_name, capabilities_json, metadata_json, created_at, last_seen, active";
pub(super) const CLAIM_COLS: &str = "claim_key, thread_id, task_message_id, owner_agent_id, claimed_at, expires_at, released_at, metadata_json";
pub(super) const LOCK_COLS: &str =
    "file_path, agent_id, locked_at, expires_at, released_at, metadata_json";
pub(super) const TASK_COLS: &str =
    "task_id, parent_task_id, channel, thread_id, status, created_at, completed_at";
