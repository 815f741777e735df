//! The generator's TLS 1.3 ticket store: a pool of the newest tickets, shared by all of its
//! connections, so that a ramp of thousands of connections models thousands of returning
//! clients, each with a ticket of its own.
//!
//! rustls' own in-memory store keeps at most 8 tickets per server name (one browser talking to
//! one origin); one generator with 256 handshakes in flight to one name would then resume only
//! a handful of them and measure full handshakes instead of the resumption the workload asks
//! for. The pool hands out the newest ticket first: a server with a small session cache (rustls'
//! stateful default holds 256) has evicted the oldest ones.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio_rustls::rustls::NamedGroup;
use tokio_rustls::rustls::client::{
    ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use tokio_rustls::rustls::pki_types::ServerName;

/// Up to `capacity` TLS 1.3 tickets (newest first out), the last group the server chose; no
/// TLS 1.2 sessions (the generator speaks TLS 1.3 only). One server name per run, so tickets
/// are not keyed by name.
#[derive(Debug)]
pub(crate) struct TicketPool {
    capacity: usize,
    tickets: Mutex<VecDeque<Tls13ClientSessionValue>>,
    kx_hint: Mutex<Option<NamedGroup>>,
}

impl TicketPool {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tickets: Mutex::new(VecDeque::new()),
            kx_hint: Mutex::new(None),
        }
    }
}

impl ClientSessionStore for TicketPool {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        *self.kx_hint.lock().unwrap_or_else(|e| e.into_inner()) = Some(group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        *self.kx_hint.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        if tickets.len() >= self.capacity {
            tickets.pop_front();
        }
        tickets.push_back(value);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        // Each ticket at most once (TLS 1.3 tickets are single-use), the newest first.
        self.tickets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_back()
    }
}
