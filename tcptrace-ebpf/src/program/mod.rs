//! The kernel side of tcptrace, for the BPF target only.

// The settings' macro is used by the modules declared after it.
#[macro_use]
mod settings;
mod drops;
mod listeners;
mod maps;
mod owner;
mod record;
mod signals;
mod socket;
mod tcp_states;
mod transition;
mod transition_programs;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
