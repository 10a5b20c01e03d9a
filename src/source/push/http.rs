//! `POST /v1/repos/{repo}/data`: one request's records (JSON lines, or CSV/TSV/text lines per
//! the repo's input kind; `Content-Encoding: gzip` accepted) are decoded against the repo
//! schema, then appended to the repo's log all or nothing.
//!
//! Answers, each with a JSON body: 200 `{accepted, dead_letters, first_offset, next_offset}`
//! once the records are durable per the repo's durability; 503 with `Retry-After` when the
//! repo has no room, too many requests are in progress, or their bodies hold the memory
//! budget (nothing of the request entered; a body is reserved as it arrives, and a request
//! slot taken once it is in);
//! 413 for a body over `max_body` (compressed or not); 408 for a body that did not arrive
//! within `body_timeout` (its request slot is freed); 400 for a body that is empty or not
//! valid gzip or ends inside a quoted CSV field; 500 when the log failed (the task stops).
//! A 500 or a dropped connection leaves the outcome unknown: the records may have been
//! appended (a retry can duplicate them).

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::limits::{kib, PushLimits};
use super::{Intake, Refusal};
use crate::decode::framing::last_record_boundary;
use crate::decode::{Chunk, RecordDecoder};
use crate::metrics::Metrics;

/// What the push route needs of one repo.
pub struct PushApi {
    pub intake: Arc<Intake>,
    pub metrics: Arc<Metrics>,
    pub max_body: usize,
    /// The longest a body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// CSV's delimiter: the input kind's records may span lines (quoted CSV).
    quote: Option<u8>,
    /// A text input's delimiter: a line of it and whitespace is a record.
    text_delimiter: Option<Vec<u8>>,
    /// The schema's `unknown_fields` is `error`: such a request is refused whole (400).
    reject_unknown: bool,
    /// The repo's `on_error` is `fail`: a request with a row a stage fails on is refused (400).
    reject_stage_failures: bool,
    /// The repo's request slots and memory budget (shared with its other tasks' routes).
    limits: Arc<PushLimits>,
    decoder: Mutex<RecordDecoder>,
    /// Decoders reused across requests.
    pool: Mutex<Vec<RecordDecoder>>,
}

impl PushApi {
    pub fn new(
        intake: Arc<Intake>,
        decoder: RecordDecoder,
        metrics: Arc<Metrics>,
        max_body: usize,
        body_timeout: std::time::Duration,
        limits: Arc<PushLimits>,
    ) -> PushApi {
        PushApi {
            intake,
            metrics,
            max_body,
            body_timeout,
            quote: decoder.kind().quoting(),
            text_delimiter: decoder.kind().text_delimiter().map(<[u8]>::to_vec),
            reject_unknown: decoder.schema().unknown_fields == crate::schema::UnknownFields::Error,
            reject_stage_failures: decoder
                .stages()
                .is_some_and(|s| s.on_error == crate::stage::OnError::Fail),
            limits,
            decoder: Mutex::new(decoder),
            pool: Mutex::new(Vec::new()),
        }
    }
}

/// How many times its decompressed size a request may hold while it is decoded: the text, the
/// decoder's working data and the decoded batches.
const DECODE_FACTOR: u64 = 3;

impl PushApi {
    /// Reserves `bytes` of `max_in_flight` for a request, or None when they are not free now.
    fn reserve(&self, bytes: u64) -> Option<Reservation> {
        let permit = self
            .limits
            .budget
            .clone()
            .try_acquire_many_owned(kib(bytes))
            .ok()?;
        let bytes = permit.num_permits() as i64 * 1024;
        self.metrics.push_in_flight(bytes);
        Some(Reservation {
            _permit: permit,
            bytes,
            metrics: self.metrics.clone(),
        })
    }
}

/// A share of `max_in_flight`, given back (and the gauge lowered) when dropped.
struct Reservation {
    _permit: tokio::sync::OwnedSemaphorePermit,
    bytes: i64,
    metrics: Arc<Metrics>,
}

impl Reservation {
    /// Grows this reservation to at least `bytes` in all, or false when `max_in_flight` has
    /// not that much more free now.
    fn grow_to(&mut self, api: &PushApi, bytes: u64) -> bool {
        let have = self.bytes as u64;
        if bytes <= have {
            return true;
        }
        let Ok(more) = api
            .limits
            .budget
            .clone()
            .try_acquire_many_owned(kib(bytes - have))
        else {
            return false;
        };
        let added = more.num_permits() as i64 * 1024;
        self._permit.merge(more);
        self.bytes += added;
        api.metrics.push_in_flight(added);
        true
    }
}

impl Reservation {
    /// Makes this reservation `bytes` in all: grown when `max_in_flight` has that much more
    /// free now (false when not), else what it holds past them given back.
    fn resize_to(&mut self, api: &PushApi, bytes: u64) -> bool {
        let want = i64::from(kib(bytes)) * 1024;
        if want > self.bytes {
            return self.grow_to(api, bytes);
        }
        let surplus = ((self.bytes - want) / 1024) as usize;
        if let Some(back) = self._permit.split(surplus).filter(|_| surplus > 0) {
            let freed = back.num_permits() as i64 * 1024;
            drop(back);
            self.bytes -= freed;
            api.metrics.push_in_flight(-freed);
        }
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.metrics.push_in_flight(-self.bytes);
    }
}

fn no_memory(api: &PushApi) -> Response {
    answer(
        api,
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "error": "the requests in progress hold the push memory budget (source.max_in_flight); retry later" }),
    )
}

fn answer(api: &PushApi, status: StatusCode, body: serde_json::Value) -> Response {
    api.metrics.pushed(status.as_u16(), 0);
    let mut r = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

/// Handles one push request (the caller checked the route's token and repo).
pub async fn push(api: Arc<PushApi>, headers: HeaderMap, body: Body) -> Response {
    let too_large = || json!({ "error": format!("the body is larger than the limit of {} bytes (source.max_body)", api.max_body) });
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > api.max_body as u64) {
        return answer(&api, StatusCode::PAYLOAD_TOO_LARGE, too_large());
    }
    // The server reads only the chunked transfer coding; a body under another (`gzip,
    // chunked`) reached the decoder still coded: each line a dead letter of bytes. Chunked
    // once: the server takes one layer off, and a body chunked twice (`chunked, chunked`, or
    // two such headers) was taken with its inner framing as records.
    let mut chunked = 0;
    for te in headers.get_all(header::TRANSFER_ENCODING) {
        let te = te.to_str().unwrap_or("?").to_ascii_lowercase();
        // Empty list items count for nothing (`, chunked` is chunked once).
        let codings = || te.split(',').map(str::trim).filter(|c| !c.is_empty());
        if codings().any(|c| c != "chunked") {
            return answer(
                &api,
                StatusCode::NOT_IMPLEMENTED,
                json!({ "error": format!("Transfer-Encoding `{te}` is not supported (chunked only; send gzip as Content-Encoding: gzip)") }),
            );
        }
        chunked += codings().count();
    }
    if chunked > 1 {
        return answer(
            &api,
            StatusCode::BAD_REQUEST,
            json!({ "error": "the body is chunked more than once (Transfer-Encoding names chunked once)" }),
        );
    }
    // Every Content-Encoding header, as one list of codings (a second header is a second
    // coding, not one to pass over: `identity` then `gzip` was read as text, every line a
    // dead letter); empty items and `identity` change nothing, `x-gzip` is gzip.
    let mut codings: Vec<String> = Vec::new();
    for v in headers.get_all(header::CONTENT_ENCODING) {
        for c in v.to_str().unwrap_or("?").split(',') {
            match c.trim().to_ascii_lowercase().as_str() {
                "" | "identity" => {}
                "x-gzip" => codings.push("gzip".into()),
                c => codings.push(c.to_string()),
            }
        }
    }
    let gzip = match codings.as_slice() {
        [] => false,
        [one] if one == "gzip" => true,
        _ => {
            let e = codings.join(", ");
            return answer(
                &api,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({ "error": format!("Content-Encoding `{e}` is not supported (gzip once, or none)") }),
            );
        }
    };
    // Refused before the body is sent where it would be refused after (a client that asked
    // `Expect: 100-continue` sends nothing): no slot free now, or no room for what it declares.
    let busy = || {
        answer(
            &api,
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "too many push requests in progress; retry later" }),
        )
    };
    if api.limits.permits.available_permits() == 0 {
        return busy();
    }
    if declared.is_some_and(|n| kib(n) as usize > api.limits.budget.available_permits()) {
        return no_memory(&api);
    }
    // The body is reserved as it arrives, and the request slot taken once it is in: a body
    // sent slowly (on purpose or not) holds what it sent, not `max_body` of the budget and a
    // slot of `max_concurrent` for up to `body_timeout` (16 of them made every other push
    // 503 meanwhile).
    let Some(mut held) = api.reserve(0) else {
        return no_memory(&api);
    };
    let limit = api.max_body;
    let grow = |bytes: usize| held.grow_to(&api, bytes as u64);
    let read = tokio::time::timeout(api.body_timeout, read_body(body, declared, limit, grow));
    let bytes = match read.await {
        Err(_) => {
            return answer(
                &api,
                StatusCode::REQUEST_TIMEOUT,
                json!({ "error": format!("the body did not arrive within {:?} (source.body_timeout)", api.body_timeout) }),
            )
        }
        Ok(Ok(b)) => b,
        Ok(Err(BodyError::TooLarge)) => {
            return answer(&api, StatusCode::PAYLOAD_TOO_LARGE, too_large())
        }
        Ok(Err(BodyError::Read(e))) => {
            return answer(
                &api,
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("reading the body: {e}") }),
            )
        }
        Ok(Err(BodyError::NoMemory)) => return no_memory(&api),
    };
    let Ok(permit) = api.limits.permits.clone().try_acquire_owned() else {
        return busy();
    };
    let worker = api.clone();
    // The permit goes with the work: a client that disconnects does not free it while its
    // request is still being decoded and appended.
    let work = move || {
        let _permit = permit;
        take(&worker, bytes, gzip, held)
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(e) => answer(
            &api,
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": format!("the request failed: {e}") }),
        ),
    }
}

/// Why a body could not be read.
enum BodyError {
    /// It is larger than `max_body`.
    TooLarge,
    /// `max_in_flight` has no room for more of it now.
    NoMemory,
    Read(axum::Error),
}

/// Reads a request body into one buffer of at most `limit` bytes (its declared length, when
/// less), frame by frame: each frame is copied in and dropped. Collecting the frames first
/// (axum's `to_bytes`) kept each one, and a chunked body sent one byte a chunk held about 40
/// bytes for each of its bytes (a handle per chunk, and the read buffers they share) until
/// the last one arrived. The buffer grows by doubling, each size reserved first (`reserve`:
/// false when the budget has no room).
async fn read_body(
    body: axum::body::Body,
    declared: Option<u64>,
    limit: usize,
    mut reserve: impl FnMut(usize) -> bool,
) -> Result<bytes::Bytes, BodyError> {
    use http_body_util::BodyExt;
    let mut body = body;
    // A body that sends more than it declared is cut off by the server.
    let most = declared.map_or(limit, |n| n.min(limit as u64) as usize);
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue; // trailers
        };
        let need = out.len() + data.len();
        if need > limit {
            return Err(BodyError::TooLarge);
        }
        if need > out.capacity() {
            // Doubling from 64 KiB, but never past what the body may hold.
            let grow = need
                .max(out.capacity() * 2)
                .max(64 << 10)
                .min(most.max(need));
            if !reserve(grow) {
                return Err(BodyError::NoMemory);
            }
            out.reserve_exact(grow - out.len());
        }
        out.extend_from_slice(&data);
    }
    Ok(bytes::Bytes::from(out))
}

/// Decompresses gzip `bytes` (one member or several) into `out`, at most `limit` bytes. The
/// buffer grows by doubling up to `limit`, never past it: `read_to_end` doubled a full one,
/// so a body of `max_body` held twice the `max_body` its reservation counts.
fn gunzip_within(bytes: &[u8], limit: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut r = flate2::read::MultiGzDecoder::new(bytes);
    // `out[..filled]` is the text; the rest of `out` zeroed room, each byte zeroed once.
    let mut filled = out.len();
    let done = loop {
        if filled == limit {
            break Ok(());
        }
        if filled == out.len() {
            let more = out.len().max(64 << 10).min(limit - filled);
            out.reserve_exact(more);
            out.resize(filled + more, 0);
        }
        match r.read(&mut out[filled..]) {
            Ok(0) => break Ok(()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    out.truncate(filled);
    done
}

/// Decodes and appends one body (on a blocking thread: decoding and fsync take time). `body`
/// is the body's reservation, resized to the decoding's once the text is known.
fn take(api: &PushApi, bytes: bytes::Bytes, gzip: bool, mut body: Reservation) -> Response {
    // The decompressed text, up to `max_body`, beside the body.
    if gzip && !body.grow_to(api, body.bytes as u64 + api.max_body as u64 + 1) {
        return no_memory(api);
    }
    let mut data = if gzip {
        let mut out = Vec::new();
        let decompressed = gunzip_within(&bytes, api.max_body + 1, &mut out);
        drop(bytes);
        match decompressed {
            Ok(_) if out.len() > api.max_body => {
                return answer(
                    api,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({ "error": format!("the body decompresses to more than the limit of {} bytes (source.max_body)", api.max_body) }),
                )
            }
            Ok(_) => out,
            Err(e) => {
                return answer(
                    api,
                    StatusCode::BAD_REQUEST,
                    json!({ "error": format!("the body is not valid gzip: {e}") }),
                )
            }
        }
    } else {
        Vec::from(bytes)
    };
    // A UTF-8 byte order mark is not data, as at a file's start (it began the first value).
    if data.starts_with(crate::input::BOM) {
        data.drain(..crate::input::BOM.len());
    }
    // Blank as framing reads it: in CSV and TSV only line ends (a line of tabs is a row), in
    // text split on a delimiter whitespace without it.
    let blank = data.split(|b| *b == b'\n').all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        crate::decode::framing::blank(line, api.quote, api.text_delimiter.as_deref())
    });
    if blank {
        return answer(
            api,
            StatusCode::BAD_REQUEST,
            json!({ "error": "the body holds no records" }),
        );
    }
    if data.last() != Some(&b'\n') {
        // One byte more, not twice the body (a push doubles a full buffer).
        data.reserve_exact(1);
        data.push(b'\n');
    }
    // Records must not run from one request into the next (a replay reads several at once).
    if last_record_boundary(&data, api.quote) != Some(data.len()) {
        return answer(
            api,
            StatusCode::BAD_REQUEST,
            json!({ "error": "the body ends inside a quoted field: every record must be complete" }),
        );
    }
    // Refused now, refused after decoding: skip the work.
    if let Err(r) = api.intake.check(data.len() as u64) {
        return refused(api, r);
    }
    // Decoding holds the text, the decoder's working data and the batches at once; or, for
    // bad records, the text, their copies and each one's fixed cost (a dead letter's reason
    // and bookkeeping): the body's reservation is resized to that (the compressed body is
    // gone by now), never let go meanwhile (given back, then taken again, the text and the
    // passes over it were held outside the budget while other bodies took its room). A 2 KB
    // gzip body of a million 2-byte bad lines took about 200 MB.
    let lines = memchr::memchr_iter(b'\n', &data).count() as u64;
    // Where the schema has a list or a map, an item costs its element's width whatever its
    // text (`{}` of a wide struct: hundreds of bytes): measured, not assumed.
    let mut decoder = api
        .pool
        .lock()
        .expect("decoder pool")
        .pop()
        .unwrap_or_else(|| api.decoder.lock().expect("decoder").clone());
    let beyond = decoder.decoded_beyond_text(&data, lines);
    let len = data.len() as u64;
    // And the room the text's buffer holds past it (grown by doubling, from 64 KiB).
    let spare = (data.capacity() - data.len()) as u64;
    let need = (DECODE_FACTOR * len).max(2 * len + beyond) + spare;
    let give_back = |d| api.pool.lock().expect("decoder pool").push(d);
    if need > api.limits.max_in_flight {
        give_back(decoder);
        return answer(
            api,
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "error": if lines > 1 {
                format!(
                    "the body holds {lines} lines: decoded, they need {need} bytes, more than \
                     source.max_in_flight ({}) allows one request; send fewer records per request",
                    api.limits.max_in_flight
                )
            } else {
                format!(
                    "the body's record would need {need} bytes decoded (its list items and map \
                     entries, each as wide as its element type), more than source.max_in_flight \
                     ({}) allows one request",
                    api.limits.max_in_flight
                )
            } }),
        );
    }
    if !body.resize_to(api, need) {
        give_back(decoder);
        return no_memory(api);
    }
    let chunk = Chunk {
        data,
        first_line: 1,
        ..Chunk::default()
    };
    let pieces = super::pieces::decode_in_pieces(&mut decoder, &chunk, lines);
    give_back(decoder);
    // What the answer reports, over the pieces in order.
    let rows: u64 = pieces.iter().map(|(_, d)| d.rows()).sum();
    let all_dead = || pieces.iter().flat_map(|(_, d)| d.dead.iter());
    // Records the task would stop on are refused here instead (400), so they never reach the
    // log (a WAL would replay them at every start).
    if api.reject_stage_failures {
        if let Some(d) = all_dead().find(|d| d.class() == "stage") {
            return answer(
                api,
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("line {}: {}", d.position.line, d.reason), "on_error": "fail" }),
            );
        }
    }
    if api.reject_unknown {
        if let Some(d) = all_dead().find(|d| d.class() == "unknown") {
            return answer(
                api,
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("line {}: {}", d.position.line, d.reason.split(" (").next().unwrap_or(&d.reason)), "unknown_fields": "error" }),
            );
        }
    }
    let dead = all_dead().count();
    let first_dead = all_dead()
        .next()
        .map(|d| json!({ "line": d.position.line, "reason": d.reason }));
    match api.intake.append_pieces(chunk.data, pieces) {
        Ok((first, next)) => {
            api.metrics.pushed(200, rows);
            let mut body = json!({
                "accepted": rows,
                "dead_letters": dead,
                "first_offset": first,
                "next_offset": next,
            });
            if let Some(d) = first_dead {
                body["first_dead_letter"] = d;
            }
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(r) => refused(api, r),
    }
}

fn refused(api: &PushApi, r: Refusal) -> Response {
    let status = match r {
        Refusal::Full { .. } | Refusal::NotRunning | Refusal::DiskFull(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Refusal::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    answer(api, status, json!({ "error": r.to_string() }))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::gunzip_within;

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    }

    /// The buffer holds the text, and never more than the limit: a body of the limit's size
    /// took twice its room before (`read_to_end` doubles a full buffer).
    #[test]
    fn a_gzip_body_is_held_within_its_limit() {
        let limit = 3 << 20;
        for len in [0, 1, 100_000, limit - 1, limit, limit + 5000] {
            let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut out = Vec::new();
            gunzip_within(&gzip(&text), limit, &mut out).unwrap();
            assert_eq!(out.len(), len.min(limit));
            assert_eq!(&out[..], &text[..len.min(limit)]);
            assert!(out.capacity() <= limit, "{len}: {}", out.capacity());
        }
        // Two members read as one text; a damaged member is an error.
        let mut two = gzip(b"a\n");
        two.extend(gzip(b"b\n"));
        let mut out = Vec::new();
        gunzip_within(&two, limit, &mut out).unwrap();
        assert_eq!(out, b"a\nb\n");
        let mut cut = gzip(&vec![b'x'; 100_000]);
        cut.truncate(cut.len() / 2);
        assert!(gunzip_within(&cut, limit, &mut Vec::new()).is_err());
    }
}
