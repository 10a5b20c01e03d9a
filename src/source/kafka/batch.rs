//! Messages in batches. `BaseConsumer::poll` hands out one message per call, and each call
//! costs librdkafka a queue lock, three or four clock reads and an event, and rdkafka an
//! allocation: about 0.2 CPU-s per million messages, a fifth of what a bare consumer spends.
//! Here each partition's fetch queue is forwarded, before the partition is assigned, to a
//! queue of the source's own, read with `rd_kafka_consume_batch_queue`.
//!
//! Only fetched messages and per-partition errors (such as an offset out of range) take that
//! way. Rebalances, client errors and commit results stay on the consumer queue, which `poll`
//! still serves (without waiting) before each batch. That is what makes batches safe beside
//! rebalances: rdkafka takes rebalances as events, with no callback set in librdkafka, and a
//! batch read of the consumer queue would meet one and unassign every partition.
//!
//! A partition's messages never split between the two queues (which would reorder them): its
//! forwarding is set before each assignment, and once set by the application librdkafka never
//! forwards the partition to the consumer queue. Stopping a partition's fetcher (unassigning
//! it) clears the forwarding, though: a group member forwards again in its rebalance callback
//! (librdkafka finishes the stops before the next assignment); a static run, which assigns
//! again after a rewind, forwards again until the partition's first message arrives (see
//! `read::forward_again`); forwarding moves what waits in the partition's own queue across,
//! in order. A batch is read whole before anything else happens, so no message read before a
//! seek or a rebalance is taken after it; librdkafka drops the ones of older fetch versions.
//!
//! Messages of both ways are read by `Msg`, from librdkafka's message directly. rdkafka's own
//! accessor panics on a header name that is not UTF-8, which any producer can send: one such
//! message stopped its partition for good (each restart read it again). Names are read
//! lossily here, as header values already were.
//!
//! The only `unsafe` of the Kafka source is here, behind safe types: a `FetchQueue` owns its
//! queue, a `Batch` owns its messages and destroys them when dropped, and a `Msg` borrows from
//! a batch or from a polled message.

use std::borrow::Cow;
use std::ffi::{c_char, c_void, CStr, CString};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka_sys as rd;

/// The most messages one batch takes.
pub(super) const MAX_BATCH: usize = 512;

/// The source's own queue, to which assigned partitions' fetch queues are forwarded.
pub(super) struct FetchQueue {
    queue: *mut rd::rd_kafka_queue_t,
    /// The consumer queue (a handle of its own), to see whether events wait there.
    events: *mut rd::rd_kafka_queue_t,
    slots: Vec<*mut rd::rd_kafka_message_t>,
}

// librdkafka's queues are thread-safe; the source (and this queue) moves to its reader thread.
unsafe impl Send for FetchQueue {}

impl FetchQueue {
    /// A new queue of `consumer`'s client. It must be dropped before the consumer is.
    pub fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<FetchQueue> {
        let rk = consumer.client().native_ptr();
        // SAFETY: the client pointer is valid while `consumer` lives; each handle made here is
        // destroyed once, in `drop`.
        let (queue, events) = unsafe {
            (
                rd::rd_kafka_queue_new(rk),
                rd::rd_kafka_queue_get_consumer(rk),
            )
        };
        if queue.is_null() || events.is_null() {
            // SAFETY: as above, for whichever was made.
            unsafe {
                for q in [queue, events].into_iter().filter(|q| !q.is_null()) {
                    rd::rd_kafka_queue_destroy(q);
                }
            }
            return None;
        }
        Some(FetchQueue {
            queue,
            events,
            slots: vec![std::ptr::null_mut(); MAX_BATCH],
        })
    }

    /// The items (messages, errors) waiting in the fetch queue.
    pub fn waiting(&self) -> u64 {
        // SAFETY: the handle is live while `self` is.
        unsafe { rd::rd_kafka_queue_length(self.queue) as u64 }
    }

    /// Whether events wait on the consumer queue.
    pub fn events_waiting(&self) -> bool {
        // SAFETY: the handle is live while `self` is.
        unsafe { rd::rd_kafka_queue_length(self.events) > 0 }
    }

    /// A handle that forwards partitions to this queue (for the rebalance callback).
    pub fn forwarder(&self) -> Forwarder {
        Forwarder { queue: self.queue }
    }

    /// Up to `max` messages (at least one), waiting at most `wait` for the first.
    pub fn batch(&mut self, max: usize, wait: Duration) -> Batch<'_> {
        let max = max.clamp(1, self.slots.len());
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: the queue is live (dropped only with `self`) and `slots` has room for `max`.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue, ms, self.slots.as_mut_ptr(), max)
        };
        Batch {
            msgs: &self.slots[..n.max(0) as usize],
        }
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: made in `new` and destroyed once; the client is still live (the source
        // drops this queue before its consumer).
        unsafe {
            rd::rd_kafka_queue_destroy(self.queue);
            rd::rd_kafka_queue_destroy(self.events);
        }
    }
}

/// Forwards partitions to a `FetchQueue`. Valid while the queue lives: the source clears
/// every copy before the queue is dropped.
#[derive(Clone, Copy)]
pub(super) struct Forwarder {
    queue: *mut rd::rd_kafka_queue_t,
}

// Used only on the source's thread (inside its poll); see `FetchQueue`.
unsafe impl Send for Forwarder {}

impl Forwarder {
    /// Sends the partition's fetched messages to the queue from now on. Returns false when
    /// librdkafka has no queue for it (they then come through the consumer queue, all of
    /// them, since nothing was forwarded).
    pub fn take<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> bool {
        let Ok(topic) = CString::new(topic) else {
            return false;
        };
        // SAFETY: the client and `self.queue` are live (see the type's note); the partition
        // queue handle is released right after forwarding, which librdkafka keeps.
        unsafe {
            let pq = rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            );
            if pq.is_null() {
                return false;
            }
            rd::rd_kafka_queue_forward(pq, self.queue);
            rd::rd_kafka_queue_destroy(pq);
        }
        true
    }
}

/// The partition's high watermark as librdkafka last heard it (from fetches), without a
/// request; None when unknown.
pub(super) fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client is live while `consumer` is; librdkafka writes the two integers.
    let err = unsafe {
        rd::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// The messages of one read; destroyed when dropped.
pub(super) struct Batch<'q> {
    msgs: &'q [*mut rd::rd_kafka_message_t],
}

impl Batch<'_> {
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// The batch's messages in queue order: a message, or a partition's error (whose topic and
    /// partition the `Msg` names).
    pub fn iter(&self) -> impl Iterator<Item = Result<Msg<'_>, (RDKafkaErrorCode, Msg<'_>)>> {
        self.msgs.iter().map(|&m| {
            // SAFETY: every slot up to `len` holds a message librdkafka handed out, which
            // stays valid until this batch destroys it.
            let msg = unsafe { &*m };
            if msg.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                Ok(Msg { msg })
            } else {
                Err((msg.err.into(), Msg { msg }))
            }
        })
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        for &m in self.msgs {
            // SAFETY: each message is destroyed once, here, and no view outlives the batch.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

/// A message header: its name (read lossily) and value.
pub(super) type Header<'m> = (Cow<'m, str>, Option<&'m [u8]>);

/// One message, of a batch or polled.
pub(super) struct Msg<'b> {
    msg: &'b rd::rd_kafka_message_t,
}

impl<'b> Msg<'b> {
    /// A message `poll` handed out.
    pub fn of(polled: &'b BorrowedMessage<'_>) -> Msg<'b> {
        // SAFETY: a borrowed message points to a live librdkafka message for as long as it
        // lives, and this view borrows it.
        Msg {
            msg: unsafe { &*(polled.ptr() as *const rd::rd_kafka_message_t) },
        }
    }
}

/// The bytes at `ptr`, or None for a null pointer.
///
/// SAFETY: `ptr` must be null or point to `len` bytes that live as long as `'a`.
unsafe fn bytes<'a>(ptr: *const c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        None
    } else {
        Some(std::slice::from_raw_parts(ptr as *const u8, len))
    }
}

impl Msg<'_> {
    pub fn topic(&self) -> Option<&str> {
        if self.msg.rkt.is_null() {
            return None;
        }
        // SAFETY: the topic handle is live as long as the message, and so is its name.
        unsafe {
            let name = rd::rd_kafka_topic_name(self.msg.rkt);
            (!name.is_null()).then(|| CStr::from_ptr(name).to_str().ok())?
        }
    }

    pub fn partition(&self) -> i32 {
        self.msg.partition
    }

    pub fn offset(&self) -> i64 {
        self.msg.offset
    }

    pub fn payload(&self) -> Option<&[u8]> {
        // SAFETY: payload and len describe the message's value, valid while it lives.
        unsafe { bytes(self.msg.payload, self.msg.len) }
    }

    pub fn key(&self) -> Option<&[u8]> {
        // SAFETY: as for the payload.
        unsafe { bytes(self.msg.key, self.msg.key_len) }
    }

    pub fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live; librdkafka only reads it.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.msg, &mut kind) };
        (ts != -1 && kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
            .then_some(ts)
    }

    /// The headers in order, names read lossily; None when the message has none.
    pub fn headers(&self) -> Option<Vec<Header<'_>>> {
        let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: the message is live; the headers it returns live as long as it does.
        unsafe {
            let err = rd::rd_kafka_message_headers(self.msg, &mut hdrs);
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
                return None;
            }
            let n = rd::rd_kafka_header_cnt(hdrs);
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let mut name: *const c_char = std::ptr::null();
                let mut value: *const c_void = std::ptr::null();
                let mut size = 0usize;
                let err = rd::rd_kafka_header_get_all(hdrs, i, &mut name, &mut value, &mut size);
                if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                    continue; // only past the last header
                }
                out.push((CStr::from_ptr(name).to_string_lossy(), bytes(value, size)));
            }
            Some(out)
        }
    }
}
