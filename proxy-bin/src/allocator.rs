//! The global allocator, mimalloc, and what makes an idle process give back
//! the memory a burst freed.
//!
//! mimalloc returns freed pages to the system after its purge delay (1 s),
//! but only checks for expired ones while it frees whole pages, which an
//! idle process does not do: after 10,000 watches were opened, the memory
//! the opening freed stayed resident for as long as the watches stayed idle.
//! Once a second a thread of its own frees a block bigger than mimalloc's
//! largest size class, which always frees a whole page and so purges what
//! has expired (the crate's safe API has no `mi_collect`). It costs one
//! allocation a second; a shorter purge delay instead would cost every
//! request (2–8% of the request rate when measured).

use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Above mimalloc's largest size class (512 KiB), so a page of its own.
const PAGE_FREEING_BLOCK: usize = 1 << 20;

/// How often freed memory is checked for pages to give back: mimalloc's
/// purge delay.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// Starts the thread that lets mimalloc purge while the process is idle.
pub(crate) fn purge_while_idle() {
    let started = std::thread::Builder::new()
        .name("allocator-purge".into())
        .spawn(|| loop {
            std::thread::sleep(PURGE_EVERY);
            // Kept opaque so the allocation is not optimized away.
            drop(std::hint::black_box(Vec::<u8>::with_capacity(
                PAGE_FREEING_BLOCK,
            )));
        });
    if let Err(e) = started {
        tracing::debug!(error = %e, "no allocator purge thread: freed memory is returned while busy only");
    }
}
