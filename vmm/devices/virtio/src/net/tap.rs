//! A Linux tap device as a [`NetBackend`] (hosted VMM only): frames from
//! the guest are written to the tap; a reader thread delivers the tap's
//! frames to the device.
//!
//! Owns: the tap file descriptor and its reader thread. The only `unsafe`
//! is the TUNSETIFF ioctl. Must not touch: addresses and routes on the
//! host (the user configures the tap interface).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;

use super::{FrameSink, NetBackend, MAX_FRAME};
use crate::log_once::LogOnce;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap name {0:?} must be 1..=15 bytes without NUL")]
    Name(String),
    #[error("cannot open /dev/net/tun ({0}); load the tun module and run with CAP_NET_ADMIN")]
    Open(std::io::Error),
    #[error(
        "cannot create or attach tap {name:?} ({source}); it may belong to another user or process"
    )]
    Attach {
        name: String,
        source: std::io::Error,
    },
}

/// An open tap interface.
pub struct Tap {
    file: File,
    name: String,
    warned: LogOnce,
}

impl Tap {
    /// Opens (creating if needed) tap interface `name` without packet info.
    pub fn open(name: &str) -> Result<Self, TapError> {
        let mut ifr_name = [0 as libc::c_char; libc::IFNAMSIZ];
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(TapError::Name(name.into()));
        }
        for (d, &s) in ifr_name.iter_mut().zip(name.as_bytes()) {
            *d = s as libc::c_char;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(TapError::Open)?;
        let mut request = libc::ifreq {
            ifr_name,
            ifr_ifru: libc::__c_anonymous_ifr_ifru {
                ifru_flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            },
        };
        // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `request`
        // is, valid for the call; `file` is an open /dev/net/tun descriptor.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut request) };
        if rc < 0 {
            return Err(TapError::Attach {
                name: name.into(),
                source: std::io::Error::last_os_error(),
            });
        }
        let actual: Vec<u8> = request
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(Tap {
            file,
            name: String::from_utf8_lossy(&actual).into_owned(),
            warned: LogOnce::default(),
        })
    }

    /// The interface name the kernel gave.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl NetBackend for Tap {
    fn send(&mut self, frame: &[u8]) {
        if let Err(e) = (&self.file).write(frame) {
            self.warned.warn(
                "tap-write",
                format_args!("tap {}: cannot send a frame ({e}); dropped", self.name),
            );
        }
    }

    /// Starts the reader thread; it runs until the tap fails or closes.
    fn attach(&mut self, sink: FrameSink) {
        let file = match self.file.try_clone() {
            Ok(f) => f,
            Err(e) => {
                log::error!(
                    "tap {}: no reader ({e}); the guest receives nothing",
                    self.name
                );
                return;
            }
        };
        let name = self.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("tap-{name}"))
            .spawn(move || read_frames(file, sink, &name));
        if let Err(e) = spawned {
            log::error!("tap {}: cannot start its reader ({e})", self.name);
        }
    }
}

fn read_frames(mut file: File, sink: FrameSink, name: &str) {
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                sink.deliver(buf[..n].to_vec());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("tap {name}: reader stops ({e})");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_touching_the_system() {
        for name in ["", "a-name-that-is-too-long", "nul\0"] {
            assert!(
                matches!(Tap::open(name), Err(TapError::Name(_))),
                "{name:?}"
            );
        }
    }

    #[test]
    fn opening_without_privileges_gives_a_clear_error() {
        // Works as root with /dev/net/tun; otherwise must fail cleanly.
        match Tap::open("ternvirtio%d") {
            Ok(tap) => assert!(tap.name().starts_with("ternvirtio")),
            Err(e) => assert!(
                matches!(e, TapError::Open(_) | TapError::Attach { .. }),
                "{e}"
            ),
        }
    }
}
