//! The terminal sink: live bars on stderr for people (docs/sdk.md).
//!
//! [`TerminalSink`] owns the screen. It keeps the latest state of each open run, prints
//! what must not be missed (errors, warnings and logs, failed items, stages and tools,
//! a finished run's summary) above the live area the moment it arrives, and redraws
//! the live area in place with ANSI cursor movement, at most every
//! [`REDRAW_INTERVAL_S`] and only when it changed. It writes to stderr alone: stdout
//! belongs to the program's result.
//!
//! The screen's state lives behind a lock shared with [`Console`], through which the
//! program's own output gets past the bars ([`Progress::println`] and
//! [`Progress::suspend`](crate::Progress::suspend)), and with the panic hook, which
//! erases the bars before a panic's message is printed, so that nothing the bars did
//! not write is ever erased by them.
//!
//! # Layout
//!
//! - `render`: what is shown, as pure functions of run states, the time and the screen
//!   size; every screen is tested with fixed timestamps.
//! - `text`: styled lines cut to a width in columns, and the human forms of numbers.
//! - this file: the driver, tested by feeding its bytes to an in-memory terminal
//!   emulator (`vt100`) and reading the screen back.
//!
//! [`Progress::println`]: crate::Progress::println

mod render;
mod text;

pub use text::{escape_controls, eta_text, overdue_text};

#[cfg(test)]
mod fixtures;

use std::io::{self, Write};
use std::sync::{Arc, Mutex, TryLockError, Weak};
use std::time::{Duration, Instant};

use console::Term;
use herald_protocol::{Event, EventBody, RunState, Timestamp};

use crate::dispatch::now_ts;
use crate::lock::lock;
use crate::sink::{Sink, SinkPolicy};

/// Shortest time between two redraws of the live area: at most 20 a second, smooth to
/// the eye and cheap on a slow SSH link. Messages do not wait for it.
const REDRAW_INTERVAL_S: f64 = 0.05;

/// Where the sink draws.
enum Screen {
    /// The process's stderr, a terminal: measured on each draw, as it may be resized.
    Stderr(Term),
    /// A terminal of a fixed size, for tests.
    #[cfg(test)]
    Fixed { rows: usize, cols: usize },
    /// Not a terminal: bars were forced (`--progress bars`) onto a pipe or a file.
    /// Cursor movement would fill it with escape codes and every redraw would add a
    /// copy of the bars, so nothing is redrawn: a run's start, each stage's end, the
    /// messages and each run's summary are written once each, as plain lines, a log
    /// that reads top to bottom. Without colors, as other tools write to a pipe.
    Lines,
}

/// Every screen drawn on a terminal, for the panic hook to erase.
static SCREENS: Mutex<Vec<Weak<Mutex<Painter>>>> = Mutex::new(Vec::new());

/// Draws runs as live bars on a terminal.
pub(crate) struct TerminalSink {
    painter: Arc<Mutex<Painter>>,
}

/// The screen as the sink drew it, shared with [`Console`].
struct Painter {
    out: Box<dyn Write + Send>,
    screen: Screen,
    color: bool,
    /// The open runs' latest states, in the order the runs started.
    runs: Vec<RunState>,
    /// Lines to print above the live area on the next draw.
    pending: Vec<String>,
    /// The live area as it is on screen now; the cursor is at the end of its last line.
    shown: Vec<String>,
    /// The screen's width when `shown` was drawn.
    shown_cols: usize,
    last_draw: Option<Timestamp>,
    /// The latest time seen, in an event or a refresh.
    now: Option<Timestamp>,
    /// Inside [`Console::suspend`]: the program has the screen, nothing is drawn.
    suspended: usize,
}

impl TerminalSink {
    /// Bars on the process's stderr, in color when `color` (`NO_COLOR` unset) and stderr
    /// is a terminal.
    pub(crate) fn stderr(color: bool) -> TerminalSink {
        let term = Term::stderr();
        let screen = if term.is_term() {
            Screen::Stderr(term)
        } else {
            Screen::Lines
        };
        let color = color && !matches!(screen, Screen::Lines);
        let on_terminal = !matches!(screen, Screen::Lines);
        let sink = TerminalSink::new(Box::new(io::stderr()), screen, color);
        if on_terminal {
            let mut screens = lock(&SCREENS);
            screens.retain(|s| s.strong_count() > 0);
            screens.push(Arc::downgrade(&sink.painter));
            drop(screens);
            crate::panic::install();
        }
        sink
    }

    fn new(out: Box<dyn Write + Send>, screen: Screen, color: bool) -> TerminalSink {
        TerminalSink {
            painter: Arc::new(Mutex::new(Painter {
                out,
                screen,
                color,
                runs: Vec::new(),
                pending: Vec::new(),
                shown: Vec::new(),
                shown_cols: 0,
                last_draw: None,
                now: None,
                suspended: 0,
            })),
        }
    }

    /// The way for the program's own output to get past this sink's bars.
    pub(crate) fn console(&self) -> Console {
        Console {
            painter: self.painter.clone(),
        }
    }
}

/// Erases the bars of every terminal screen, for a panic's message to be printed
/// whole where they were; the next redraw draws them again below it.
///
/// A screen whose lock is held (by the background thread, in the middle of a frame)
/// is waited for briefly; one held by the panicking thread itself is left alone.
pub(crate) fn erase_for_panic() {
    let screens: Vec<Arc<Mutex<Painter>>> =
        lock(&SCREENS).iter().filter_map(Weak::upgrade).collect();
    for screen in screens {
        let deadline = Instant::now() + Duration::from_millis(50);
        loop {
            let painter = match screen.try_lock() {
                Ok(painter) => painter,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Err(TryLockError::WouldBlock) => break,
            };
            let mut painter = painter;
            let _ = painter.erase();
            break;
        }
    }
}

/// The rows the live area `shown`, drawn `drawn_cols` wide, takes on a screen now
/// `cols` wide. Its lines were cut to the width they were drawn at, one row each; a
/// terminal narrowed since has wrapped the longer ones over more rows (as terminals
/// that reflow their text on a resize do, which most do), and erasing the area must
/// go up over all of them, or their ends would be left behind.
fn area_rows(shown: &[String], drawn_cols: usize, cols: usize) -> usize {
    if cols == 0 || cols >= drawn_cols {
        return shown.len();
    }
    shown
        .iter()
        .map(|line| console::measure_text_width(line).div_ceil(cols).max(1))
        .sum()
}

/// What the program writes gets past the bars through this: the live area is erased,
/// the program's output written, and the area drawn again below it.
#[derive(Clone)]
pub(crate) struct Console {
    painter: Arc<Mutex<Painter>>,
}

impl Console {
    /// Prints `line` above the bars.
    pub(crate) fn println(&self, line: &str) -> io::Result<()> {
        lock(&self.painter).print_above(line)
    }

    /// Erases the bars, runs `f`, and draws them again: nothing is drawn meanwhile.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        {
            let mut painter = lock(&self.painter);
            let _ = painter.erase();
            painter.suspended += 1;
        }
        /// Gives the screen back when `f` returns or unwinds.
        struct Resume<'a>(&'a Console);
        impl Drop for Resume<'_> {
            fn drop(&mut self) {
                let mut painter = lock(&self.0.painter);
                painter.suspended -= 1;
                let now = painter.clock();
                let _ = painter.draw(now);
            }
        }
        let _resume = Resume(self);
        f()
    }
}

impl Painter {
    fn see(&mut self, t: Timestamp) {
        self.now = Some(self.now.map_or(t, |now| now.max(t)));
    }

    /// The time for a draw the program asked for: the wall clock, never before what
    /// the events said.
    fn clock(&mut self) -> Timestamp {
        self.see(now_ts());
        self.now.unwrap_or_else(now_ts)
    }

    /// Whether the live area may be redrawn at `now`.
    fn due(&self, now: Timestamp) -> bool {
        self.last_draw.is_none_or(|last| {
            let since = now.seconds_since(last);
            // A clock set back must not freeze the bars.
            !(0.0..REDRAW_INTERVAL_S).contains(&since)
        })
    }

    /// The screen's rows and columns; `None` when it cannot redraw.
    fn size(&self) -> Option<(usize, usize)> {
        match &self.screen {
            Screen::Stderr(term) => {
                let (rows, cols) = term.size();
                Some((usize::from(rows), usize::from(cols)))
            }
            #[cfg(test)]
            Screen::Fixed { rows, cols } => Some((*rows, *cols)),
            Screen::Lines => None,
        }
    }

    /// The bytes that take the cursor back to the start of the live area and clear
    /// from there down.
    fn erase_sequence(&self) -> String {
        let mut buf = String::new();
        if !self.shown.is_empty() {
            let cols = self.size().map_or(self.shown_cols, |(_, cols)| cols);
            let rows = area_rows(&self.shown, self.shown_cols, cols);
            buf.push('\r');
            if rows > 1 {
                buf.push_str(&format!("\x1b[{}A", rows - 1));
            }
            buf.push_str("\x1b[J");
        }
        buf
    }

    /// Erases the live area, leaving the cursor where it began.
    fn erase(&mut self) -> io::Result<()> {
        if self.shown.is_empty() {
            return Ok(());
        }
        let buf = self.erase_sequence();
        self.shown.clear();
        self.write(&buf)
    }

    /// Prints the program's `line` above the bars, after the messages waiting, and
    /// draws the area again at once.
    fn print_above(&mut self, line: &str) -> io::Result<()> {
        let Some(_) = self.size() else {
            let mut buf = self.pending.drain(..).collect::<Vec<_>>().join("\n");
            if !buf.is_empty() {
                buf.push('\n');
            }
            buf.push_str(line);
            buf.push('\n');
            return self.write(&buf);
        };
        if self.suspended > 0 {
            return self.write(&format!("{}\r\n", line.replace('\n', "\r\n")));
        }
        self.pending.push(line.to_owned());
        let now = self.clock();
        self.draw(now)
    }

    /// Prints the pending messages and redraws the live area as of `now`, if either
    /// has something new.
    fn draw(&mut self, now: Timestamp) -> io::Result<()> {
        if self.suspended > 0 {
            return Ok(());
        }
        let Some((rows, cols)) = self.size() else {
            if self.pending.is_empty() {
                return Ok(());
            }
            let mut buf = self.pending.drain(..).collect::<Vec<_>>().join("\n");
            buf.push('\n');
            return self.write(&buf);
        };
        let frame = render::Frame {
            width: cols,
            // Two rows stay free so the area never reaches the top of a small
            // terminal, where moving the cursor up would stop short and tear it.
            max_lines: rows.saturating_sub(2).max(1),
            color: self.color,
        };
        let lines = render::render(&self.runs, now, &frame);
        if self.pending.is_empty() && lines == self.shown {
            return Ok(());
        }
        // Back to the start of the area, and clear from there down.
        let mut buf = self.erase_sequence();
        // `\r\n`, not `\n`: a terminal in raw mode (the program may use one) does not
        // turn a bare newline into a return to the first column.
        // Messages are written whole, and the terminal wraps them: they are printed
        // once and never erased, so a wrapped one tears nothing, where a cut one would
        // lose the end of an error from the screen and the scrollback alike. Only the
        // live area, which is redrawn, is cut to the width.
        for line in self.pending.drain(..) {
            buf.push_str(&line);
            buf.push_str("\r\n");
        }
        // No newline after the last line: the area ends where the cursor is, so it
        // can be erased without knowing what else is on screen.
        buf.push_str(&lines.join("\r\n"));
        self.shown = lines;
        self.shown_cols = cols;
        self.last_draw = Some(now);
        self.write(&buf)
    }

    /// Writes `buf` at once, so that a frame never shows half drawn.
    fn write(&mut self, buf: &str) -> io::Result<()> {
        self.out.write_all(buf.as_bytes())?;
        self.out.flush()
    }

    fn event(&mut self, event: &Event, state: &RunState) {
        self.see(event.ts);
        // With several runs on screen, a message says whose it is.
        let shared = self.runs.iter().any(|run| run.id != state.id);
        let prefix = shared.then(|| render::run_name(state));
        self.pending
            .extend(render::messages(event, state, prefix, self.color));
        let lines_only = matches!(self.screen, Screen::Lines);
        match &event.body {
            EventBody::RunFinished(_) => {
                self.runs.retain(|run| run.id != state.id);
                self.pending.extend(render::summary(state, self.color));
                return;
            }
            EventBody::RunStarted(_) if lines_only => {
                self.pending.push(render::started(state, self.color));
            }
            EventBody::StageFinished(finished) if lines_only => {
                let stage = state.stages.iter().find(|s| s.name == finished.stage);
                self.pending
                    .extend(stage.and_then(|s| render::stage_done(s, prefix, self.color)));
            }
            _ => {}
        }
        match self.runs.iter_mut().find(|run| run.id == state.id) {
            Some(run) => run.clone_from(state),
            None => self.runs.push(state.clone()),
        }
    }
}

impl Sink for TerminalSink {
    fn event(&mut self, event: &Event, state: &RunState) -> io::Result<()> {
        lock(&self.painter).event(event, state);
        Ok(())
    }

    fn policy(&self) -> SinkPolicy {
        SinkPolicy::every_tick()
    }

    /// The bars' elapsed times move on their own, and a redraw an event asked for
    /// within the rate limit waits for a later refresh. Plain lines are written as
    /// events come, so a pipe needs no refresh.
    fn redraws(&self) -> bool {
        lock(&self.painter).size().is_some()
    }

    fn refresh(&mut self, now: Timestamp) -> io::Result<()> {
        let mut painter = lock(&self.painter);
        painter.see(now);
        if painter.pending.is_empty() && !painter.due(now) {
            return Ok(());
        }
        painter.draw(now)
    }

    /// Called after each batch of events: prints its messages now, without waiting for
    /// the next redraw, so an error is seen the moment it is reported.
    fn flush(&mut self) -> io::Result<()> {
        let mut painter = lock(&self.painter);
        match painter.now {
            Some(now) if !painter.pending.is_empty() => painter.draw(now),
            _ => Ok(()),
        }
    }

    /// Draws a last time and leaves the bars of runs still open on screen, where they
    /// show how far those runs got.
    fn close(&mut self) -> io::Result<()> {
        let mut painter = lock(&self.painter);
        if let Some(now) = painter.now {
            painter.draw(now)?;
        }
        if !std::mem::take(&mut painter.shown).is_empty() {
            painter.write("\r\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use herald_protocol::{LogLevel, RunId, RunOutcome, StepOutcome, ToolOutcome};

    use super::fixtures::*;
    use super::*;

    /// What the sink wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A terminal sink writing to memory, and the runs' states as the SDK would fold
    /// them; the screen is read back through an in-memory terminal emulator.
    struct Script {
        sink: TerminalSink,
        out: Captured,
        rows: u16,
        cols: u16,
        states: HashMap<String, RunState>,
        parents: HashMap<String, String>,
    }

    impl Script {
        /// A terminal of `rows` by `cols`.
        fn new(rows: u16, cols: u16, color: bool) -> Script {
            let screen = Screen::Fixed {
                rows: usize::from(rows),
                cols: usize::from(cols),
            };
            Script::with_screen(screen, rows, cols, color)
        }

        /// stderr on a pipe, read as a 200-column terminal.
        fn not_a_terminal() -> Script {
            Script::with_screen(Screen::Lines, 40, 200, false)
        }

        fn with_screen(screen: Screen, rows: u16, cols: u16, color: bool) -> Script {
            let out = Captured::default();
            Script {
                sink: TerminalSink::new(Box::new(out.clone()), screen, color),
                out,
                rows,
                cols,
                states: HashMap::new(),
                parents: HashMap::new(),
            }
        }

        /// Makes `run` a child of `parent`: its events carry the parent's id.
        fn child(&mut self, run: &str, parent: &str) -> &mut Script {
            self.parents.insert(run.to_owned(), parent.to_owned());
            self
        }

        /// Reports `body` in `run` at `secs`, as the SDK's loop does: the event with the
        /// run's state after it, then a flush at the end of the batch.
        fn event(&mut self, run: &str, secs: f64, body: impl Into<EventBody>) -> &mut Script {
            let id = RunId::new(run).unwrap();
            let state = self
                .states
                .entry(run.to_owned())
                .or_insert_with(|| RunState::new(id));
            let parent = self.parents.get(run).map(String::as_str);
            let event = event(run, parent, state.last_seq + 1, secs, body.into());
            state.apply(&event);
            self.sink.event(&event, state).unwrap();
            self.sink.flush().unwrap();
            self
        }

        /// A turn of the SDK's loop at `secs`.
        fn refresh(&mut self, secs: f64) -> &mut Script {
            self.sink.refresh(at(secs)).unwrap();
            self.sink.flush().unwrap();
            self
        }

        fn bytes(&self) -> Vec<u8> {
            self.out.0.lock().unwrap().clone()
        }

        fn terminal(&self) -> vt100::Parser {
            let rows = self.rows.try_into().unwrap();
            let cols = self.cols.try_into().unwrap();
            let mut parser = vt100::Parser::new(rows, cols, 0);
            parser.process(&self.bytes());
            parser
        }

        /// The screen's text, without trailing blanks.
        fn screen(&self) -> String {
            let parser = self.terminal();
            let rows: Vec<String> = parser
                .screen()
                .rows(0, self.cols)
                .map(|row| row.trim_end().to_owned())
                .collect();
            rows.join("\n").trim_end().to_owned()
        }
    }

    /// Asserts the screen shows `expected` (from its first row; a leading newline and
    /// trailing blanks ignored).
    #[track_caller]
    fn check(script: &Script, expected: &str) {
        let actual = script.screen();
        let expected = expected.strip_prefix('\n').unwrap_or(expected).trim_end();
        assert_eq!(
            actual, expected,
            "\n--- screen ---\n{actual}\n--------------\n"
        );
    }

    /// Asserts no row of the screen was continued from the row above, i.e. every line
    /// fitted the width.
    #[track_caller]
    fn assert_nothing_wrapped(script: &Script) {
        let parser = script.terminal();
        for row in 0..script.rows {
            assert!(
                !parser.screen().row_wrapped(row),
                "row {row} wrapped:\n{}",
                script.screen()
            );
        }
    }

    /// A three-stage run mid-way: `fetch` done, `classify` at 40%, one stage to come.
    fn three_stages(script: &mut Script) {
        script
            .event("r1", 0.0, run_started("analysis", Some(3)))
            .event("r1", 0.0, stage_started("fetch", Some(100)))
            .event("r1", 8.2, progress("fetch", 100, Some(100), Some("docs")))
            .event(
                "r1",
                8.2,
                stage_finished("fetch", StepOutcome::Succeeded, 8.2, None),
            )
            .event("r1", 8.2, stage_started("classify", Some(100)))
            .event(
                "r1",
                21.0,
                herald_protocol::Progress {
                    rate: Some(3.1),
                    eta_s: Some(19.4),
                    ..progress("classify", 40, Some(100), Some("docs"))
                },
            )
            .event(
                "r1",
                21.0,
                item_started("classify", "41", Some("Quarterly report.pdf")),
            )
            .refresh(21.3);
    }

    #[test]
    fn a_run_mid_way_shows_done_running_and_pending_stages() {
        let mut script = Script::new(12, 100, true);
        three_stages(&mut script);
        check(
            &script,
            "
● analysis · stage 2/3 · 46% · 21s · run ETA 27–51s
  ✔ fetch     100 docs done in 8.2s
  ▸ classify  ████████████░░░░░░░░░░░░░░░░░░  40%  40/100 docs · 3.1/s · 13s · ETA 19s
    ↳ Quarterly report.pdf · 0.3s
  ○ 1 more stage to come",
        );
    }

    /// Items 1..=`to` of stage `parse`, labelled `page-N.html`, each taking 0.5 s from
    /// `from`; item 4 fails.
    fn parse_pages(script: &mut Script, from: u64, to: u64) {
        for n in from..=to {
            let (id, t) = (n.to_string(), n as f64 * 0.5);
            let label = format!("page-{n}.html");
            script.event("r1", t - 0.5, item_started("parse", &id, Some(&label)));
            let (status, error) = match n {
                4 => (StepOutcome::Failed, Some("invalid UTF-8 at byte 812")),
                _ => (StepOutcome::Succeeded, None),
            };
            script.event("r1", t, item_finished("parse", &id, status, error));
            script.refresh(t);
        }
    }

    #[test]
    fn a_failed_item_is_printed_above_the_bars_and_stays() {
        let mut script = Script::new(10, 80, true);
        script.event("r1", 0.0, run_started("ingest", None)).event(
            "r1",
            0.0,
            stage_started("parse", Some(10)),
        );
        parse_pages(&mut script, 1, 7);
        script.event("r1", 3.5, item_started("parse", "8", Some("page-8.html")));
        script.refresh(3.6);
        check(
            &script,
            "
✖ parse: item 4 (page-4.html) failed: invalid UTF-8 at byte 812
● ingest · 1 failed · 3.6s
  ▸ parse  █████████████████░░░░░░░░  70%  7/10 · 2.0/s · 3.6s · ETA 0–4s
    ↳ page-8.html · 0.1s",
        );
        // Printed once, never redrawn: the bars below it were redrawn many times.
        let out = String::from_utf8(script.bytes()).unwrap();
        assert_eq!(out.matches("invalid UTF-8").count(), 1);
        assert!(out.matches("\x1b[J").count() > 5);
    }

    #[test]
    fn the_error_is_shown_before_the_next_redraw_is_due() {
        let mut script = Script::new(10, 80, false);
        script
            .event("r1", 0.0, run_started("ingest", None))
            .event("r1", 0.0, stage_started("parse", Some(10)))
            .refresh(1.0)
            .event("r1", 1.01, item_started("parse", "1", None))
            .event(
                "r1",
                1.02,
                item_finished("parse", "1", StepOutcome::Failed, Some("boom")),
            );
        check(
            &script,
            "
✖ parse: item 1 failed: boom
● ingest · 1 failed · 1.0s
  ▸ parse  ███░░░░░░░░░░░░░░░░░░░░░░░░░░░  10%  1/10 · 1.0s",
        );
    }

    #[test]
    fn redraws_are_rate_limited_and_skipped_when_nothing_changed() {
        let mut script = Script::new(10, 80, false);
        script
            .event("r1", 0.0, run_started("ingest", None))
            .event("r1", 0.0, stage_started("parse", Some(100)))
            .refresh(20.0);
        let drawn = |s: &Script| s.bytes().len();
        let first = drawn(&script);
        script
            .event("r1", 20.01, progress("parse", 1, Some(100), None))
            .refresh(20.02);
        assert_eq!(drawn(&script), first, "redrawn 20 ms after the last draw");
        script.refresh(20.06);
        let second = drawn(&script);
        assert!(second > first, "not redrawn 60 ms after the last draw");
        script.refresh(20.5);
        assert_eq!(drawn(&script), second, "redrawn although nothing changed");
        script.refresh(21.0);
        assert!(
            drawn(&script) > second,
            "elapsed time not redrawn after a second"
        );
    }

    #[test]
    fn at_40_columns_a_bar_is_kept_and_long_labels_are_cut() {
        let mut script = Script::new(10, 40, false);
        script
            .event("r1", 0.0, run_started("analysis", None))
            .event("r1", 0.0, stage_started("classify", Some(100)))
            .event("r1", 2.0, progress("classify", 40, Some(100), Some("docs")))
            .event(
                "r1",
                2.0,
                item_started(
                    "classify",
                    "41",
                    Some("A very long label: the 2024 annual report of a company with a long name.pdf"),
                ),
            )
            .event("r1", 2.0, item_started("classify", "42", Some("年次報告書・二〇二四年度・最終版.pdf")))
            .refresh(2.5)
            .refresh(3.5);
        check(
            &script,
            "
● analysis · 3.5s
  ▸ classify  ███░░░░░░  40%  ETA 0–4s
    ↳ 年次報告書・二〇二四年度・最終版.…",
        );
        assert_nothing_wrapped(&script);
    }

    #[test]
    fn a_long_error_above_the_bars_wraps_and_is_seen_whole() {
        for color in [false, true] {
            let mut script = Script::new(10, 40, color);
            let error =
                "the model answered a very long complaint about the input that goes on and on";
            script
                .event("r1", 0.0, run_started("analysis", None))
                .event("r1", 0.0, stage_started("classify", Some(10)))
                .event("r1", 1.0, item_started("classify", "7", None))
                .event(
                    "r1",
                    1.5,
                    item_finished("classify", "7", StepOutcome::Failed, Some(error)),
                )
                .refresh(2.0);
            let parser = script.terminal();
            let screen = parser.screen();
            // The message runs on over as many rows as it needs...
            let message_rows = (0..script.rows)
                .take_while(|&row| screen.row_wrapped(row))
                .count()
                + 1;
            assert!(message_rows >= 2, "{}", script.screen());
            let message: String = screen
                .rows(0, script.cols)
                .take(message_rows)
                .collect::<Vec<_>>()
                .concat();
            assert_eq!(
                message.trim_end(),
                format!("✖ classify: item 7 failed: {error}"),
                "the whole error"
            );
            // ... and the bars below it are still cut, never wrapped.
            for row in message_rows as u16..script.rows {
                assert!(!screen.row_wrapped(row), "{}", script.screen());
            }
            assert!(
                script.screen().contains("● analysis"),
                "{}",
                script.screen()
            );
        }
    }

    #[test]
    fn a_narrowed_screen_has_the_area_s_long_lines_over_more_rows() {
        let shown = vec![
            "\x1b[1m● analysis\x1b[0m · 21s".to_owned(),
            format!("  ▸ classify  {}", "█".repeat(60)),
            "    ↳ report.pdf".to_owned(),
        ];
        // As drawn, and wider: a row each.
        assert_eq!(area_rows(&shown, 80, 80), 3);
        assert_eq!(area_rows(&shown, 80, 120), 3);
        // 74 columns of bar line on 40: two rows; 16 and 20 columns: one each.
        assert_eq!(area_rows(&shown, 80, 40), 4);
        assert_eq!(area_rows(&shown, 80, 20), 1 + 4 + 1);
    }

    #[test]
    fn more_stages_than_fit_collapse() {
        let mut script = Script::new(10, 80, false);
        script.event("r1", 0.0, run_started("migrate", None));
        for n in 1..=29 {
            let stage = format!("table-{n:02}");
            let t = f64::from(n);
            script
                .event("r1", t - 1.0, stage_started(&stage, None))
                .event(
                    "r1",
                    t,
                    stage_finished(&stage, StepOutcome::Succeeded, 1.0, None),
                );
        }
        script
            .event("r1", 29.0, stage_started("table-30", Some(1000)))
            .event(
                "r1",
                30.0,
                progress("table-30", 250, Some(1000), Some("rows")),
            )
            .refresh(30.0);
        check(
            &script,
            "
● migrate · 30s
  ✔ table-25  done in 1.0s
  ✔ table-26  done in 1.0s
  ✔ table-27  done in 1.0s
  ✔ table-28  done in 1.0s
  ✔ table-29  done in 1.0s
  ▸ table-30  ███░░░░░░░░░░  25%  250/1000 rows · 250/s · 1.0s · ETA 1–7s
  ... and 24 more stages (24 done)",
        );
    }

    /// Every escape sequence in `out` as its bytes after ESC, up to its final byte.
    fn escapes(out: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(out);
        text.split('\x1b')
            .skip(1)
            .map(|rest| {
                let end = rest
                    .find(|c: char| c.is_ascii_alphabetic())
                    .map_or(rest.len(), |i| i + 1);
                rest[..end].to_owned()
            })
            .collect()
    }

    #[test]
    fn without_color_only_cursor_control_is_written() {
        let run = |color| {
            let mut script = Script::new(10, 80, color);
            script.event("r1", 0.0, run_started("ingest", None)).event(
                "r1",
                0.0,
                stage_started("parse", Some(10)),
            );
            parse_pages(&mut script, 1, 5);
            script
                .event("r1", 3.0, log(LogLevel::Warn, "slow disk"))
                .event(
                    "r1",
                    3.0,
                    stage_finished("parse", StepOutcome::Succeeded, 3.0, None),
                )
                .event("r1", 3.0, run_finished(RunOutcome::Succeeded, None));
            escapes(&script.bytes())
        };
        let plain = run(false);
        assert!(!plain.is_empty());
        for esc in &plain {
            assert!(
                esc == "[J" || (esc.starts_with('[') && esc.ends_with('A')),
                "not cursor control: ESC{esc}"
            );
        }
        // The same run in color does write colors, so the check above can fail.
        assert!(run(true).iter().any(|esc| esc.ends_with('m')));
    }

    /// What a terminal was made to do besides showing text.
    #[derive(Default)]
    struct Acts {
        titles: Vec<Vec<u8>>,
        bells: usize,
        other: Vec<String>,
    }

    impl vt100::Callbacks for Acts {
        fn audible_bell(&mut self, _: &mut vt100::Screen) {
            self.bells += 1;
        }

        fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
            self.titles.push(title.to_vec());
        }

        fn set_window_icon_name(&mut self, _: &mut vt100::Screen, name: &[u8]) {
            self.titles.push(name.to_vec());
        }

        fn unhandled_char(&mut self, _: &mut vt100::Screen, c: char) {
            self.other.push(format!("char {c:?}"));
        }

        fn unhandled_control(&mut self, _: &mut vt100::Screen, b: u8) {
            self.other.push(format!("control {b:#x}"));
        }
    }

    /// Names, ids, errors, logs, tools and text that try to act on the terminal.
    const TITLE: &str = "\x1b]0;pwned\x07";
    const CLEAR: &str = "\x1b[2J\x1b[H";

    /// A run whose every producer-given text is hostile, mid-way, then finishing.
    fn hostile(script: &mut Script) {
        let name = format!("evil{TITLE}{CLEAR}\u{202e}gnp.exe");
        let stage = "st\u{9b}2Jage\r";
        script
            .event("r1", 0.0, run_started(&name, None))
            .event("r1", 0.0, stage_started(stage, Some(10)))
            .event("r1", 1.0, item_started(stage, "1", Some("ok.txt")))
            .event(
                "r1",
                1.5,
                item_finished(
                    stage,
                    "1",
                    StepOutcome::Failed,
                    Some(&format!("bad{CLEAR}")),
                ),
            )
            .event(
                "r1",
                2.0,
                item_started(stage, &format!("2{TITLE}"), Some("lab\x1b[1Ael\tx")),
            )
            .event(
                "r1",
                2.0,
                log(LogLevel::Error, &format!("first{TITLE}\nsecond\x1b[31m\r")),
            )
            .event(
                "r1",
                2.0,
                tool_started("t1", &format!("tool{CLEAR}"), Some("feed\x1b[?25lback")),
            )
            .event("r1", 2.0, text("said \x1b[2Kthis\u{2066}"))
            .refresh(3.0);
    }

    #[track_caller]
    fn assert_terminal_untouched(script: &Script) {
        let (rows, cols) = (
            script.rows.try_into().unwrap(),
            script.cols.try_into().unwrap(),
        );
        let mut parser = vt100::Parser::new_with_callbacks(rows, cols, 0, Acts::default());
        let bytes = script.bytes();
        parser.process(&bytes);
        let acts = parser.callbacks();
        assert!(
            acts.titles.is_empty(),
            "window title set: {:?}",
            acts.titles
        );
        assert_eq!(acts.bells, 0, "bell rung");
        assert!(acts.other.is_empty(), "unhandled: {:?}", acts.other);
        assert!(!parser.screen().hide_cursor(), "cursor hidden");
        let text = String::from_utf8(bytes).unwrap();
        for esc in escapes(text.as_bytes()) {
            let color = esc.starts_with('[') && esc.ends_with('m');
            let cursor = esc == "[J" || (esc.starts_with('[') && esc.ends_with('A'));
            assert!(color || cursor, "not the sink's own: ESC{esc}");
        }
        assert!(
            !text.chars().any(|c| matches!(c, '\x07' | '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
            "a control reached the terminal: {text:?}"
        );
    }

    #[test]
    fn hostile_names_errors_and_text_are_shown_escaped() {
        let mut script = Script::new(12, 160, true);
        hostile(&mut script);
        assert_terminal_untouched(&script);
        check(
            &script,
            r"
✖ st\u{9b}2Jage\r: item 1 (ok.txt) failed: bad\x1b[2J\x1b[H
✖ first\x1b]0;pwned\x07
  second\x1b[31m\r
● evil\x1b]0;pwned\x07\x1b[2J\x1b[H\u{202e}gnp.exe · 1 failed · 3.0s
  ▸ st\u{9b}2Jage\r  ███░░░░░░░░░░░░░░░░░░░░░░░░░░░  10%  1/10 · 3.0s
    ↳ lab\x1b[1Ael\tx · 1.0s
  ⚙ tool\x1b[2J\x1b[H: feed\x1b[?25lback… · 1.0s
  ❯ said \x1b[2Kthis\u{2066}",
        );
        script
            .event(
                "r1",
                4.0,
                run_finished(RunOutcome::Cancelled, Some(&format!("stop{TITLE}"))),
            )
            .refresh(4.5);
        assert_terminal_untouched(&script);
        let screen = script.screen();
        assert!(
            screen.contains("  reason: stop\\x1b]0;pwned\\x07"),
            "{screen}"
        );
    }

    #[test]
    fn hostile_text_on_a_pipe_is_escaped_too() {
        let mut script = Script::not_a_terminal();
        hostile(&mut script);
        script
            .event("r1", 4.0, run_finished(RunOutcome::Failed, Some(CLEAR)))
            .refresh(4.5);
        let out = String::from_utf8(script.bytes()).unwrap();
        assert!(!out.contains('\x1b'), "{out:?}");
        assert!(!out.contains('\r'), "{out:?}");
        assert!(
            out.starts_with("● evil\\x1b]0;pwned\\x07\\x1b[2J\\x1b[H\\u{202e}gnp.exe started\n"),
            "{out}"
        );
    }

    #[test]
    fn a_finished_run_leaves_its_summary_on_screen() {
        let mut script = Script::new(12, 80, false);
        script.event("r1", 0.0, run_started("ingest", None)).event(
            "r1",
            0.0,
            stage_started("parse", Some(10)),
        );
        parse_pages(&mut script, 1, 10);
        script
            .event(
                "r1",
                5.0,
                stage_finished("parse", StepOutcome::Succeeded, 5.0, None),
            )
            .event("r1", 5.0, stage_started("index", None))
            .event(
                "r1",
                6.0,
                stage_finished("index", StepOutcome::Failed, 1.0, Some("disk full")),
            )
            .event(
                "r1",
                6.0,
                run_finished(RunOutcome::Failed, Some("could not index")),
            )
            .refresh(6.5);
        // A later run draws its bars below the summary, which stays.
        script
            .event("r2", 7.0, run_started("report", None))
            .event("r2", 7.0, stage_started("render", None))
            .refresh(8.0);
        check(
            &script,
            "
✖ parse: item 4 (page-4.html) failed: invalid UTF-8 at byte 812
✖ stage index failed: disk full
✖ ingest failed after 6.0s · 9 items ok, 1 failed
  error: could not index
  ✔ parse  10 done in 5.0s · 1 failed
  ✖ index  failed after 1.0s: disk full
● report · 1.0s
  ⠋ render  0 done · 1.0s",
        );
    }

    #[test]
    fn a_cancelled_run_gives_its_reason_and_the_stages_it_stopped() {
        let mut script = Script::new(12, 80, false);
        script
            .event("r1", 0.0, run_started("import", None))
            .event("r1", 0.0, stage_started("load", Some(10)))
            .event("r1", 2.0, progress("load", 3, Some(10), None))
            .event("r1", 2.0, item_started("load", "4", None))
            .event(
                "r1",
                2.5,
                item_finished("load", "4", StepOutcome::Succeeded, None),
            )
            .event("r1", 2.5, tool_started("t1", "fetch", None))
            .event(
                "r1",
                2.6,
                tool_finished("t1", "fetch", ToolOutcome::Succeeded, None),
            )
            .event(
                "r1",
                3.0,
                run_finished(RunOutcome::Cancelled, Some("asked to stop")),
            )
            .refresh(3.5);
        // One of each: no plural.
        check(
            &script,
            "
⊘ import cancelled after 3.0s · 1 item ok · 1 tool call
  reason: asked to stop
  ⊘ load  cancelled after 3.0s at 3/10",
        );
    }

    #[test]
    fn an_agent_shows_its_tool_in_flight_then_its_answer_being_prepared() {
        let mut script = Script::new(10, 80, false);
        script
            .event("a1", 0.0, run_started("research-agent", None))
            .event("a1", 0.5, iteration(2))
            .event(
                "a1",
                1.0,
                text("Let me look that up.\nI will search the docs for "),
            )
            .event(
                "a1",
                1.5,
                tool_started("t1", "search_docs", Some("Searching the docs")),
            )
            .refresh(3.0);
        check(
            &script,
            "
● research-agent · turn 2 · 3.0s
  ⚙ search_docs: Searching the docs… · 1.5s
  ❯ I will search the docs for",
        );
        script
            .event(
                "a1",
                4.0,
                tool_finished(
                    "t1",
                    "search_docs",
                    ToolOutcome::Failed,
                    Some("index offline"),
                ),
            )
            .event(
                "a1",
                4.0,
                text("the 2024 report, then the 2023 one, and compare their totals."),
            )
            .event("a1", 4.0, preparing_response())
            .refresh(4.5);
        check(
            &script,
            "
✖ tool search_docs failed: index offline
● research-agent · turn 2 · 4.5s
  ✎ preparing response…
  ❯ … the docs for the 2024 report, then the 2023 one, and compare their totals.",
        );
    }

    #[test]
    fn child_runs_are_drawn_under_their_parent() {
        let mut script = Script::new(10, 80, false);
        script
            .child("c1", "p1")
            .event("p1", 0.0, run_started("orchestrator", None))
            .event("p2", 0.0, run_started("other-job", None))
            .event("c1", 1.0, run_started("researcher", None))
            .event(
                "c1",
                1.5,
                tool_started("t1", "fetch_url", Some("Reading example.com")),
            )
            .event(
                "c1",
                2.0,
                log(LogLevel::Error, "rate limited\nretrying in 2s"),
            )
            .refresh(2.0);
        check(
            &script,
            "
[researcher] ✖ rate limited
[researcher]   retrying in 2s
● orchestrator · 2.0s
  ● researcher · 1.0s
    ⚙ fetch_url: Reading example.com… · 0.5s
● other-job · 2.0s",
        );
    }

    #[test]
    fn a_small_terminal_keeps_the_area_two_rows_short() {
        let mut script = Script::new(4, 80, false);
        three_stages(&mut script);
        check(
            &script,
            "
● analysis · stage 2/3 · 46% · 21s · run ETA 27–51s
  ▸ classify  ██████░░░░░░░░░  40%  40/100 docs · 3.1/s · 13s · ETA 19s",
        );
    }

    #[test]
    fn only_a_terminal_needs_refreshing_with_time() {
        assert!(Script::new(24, 80, false).sink.redraws());
        assert!(!Script::not_a_terminal().sink.redraws());
    }

    #[test]
    fn not_a_terminal_gets_plain_lines_once() {
        let mut script = Script::not_a_terminal();
        script.event("r1", 0.0, run_started("ingest", None)).event(
            "r1",
            0.0,
            stage_started("parse", Some(10)),
        );
        parse_pages(&mut script, 1, 10);
        script
            .event(
                "r1",
                5.0,
                stage_finished("parse", StepOutcome::Succeeded, 5.0, None),
            )
            .event("r1", 5.0, run_finished(RunOutcome::Succeeded, None))
            .refresh(6.0);
        let out = String::from_utf8(script.bytes()).unwrap();
        assert_eq!(
            out,
            "\
● ingest started
✖ parse: item 4 (page-4.html) failed: invalid UTF-8 at byte 812
✔ parse  10 done in 5.0s · 1 failed
✔ ingest succeeded in 5.0s · 9 items ok, 1 failed
  ✔ parse  10 done in 5.0s · 1 failed
"
        );
    }
}
