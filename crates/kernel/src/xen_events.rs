//! Xen event channels of the guest's own, on every platform: the calls a Xen split driver (and
//! a probe) makes to get a port for its device's interrupt line, and to signal the other end.
//! A port is a line of `platform::irq` on Xen: give it a handler with [`crate::irq_register`]
//! (`Irq(port)`), and [`crate::irq_unmask`] it after each call (the oneshot contract).
//!
//! Where the image does not run on Xen (platform `kvm`, or the universal image on a KVM-class
//! monitor) every call fails with [`NOT_XEN`]. The calls themselves are
//! `platform_xen::events`'s.

use platform::irq::Irq;

/// Xen's refusal of an event-channel operation: its negative errno.
pub use imp::XenError;

/// What every call gives where the image is not on Xen (`-ENOSYS`).
pub const NOT_XEN: XenError = XenError(-38);

/// Refers to the calling domain, as `remote` of [`alloc_unbound`] and [`bind_interdomain`]
/// (a loopback channel: both ends are ours).
pub const DOMID_SELF: u16 = 0x7ff0;

/// `EVTCHNOP_alloc_unbound`: a fresh port that domain `remote` (or [`DOMID_SELF`]) may bind.
pub fn alloc_unbound(remote: u16) -> Result<Irq, XenError> {
    imp::alloc_unbound(remote).map(Irq)
}

/// `EVTCHNOP_bind_interdomain`: a fresh port connected to `remote_port` of domain `remote`.
pub fn bind_interdomain(remote: u16, remote_port: Irq) -> Result<Irq, XenError> {
    imp::bind_interdomain(remote, remote_port.0).map(Irq)
}

/// `EVTCHNOP_send`: signals the other end of `port`.
pub fn send(port: Irq) -> Result<(), XenError> {
    imp::send(port.0)
}

/// `EVTCHNOP_close`, after dropping the port's handler.
pub fn close(port: Irq) -> Result<(), XenError> {
    imp::close(port.0)
}

/// Whether Xen holds an event for `port` (its pending bit: masked, or not delivered yet).
pub fn is_pending(port: Irq) -> bool {
    imp::is_pending(port.0)
}

#[cfg(any(feature = "platform-xen", feature = "platform-universal"))]
mod imp {
    use platform_xen::events as xen;
    pub use platform_xen::events::XenError;

    fn on_xen() -> Result<(), XenError> {
        if crate::select::on_xen() {
            Ok(())
        } else {
            Err(super::NOT_XEN)
        }
    }

    pub fn alloc_unbound(remote: u16) -> Result<u32, XenError> {
        on_xen()?;
        xen::alloc_unbound(remote)
    }
    pub fn bind_interdomain(remote: u16, port: u32) -> Result<u32, XenError> {
        on_xen()?;
        xen::bind_interdomain(remote, port)
    }
    pub fn send(port: u32) -> Result<(), XenError> {
        on_xen()?;
        xen::send(port)
    }
    pub fn close(port: u32) -> Result<(), XenError> {
        on_xen()?;
        xen::close(port)
    }
    pub fn is_pending(port: u32) -> bool {
        on_xen().is_ok() && xen::is_pending(port)
    }
}

#[cfg(not(any(feature = "platform-xen", feature = "platform-universal")))]
mod imp {
    use core::fmt;

    /// Xen's refusal of an event-channel operation: its negative errno (here always
    /// `NOT_XEN`: the image is not built for Xen).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct XenError(pub i32);

    impl fmt::Display for XenError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Xen error {}", self.0)
        }
    }

    const NOT_XEN: Result<(), XenError> = Err(super::NOT_XEN);

    pub fn alloc_unbound(_remote: u16) -> Result<u32, XenError> {
        NOT_XEN.map(|_| 0)
    }
    pub fn bind_interdomain(_remote: u16, _port: u32) -> Result<u32, XenError> {
        NOT_XEN.map(|_| 0)
    }
    pub fn send(_port: u32) -> Result<(), XenError> {
        NOT_XEN
    }
    pub fn close(_port: u32) -> Result<(), XenError> {
        NOT_XEN
    }
    pub fn is_pending(_port: u32) -> bool {
        false
    }
}
