//! The log output: lines are appended to a shared buffer and written out by one thread, at most
//! `FLUSH_EVERY` after they were logged, many lines per `write(2)` (as nginx's
//! `access_log … buffer= flush=`). A call on the request path costs a lock and a copy: no system
//! call, and no thread woken per line (one wake when the buffer goes from empty to non-empty,
//! then the writer gathers for `FLUSH_EVERY`). Nothing is dropped: a logger that finds
//! `MAX_PENDING` bytes waiting blocks until the writer has taken them. Lines still waiting are
//! written when the `LogGuard` is dropped (normal exit); a killed process loses at most the
//! last `FLUSH_EVERY` of lines.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the first line of a batch may wait before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Written at once when this much is waiting.
const HIGH_WATER: usize = 64 * 1024;
/// Loggers wait while this much is waiting (a stalled stderr must not grow the process).
const MAX_PENDING: usize = 1024 * 1024;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    closing: bool,
}

/// The shared buffer; `tracing_subscriber` writes each formatted line into it (`Arc<LogBuffer>`
/// is a `MakeWriter` because `&LogBuffer` is `io::Write`).
#[derive(Default)]
pub struct LogBuffer {
    pending: Mutex<Pending>,
    /// The writer waits here for lines; loggers wait here for room.
    changed: Condvar,
}

impl LogBuffer {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Write for &LogBuffer {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut p = self.lock();
        while p.bytes.len() >= MAX_PENDING && !p.closing {
            p = self.changed.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        let was_empty = p.bytes.is_empty();
        p.bytes.extend_from_slice(line);
        if was_empty || p.bytes.len() >= HIGH_WATER {
            self.changed.notify_all();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps the writer thread running; dropping it writes out what is still waiting.
pub struct Flusher {
    buffer: Arc<LogBuffer>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.buffer.lock().closing = true;
        self.buffer.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the writer thread for `out`.
pub fn start<W: Write + Send + 'static>(mut out: W) -> std::io::Result<(Arc<LogBuffer>, Flusher)> {
    let buffer = Arc::new(LogBuffer::default());
    let shared = buffer.clone();
    let thread = std::thread::Builder::new()
        .name("prefront-log".into())
        .spawn(move || {
            let mut spare = Vec::new();
            loop {
                let mut p = shared.lock();
                while p.bytes.is_empty() && !p.closing {
                    p = shared.changed.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                // Let the batch gather, unless it is large already or the process is ending.
                let deadline = Instant::now() + FLUSH_EVERY;
                while !p.closing && p.bytes.len() < HIGH_WATER {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    p = shared
                        .changed
                        .wait_timeout(p, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                std::mem::swap(&mut p.bytes, &mut spare);
                let closing = p.closing;
                drop(p);
                // Room again for loggers that waited.
                shared.changed.notify_all();
                // Nowhere to report a failed write to: the line is lost, the process goes on.
                let _ = out.write_all(&spare).and_then(|()| out.flush());
                spare.clear();
                if spare.capacity() > HIGH_WATER * 4 {
                    spare = Vec::new();
                }
                if closing && shared.lock().bytes.is_empty() {
                    return;
                }
            }
        })?;
    Ok((
        buffer.clone(),
        Flusher {
            buffer,
            thread: Some(thread),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back, counting the writes it was given.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(b);
            s.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_soon_in_few_writes_and_all_at_the_end() {
        let sink = Sink::default();
        let (buf, flusher) = start(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let buf = buf.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        (&*buf)
                            .write_all(format!("t{t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Written without the guard being dropped, within a few flush periods.
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink
            .0
            .lock()
            .unwrap()
            .0
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            < 20_000
        {
            assert!(Instant::now() < deadline, "lines not written within 5 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        (&*buf).write_all(b"last\n").unwrap();
        drop(flusher);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.ends_with("last\n"), "the guard writes what waits");
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("t{t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(
                mine,
                (0..5_000).collect::<Vec<_>>(),
                "thread {t}'s lines in order"
            );
        }
        assert!(
            writes < 2_000,
            "20,001 lines in {writes} writes: not batched"
        );
    }

    #[test]
    fn a_stalled_output_makes_loggers_wait_not_the_buffer_grow() {
        struct Stalled(Arc<Mutex<()>>);
        impl Write for Stalled {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                drop(self.0.lock().unwrap());
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let (buf, flusher) = start(Stalled(gate.clone())).unwrap();
        let logger = {
            let buf = buf.clone();
            std::thread::spawn(move || {
                let line = [b'x'; 1000];
                for _ in 0..4_000 {
                    (&*buf).write_all(&line).unwrap();
                }
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        let waiting = buf.lock().bytes.len();
        assert!(
            waiting <= MAX_PENDING + 1000,
            "{waiting} bytes pending while the output is stalled"
        );
        assert!(!logger.is_finished(), "the logger waits for room");
        drop(held);
        logger.join().unwrap();
        drop(flusher);
    }
}
