//! The `text/event-stream` wire format: an encoder for servers and a WHATWG-exact incremental
//! parser for clients. No I/O and no runtime: bytes in, bytes or frames out.
//!
//! ```
//! use std::time::Duration;
//!
//! use ssehub_codec::{Event, Frame, MessageEvent, Parser};
//!
//! // Encode once; the `Bytes` can be cloned cheaply to every subscriber.
//! let frame = Event::new()
//!     .event("greeting")?
//!     .id("1")?
//!     .retry(Duration::from_secs(3))
//!     .data("hello\nworld")
//!     .encode();
//! assert_eq!(
//!     &frame[..],
//!     b"event: greeting\nid: 1\nretry: 3000\ndata: hello\ndata: world\n\n"
//! );
//!
//! // Parse it back, here fed in two arbitrary pieces.
//! let mut parser = Parser::new();
//! parser.feed(&frame[..10]);
//! parser.feed(&frame[10..]);
//! assert_eq!(parser.next_frame(), Some(Frame::Retry(3000)));
//! assert_eq!(
//!     parser.next_frame(),
//!     Some(Frame::Event(MessageEvent {
//!         event_type: "greeting".into(),
//!         data: "hello\nworld".into(),
//!         last_event_id: "1".into(),
//!     }))
//! );
//! assert_eq!(parser.next_frame(), None);
//! assert_eq!(parser.last_event_id(), "1");
//!
//! // Bytes that are not a message are lines that end no frame (no blank line): several
//! // popular clients dispatch a message at every blank line (see `encode`).
//! assert_eq!(&ssehub_codec::comment_line("ping")[..], b":ping\n");
//! assert_eq!(&ssehub_codec::retry_line(Duration::from_secs(3))[..], b"retry: 3000\n");
//! # Ok::<(), ssehub_codec::EncodeError>(())
//! ```
//!
//! Encoding a frame and parsing it gives back the same event, with one deliberate loss: line
//! ends inside data (CRLF, CR or LF) all come back as LF, as the format has no way to tell
//! them apart.

#![deny(missing_docs)]

pub mod encode;
pub mod parse;

pub use encode::{EncodeError, Event, comment_line, retry_line, validate_event_name, validate_id};
pub use parse::{Frame, MessageEvent, Parser, parse_all};
