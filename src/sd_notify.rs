//! systemd readiness (`Type=notify`): READY/RELOADING/STOPPING/WATCHDOG messages to
//! `$NOTIFY_SOCKET`. Without that variable (not under systemd, or Windows) every call is a no-op.

use std::time::Duration;

/// Sends one notification (`READY=1`, `STOPPING=1`, …); false when there is no socket or the
/// send failed (systemd then decides by itself; the box keeps working either way).
pub fn notify(message: &str) -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::send(message)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = message;
        false
    }
}

/// Half the watchdog interval systemd asked for (`WatchdogSec=`), when it is meant for us.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// `MONOTONIC_USEC=` for `RELOADING=1` (systemd's `Type=notify-reload` wants it).
pub fn monotonic_usec() -> u64 {
    #[cfg(target_os = "linux")]
    {
        linux::monotonic_usec()
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    pub fn send(message: &str) -> bool {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return false;
        };
        let Ok(sock) = UnixDatagram::unbound() else {
            return false;
        };
        let bytes = path.as_encoded_bytes();
        let addr = match bytes.first() {
            // An abstract socket: `@name`.
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
            Some(b'/') => SocketAddr::from_pathname(&path),
            _ => return false,
        };
        match addr {
            Ok(a) => sock.send_to_addr(message.as_bytes(), &a).is_ok(),
            Err(_) => false,
        }
    }

    pub fn monotonic_usec() -> u64 {
        // CLOCK_MONOTONIC as /proc/uptime's first field approximates it without unsafe code.
        std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0, |secs| (secs * 1e6) as u64)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("prefront-sd-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixDatagram::bind(&path).expect("bind test socket");
        // Tests in this binary run in parallel; this is the only one that sets the variable.
        std::env::set_var("NOTIFY_SOCKET", &path);
        assert!(notify("READY=1\nSTATUS=serving"));
        let mut buf = [0u8; 128];
        let n = listener.recv(&mut buf).expect("received");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        std::env::remove_var("NOTIFY_SOCKET");
        assert!(!notify("READY=1"), "no socket, no message");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
