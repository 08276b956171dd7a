//! One heavy scenario at a time: tests that load the machine (thousands of messages, fault
//! injection with recovery bounds, RSS measurements) hold this guard for their whole run, so two
//! of them never share the two cores of a CI machine. Lighter tests still run beside them.

use tokio::sync::{Mutex, MutexGuard};

static HEAVY: Mutex<()> = Mutex::const_new(());

/// Wait until no other heavy scenario runs, and hold the machine until the guard drops.
pub async fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().await
}
