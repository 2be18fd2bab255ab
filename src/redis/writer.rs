//! Write-behind: cache writes go to a bounded queue and a background thread
//! sends them in pipelined batches, so a cache miss never waits for Redis.
//! A full queue (by count or by bytes), or an open circuit, drops writes
//! (counted): the cache is an optimisation, and memory must stay bounded
//! while Redis is away or slow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::pool::{CallError, Pool};
use crate::fork::ProcessLocal;
use crate::memory;

/// Writes of this process image, across every writer, including writers
/// whose client was already dropped (their thread drains the queue before
/// it ends): what an exit flush waits for and reports.
#[derive(Default)]
struct ProcessWrites {
    /// Queued and not yet sent or dropped.
    in_flight: AtomicU64,
    /// Taken from a queue and not sent (Redis unavailable or refusing).
    unsent: AtomicU64,
}

fn process_writes() -> &'static ProcessWrites {
    static WRITES: OnceLock<ProcessLocal<ProcessWrites>> = OnceLock::new();
    WRITES
        .get_or_init(|| ProcessLocal::new(ProcessWrites::default()))
        .get(ProcessWrites::default)
}

/// Writes queued in this process and not handled yet.
pub fn in_flight() -> u64 {
    process_writes().in_flight.load(Ordering::Acquire)
}

/// Writes of this process taken from a queue but not sent, since start.
pub fn unsent() -> u64 {
    process_writes().unsent.load(Ordering::Acquire)
}

/// Waits (without the GIL) until no queued write is left in this process.
pub fn wait_until_drained(deadline: Instant) -> bool {
    while in_flight() > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Commands sent in one round trip at most.
const BATCH: usize = 256;
/// Argument bytes that close a batch: bounds the memory of the batch being
/// sent (and its encoded copy) and the deadline it needs.
const BATCH_BYTES: usize = 1 << 20;

pub type Command = Vec<Vec<u8>>;

/// The memory a queued command holds: its bytes plus the vectors around them.
fn command_bytes(command: &Command) -> usize {
    const VEC: usize = std::mem::size_of::<Vec<u8>>();
    VEC + command.iter().map(|arg| arg.len() + VEC).sum::<usize>()
}

enum Job {
    Write(Command, usize),
    /// Acknowledged once every job queued before it was handled.
    Flush(mpsc::Sender<()>),
}

#[derive(Default)]
pub struct WriterCounters {
    pub queued: AtomicU64,
    pub written: AtomicU64,
    /// Refused because the queue was full, by count or by bytes.
    pub dropped_full: AtomicU64,
    pub dropped_unavailable: AtomicU64,
    pub failed: AtomicU64,
    pub batches: AtomicU64,
    /// Bytes queued now (see `command_bytes`).
    pub queued_bytes: AtomicU64,
}

pub struct Writer {
    tx: SyncSender<Job>,
    pool: Arc<Pool>,
    max_bytes: u64,
    pub counters: Arc<WriterCounters>,
}

impl Writer {
    pub fn spawn(pool: Arc<Pool>, capacity: usize, max_bytes: usize) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let counters = Arc::new(WriterCounters::default());
        let thread_pool = Arc::clone(&pool);
        let thread_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("ormcache-redis-writer".into())
            .spawn(move || run(rx, &thread_pool, &thread_counters))?;
        Ok(Writer {
            tx,
            pool,
            max_bytes: max_bytes as u64,
            counters,
        })
    }

    /// Queues a command; false when it was dropped.
    pub fn enqueue(&self, command: Command) -> bool {
        if !self.pool.looks_healthy() {
            self.counters
                .dropped_unavailable
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let bytes = command_bytes(&command);
        let level = self
            .counters
            .queued_bytes
            .fetch_add(bytes as u64, Ordering::AcqRel);
        if level + bytes as u64 > self.max_bytes {
            self.counters
                .queued_bytes
                .fetch_sub(bytes as u64, Ordering::AcqRel);
            self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // Counted before sending: the writer may handle it at once.
        let writes = process_writes();
        writes.in_flight.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(Job::Write(command, bytes)) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                writes.in_flight.fetch_sub(1, Ordering::AcqRel);
                self.counters
                    .queued_bytes
                    .fetch_sub(bytes as u64, Ordering::AcqRel);
                self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Waits until everything queued so far was sent or dropped. Must be
    /// called without the GIL.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::channel();
        let mut job = Job::Flush(ack_tx);
        loop {
            match self.tx.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(returned)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    job = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        !matches!(
            ack_rx.recv_timeout(left),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected)
        )
    }
}

fn run(rx: Receiver<Job>, pool: &Pool, counters: &WriterCounters) {
    let mut commands: Vec<Command> = Vec::with_capacity(BATCH);
    let mut acks: Vec<mpsc::Sender<()>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut batch_bytes = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write(command, bytes) => {
                    commands.push(command);
                    batch_bytes += bytes;
                }
                Job::Flush(ack) => acks.push(ack),
            }
            if commands.len() < BATCH && batch_bytes < BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if !commands.is_empty() {
            send_batch(pool, counters, &commands, batch_bytes);
            counters
                .queued_bytes
                .fetch_sub(batch_bytes as u64, Ordering::AcqRel);
            process_writes()
                .in_flight
                .fetch_sub(commands.len() as u64, Ordering::AcqRel);
            commands.clear();
            memory::note_freed(batch_bytes);
        }
        // Before the acks: what a flush waited for is given back too.
        let idle = counters.queued_bytes.load(Ordering::Acquire) == 0;
        if memory::trim_due() || (idle && memory::idle_trim_due()) {
            memory::trim();
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

fn send_batch(pool: &Pool, counters: &WriterCounters, commands: &[Command], bytes: usize) {
    let n = commands.len() as u64;
    counters.batches.fetch_add(1, Ordering::Relaxed);
    let result = pool.call_in_background(bytes, |con| {
        let mut pipe = redis::pipe();
        for command in commands {
            let mut cmd = redis::Cmd::new();
            for arg in command {
                cmd.arg(arg.as_slice());
            }
            pipe.add_command(cmd).ignore();
        }
        pipe.query::<()>(con)
    });
    let unsent = match result {
        Ok(()) => {
            counters.written.fetch_add(n, Ordering::Relaxed);
            return;
        }
        // Background calls have no thread budget.
        Err(CallError::CircuitOpen | CallError::Unavailable(_) | CallError::BudgetSpent) => {
            &counters.dropped_unavailable
        }
        Err(CallError::Server(_) | CallError::TooLarge(_)) => &counters.failed,
    };
    unsent.fetch_add(n, Ordering::Relaxed);
    process_writes().unsent.fetch_add(n, Ordering::AcqRel);
}
