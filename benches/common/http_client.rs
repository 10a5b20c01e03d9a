//! A small keep-alive HTTP/1.1 client for push requests, shared by the push tests and the
//! push load generator (`examples/push_load.rs`): no client library adds its own costs to what
//! is measured.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A keep-alive HTTP/1.1 client for pushes.
pub struct Client {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

/// An answer: status, headers (lower-case names), body.
pub type Answer = (u16, HashMap<String, String>, String);

impl Client {
    pub fn new(addr: &str) -> Client {
        Client {
            addr: addr.to_string(),
            conn: None,
        }
    }

    /// POSTs `body`; `Err` when the connection failed (the outcome is unknown).
    pub fn post(&mut self, path: &str, headers: &str, body: &[u8]) -> std::io::Result<Answer> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.conn = Some(BufReader::new(s));
        }
        let r = self.exchange(path, headers, body);
        // A refused request's body may be left unread, and then the server closes the
        // connection: start a new one after anything but a 200.
        if !matches!(r, Ok((200, _, _))) {
            self.conn = None;
        }
        r
    }

    fn exchange(&mut self, path: &str, headers: &str, body: &[u8]) -> std::io::Result<Answer> {
        let conn = self.conn.as_mut().expect("connected");
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        // A server may answer (413) and close before the whole body is sent: read the answer
        // anyway.
        let written = conn.get_mut().write_all(&req);
        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            written?;
        }
        let status: u16 = line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut hdrs = HashMap::new();
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                hdrs.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = hdrs
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut b = vec![0u8; len];
        conn.read_exact(&mut b)?;
        Ok((status, hdrs, String::from_utf8_lossy(&b).into_owned()))
    }
}
