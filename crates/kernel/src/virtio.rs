//! The kernel's virtio glue (`net_device = "virtio"`, `block_device = "virtio"`): what crate
//! `virtio-drivers` needs from this kernel, and the probe that finds the NIC (the disk's is in
//! `block.rs`).
//!
//! - [`KernelHal`]: `virtio_drivers::Hal` over the kernel's DMA pages. On KVM-class monitors
//!   RAM and the device windows are identity-mapped (physical = virtual), so sharing a buffer
//!   with a device is its address, and unsharing is nothing.
//! - [`PortCam`]: PCI configuration space through ports 0xCF8/0xCFC (`ConfigurationAccess`).
//! - [`transport`]: a virtio transport for a device the platform found (`Platform::devices`):
//!   `MmioTransport` on its register window, `PciTransport` on its PCI function (BARs assigned
//!   and memory decoding on, by discovery), as a [`KvmTransport`].
//! - [`probe_nics`]: the first virtio-net device, brought up as a [`VirtioNetDevice`](crate::select::VirtioNetDevice), with
//!   its interrupt line.
//!
//! Interrupts follow `platform::irq`'s oneshot contract: the network glue (`net.rs`) registers a
//! handler for [`Nic::irq`] (the platform masks the line when it fires), its poller calls
//! `NetDevice::poll_interrupt` (which acknowledges the device's ISR, reclaims transmit buffers
//! and posts receive buffers), then unmasks the line.

#[cfg(feature = "nic-virtio")]
use crate::select::{SelectedPlatform, VirtioNetDevice};
use core::ptr::NonNull;
#[cfg(feature = "nic-virtio")]
use netdev::NetDevice;
#[cfg(feature = "nic-virtio")]
use platform::Platform;
#[cfg(feature = "nic-virtio")]
use platform::device::VIRTIO_NET;
use platform::device::{Bus, Device};
#[cfg(feature = "nic-virtio")]
use platform::irq::Irq;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// `virtio_drivers::Hal` for this kernel: DMA from the frame allocator, identity-mapped.
#[derive(Debug)]
pub struct KernelHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned frames owned until `dma_dealloc` (the frame
// allocator's promise), whose physical address is their address (identity map); device windows
// are identity-mapped (uncached) by the platform; `share` hands the device the buffer's own
// address, which is its physical one.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match crate::dma::dma_alloc(pages) {
            Some((phys, virt)) => (phys as PhysAddr, virt),
            // virtio-drivers reads a physical address of 0 as "no memory".
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: virtio-drivers gives back what `dma_alloc` returned, once.
        unsafe { crate::dma::dma_dealloc(paddr, vaddr, pages) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // Identity-mapped by the platform (device memory, uncached). A BAR at 0 would be one
        // discovery did not assign; virtio-drivers never asks for one.
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// PCI configuration space through ports 0xCF8 (address) and 0xCFC (data), the mechanism
/// every x86 PC chipset (`q35`, `pc`) has. The two port accesses are one step under a lock.
#[derive(Debug)]
pub struct PortCam;

static CONFIG_PORTS: crate::select::SpinLock<()> = crate::select::SpinLock::new(());

impl PortCam {
    fn address(df: DeviceFunction, offset: u8) -> u32 {
        0x8000_0000
            | u32::from(df.bus) << 16
            | u32::from(df.device & 0x1f) << 11
            | u32::from(df.function & 0x7) << 8
            | u32::from(offset & 0xfc)
    }
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        let _ports = CONFIG_PORTS.lock();
        // SAFETY: CONFIG_ADDRESS then CONFIG_DATA, under the lock, is a configuration read: it
        // touches no memory.
        unsafe {
            arch_x86_64::cpu::outl(0xcf8, Self::address(device_function, register_offset));
            arch_x86_64::cpu::inl(0xcfc)
        }
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        let _ports = CONFIG_PORTS.lock();
        // SAFETY: a configuration write to a virtio function, as virtio-drivers' PCI transport
        // asks (it only reads, except for what it documents).
        unsafe {
            arch_x86_64::cpu::outl(0xcf8, Self::address(device_function, register_offset));
            arch_x86_64::cpu::outl(0xcfc, data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// Why a device got no transport or driver.
#[derive(Debug)]
pub enum ProbeError {
    /// The virtio-mmio window is not a virtio device (bad magic, version, device id).
    Mmio(virtio_drivers::transport::mmio::MmioError),
    /// The PCI function lacks what a modern virtio transport needs (capabilities, BARs).
    Pci(virtio_drivers::transport::pci::VirtioPciError),
    /// The driver refused the device.
    #[cfg(feature = "nic-virtio")]
    Driver(net_virtio::InitError),
    /// A window at address 0.
    NoWindow,
}

impl core::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProbeError::Mmio(e) => write!(f, "virtio-mmio: {e}"),
            ProbeError::Pci(e) => write!(f, "virtio-pci: {e}"),
            #[cfg(feature = "nic-virtio")]
            ProbeError::Driver(e) => write!(f, "{e}"),
            ProbeError::NoWindow => f.write_str("no register window"),
        }
    }
}

/// A virtio transport on a KVM-class monitor: virtio-mmio or PCI. virtio-drivers'
/// `SomeTransport` has a third variant on x86_64 (pKVM's hypercall PCI transport), which no
/// probe here makes but whose code every transport call would carry (about 0.6 KB).
#[derive(Debug)]
pub enum KvmTransport {
    /// On a virtio-mmio register window (`microvm`, Firecracker).
    Mmio(MmioTransport<'static>),
    /// On a PCI function (`q35`).
    Pci(PciTransport),
}

/// Calls `$method` on whichever transport it is.
macro_rules! each {
    ($self:ident, $t:ident => $call:expr) => {
        match $self {
            KvmTransport::Mmio($t) => $call,
            KvmTransport::Pci($t) => $call,
        }
    };
}

impl Transport for KvmTransport {
    fn device_type(&self) -> DeviceType {
        each!(self, t => t.device_type())
    }

    fn read_device_features(&mut self) -> u64 {
        each!(self, t => t.read_device_features())
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        each!(self, t => t.write_driver_features(driver_features))
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        each!(self, t => t.max_queue_size(queue))
    }

    fn notify(&mut self, queue: u16) {
        each!(self, t => t.notify(queue))
    }

    fn get_status(&self) -> DeviceStatus {
        each!(self, t => t.get_status())
    }

    fn set_status(&mut self, status: DeviceStatus) {
        each!(self, t => t.set_status(status))
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        each!(self, t => t.set_guest_page_size(guest_page_size))
    }

    fn requires_legacy_layout(&self) -> bool {
        each!(self, t => t.requires_legacy_layout())
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        each!(self, t => t.queue_set(queue, size, descriptors, driver_area, device_area))
    }

    fn queue_unset(&mut self, queue: u16) {
        each!(self, t => t.queue_unset(queue))
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        each!(self, t => t.queue_used(queue))
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        each!(self, t => t.ack_interrupt())
    }

    fn read_config_generation(&self) -> u32 {
        each!(self, t => t.read_config_generation())
    }

    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        each!(self, t => t.read_config_space(offset))
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        each!(self, t => t.write_config_space(offset, value))
    }
}

/// A virtio transport for `device`.
// Not inlined into the NIC's probe (inlined, httpd [net] is 1,088 bytes larger; with a disk too
// it has two callers and is not inlined anyway).
#[inline(never)]
pub fn transport(device: &Device) -> Result<KvmTransport, ProbeError> {
    match device.bus {
        Bus::VirtioMmio { base, size } => {
            let header = NonNull::new(base as *mut VirtIOHeader).ok_or(ProbeError::NoWindow)?;
            // SAFETY: discovery found a virtio-mmio transport in this window and the platform
            // mapped it (uncached, identity) for good; only this driver uses it.
            let t =
                unsafe { MmioTransport::new(header, size as usize) }.map_err(ProbeError::Mmio)?;
            Ok(KvmTransport::Mmio(t))
        }
        Bus::Pci {
            bus,
            device,
            function,
        } => {
            let mut root = PciRoot::new(PortCam);
            let df = DeviceFunction {
                bus,
                device,
                function,
            };
            let t = PciTransport::new::<KernelHal, _>(&mut root, df).map_err(ProbeError::Pci)?;
            Ok(KvmTransport::Pci(t))
        }
    }
}

/// Where a device is, as the log line says it.
pub(crate) struct Where(pub(crate) Bus);

impl core::fmt::Display for Where {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Bus::VirtioMmio { base, .. } => write!(f, "virtio-mmio {base:#x}"),
            Bus::Pci {
                bus,
                device,
                function,
            } => write!(f, "PCI {bus:02x}:{device:02x}.{function}"),
        }
    }
}

/// The NIC the probe brought up.
#[cfg(feature = "nic-virtio")]
#[derive(Debug)]
pub struct Nic {
    /// The driver.
    pub device: VirtioNetDevice,
    /// Its interrupt line, when the platform routed one (without one, the stack polls).
    pub irq: Option<Irq>,
    /// What discovery found.
    pub found: Device,
}

/// Candidates looked at, at most.
pub(crate) const CANDIDATES: usize = 4;

/// Brings up the first virtio-net device the platform found (`Platform::devices`, after
/// `Platform::init`), logging `net: virtio-net <MAC> at <where>, interrupt N`, or why there is
/// none. A device that fails is logged and the next one tried.
#[cfg(feature = "nic-virtio")]
pub fn probe_nics() -> Option<Nic> {
    let mut found: [Option<Device>; CANDIDATES] = [None; CANDIDATES];
    let mut n = 0;
    SelectedPlatform::devices(&mut |d| {
        if d.virtio_type == Some(VIRTIO_NET) && n < CANDIDATES {
            found[n] = Some(*d);
            n += 1;
        }
    });
    for d in found.iter().flatten() {
        let at = Where(d.bus);
        let device =
            match transport(d).and_then(|t| VirtioNetDevice::new(t).map_err(ProbeError::Driver)) {
                Ok(device) => device,
                Err(e) => {
                    log::warn!("net: virtio-net at {at}: {e}; skipped");
                    continue;
                }
            };
        let mac = device.capabilities().mac;
        match d.irq {
            Some(irq) => log::info!("net: virtio-net {mac} at {at}, interrupt {}", irq.0),
            None => log::info!("net: virtio-net {mac} at {at}, no interrupt (polled)"),
        }
        return Some(Nic {
            device,
            irq: d.irq,
            found: *d,
        });
    }
    if n == 0 {
        log::info!("net: no virtio-net device (none found by the platform)");
    } else {
        log::warn!("net: no virtio-net device came up ({n} found)");
    }
    None
}

// The stack keeps the NIC behind a lock in a static: it must be `Send`.
#[cfg(feature = "nic-virtio")]
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Nic>();
};
