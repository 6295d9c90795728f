pub use self::body::{drain, ChunkedBody, ChunkedWriter, Leftover, LengthBody};
pub use self::messages_queue::MessagesQueue;
pub use self::refined_tcp_stream::RefinedTcpStream;
pub use self::reply::{slot, Outgoing};
pub use self::sequential::{SequentialReader, SequentialReaderBuilder};
pub use self::shared::{Budget, Counter, Guarded, Share, Shared};

mod body;
mod messages_queue;
pub(crate) mod refined_tcp_stream;
mod reply;
mod sequential;
mod shared;
