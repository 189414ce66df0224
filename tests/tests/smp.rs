//! Multi-core bring-up on QEMU (TCG, one host thread per vCPU): the kernel starts the CPUs the
//! machine lists in its MADT, up to the profile's `cpus`, and says how many run; `acpi=off`
//! (no MADT) and a machine with fewer or more CPUs than the setting are reported as such.
//! Run with `cargo test -p stardust-tests --test smp`.

use stardust_tests::{Machine, Run, Target, assert_exit, line_with, on_targets};

/// `hello` with the `coop` scheduler (`none` refuses `cpus` above 1) on `machine`.
fn hello(
    machine: Machine,
    set: &'static [&'static str],
    extra: &'static [&'static str],
) -> stardust_tests::Boot {
    Run::new("hello")
        .machine(machine)
        .set(set)
        .extra(extra)
        .kargs("log=debug")
        .boot()
}

const BOTH: [Target; 2] = [
    Target {
        name: "q35",
        machine: Machine::Q35,
        set: &[],
    },
    Target {
        name: "microvm",
        machine: Machine::Microvm,
        set: &[],
    },
];

#[test]
fn every_cpu_of_the_setting_comes_up_on_q35_and_microvm() {
    on_targets(&BOTH, |t| {
        for (set, n) in [
            (&["cpus=2", "scheduler=coop"][..], 2),
            (&["cpus=4", "scheduler=coop"][..], 4),
        ] {
            let boot = hello(t.machine, leak(set), &[]);
            assert_exit(&boot, 0);
            line_with(
                &boot,
                &[&format!(
                    "{n} CPUs up (the machine has {n}; profile setting cpus = {n})"
                )],
            );
            for cpu in 1..n {
                line_with(&boot, &[&format!("CPU {cpu} up")]);
            }
            line_with(&boot, &["Hello from Stardust!"]);
        }
    });
}

fn leak(set: &[&'static str]) -> &'static [&'static str] {
    Box::leak(set.to_vec().into_boxed_slice())
}

#[test]
fn a_machine_with_fewer_or_more_cpus_than_the_setting_is_reported() {
    on_targets(&BOTH, |t| {
        // `-smp` given twice: QEMU takes the last.
        let fewer = hello(t.machine, &["cpus=4", "scheduler=coop"], &["-smp", "2"]);
        assert_exit(&fewer, 0);
        line_with(
            &fewer,
            &["2 CPUs up (the machine has 2; profile setting cpus = 4)"],
        );
        let more = hello(t.machine, &["cpus=2", "scheduler=coop"], &["-smp", "4"]);
        assert_exit(&more, 0);
        line_with(
            &more,
            &["2 CPUs up (the machine has 4; profile setting cpus = 2)"],
        );
        assert!(
            !more.stdout.contains("CPU 2 up"),
            "a third CPU started\n{}",
            more.stdout
        );
        // cpus = 1 (the default) on a machine of 4: nothing started, nothing said.
        let one = hello(t.machine, &["scheduler=coop"], &["-smp", "4"]);
        assert_exit(&one, 0);
        assert!(!one.stdout.contains("CPUs up"), "{}", one.stdout);
    });
}

#[test]
fn without_acpi_there_is_one_cpu_and_the_kernel_says_why() {
    let boot = Run::new("hello")
        .machine(Machine::Microvm)
        .machine_opts("acpi=off")
        .set(&["cpus=2", "scheduler=coop"])
        .boot();
    assert_exit(&boot, 0);
    line_with(&boot, &["one CPU: no ACPI table lists the machine's CPUs"]);
    line_with(
        &boot,
        &["1 CPU up (the machine has 1; profile setting cpus = 2)"],
    );
}

#[test]
fn the_universal_image_starts_cpus_on_q35() {
    let boot = hello(
        Machine::Q35,
        &["platform=universal", "cpus=2", "scheduler=coop"],
        &[],
    );
    assert_exit(&boot, 0);
    line_with(
        &boot,
        &["2 CPUs up (the machine has 2; profile setting cpus = 2)"],
    );
}

/// `smpprobe MODE` with `cpus` CPUs (the `coop` scheduler) on `machine`.
fn smpprobe(
    machine: Machine,
    cpus: &'static str,
    args: &'static [&'static str],
) -> stardust_tests::Boot {
    Run::new("smpprobe")
        .machine(machine)
        .set(leak(&[cpus, "scheduler=coop"]))
        .args(args)
        .boot()
}

#[test]
fn a_computation_split_across_cpus_and_a_shared_lock_count_right() {
    on_targets(&BOTH, |t| {
        for (cpus, n) in [("cpus=2", 2), ("cpus=4", 4)] {
            let boot = smpprobe(t.machine, cpus, &["parallel", "400000"]);
            assert_exit(&boot, 0);
            line_with(
                &boot,
                &[&format!("smpprobe: parallel sum on {n} CPUs matches")],
            );
            line_with(
                &boot,
                &[&format!(
                    "smpprobe: {n} CPUs counted {} under one lock",
                    n * 100_000
                )],
            );
        }
    });
}

#[test]
fn every_cpu_allocating_at_once_gets_blocks_of_its_own() {
    // Each CPU fills each of its blocks with a byte of its own and sums what it reads back
    // before freeing it; a block handed out twice (to two CPUs, or from a per-CPU cache and
    // the heap) loses content and the probe exits 1.
    on_targets(&BOTH, |t| {
        for (cpus, n) in [("cpus=2", 2), ("cpus=4", 4)] {
            let boot = smpprobe(t.machine, cpus, &["alloc", "30000"]);
            assert_exit(&boot, 0);
            line_with(
                &boot,
                &[&format!("smpprobe: alloc on {n} CPUs: checksums match")],
            );
        }
    });
}

#[test]
fn a_page_unmapped_on_cpu_0_faults_on_cpu_1() {
    // CPU 1 read the page first, so without the TLB shoot-down its stale translation would let
    // the second read through (the probe then exits 1: checked by hand).
    on_targets(&BOTH, |t| {
        let boot = smpprobe(t.machine, "cpus=2", &["shootdown"]);
        assert_exit(&boot, 102);
        line_with(&boot, &["smpprobe: CPU 1 reads the page unmapped on CPU 0"]);
        line_with(&boot, &["CPU 1 EXCEPTION: #PF page fault"]);
        assert!(!boot.stdout.contains("FAIL"), "{}", boot.stdout);
    });
}

#[test]
fn an_overflow_of_cpu_1_s_own_stack_faults_on_its_guard_page() {
    on_targets(&BOTH, |t| {
        let boot = smpprobe(t.machine, "cpus=2", &["overflow"]);
        assert_exit(&boot, 102);
        // The push that runs into the guard page cannot take a #PF frame there: a double
        // fault, on CPU 1's own double-fault stack.
        line_with(&boot, &["CPU 1 EXCEPTION: #DF double fault"]);
    });
}

#[test]
fn a_panic_on_cpu_1_stops_the_machine_with_its_message() {
    on_targets(&BOTH, |t| {
        let boot = smpprobe(t.machine, "cpus=2", &["panic"]);
        assert_exit(&boot, 101);
        line_with(
            &boot,
            &["CPU 1 PANIC: panicked at", "smpprobe: a panic on CPU 1"],
        );
    });
}

#[test]
fn threads_all_passes_with_threads_on_every_cpu() {
    // Every CPU runs threads from one ready set: the 1,000-thread mutex count, the channel,
    // the semaphore, sleeps, a hog on another CPU while main sleeps, yields.
    const RUNS: [Target; 4] = [
        Target {
            name: "q35 coop cpus=2",
            machine: Machine::Q35,
            set: &["cpus=2", "scheduler=coop"],
        },
        Target {
            name: "q35 preempt cpus=4",
            machine: Machine::Q35,
            set: &["cpus=4", "scheduler=preempt"],
        },
        Target {
            name: "microvm preempt cpus=2",
            machine: Machine::Microvm,
            set: &["cpus=2", "scheduler=preempt"],
        },
        Target {
            name: "microvm coop cpus=4",
            machine: Machine::Microvm,
            set: &["cpus=4", "scheduler=coop"],
        },
    ];
    on_targets(&RUNS, |t| {
        let boot = Run::new("threads")
            .machine(t.machine)
            .set(t.set)
            .args(&["all"])
            .boot();
        assert_exit(&boot, 0);
        line_with(&boot, &["mutex count: 10000 (1000 threads"]);
        // (Where the hog ran depends on timing: under load main may wake only after a coop
        // hog's 100 ms; the app checks either case against the scheduler's rules.)
        line_with(&boot, &["threads stayed on their CPUs"]);
        line_with(&boot, &["threads: all passed"]);
    });
}

#[test]
fn a_device_line_routed_to_cpu_1_is_served_there() {
    // The PIT's IRQ 0 through the IOAPIC, its redirection entry naming CPU 1's local APIC.
    on_targets(&BOTH, |t| {
        let boot = Run::new("irqprobe")
            .machine(t.machine)
            .set(&["cpus=2", "scheduler=coop"])
            .args(&["cpu", "1"])
            .boot();
        assert_exit(&boot, 0);
        line_with(&boot, &["irqprobe: 20 interrupts on line 2 (CPU 1)"]);
    });
}

#[test]
fn async_tasks_run_on_every_cpu() {
    // The executor's one ready queue feeds every CPU: the probe's checks (timers, join, a
    // 1,000-task mutex count, a channel) and tasks seen on more than one CPU.
    const RUNS: [Target; 2] = [
        Target {
            name: "q35 async cpus=2",
            machine: Machine::Q35,
            set: &["cpus=2", "scheduler=async"],
        },
        Target {
            name: "microvm async cpus=4",
            machine: Machine::Microvm,
            set: &["cpus=4", "scheduler=async"],
        },
    ];
    on_targets(&RUNS, |t| {
        let boot = Run::new("asyncprobe")
            .machine(t.machine)
            .set(t.set)
            .args(&["all"])
            .boot();
        assert_exit(&boot, 0);
        let line = line_with(&boot, &["cpus: tasks ran on"]);
        assert!(!line.contains("ran on 1 of"), "{line}");
        line_with(&boot, &["asyncprobe: all passed"]);
    });
}
