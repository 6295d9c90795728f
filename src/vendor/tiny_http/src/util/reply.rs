//! How a response travels from the thread that answers a request to the
//! connection's own thread, which alone writes to the socket (an addition
//! of this copy). A worker therefore never blocks on a slow client: it
//! serializes the response into memory (within a shared budget) and hands
//! it over.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender};

use super::Share;

/// What the connection thread receives for one request.
pub enum Outgoing {
    /// A whole response, ready to write; `close` ends the connection
    /// after it. The share of the reply budget is given back once written.
    Bytes {
        data: Vec<u8>,
        close: bool,
        share: Option<Share>,
    },
    /// The application takes the socket's write side over (a stream):
    /// the connection thread sends it on this channel and reads no more.
    Handover(SyncSender<Box<dyn Write + Send>>),
    /// A job to run on the connection thread itself, which answers the
    /// request (an answer that must wait, waits there).
    Run(Box<dyn FnOnce() + Send>),
}

/// A one-response channel.
pub fn slot() -> (SyncSender<Outgoing>, Receiver<Outgoing>) {
    std::sync::mpsc::sync_channel(1)
}
