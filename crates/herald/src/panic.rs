//! herald's panic hook, chained to the one before it: it erases the bars before the
//! panic's message is printed, so that the message and its backtrace note are seen
//! whole instead of being drawn over, and it keeps the message for the handles the
//! unwinding drops, so that an item left by a panic reports what the panic said.
//!
//! Installed once per process, by the first reporter with a sink; a hook the program
//! sets later replaces it (and may chain to it, as this one chains to the previous).

use std::cell::RefCell;
use std::panic::PanicHookInfo;
use std::sync::Once;

thread_local! {
    /// The last panic's message on this thread, until a handle takes it.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the hook, once.
pub(crate) fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = describe(info);
            // A panic inside a thread-local's destructor finds it gone: nothing kept.
            let _ = LAST.try_with(|last| *last.borrow_mut() = Some(message));
            crate::terminal::erase_for_panic();
            previous(info);
        }));
    });
}

/// The message of the panic this thread is unwinding from, if the hook saw it.
pub(crate) fn message() -> Option<String> {
    LAST.try_with(|last| last.borrow().clone()).ok().flatten()
}

/// `panicked at src/main.rs:10:5: index out of bounds: ...`, as the default hook
/// says it.
fn describe(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    match info.location() {
        Some(at) => format!(
            "panicked at {}:{}:{}: {what}",
            at.file(),
            at.line(),
            at.column()
        ),
        None => format!("panicked: {what}"),
    }
}
