//! The Xen split drivers' platform (`xen_services::frontend::FrontendHost`) on this kernel:
//! XenStore, grants and event channels from `platform_xen`, pages from the kernel's frames, the
//! kernel's clock and sleep. And the probes that find the devices the toolstack gave the guest
//! (`device/vif/N`, `device/vbd/N`) and connect the profile's frontend to the first one.

use core::ptr::NonNull;

use heap::{FrameAllocator, Frames};
#[cfg(feature = "nic-netfront")]
use platform::irq::Irq;
use platform_xen::grant::{self, GrantError, GrantRef};
use xen_services::frontend::FrontendHost;
use xen_services::mem::raw::RawShared;
use xen_services::xenstore;

/// The kernel as a split driver's platform.
#[derive(Debug, Default)]
pub struct KernelXenHost;

/// How long [`FrontendHost::pause`] sleeps.
const PAUSE_NS: u64 = 2_000_000;

impl FrontendHost for KernelXenHost {
    /// A page of the kernel's frames, shared with a backend.
    type Page = RawShared;

    fn read(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, xenstore::Error> {
        platform_xen::xenstore::read(path, buf).map(|v| v.len())
    }

    fn write(&mut self, path: &str, value: &str) -> Result<(), xenstore::Error> {
        platform_xen::xenstore::write(path, value.as_bytes())
    }

    fn alloc_page(&mut self) -> Option<RawShared> {
        let frames = crate::frames().alloc_frames_zeroed(1)?;
        let va = NonNull::new(frames.as_ptr())?;
        // SAFETY: a page of RAM the kernel maps, just taken from the frame allocator: this
        // handle owns it until `free_page`, and nothing else in the domain touches it.
        Some(unsafe { RawShared::new(va, 4096) })
    }

    fn free_page(&mut self, page: RawShared) {
        let va = page.base();
        // SAFETY: the page came from `alloc_page` (one frame), and the frontend's contract
        // gives it back only once no grant covers it; `page` is consumed, so nothing here
        // touches it again.
        unsafe { crate::frames().free_frames(Frames::from_raw(va, 1)) };
    }

    fn grant(
        &mut self,
        domid: u16,
        page: &RawShared,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        // SAFETY: the page is one of `alloc_page`'s, which stays allocated until
        // `free_page`, and a frontend frees a page only after ending its grants
        // (`FrontendHost`'s contract; one whose grant cannot be ended is leaked).
        unsafe { grant::grant_access(domid, page.base().as_ptr() as u64, readonly) }
    }

    fn end_grant(&mut self, r: GrantRef) -> Result<(), GrantError> {
        grant::end_access(r)
    }

    fn alloc_event(&mut self, remote: u16) -> Result<u32, i32> {
        platform_xen::events::alloc_unbound(remote).map_err(|e| e.0)
    }

    fn notify(&self, port: u32) {
        let _ = platform_xen::events::send(port);
    }

    fn now_ns(&self) -> u64 {
        crate::boot::now_ns().unwrap_or(0)
    }

    fn pause(&mut self) {
        crate::boot::sleep_until_ns(self.now_ns() + PAUSE_NS);
    }

    fn watch(&mut self, path: &str) -> Result<xenstore::WatchId, xenstore::Error> {
        platform_xen::xenstore::add_watch(path)
    }

    fn fired(&mut self, id: xenstore::WatchId) -> bool {
        platform_xen::xenstore::fired(id)
    }

    fn read_now(&mut self, path: &str, buf: &mut [u8]) -> Result<usize, xenstore::Error> {
        platform_xen::xenstore::try_read(path, buf).map(|v| v.len())
    }

    fn write_now(&mut self, path: &str, value: &str) -> Result<(), xenstore::Error> {
        platform_xen::xenstore::try_write(path, value.as_bytes())
    }
}

/// Sets up the grant table before any driver connects, on Xen: its setup builds the table's
/// bookkeeping (several KiB) on the stack, which is better done here, at the boot function's
/// depth, than under the network's init with its drivers' structures (the universal image's
/// boot stack overflowed there).
pub fn init() {
    if crate::select::on_xen()
        && let Err(e) = platform_xen::grant::init()
    {
        log::error!("xen: no grant table ({e:?}): split drivers cannot share pages");
    }
}

/// The first device of class `class` (`vif`, `vbd`) the toolstack gave the guest: its node
/// (`device/vif/0`), or `None`.
pub fn first_device(class: &str) -> Option<xen_services::frontend::Path> {
    let dir = xen_services::frontend::Path::join("device", class)?;
    let mut buf = [0u8; 256];
    let names = platform_xen::xenstore::directory(dir.as_str(), &mut buf).ok()?;
    let first = names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|n| core::str::from_utf8(n).ok())
        .min_by_key(|n| n.parse::<u32>().unwrap_or(u32::MAX))?;
    xen_services::frontend::Path::join(dir.as_str(), first)
}

/// The NIC the profile's driver connected.
#[cfg(feature = "nic-netfront")]
#[derive(Debug)]
pub struct Nic {
    /// The driver.
    pub device: crate::select::XenNetDevice,
    /// Its interrupt line: the event channel.
    pub irq: Option<Irq>,
}

/// Connects netfront to the guest's first vif (`device/vif/N`), if the toolstack gave it one.
#[cfg(feature = "nic-netfront")]
pub fn probe_nics() -> Option<Nic> {
    if !crate::select::on_xen() {
        return None;
    }
    let node = first_device("vif")?;
    match netfront::NetFront::connect(KernelXenHost, node.as_str()) {
        Ok(device) => {
            let mut line = alloc::string::String::new();
            let _ = device.describe(&mut line);
            log::info!("{line}");
            let irq = Some(Irq(device.event_channel()));
            // netfront watches its backend's state: the poller looks when XenStore speaks
            platform_xen::xenstore::on_event(crate::net::store_event);
            Some(Nic { device, irq })
        }
        Err(e) => {
            log::error!("netfront {}: {e}", node.as_str());
            None
        }
    }
}
