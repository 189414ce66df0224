//! A Xen PVH image (`platform = "xen"`, `xen_guest = "pvh"`) booted by QEMU instead of Xen: the
//! same PVH entry runs, CPUID has no "XenVMMXenVMM" signature, and the platform says so on COM1
//! (and port 0xe9) and ends the guest through isa-debug-exit with status 103 (bad
//! configuration) instead of hanging or powering off silently.

use stardust_tests::{Machine, Run, assert_exit, line_with};

#[test]
fn a_pvh_xen_image_under_qemu_says_it_is_not_on_xen_and_exits_103() {
    for machine in [Machine::Microvm, Machine::Q35] {
        let boot = Run::new("hello")
            .machine(machine)
            .set(&["platform=xen", "xen_guest=pvh"])
            .boot();
        assert_exit(&boot, 103);
        line_with(
            &boot,
            &[
                "this image is a Xen PVH guest",
                "the hypervisor is not Xen",
                "signature 'TCGTCGTCGTCG'",
            ],
        );
    }
}
