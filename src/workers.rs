//! Connection workers: one single-threaded tokio runtime per core, each serving the connections
//! handed to it from accept to close (as nginx's worker processes do). A relayed call then runs
//! on one thread: the caller's connection, the upstream connection from that worker's own pool,
//! and the answer never hop between threads. On the multi-threaded runtime each call woke
//! another worker for the upstream connection's task and back (futex wake-ups and context
//! switches were the two top kernel symbols); see bench/RESULTS.md.
//!
//! The rest of the gateway (accept loops, forwarders, link probes, admin) stays on the main
//! runtime. A connection is handed over once, at accept: its socket leaves the main runtime's
//! reactor and joins the worker's.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// 1-based index of the connection worker running on this thread; 0 elsewhere.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The connection worker running on this thread (1..=n), or 0 on any other thread: upstream
/// clients keep one pool per worker so that a worker's calls use connections its own thread
/// drives.
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// How many connection workers a gateway starts: one per core.
pub fn count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 64))
}

/// The running workers; dropping this stops them (connections still open are closed).
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `n` worker threads (at least one), each with its own runtime.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let n = n.max(1);
        let mut handles = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("prefront-conn-{}", i + 1))
                .spawn(move || {
                    WORKER.with(|w| w.set(i + 1));
                    // Runs every task handed to this runtime until the gateway lets go.
                    let _ = runtime.block_on(stopped);
                })?;
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            _stop: stops,
        })
    }

    /// Hands an accepted connection to the next worker (round robin), where `serve` runs it.
    /// A socket that cannot be moved (it always can on Linux and Windows) is closed.
    pub fn serve<S, F>(&self, tcp: TcpStream, serve: S)
    where
        S: FnOnce(TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = &self.handles[self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len()];
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand a connection to a worker");
                return;
            }
        };
        handle.spawn(async move {
            // Registers the socket with this worker's reactor.
            match TcpStream::from_std(std) {
                Ok(tcp) => serve(tcp).await,
                Err(e) => tracing::debug!(error = %e, "a worker cannot take a connection"),
            }
        });
    }
}
