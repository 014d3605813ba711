//! x86_64: syscall numbers of the native, i386 and x32 ABIs and the register
//! layout used to skip a call and set its result.

use super::Abi;

pub const NATIVE_ABI_NAME: &str = "x86_64";
pub const COMPAT_ABI_NAME: &str = "i386";

/// `AUDIT_ARCH_*` values reported by PTRACE_GET_SYSCALL_INFO.
pub const AUDIT_ARCH_NATIVE: u32 = 0xC000_003E;
pub const AUDIT_ARCH_COMPAT: u32 = 0x4000_0003;
/// x32 calls come through the native arch with this bit set in the number.
pub const X32_SYSCALL_BIT: u64 = 0x4000_0000;

/// Native (x86_64) syscall numbers the tracer decodes.
pub mod nr {
    pub const WRITEV: u64 = 20;
    pub const EXECVE: u64 = 59;
    pub const EXECVEAT: u64 = 322;
    pub const SOCKET: u64 = 41;
    pub const CONNECT: u64 = 42;
    pub const ACCEPT: u64 = 43;
    pub const SENDTO: u64 = 44;
    pub const RECVFROM: u64 = 45;
    pub const SENDMSG: u64 = 46;
    pub const RECVMSG: u64 = 47;
    pub const BIND: u64 = 49;
    pub const LISTEN: u64 = 50;
    pub const GETSOCKNAME: u64 = 51;
    pub const GETPEERNAME: u64 = 52;
    pub const CLONE: u64 = 56;
    pub const ACCEPT4: u64 = 288;
    pub const SENDMMSG: u64 = 307;
    pub const CLONE3: u64 = 435;
    pub const LANDLOCK_CREATE_RULESET: u64 = 444;
    pub const LANDLOCK_RESTRICT_SELF: u64 = 446;
}

/// i386 syscall numbers (the compat ABI).
pub mod nr32 {
    pub const SOCKETCALL: u64 = 102;
    pub const WRITEV: u64 = 146;
    pub const EXECVE: u64 = 11;
    pub const EXECVEAT: u64 = 358;
    pub const CLONE: u64 = 120;
    pub const SENDMMSG: u64 = 345;
    pub const SOCKET: u64 = 359;
    pub const BIND: u64 = 361;
    pub const CONNECT: u64 = 362;
    pub const LISTEN: u64 = 363;
    pub const ACCEPT4: u64 = 364;
    pub const GETSOCKNAME: u64 = 367;
    pub const GETPEERNAME: u64 = 368;
    pub const SENDTO: u64 = 369;
    pub const SENDMSG: u64 = 370;
    pub const RECVFROM: u64 = 371;
    pub const RECVMSG: u64 = 372;
    pub const CLONE3: u64 = 435;
    pub const LANDLOCK_CREATE_RULESET: u64 = 444;
    pub const LANDLOCK_RESTRICT_SELF: u64 = 446;
}

/// `socketcall(2)` sub-call numbers (linux/net.h).
pub mod socketcall {
    pub const SOCKET: u64 = 1;
    pub const BIND: u64 = 2;
    pub const CONNECT: u64 = 3;
    pub const LISTEN: u64 = 4;
    pub const ACCEPT: u64 = 5;
    pub const GETSOCKNAME: u64 = 6;
    pub const GETPEERNAME: u64 = 7;
    pub const SENDTO: u64 = 11;
    pub const RECVFROM: u64 = 12;
    pub const SENDMSG: u64 = 16;
    pub const RECVMSG: u64 = 17;
    pub const ACCEPT4: u64 = 18;
    pub const SENDMMSG: u64 = 20;
}

/// Which ABI a call with this audit arch and number came through.
pub fn abi_of(audit_arch: u32, nr: u64) -> Option<Abi> {
    match audit_arch {
        AUDIT_ARCH_NATIVE if nr & X32_SYSCALL_BIT != 0 => Some(Abi::X32),
        AUDIT_ARCH_NATIVE => Some(Abi::Native),
        AUDIT_ARCH_COMPAT => Some(Abi::Compat32),
        _ => None,
    }
}

/// Registers as PTRACE_GETREGS returns them.
pub type Regs = libc::user_regs_struct;

/// Make the stopped call a no-op whose result is `ret` (a value, or -errno).
/// At a seccomp stop (Linux >= 4.8) a syscall number of -1 skips the call and
/// the kernel returns whatever is in the return register.
pub fn skip_with_result(regs: &mut Regs, ret: i64) {
    regs.orig_rax = u64::MAX;
    regs.rax = ret as u64;
}

/// The syscall-argument register `i` (0-based) for `abi`.
pub fn arg_mut(regs: &mut Regs, abi: Abi, i: usize) -> &mut u64 {
    match (abi, i) {
        (Abi::Compat32, 0) => &mut regs.rbx,
        (Abi::Compat32, 1) => &mut regs.rcx,
        (Abi::Compat32, 2) => &mut regs.rdx,
        (Abi::Compat32, 3) => &mut regs.rsi,
        (Abi::Compat32, 4) => &mut regs.rdi,
        (Abi::Compat32, _) => &mut regs.rbp,
        (_, 0) => &mut regs.rdi,
        (_, 1) => &mut regs.rsi,
        (_, 2) => &mut regs.rdx,
        (_, 3) => &mut regs.r10,
        (_, 4) => &mut regs.r8,
        (_, _) => &mut regs.r9,
    }
}

/// The return register at a syscall-exit stop.
pub fn return_value(regs: &Regs) -> i64 {
    regs.rax as i64
}

/// Injecting system calls into a stopped thread (attach/inject.rs).
pub mod inject {
    use super::Regs;

    /// The `syscall` instruction, looked for in the target's vDSO.
    pub const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];
    pub const MMAP: u64 = 9;
    pub const MUNMAP: u64 = 11;
    pub const CLOSE: u64 = 3;
    pub const PRCTL: u64 = 157;
    pub const SECCOMP: u64 = 317;
    /// The code segment of a 64-bit thread (0x23: a 32-bit one, which has
    /// no `syscall` instruction to borrow).
    pub const USER_CS_64: u64 = 0x33;

    /// `regs` set to make system call `nr(args)` at `insn`, with no
    /// restart of the call the thread was in (orig_rax = -1: the kernel's
    /// restart logic leaves these registers alone).
    pub fn set_call(regs: &mut Regs, insn: u64, nr: u64, args: [u64; 6]) {
        regs.rip = insn;
        regs.rax = nr;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
    }

    pub fn pc(regs: &Regs) -> u64 {
        regs.rip
    }

    pub fn result(regs: &Regs) -> i64 {
        regs.rax as i64
    }

    pub fn is_64bit(regs: &Regs) -> bool {
        regs.cs == USER_CS_64
    }
}
