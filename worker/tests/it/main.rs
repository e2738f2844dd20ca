//! Integration tests of the worker engine, one binary (`autotests = false`).
//!
//! - [`server`]: a scripted hostile HTTP/1.1 target on `127.0.0.1:0`.
//! - [`drive`]: running an [`barrage_worker::runner::Engine`] without a master.
//! - [`hostile`]: each way a target can misbehave, and the failure kind it becomes.
//! - [`memory`]: 1,000 concurrent hostile streams from one engine stay within a memory bound.
//! - [`keepalive`]: connections the server ends (idle timeouts, TLS `close_notify`, a
//!   close racing a request, failed but clean streams) never count as target failures.
//! - [`timings`]: where a stream's clocks start and stop.
//! - [`open_model`]: a burst of arrivals, each with a user of its own, within the cap.
//! - [`random_target`]: a target answering at random (statuses, Dify event sequences, errors
//!   up to 1 MB, any event names, resets): our outcomes sum to what it served, within bounds.
//! - [`resolve`]: target hosts looked up once and on the refresh interval, never per connection.

mod drive;
mod hostile;
mod keepalive;
mod memory;
mod open_model;
mod random_target;
mod resolve;
mod server;
mod timings;
