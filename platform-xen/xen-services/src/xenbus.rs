//! XenBus: the device states frontends and backends publish in XenStore (`.../state`), and
//! the frontend side of the connection handshake.
//!
//! Handshake of a frontend (netfront, blkfront), driven by the backend's state as watches
//! report it:
//!
//! 1. the frontend writes `Initialising` (1) and watches `<backend>/state`;
//! 2. when the backend reaches `InitWait` (2) (or is already further), the frontend grants its
//!    rings, allocates the event channel, publishes `ring-ref`, `event-channel`, ... in a
//!    transaction and writes `Initialised` (3): [`Action::Publish`];
//! 3. when the backend reaches `Connected` (4), the frontend writes `Connected` (4):
//!    [`Action::Connect`];
//! 4. a backend going `Closing` (5) / `Closed` (6) makes the frontend close: [`Action::Close`].

use core::fmt;

/// `enum xenbus_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum XenbusState {
    /// 0
    Unknown = xen_sys::xenbus_state_XenbusStateUnknown,
    /// 1
    Initialising = xen_sys::xenbus_state_XenbusStateInitialising,
    /// 2: the backend waits for the frontend's details.
    InitWait = xen_sys::xenbus_state_XenbusStateInitWait,
    /// 3: the frontend published its details.
    Initialised = xen_sys::xenbus_state_XenbusStateInitialised,
    /// 4
    Connected = xen_sys::xenbus_state_XenbusStateConnected,
    /// 5
    Closing = xen_sys::xenbus_state_XenbusStateClosing,
    /// 6
    Closed = xen_sys::xenbus_state_XenbusStateClosed,
    /// 7
    Reconfiguring = xen_sys::xenbus_state_XenbusStateReconfiguring,
    /// 8
    Reconfigured = xen_sys::xenbus_state_XenbusStateReconfigured,
}

impl XenbusState {
    /// From the number.
    pub fn from_u32(v: u32) -> Option<XenbusState> {
        use XenbusState::*;
        [
            Unknown,
            Initialising,
            InitWait,
            Initialised,
            Connected,
            Closing,
            Closed,
            Reconfiguring,
            Reconfigured,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }

    /// From a XenStore value (`b"4"`, maybe with a trailing NUL or newline).
    pub fn parse(value: &[u8]) -> Option<XenbusState> {
        let v = value.strip_suffix(b"\0").unwrap_or(value);
        let v = v.strip_suffix(b"\n").unwrap_or(v);
        crate::xenstore::parse_decimal(v).and_then(XenbusState::from_u32)
    }

    /// The XenStore value (`"4"`).
    pub fn as_str(self) -> &'static str {
        ["0", "1", "2", "3", "4", "5", "6", "7", "8"][self as usize]
    }
}

/// What the frontend must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing yet: keep watching.
    Wait,
    /// Publish ring refs and event channel, then write `Initialised`.
    Publish,
    /// Write `Connected`: the device is ready.
    Connect,
    /// Tear down and write `Closed`.
    Close,
}

/// A handshake that cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The backend went back to a state that makes no sense now (e.g. `Unknown` after
    /// `Connected`): it was removed or restarted.
    BackendLost(XenbusState),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::BackendLost(s) => {
                write!(
                    f,
                    "xenbus backend went to state {} mid-handshake",
                    *s as u32
                )
            }
        }
    }
}

impl core::error::Error for HandshakeError {}

/// The frontend's side of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendHandshake {
    state: XenbusState,
}

impl Default for FrontendHandshake {
    fn default() -> Self {
        FrontendHandshake {
            state: XenbusState::Initialising,
        }
    }
}

impl FrontendHandshake {
    /// The state the frontend has (or must write, after the last [`Action`]).
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The backend is in `backend`: what now. The frontend's own state moves with the action.
    pub fn on_backend(&mut self, backend: XenbusState) -> Result<Action, HandshakeError> {
        use XenbusState::*;
        let action = match (self.state, backend) {
            (Closed, _) => Action::Wait,
            (_, Closing | Closed) => {
                self.state = Closed;
                Action::Close
            }
            (Initialising, InitWait | Initialised | Connected) => {
                self.state = Initialised;
                Action::Publish
            }
            (Initialising, Unknown | Initialising) => Action::Wait,
            (Initialised, Connected) => {
                self.state = Connected;
                Action::Connect
            }
            (Initialised, InitWait | Initialised) => Action::Wait,
            (Connected, Connected) => Action::Wait,
            (_, s @ (Unknown | Initialising | InitWait)) => {
                return Err(HandshakeError::BackendLost(s));
            }
            (_, Reconfiguring | Reconfigured) | (_, Initialised) => Action::Wait,
            (_, _) => Action::Wait,
        };
        Ok(action)
    }
}

#[cfg(test)]
mod tests {
    use super::XenbusState::*;
    use super::*;

    #[test]
    fn parse_states() {
        assert_eq!(XenbusState::parse(b"4"), Some(Connected));
        assert_eq!(XenbusState::parse(b"2\0"), Some(InitWait));
        assert_eq!(XenbusState::parse(b"9"), None);
        assert_eq!(XenbusState::parse(b""), None);
        assert_eq!(XenbusState::parse(b"x"), None);
        assert_eq!(Connected.as_str(), "4");
        for v in 0..9 {
            let s = XenbusState::from_u32(v).expect("valid");
            assert_eq!(XenbusState::parse(s.as_str().as_bytes()), Some(s));
        }
    }

    #[test]
    fn normal_handshake() {
        let mut h = FrontendHandshake::default();
        assert_eq!(h.on_backend(Initialising), Ok(Action::Wait));
        assert_eq!(h.on_backend(InitWait), Ok(Action::Publish));
        assert_eq!(h.state(), Initialised);
        assert_eq!(h.on_backend(InitWait), Ok(Action::Wait));
        assert_eq!(h.on_backend(Connected), Ok(Action::Connect));
        assert_eq!(h.state(), Connected);
        assert_eq!(h.on_backend(Connected), Ok(Action::Wait));
        assert_eq!(h.on_backend(Closing), Ok(Action::Close));
        assert_eq!(h.state(), Closed);
        assert_eq!(h.on_backend(Closed), Ok(Action::Wait));
    }

    #[test]
    fn fast_and_lost_backends() {
        let mut h = FrontendHandshake::default();
        assert_eq!(
            h.on_backend(Connected),
            Ok(Action::Publish),
            "backend already there"
        );
        assert_eq!(h.on_backend(Connected), Ok(Action::Connect));
        assert_eq!(
            h.on_backend(Unknown),
            Err(HandshakeError::BackendLost(Unknown))
        );
        let mut h = FrontendHandshake::default();
        assert_eq!(h.on_backend(Closed), Ok(Action::Close));
    }
}
