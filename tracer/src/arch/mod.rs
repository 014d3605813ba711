//! Everything that depends on the CPU architecture: syscall numbers, the ABIs a
//! process can use, and register access. Adding aarch64 means adding a sibling
//! of `x86_64.rs` and selecting it here.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("appswitch-tracer supports x86_64 only so far; see tracer/src/arch/mod.rs");

/// The system-call ABI a call came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Abi {
    /// The native 64-bit ABI.
    Native,
    /// The 32-bit compat ABI (`int 0x80` on x86_64, including `socketcall`).
    Compat32,
    /// x32 (64-bit registers, 32-bit pointers). Network calls through it are refused.
    X32,
}

impl Abi {
    pub fn name(self) -> &'static str {
        match self {
            Abi::Native => NATIVE_ABI_NAME,
            Abi::Compat32 => COMPAT_ABI_NAME,
            Abi::X32 => "x32",
        }
    }
}
