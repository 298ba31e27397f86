//! The future type of Paddock's extension points ([`crate::authn::Authenticator`],
//! [`crate::plugin::Plugin`]): most calls know their answer at once (a token
//! table lookup, a plugin that does not use a phase), so they return it
//! without allocating; only real waiting pays for a box.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Either a value that is ready now or a boxed future.
///
/// ```
/// use proxy_core::future::ReadyOrBoxed;
/// # async fn lookup() -> u32 { 7 }
/// let now: ReadyOrBoxed<'_, u32> = ReadyOrBoxed::ready(7);
/// let later: ReadyOrBoxed<'_, u32> = ReadyOrBoxed::boxed(async { lookup().await });
/// # futures_util::FutureExt::now_or_never(now);
/// # drop(later);
/// ```
#[must_use = "futures do nothing unless polled"]
pub enum ReadyOrBoxed<'a, T> {
    /// Already answered.
    Ready(std::future::Ready<T>),
    /// Still to be awaited.
    Boxed(BoxFuture<'a, T>),
}

impl<'a, T> ReadyOrBoxed<'a, T> {
    /// A future that completes at once with `value`, without allocating.
    pub fn ready(value: T) -> Self {
        Self::Ready(std::future::ready(value))
    }

    /// Boxes `future`.
    pub fn boxed(future: impl Future<Output = T> + Send + 'a) -> Self {
        Self::Boxed(Box::pin(future))
    }
}

impl<'a, T> From<BoxFuture<'a, T>> for ReadyOrBoxed<'a, T> {
    fn from(future: BoxFuture<'a, T>) -> Self {
        Self::Boxed(future)
    }
}

impl<T> Future for ReadyOrBoxed<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        // Both variants are `Unpin` (`Ready` always is, a `Pin<Box>` too).
        match self.get_mut() {
            Self::Ready(ready) => Pin::new(ready).poll(cx),
            Self::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> std::fmt::Debug for ReadyOrBoxed<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ready(_) => "ReadyOrBoxed::Ready",
            Self::Boxed(_) => "ReadyOrBoxed::Boxed",
        })
    }
}
