//! The Eventline domain: what an event is, how input becomes a valid event, what a query
//! asks for, and the table of error codes every layer answers with.
//!
//! This crate does no IO: no files, no sockets, no clock. Callers pass the time in.

pub mod access;
pub mod batch;
pub mod commit;
pub mod content_filter;
pub mod content_leaves;
pub mod cursor;
pub mod error_chain;
pub mod event;
pub mod json_path;
pub mod limits;
pub mod param;
pub mod problem;
pub mod properties;
pub mod query;
pub mod scope;
pub mod stats;
pub mod stream;
pub mod timestamp;
