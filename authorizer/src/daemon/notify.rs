//! systemd notifications (`sd_notify`): `READY=1` once the state is caught up, `WATCHDOG=1` from
//! the ledger thread, `STOPPING=1` on shutdown and `STATUS=` lines on the way.
//!
//! Silent when `NOTIFY_SOCKET` is not set (a daemon run by hand or by the tests). Must never: put
//! a secret or a PAN in a `STATUS=` line, or fail the daemon because systemd did not listen.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends the daemon's notifications to systemd, or nothing when not run by it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// Enabled when `NOTIFY_SOCKET` is set and not empty.
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()),
        }
    }

    /// The watchdog interval systemd asks for: `WATCHDOG_USEC`, unless `WATCHDOG_PID` names
    /// another process (as libsystemd reads them; an unset `WATCHDOG_PID` means this one).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID")
            && pid.trim().parse::<u32>().ok() != Some(std::process::id())
        {
            return None;
        }
        (usec > 0).then(|| Duration::from_micros(usec))
    }

    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// One `WATCHDOG=1`: call it from the loop whose stall must restart the daemon.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// A `STATUS=` line (what `systemctl status` shows).
    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}
