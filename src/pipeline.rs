//! The decode pipeline shared by `convert` and the export task: one producer thread fills
//! chunks of whole records, N decoder threads turn them into batches in parallel, and the
//! calling thread receives the results in production order.
//!
//! A fixed number of chunk permits bounds what is in flight (memory stays flat whatever the
//! input size) and chunk buffers are recycled. Either side stopping early stops the others.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::decode::{Chunk, Decoded, RecordDecoder};

/// What the producer says about a chunk it was asked to fill.
pub enum Produced<T> {
    /// The chunk holds records; `T` travels with it to the consumer.
    Chunk(T),
    /// Nothing now; ask again (the producer waited as long as it wanted).
    Idle,
    /// No more input.
    End,
}

/// Runs the pipeline until the producer ends or either side fails.
///
/// `produce` fills the given chunk (its buffer is reused); `consume` gets each tag, chunk and
/// decoded result in production order. To stop early, make `produce` return `End` (what is in
/// flight is still consumed) or `consume` return an error (the rest is dropped).
pub fn run<T, E, P, C>(
    decoder: &RecordDecoder,
    threads: usize,
    mut produce: P,
    mut consume: C,
) -> Result<(), E>
where
    T: Send,
    E: Send,
    P: FnMut(&mut Chunk) -> Result<Produced<T>, E> + Send,
    C: FnMut(T, &Chunk, Decoded) -> Result<(), E>,
{
    let threads = threads.max(1);
    let permits = 2 * threads + 2;
    let (work_tx, work_rx) = bounded::<(u64, T, Chunk)>(permits);
    let (done_tx, done_rx) = bounded::<Result<(u64, T, Chunk, Decoded), E>>(permits);
    let (free_tx, free_rx) = bounded::<Chunk>(permits);
    for _ in 0..permits {
        free_tx
            .send(Chunk::default())
            .expect("room for every permit");
    }
    let stopped = AtomicBool::new(false);
    // A decoder thread that panicked (outside the decoder's own per-record guard): its chunk
    // never arrives, so the consumer must learn of it instead of waiting for it.
    let decoder_panic: Mutex<Option<Box<dyn Any + Send>>> = Mutex::new(None);
    std::thread::scope(|scope| {
        let decoder_panic = &decoder_panic;
        let reader_done = done_tx.clone();
        let stopped = &stopped;
        // Log lines of these threads carry the caller's span (a repo's, in a job with several).
        let span = tracing::Span::current();
        let reader_span = span.clone();
        std::thread::Builder::new()
            .name("read".into())
            .spawn_scoped(scope, move || {
                reader_span
                    .in_scope(|| produce_loop(&mut produce, stopped, free_rx, work_tx, reader_done))
            })
            .expect("spawn the reader");
        for n in 0..threads {
            let rx = work_rx.clone();
            let tx = done_tx.clone();
            let mut dec = decoder.clone();
            let span = span.clone();
            let decode = move || {
                let _span = span.enter();
                for (seq, tag, mut chunk) in rx {
                    let decoded = match chunk.decoded.take() {
                        Some(d) => d,
                        None => match catch_unwind(AssertUnwindSafe(|| dec.decode(&chunk))) {
                            Ok(d) => d,
                            Err(panic) => {
                                *decoder_panic.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(panic);
                                return;
                            }
                        },
                    };
                    if tx.send(Ok((seq, tag, chunk, decoded))).is_err() {
                        return;
                    }
                }
            };
            std::thread::Builder::new()
                .name(format!("decode-{n}"))
                .spawn_scoped(scope, decode)
                .expect("spawn a decoder");
        }
        drop(work_rx);
        drop(done_tx);
        let result = catch_unwind(AssertUnwindSafe(|| {
            consume_loop(done_rx, free_tx, &mut consume, decoder_panic)
        }));
        // Even when the consumer panicked: the reader must stop, or the scope waits for ever.
        stopped.store(true, Ordering::Release);
        result.unwrap_or_else(|panic| resume_unwind(panic))
    })
}

fn produce_loop<T, E, P>(
    produce: &mut P,
    stopped: &AtomicBool,
    free: Receiver<Chunk>,
    work: Sender<(u64, T, Chunk)>,
    done: Sender<Result<(u64, T, Chunk, Decoded), E>>,
) where
    P: FnMut(&mut Chunk) -> Result<Produced<T>, E>,
{
    let mut seq = 0u64;
    for mut chunk in free.iter() {
        loop {
            match produce(&mut chunk) {
                Ok(Produced::Chunk(tag)) => {
                    if work.send((seq, tag, chunk)).is_err() {
                        return;
                    }
                    seq += 1;
                    break;
                }
                Ok(Produced::Idle) => {
                    if stopped.load(Ordering::Acquire) {
                        return;
                    }
                }
                Ok(Produced::End) => return,
                Err(e) => {
                    let _ = done.send(Err(e));
                    return;
                }
            }
        }
    }
}

fn consume_loop<T, E, C>(
    done: Receiver<Result<(u64, T, Chunk, Decoded), E>>,
    free: Sender<Chunk>,
    consume: &mut C,
    decoder_panic: &Mutex<Option<Box<dyn Any + Send>>>,
) -> Result<(), E>
where
    C: FnMut(T, &Chunk, Decoded) -> Result<(), E>,
{
    let mut pending: BTreeMap<u64, (T, Chunk, Decoded)> = BTreeMap::new();
    let mut next = 0u64;
    loop {
        let item = match done.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(item) => item,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let panic = decoder_panic
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                match panic {
                    Some(p) => resume_unwind(p),
                    None => continue,
                }
            }
        };
        let (seq, tag, chunk, decoded) = item?;
        pending.insert(seq, (tag, chunk, decoded));
        while let Some((tag, chunk, decoded)) = pending.remove(&next) {
            next += 1;
            consume(tag, &chunk, decoded)?;
            // The receiver is gone only when the producer has finished.
            let _ = free.send(chunk);
        }
    }
    // Every decoder is done. One that panicked (its chunk never came) ends the run with its
    // panic, checked here too: within the 100 ms above, the chunks after its chunk were held
    // back unwritten and the run ended as if whole.
    if let Some(p) = decoder_panic
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        resume_unwind(p);
    }
    assert!(
        pending.is_empty(),
        "chunk {next} was never decoded: {} chunk(s) after it were not written",
        pending.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunk 0's decoder panicked (its chunk never comes) and chunk 1 arrived: the run must
    /// not end as if whole. Before, it returned `Ok` with chunk 1 never written whenever the
    /// decoders finished within 100 ms of the panic.
    #[test]
    fn a_chunk_a_decoder_never_gave_fails_the_run() {
        let run = |panicked: bool| {
            let (tx, rx) = bounded(4);
            let (free, _free_rx) = bounded(4);
            tx.send(Ok::<_, ()>((
                1u64,
                (),
                Chunk::default(),
                Decoded::default(),
            )))
            .unwrap();
            drop(tx);
            let decoder_panic: Mutex<Option<Box<dyn Any + Send>>> = Mutex::new(None);
            if panicked {
                *decoder_panic.lock().unwrap() = Some(Box::new("decoder panic"));
            }
            let mut written = 0;
            catch_unwind(AssertUnwindSafe(|| {
                consume_loop(
                    rx,
                    free,
                    &mut |_, _, _| {
                        written += 1;
                        Ok(())
                    },
                    &decoder_panic,
                )
            }))
        };
        let e = run(true).unwrap_err();
        assert_eq!(e.downcast_ref::<&str>(), Some(&"decoder panic"));
        let e = run(false).unwrap_err();
        assert!(e
            .downcast_ref::<String>()
            .unwrap()
            .contains("chunk 0 was never decoded"));
    }
}
