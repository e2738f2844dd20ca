//! Integration tests: a real mock on 127.0.0.1:0, a real hyper client, and the mock's
//! ground truth checked against what each test sent and received.

mod api;
mod chat;
mod faults;
mod limits;
mod stop;
mod support;
mod truth;
mod workflow;
