//! The terminal `top` draws on: raw mode, the alternate screen and a
//! hidden cursor while it runs, and all three put back however it ends —
//! a return, an error, or a panic (a hook restores the terminal before the
//! panic message prints, and tells the loop to stop). SIGTERM and SIGINT
//! are flags the loop checks (`crate::drain::Stop`), so they end it
//! through the same door.

use std::io::{self, Stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};

/// The terminal is in `top`'s modes and must be put back.
static TAKEN: AtomicBool = AtomicBool::new(false);
/// Some thread panicked: the loop stops.
static PANICKED: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

pub type Screen = Terminal<CrosstermBackend<Stdout>>;

/// Takes the terminal: raw mode, the alternate screen, no cursor.
pub fn take() -> io::Result<Screen> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            restore();
            previous(info);
        }));
    });
    TAKEN.store(true, Ordering::SeqCst);
    let taken = terminal::enable_raw_mode()
        .and_then(|()| execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide))
        .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
    if taken.is_err() {
        restore(); // what was set up before the failure
    }
    taken
}

/// Puts the terminal back as it was (once; later calls do nothing).
pub fn restore() {
    if TAKEN.swap(false, Ordering::SeqCst) {
        // Best effort: on a terminal that went away there is nobody to tell.
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
    }
}

/// Whether a thread panicked since the terminal was taken.
pub fn panicked() -> bool {
    PANICKED.load(Ordering::SeqCst)
}
