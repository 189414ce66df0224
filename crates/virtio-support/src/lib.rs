//! What Stardust's virtio drivers share, so that each says it once:
//!
//! - [`error_words`]: virtio-drivers' words for its errors, without its socket device's (which
//!   neither a network nor a block device returns): its own `Display` would bring those into
//!   every image. An image with both drivers holds the words once.
//! - `host_hal` (feature `test-utils`): virtio-drivers' `Hal` on host memory, for the drivers'
//!   host tests against a mock device.
//!
//! The drivers stay independent of each other: they depend on this crate, never on one another.
#![cfg_attr(not(test), no_std)]

#[cfg(any(test, feature = "test-utils"))]
extern crate std;

#[cfg(any(test, feature = "test-utils"))]
pub mod host_hal;

/// virtio-drivers' words for `e` (the socket device's errors in one word, as no driver here
/// meets them).
pub fn error_words(e: virtio_drivers::Error) -> &'static str {
    use virtio_drivers::Error as E;
    match e {
        E::QueueFull => "Virtqueue is full",
        E::NotReady => "Device not ready",
        E::WrongToken => "Device used a different descriptor chain to the one we were expecting",
        E::AlreadyUsed => "Virtqueue is already in use",
        E::InvalidParam => "Invalid parameter",
        E::DmaError => "Failed to allocate DMA memory",
        E::IoError => "I/O error",
        E::Unsupported => "Request not supported by device",
        E::ConfigSpaceTooSmall => "Config space advertised by the device is smaller than expected",
        E::ConfigSpaceMissing => {
            "The device doesn't have any config space, but the driver expects some"
        }
        E::SocketDeviceError(_) => "Error from the socket device",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_say_what_failed() {
        assert_eq!(
            error_words(virtio_drivers::Error::QueueFull),
            "Virtqueue is full"
        );
        assert_eq!(error_words(virtio_drivers::Error::IoError), "I/O error");
    }

    #[test]
    fn host_hal_counts_its_pages() {
        use virtio_drivers::{BufferDirection, Hal};
        let before = host_hal::dma_pages();
        let (paddr, vaddr) = host_hal::HostHal::dma_alloc(2, BufferDirection::Both);
        assert_eq!(host_hal::dma_pages(), before + 2);
        assert_eq!(paddr, vaddr.as_ptr() as usize as u64);
        // SAFETY: allocated just above with the same page count.
        unsafe { host_hal::HostHal::dma_dealloc(paddr, vaddr, 2) };
        assert_eq!(host_hal::dma_pages(), before);
    }
}
