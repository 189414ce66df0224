# pvhhello: the Stardust Xen lab's reference PVH guest, 32-bit (GNU as, AT&T syntax).
#
# Xen starts a PVH guest at the XEN_ELFNOTE_PHYS32_ENTRY address in 32-bit protected mode with
# paging off and %ebx = the physical address of hvm_start_info. This guest finds Xen by its CPUID
# signature, installs the hypercall page through the MSR that CPUID names, asks for the console
# ring and its event channel (HVM params 17 and 18), prints one line (with the command line from
# hvm_start_info) into the ring, waits until xenconsoled took it and shuts down with reason 0.
# Any failure on the way shuts down with reason 3 (crash); `cli; hlt` would look like a clean
# power-off on Xen, so it is never the fallback.
#
# Constants: xen/include/public/{xen.h, elfnote.h, sched.h, event_channel.h, hvm/params.h,
# hvm/hvm_op.h, arch-x86/hvm/start_info.h, io/console.h}.
.set HC_SCHED_OP, 29
.set HC_EVENT_CHANNEL_OP, 32
.set HC_HVM_OP, 34
.set SCHEDOP_YIELD, 0
.set SCHEDOP_SHUTDOWN, 2
.set EVTCHNOP_SEND, 4
.set HVMOP_GET_PARAM, 1
.set HVM_PARAM_CONSOLE_PFN, 17
.set HVM_PARAM_CONSOLE_EVTCHN, 18
.set DOMID_SELF, 0x7ff0
.set HSI_CMDLINE_PADDR, 24
.set CONS_OUT, 1024
.set CONS_OUT_SIZE, 2048
.set CONS_OUT_CONS, 3080
.set CONS_OUT_PROD, 3084

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

xennote_str 6, "pvhhello"                   # GUEST_OS
xennote_str 5, "xen-3.0"                    # XEN_VERSION
xennote_str 8, "generic"                    # LOADER
xennote_begin 18                            # PHYS32_ENTRY
    .long pvh_entry
xennote_end

.macro hypercall nr
    call hypercall_page + \nr * 32
.endm

    .code32
    .text
    .globl pvh_entry
pvh_entry:
    cld
    mov $stack_end, %esp
    mov %ebx, start_info

    # Xen's CPUID leaves: signature "XenVMMXenVMM" at 0x40000000 + n * 0x100
    mov $0x40000000, %esi
1:  mov %esi, %eax
    cpuid
    cmp $0x566e6558, %ebx
    jne 2f
    cmp $0x65584d4d, %ecx
    jne 2f
    cmp $0x4d4d566e, %edx
    je 3f
2:  add $0x100, %esi
    cmp $0x40010000, %esi
    jb 1b
    jmp fail                                # not Xen
3:  lea 2(%esi), %eax                       # leaf base+2: EBX = the hypercall-page MSR
    cpuid
    mov %ebx, %ecx
    mov $hypercall_page, %eax
    xor %edx, %edx
    wrmsr

    movl $HVM_PARAM_CONSOLE_PFN, param_index
    call get_param
    shl $12, %eax
    mov %eax, ring
    movl $HVM_PARAM_CONSOLE_EVTCHN, param_index
    call get_param
    mov %eax, evtchn_port

    mov $banner, %esi
    call put_string
    mov start_info, %ebx
    mov HSI_CMDLINE_PADDR(%ebx), %esi       # 0 when the config has no extra=
    test %esi, %esi
    jz 4f
    call put_string
4:  mov $newline, %esi
    call put_string
    call kick

    mov ring, %edi
    mov $100000, %ebp                       # wait (bounded) until xenconsoled took everything
5:  mov CONS_OUT_CONS(%edi), %eax
    cmp CONS_OUT_PROD(%edi), %eax
    je 6f
    call yield
    dec %ebp
    jnz 5b
6:  movl $0, shutdown_reason
    jmp shutdown
fail:
    movl $3, shutdown_reason
shutdown:
    mov $SCHEDOP_SHUTDOWN, %ebx
    mov $shutdown_reason, %ecx
    hypercall HC_SCHED_OP
7:  pause                                   # not reached
    jmp 7b

# get_param: HVMOP_get_param(param_index) -> %eax (low 32 bits of the value); failure -> crash
get_param:
    movw $DOMID_SELF, param_domid
    mov $HVMOP_GET_PARAM, %ebx
    mov $param_domid, %ecx
    hypercall HC_HVM_OP
    test %eax, %eax
    jnz fail
    mov param_value, %eax
    ret

# put_string(esi = NUL-terminated string): copy into out[], then publish out_prod.
put_string:
    mov ring, %edi
    mov CONS_OUT_PROD(%edi), %edx
8:  movzbl (%esi), %ecx
    test %ecx, %ecx
    jz 10f
9:  mov %edx, %eax
    sub CONS_OUT_CONS(%edi), %eax
    cmp $CONS_OUT_SIZE, %eax
    jb 11f
    mov %edx, CONS_OUT_PROD(%edi)           # ring full: publish, kick, yield, retry
    push %esi
    push %edx
    call kick
    call yield
    pop %edx
    pop %esi
    mov ring, %edi
    movzbl (%esi), %ecx
    jmp 9b
11: mov %edx, %eax
    and $(CONS_OUT_SIZE - 1), %eax
    mov %cl, CONS_OUT(%edi,%eax)
    inc %edx
    inc %esi
    jmp 8b
10: mov %edx, CONS_OUT_PROD(%edi)
    ret

kick:
    mov $EVTCHNOP_SEND, %ebx
    mov $evtchn_port, %ecx
    hypercall HC_EVENT_CHANNEL_OP
    ret

yield:
    mov $SCHEDOP_YIELD, %ebx
    xor %ecx, %ecx
    hypercall HC_SCHED_OP
    ret

    .section .rodata
banner: .asciz "pvhhello: hello from the lab's reference PVH guest; cmdline="
newline: .asciz "\n"

    .data
    .balign 8
start_info: .long 0
ring: .long 0
evtchn_port: .long 0
shutdown_reason: .long 0
param_domid: .short 0                       # struct xen_hvm_param { domid; index; value }
    .short 0
param_index: .long 0
param_value: .quad 0

    .section .hypercall_page, "aw", @progbits
    .balign 4096
hypercall_page: .fill 4096, 1, 0xc3

    .bss
    .balign 16
stack: .space 4096
stack_end:
