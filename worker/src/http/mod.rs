//! The HTTP/1.1 client side: one keep-alive connection owned by one virtual user.
//!
//! No pool: a user owns its connection like a browser tab would, the pool lookup
//! disappears from the hot path, and "connections opened" is exactly what we count.
//! See [`Conn`] for why the client is our own rather than hyper's.
//!
//! By concept: [`target`] (where to connect), [`conn`] (the connection: connect, send,
//! read), [`socket`] (plain TCP or TLS under it), [`request`] (writing a request),
//! [`head`] (parsing a response head), [`body`] (body framing) and [`failure`] (how a
//! request fails on the wire).

mod body;
mod conn;
mod failure;
mod head;
mod request;
mod socket;
mod target;

pub(crate) use conn::Conn;
pub(crate) use failure::Failure;
pub(crate) use request::Outgoing;
pub(crate) use target::Target;

#[cfg(test)]
mod tests;
