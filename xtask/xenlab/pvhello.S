# pvhello: the Stardust Xen lab's reference x86_64 PV guest (GNU as, AT&T syntax).
#
# It is the smallest guest that does what every Stardust PV image does at the start and the end:
# find the PV console ring from start_info, write a line into it, kick the console event channel,
# wait until xenconsoled has taken the bytes, and shut down with SCHEDOP_shutdown. The lab times
# Stardust images against it (`xl create` -> first console line -> shutdown).
#
# Variants (as --defsym): REASON=n shuts down with reason n (0 poweroff, 3 crash; default 0);
# HANG=1 prints and then yields forever (to exercise the lab's per-guest timeout).
#
# Constants: xen/include/public/{xen.h, elfnote.h, sched.h, event_channel.h, io/console.h}.
.ifndef REASON
.set REASON, 0
.endif
.ifndef HANG
.set HANG, 0
.endif

.set HC_SCHED_OP, 29
.set HC_EVENT_CHANNEL_OP, 32
.set SCHEDOP_YIELD, 0
.set SCHEDOP_SHUTDOWN, 2
.set EVTCHNOP_SEND, 4
# offsets in start_info
.set SI_CONSOLE_MFN, 72
.set SI_CONSOLE_EVTCHN, 80
.set SI_CMD_LINE, 128
# the read-only machine-to-phys table every x86_64 PV guest sees
.set M2P, 0xffff800000000000
# struct xencons_interface: in[1024], out[2048], in_cons, in_prod, out_cons, out_prod
.set CONS_OUT, 1024
.set CONS_OUT_SIZE, 2048
.set CONS_OUT_CONS, 3080
.set CONS_OUT_PROD, 3084

# One Xen ELF note: namesz, descsz, type, "Xen\0", desc (4-byte aligned).
.macro xennote_begin type
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8f - 7f
    .long \type
    .asciz "Xen"
7:
.endm
.macro xennote_end
8:  .balign 4
    .popsection
.endm
.macro xennote_str type, text
    xennote_begin \type
    .asciz "\text"
    xennote_end
.endm
.macro xennote_quad type, value
    xennote_begin \type
    .quad \value
    xennote_end
.endm

xennote_str 6, "pvhello"                # GUEST_OS
xennote_str 7, "1"                      # GUEST_VERSION
xennote_str 5, "xen-3.0"                # XEN_VERSION
xennote_str 8, "generic"                # LOADER
xennote_quad 3, 0                         # VIRT_BASE
xennote_quad 4, 0                         # PADDR_OFFSET
xennote_quad 1, pv_entry                  # ENTRY
xennote_quad 2, hypercall_page            # HYPERCALL_PAGE
xennote_str 10, "!writable_page_tables" # FEATURES

.macro hypercall nr
    call hypercall_page + \nr * 32
.endm

    .text
    .globl pv_entry
pv_entry:
    cld
    lea stack_end(%rip), %rsp
    mov %rsi, %r15                          # start_info (virtual)
    mov SI_CONSOLE_MFN(%r15), %rax          # console page: machine frame ...
    movabs $M2P, %rbx
    mov (%rbx,%rax,8), %rax                 # ... to pseudo-physical frame ...
    shl $12, %rax                           # ... to virtual address (VIRT_BASE is 0)
    mov %rax, %r13
    mov SI_CONSOLE_EVTCHN(%r15), %eax
    mov %eax, evtchn_port(%rip)

    lea banner(%rip), %rsi
    call put_string
    lea SI_CMD_LINE(%r15), %rsi             # NUL-terminated, at most 1024 bytes
    call put_string
    lea newline(%rip), %rsi
    call put_string
    call kick

    mov $100000, %r12d                      # wait (bounded) until xenconsoled took everything
1:  mov CONS_OUT_CONS(%r13), %eax
    cmp CONS_OUT_PROD(%r13), %eax
    je 2f
    mov $SCHEDOP_YIELD, %edi
    xor %esi, %esi
    hypercall HC_SCHED_OP
    dec %r12d
    jnz 1b
2:
.if HANG
3:  mov $SCHEDOP_YIELD, %edi
    xor %esi, %esi
    hypercall HC_SCHED_OP
    jmp 3b
.endif
    movl $REASON, shutdown_reason(%rip)
    mov $SCHEDOP_SHUTDOWN, %edi
    lea shutdown_reason(%rip), %rsi
    hypercall HC_SCHED_OP
4:  pause                                   # not reached
    jmp 4b

# put_string(rsi = NUL-terminated string): copy into out[], then publish out_prod.
# A full ring is waited out with kick + yield (the string may be longer than the ring).
put_string:
    mov CONS_OUT_PROD(%r13), %edx
5:  movzbl (%rsi), %ecx
    test %ecx, %ecx
    jz 7f
6:  mov %edx, %eax
    sub CONS_OUT_CONS(%r13), %eax
    cmp $CONS_OUT_SIZE, %eax
    jb 8f
    mov %edx, CONS_OUT_PROD(%r13)           # ring full: publish, kick, yield, retry
    push %rsi
    push %rdx
    call kick
    mov $SCHEDOP_YIELD, %edi
    xor %esi, %esi
    hypercall HC_SCHED_OP
    pop %rdx
    pop %rsi
    movzbl (%rsi), %ecx
    jmp 6b
8:  mov %edx, %eax
    and $(CONS_OUT_SIZE - 1), %eax
    mov %cl, CONS_OUT(%r13,%rax)
    inc %edx
    inc %rsi
    jmp 5b
7:  mov %edx, CONS_OUT_PROD(%r13)           # x86 stores are ordered: bytes before the index
    ret

# kick: EVTCHNOP_send on the console event channel.
kick:
    mov $EVTCHNOP_SEND, %edi
    lea evtchn_port(%rip), %rsi
    hypercall HC_EVENT_CHANNEL_OP
    ret

    .section .rodata
.if HANG
banner: .asciz "pvhello: hello from the lab's reference PV guest (hang variant); cmdline="
.elseif REASON
banner: .asciz "pvhello: hello from the lab's reference PV guest (crash variant); cmdline="
.else
banner: .asciz "pvhello: hello from the lab's reference PV guest; cmdline="
.endif
newline: .asciz "\n"

    .data
    .balign 8
evtchn_port: .long 0
shutdown_reason: .long 0

    .section .hypercall_page, "aw", @progbits
    .balign 4096
    .globl hypercall_page
hypercall_page: .fill 4096, 1, 0xc3     # Xen overwrites it with the hypercall stubs

    .bss
    .balign 16
stack: .space 8192
stack_end:
