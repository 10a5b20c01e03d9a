//! A Kafka-protocol proxy in front of a broker: it forwards each client connection request by
//! request, counts the requests of each API key, and can swallow ListOffsets requests (never
//! answered, as a broker whose partition leader is down leaves them waiting). Put in front of
//! tansu with `Tansu::start_behind`, which names the proxy as the broker's address, so every
//! connection after the bootstrap goes through it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::helpers::serve_each;
use crate::tansu::Tansu;

/// Kafka's API key of ListOffsets (watermark requests).
pub(crate) const LIST_OFFSETS: i16 = 2;
/// Kafka's API key of JoinGroup (a consumer joining its group).
pub(crate) const JOIN_GROUP: i16 = 11;

/// The API keys counted (Kafka's are below this).
const KEYS: usize = 128;

/// What the proxy has seen; `swallow` set, ListOffsets requests are never answered.
pub(crate) struct Seen {
    pub(crate) swallow: AtomicBool,
    pub(crate) swallowed: AtomicU64,
    counts: Vec<AtomicU64>,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            swallow: AtomicBool::new(false),
            swallowed: AtomicU64::new(0),
            counts: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Seen {
    /// How many requests of API key `key` clients have sent so far.
    pub(crate) fn count(&self, key: i16) -> u64 {
        self.counts[key as usize].load(Ordering::SeqCst)
    }
}

/// Starts a proxy to `upstream` on a port of its own; returns the port.
pub(crate) fn start(upstream: String, seen: Arc<Seen>) -> u16 {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = proxy.local_addr().unwrap().port();
    serve_each(proxy, move |client| relay(client, &upstream, &seen));
    port
}

/// A tansu broker behind a proxy (see the top of this file); what the proxy sees; and the
/// proxy's address for clients to bootstrap from. None without tansu.
pub(crate) fn tansu_behind() -> Option<(Tansu, Arc<Seen>, String)> {
    let seen = Arc::new(Seen::default());
    let mut port = 0;
    let broker = Tansu::start_behind(|upstream| {
        port = start(upstream, seen.clone());
        Some(port)
    })?;
    Some((broker, seen, format!("127.0.0.1:{port}")))
}

/// Forwards one client connection to `upstream`, request by request (4-byte size, then the
/// request, whose first two bytes are its API key); answers flow back untouched.
fn relay(mut client: TcpStream, upstream: &str, seen: &Seen) {
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(mut back_from), Ok(mut back_to)) = (up.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(Shutdown::Both);
    });
    loop {
        let mut size = [0u8; 4];
        if client.read_exact(&mut size).is_err() {
            break;
        }
        let mut request = vec![0u8; u32::from_be_bytes(size) as usize];
        if request.len() < 2 || client.read_exact(&mut request).is_err() {
            break;
        }
        let key = i16::from_be_bytes([request[0], request[1]]);
        if let Some(c) = usize::try_from(key).ok().and_then(|k| seen.counts.get(k)) {
            c.fetch_add(1, Ordering::SeqCst);
        }
        if key == LIST_OFFSETS && seen.swallow.load(Ordering::SeqCst) {
            seen.swallowed.fetch_add(1, Ordering::SeqCst);
            continue; // never answered
        }
        if up.write_all(&size).is_err() || up.write_all(&request).is_err() {
            break;
        }
    }
    let _ = up.shutdown(Shutdown::Both);
}
