//! Counters updated while a verify run goes on, for the progress bar the CLI draws.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

#[derive(Debug, Default)]
pub struct Live {
    phase: Mutex<&'static str>,
    load: Mutex<Option<(Instant, Duration)>>,
    pub clients: AtomicU64,
    pub clients_total: AtomicU64,
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// A snapshot of [`Live`].
#[derive(Debug, Clone)]
pub struct Progress {
    pub phase: &'static str,
    /// Elapsed and total time of the WebSocket phase, once it has started.
    pub load: Option<(Duration, Duration)>,
    pub clients: u64,
    pub clients_total: u64,
    pub sent: u64,
    pub delivered: u64,
    pub errors: u64,
    pub rate_limited: u64,
}

impl Live {
    pub(super) fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    pub(super) fn start_load(&self, total: Duration) {
        *self.load.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), total));
    }

    pub fn snapshot(&self) -> Progress {
        let load = self
            .load
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(at, total)| (at.elapsed().min(total), total));
        Progress {
            phase: *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            load,
            clients: self.clients.load(Ordering::Relaxed),
            clients_total: self.clients_total.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }
}

impl Progress {
    /// One line: a text bar with elapsed/total time and the live counters.
    pub fn line(&self, width: usize) -> String {
        let (filled, time) = match self.load {
            Some((elapsed, total)) => {
                let share = if total.is_zero() {
                    1.0
                } else {
                    (elapsed.as_secs_f64() / total.as_secs_f64()).min(1.0)
                };
                (
                    (share * width as f64).round() as usize,
                    format!("{:.1}/{:.0}s", elapsed.as_secs_f64(), total.as_secs_f64()),
                )
            }
            None if self.clients_total == 0 => return format!("{}...", self.phase),
            None => (0, "-".to_string()),
        };
        format!(
            "[{}{}] {time} {:<12} clients {}/{} sent {} delivered {} errors {} 429 {}",
            "#".repeat(filled),
            "-".repeat(width.saturating_sub(filled)),
            self.phase,
            self.clients,
            self.clients_total,
            self.sent,
            self.delivered,
            self.errors,
            self.rate_limited,
        )
    }
}
