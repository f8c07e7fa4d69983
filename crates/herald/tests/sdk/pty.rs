//! The bars on a real pseudo-terminal, read back through an in-memory terminal
//! emulator (`vt100`): this test binary runs itself as a child whose stderr (and
//! stdout) is the terminal, and the parent watches the screen, tells the child when
//! to go on (a line on its stdin), and resizes the terminal as a person would.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herald::Progress;
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

/// Set in the child: which scenario to play.
const CHILD: &str = "HERALD_PTY_TEST_CHILD";
/// The longest any one wait of these tests may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// A child of this test binary on a pseudo-terminal of its own.
struct OnPty {
    child: Child,
    stdin: ChildStdin,
    /// The terminal's other end, kept to resize it.
    master: rustix::fd::OwnedFd,
    bytes: mpsc::Receiver<Vec<u8>>,
    /// What the child drew, as a terminal shows it.
    parser: vt100::Parser,
}

impl OnPty {
    /// Runs the test `name` of this binary as a child playing `scenario`, on a
    /// terminal of `rows` by `cols`.
    fn spawn(name: &str, scenario: &str, rows: u16, cols: u16) -> OnPty {
        OnPty::spawn_with(name, scenario, rows, cols, &[])
    }

    /// As [`OnPty::spawn`], with `env` set in the child.
    fn spawn_with(name: &str, scenario: &str, rows: u16, cols: u16, env: &[(&str, &str)]) -> OnPty {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = openpt(flags).expect("a pseudo-terminal");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        resize(&master, rows, cols);
        let path = ptsname(&master, Vec::new()).expect("the terminal's name");
        // Not this process's controlling terminal: only the child writes there.
        let terminal = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(OsStr::from_bytes(path.as_bytes()))
            .expect("the terminal's other end");
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, scenario)
            .env("HERALD_PROGRESS", "bars")
            .env("RUST_BACKTRACE", "0")
            .env_remove("HERALD_PROGRESS_FILE")
            .env_remove("HERALD_PROGRESS_FD")
            .env_remove("HERALD_URL")
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(terminal.try_clone().expect("a second handle"))
            .stderr(terminal);
        let mut child = command.spawn().expect("the child starts");
        // Only the child may hold the terminal open, so that reading ends with it.
        drop(command);
        let stdin = child.stdin.take().unwrap();
        let (tx, bytes) = mpsc::channel();
        let mut reader = File::from(master.try_clone().expect("a reading handle"));
        std::thread::spawn(move || {
            let mut buf = [0; 8192];
            // Linux answers EIO, not end of file, once the other end is closed.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        OnPty {
            child,
            stdin,
            master,
            bytes,
            parser: vt100::Parser::new(nonzero(rows), nonzero(cols), 0),
        }
    }

    /// Feeds the emulator what the child wrote so far.
    fn pump(&mut self) {
        for chunk in self.bytes.try_iter() {
            self.parser.process(&chunk);
        }
    }

    /// The screen's text, rows without trailing blanks.
    fn screen(&self) -> String {
        let (_, cols) = self.parser.screen().size();
        let rows: Vec<String> = self
            .parser
            .screen()
            .rows(0, cols.get())
            .map(|row| row.trim_end().to_owned())
            .collect();
        rows.join("\n").trim_end().to_owned()
    }

    /// Waits until the screen shows what `done` looks for.
    #[track_caller]
    fn wait_screen(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        let start = Instant::now();
        loop {
            self.pump();
            if done(&self.screen()) {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {what} within {DEADLINE:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the screen's written lines (wrapped rows joined) satisfy `done`.
    #[track_caller]
    fn wait_lines(&mut self, what: &str, done: impl Fn(&[String]) -> bool) {
        let start = Instant::now();
        loop {
            self.pump();
            if done(&written_lines(self)) {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {what} within {DEADLINE:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Tells the child to go on.
    fn go(&mut self) {
        self.stdin
            .write_all(b"go\n")
            .expect("the child reads its stdin");
        self.stdin.flush().unwrap();
    }

    /// Resizes the terminal as a person drags its window: the emulator's text is
    /// reflowed to the new width, as most terminals do (GNOME Terminal, iTerm2, kitty,
    /// Windows Terminal; `vt100` itself only cuts), so that lines wider than the new
    /// width now take more rows, and the cursor stays at the end of its text.
    fn resize(&mut self, rows: u16, cols: u16) {
        self.pump();
        let screen = self.parser.screen();
        let (old_rows, old_cols) = screen.size();
        let (cursor_row, _) = screen.cursor_position();
        let texts: Vec<String> = screen.rows(0, old_cols.get()).collect();
        // Rows joined back into the lines they were written as.
        let mut lines: Vec<String> = Vec::new();
        let mut joined = String::new();
        for row in 0..old_rows.get().min(cursor_row + 1) {
            joined.push_str(&texts[usize::from(row)]);
            if !screen.row_wrapped(row) || row == cursor_row {
                lines.push(std::mem::take(&mut joined).trim_end().to_owned());
            }
        }
        resize(&self.master, rows, cols);
        let mut parser = vt100::Parser::new(nonzero(rows), nonzero(cols), 0);
        parser.process(lines.join("\r\n").as_bytes());
        self.parser = parser;
    }

    /// Waits for the child to end and for all it wrote; its status and the screen.
    fn finish(mut self) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("the child did not end:\n{}", self.screen());
            }
            self.pump();
            std::thread::sleep(Duration::from_millis(10));
        };
        while let Ok(chunk) = self.bytes.recv_timeout(DEADLINE) {
            self.parser.process(&chunk);
        }
        let screen = self.screen();
        (status, screen)
    }
}

fn nonzero(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).expect("a size above zero")
}

fn resize(master: &rustix::fd::OwnedFd, rows: u16, cols: u16) {
    let size = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tcsetwinsize(master, size).expect("a window size");
}

/// In the child: waits for the parent's word.
fn wait_for_go() {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("the parent's word");
}

/// In the child: a run with a stage part done and an item in hand, its bars drawn.
fn run_under_way(progress: &Progress) -> (herald::Run, herald::Stage) {
    let run = progress.run("import");
    let stage = run.stage("load").total(10).unit("files");
    stage.inc(4);
    (run, stage)
}

#[test]
fn a_panic_mid_run_shows_its_whole_message() {
    const NAME: &str = "pty::a_panic_mid_run_shows_its_whole_message";
    if std::env::var_os(CHILD).is_some() {
        let progress = Progress::from_env().unwrap();
        let (_run, stage) = run_under_way(&progress);
        let _item = stage.item_labeled("5", Some("e.csv"));
        wait_for_go();
        let empty: Vec<u32> = Vec::new();
        let index = empty.len() + 3;
        println!("{}", empty[index]);
        return;
    }
    let mut pty = OnPty::spawn(NAME, "panic", 24, 100);
    pty.wait_screen("bars", |s| s.contains("▸ load") && s.contains('█'));
    pty.go();
    let (status, screen) = pty.finish();
    assert!(!status.success());
    // The whole message and the note after it, none of it drawn over.
    assert!(
        screen.contains("index out of bounds: the len is 0 but the index is 3"),
        "{screen}"
    );
    assert!(
        screen.contains("note: run with `RUST_BACKTRACE=1`"),
        "{screen}"
    );
    // The run and its item report the panic, below it.
    assert!(screen.contains("✖ import failed after"), "{screen}");
    assert!(
        screen.contains("✖ load: item 5 (e.csv) failed: item panicked at"),
        "{screen}"
    );
}

#[test]
fn println_and_suspend_keep_the_program_s_lines() {
    const NAME: &str = "pty::println_and_suspend_keep_the_program_s_lines";
    if std::env::var_os(CHILD).is_some() {
        let progress = Progress::from_env().unwrap();
        let (run, stage) = run_under_way(&progress);
        wait_for_go();
        progress.println("first line of the program's own");
        stage.inc(2);
        progress.suspend(|| {
            println!("on stdout, while suspended");
            eprintln!("on stderr, while suspended");
        });
        stage.inc(1);
        progress.println("last line of the program's own");
        wait_for_go();
        stage.finish();
        run.finish();
        return;
    }
    let mut pty = OnPty::spawn(NAME, "println", 24, 100);
    pty.wait_screen("bars", |s| s.contains("▸ load") && s.contains('█'));
    pty.go();
    pty.wait_screen("the last line, and the bars below it", |s| {
        s.contains("last line of the program's own") && s.contains(" 70% ")
    });
    let screen = pty.screen();
    let lines: Vec<&str> = screen.lines().collect();
    let at = |text: &str| lines.iter().position(|l| l.contains(text));
    let order = [
        at("first line of the program's own"),
        at("on stdout, while suspended"),
        at("on stderr, while suspended"),
        at("last line of the program's own"),
        at("● import"),
    ];
    assert!(
        order.iter().all(Option::is_some) && order.is_sorted(),
        "{order:?}:\n{screen}"
    );
    // One header: nothing of an earlier frame is left behind.
    assert_eq!(
        lines.iter().filter(|l| l.contains("● import")).count(),
        1,
        "{screen}"
    );
    pty.go();
    let (status, screen) = pty.finish();
    assert!(status.success(), "{screen}");
    assert!(
        screen.contains("first line of the program's own"),
        "{screen}"
    );
    assert!(screen.contains("✔ import succeeded"), "{screen}");
}

/// The child's run for the width tests: a finished stage, a byte stage a third done,
/// and a failed item whose error is longer than a narrow screen.
fn sync_under_way(progress: &Progress) -> (herald::Run, herald::Stage) {
    let run = progress.run("sync");
    let scan = run.stage("scan").total(100).unit("files");
    scan.inc(100);
    scan.finish();
    let upload = run.stage("upload").total(5u64 << 30).unit("B");
    upload.inc(3 << 29);
    upload.item("7").fail(LONG_ERROR);
    (run, upload)
}

/// An error longer than any screen here is wide.
const LONG_ERROR: &str = "the mirror answered 503 Service Unavailable: the upstream is overloaded, \
please try again later (request id 7f3a9c2e, region eu-west-3, attempt 4 of 5)";

/// The rows of the screen that wrapped into the next, as the emulator saw them.
fn wrapped_rows(pty: &OnPty) -> Vec<u16> {
    let screen = pty.parser.screen();
    let (rows, _) = screen.size();
    (0..rows.get()).filter(|&r| screen.row_wrapped(r)).collect()
}

/// The screen's text as the lines that were written: wrapped rows joined back.
fn written_lines(pty: &OnPty) -> Vec<String> {
    let screen = pty.parser.screen();
    let (rows, cols) = screen.size();
    let texts: Vec<String> = screen.rows(0, cols.get()).collect();
    let mut lines = Vec::new();
    let mut joined = String::new();
    for row in 0..rows.get() {
        joined.push_str(&texts[usize::from(row)]);
        if !screen.row_wrapped(row) {
            lines.push(std::mem::take(&mut joined).trim_end().to_owned());
        }
    }
    lines
}

/// Checks the screen of `sync_under_way` at `cols` wide: the error whole (wrapped as
/// it needs), then one header, and a bar on the upload's line, none of it wrapped.
#[track_caller]
fn check_sync_screen(pty: &OnPty, cols: u16) {
    let screen = pty.screen();
    let error = format!("✖ upload: item 7 failed: {LONG_ERROR}");
    assert!(
        written_lines(pty).iter().any(|l| l.ends_with(&error)),
        "the error is not whole at {cols} columns:\n{screen}"
    );
    let lines: Vec<&str> = screen.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("● sync"))
        .unwrap_or_else(|| panic!("no header at {cols} columns:\n{screen}"));
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("● sync")).count(),
        1,
        "{screen}"
    );
    let upload = lines
        .iter()
        .find(|l| l.contains("▸ upload"))
        .unwrap_or_else(|| panic!("no upload line at {cols} columns:\n{screen}"));
    assert!(
        upload.contains('█') || upload.contains('░'),
        "no bar at {cols} columns:\n{screen}"
    );
    assert!(upload.contains("30%"), "{screen}");
    // Every row with bar characters is the upload's: no stale frame is left.
    let barred = lines
        .iter()
        .filter(|l| l.contains('█') || l.contains('░'))
        .count();
    assert_eq!(barred, 1, "stale bars at {cols} columns:\n{screen}");
    for row in wrapped_rows(pty) {
        assert!(
            usize::from(row) < header,
            "the live area wrapped at row {row}, {cols} columns:\n{screen}"
        );
    }
}

#[test]
fn bars_fit_screens_40_60_80_and_120_wide() {
    const NAME: &str = "pty::bars_fit_screens_40_60_80_and_120_wide";
    if std::env::var_os(CHILD).is_some() {
        let progress = Progress::from_env().unwrap();
        let (run, upload) = sync_under_way(&progress);
        wait_for_go();
        upload.finish();
        run.finish();
        return;
    }
    for cols in [40, 60, 80, 120] {
        let mut pty = OnPty::spawn(NAME, "widths", 24, cols);
        pty.wait_screen("the upload's bar", |s| {
            s.lines()
                .any(|l| l.contains("▸ upload") && l.contains("30%"))
        });
        check_sync_screen(&pty, cols);
        pty.go();
        let (status, screen) = pty.finish();
        assert!(status.success(), "{screen}");
        assert!(screen.contains("✔ sync succeeded"), "{screen}");
    }
}

#[test]
fn a_resize_redraws_cleanly() {
    const NAME: &str = "pty::a_resize_redraws_cleanly";
    if std::env::var_os(CHILD).is_some() {
        let progress = Progress::from_env().unwrap();
        let (run, upload) = sync_under_way(&progress);
        wait_for_go();
        upload.finish();
        run.finish();
        return;
    }
    let mut pty = OnPty::spawn(NAME, "resize", 24, 120);
    // Drawn for this width: the upload's line, as written, fits it.
    let redrawn = |pty: &mut OnPty, cols: usize| {
        pty.wait_lines(&format!("bars drawn {cols} wide"), |lines| {
            lines
                .iter()
                .any(|l| l.contains("▸ upload") && l.contains("30%") && l.chars().count() <= cols)
        });
    };
    redrawn(&mut pty, 120);
    check_sync_screen(&pty, 120);
    // Narrower: the lines drawn 120 wide now take two rows each, until redrawn.
    pty.resize(24, 50);
    redrawn(&mut pty, 50);
    check_sync_screen(&pty, 50);
    // And wider again.
    pty.resize(24, 90);
    redrawn(&mut pty, 90);
    check_sync_screen(&pty, 90);
    pty.go();
    let (status, screen) = pty.finish();
    assert!(status.success(), "{screen}");
}

#[test]
fn herald_s_own_warning_is_printed_above_the_bars_and_stays() {
    const NAME: &str = "pty::herald_s_own_warning_is_printed_above_the_bars_and_stays";
    if std::env::var_os(CHILD).is_some() {
        let progress = Progress::from_env().unwrap();
        let (run, stage) = run_under_way(&progress);
        wait_for_go();
        stage.inc(3);
        stage.finish();
        run.finish();
        return;
    }
    // A hub that refuses every connection: the hub sink warns, once.
    let refusing = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    };
    let env = [("HERALD_URL", refusing.as_str())];
    let mut pty = OnPty::spawn_with(NAME, "warning", 24, 100, &env);
    let warned = |s: &str| s.contains("⚠ herald: cannot report to the hub at");
    pty.wait_screen("the warning above the bars", |s| {
        warned(s) && s.contains("▸ load")
    });
    pty.go();
    let (status, screen) = pty.finish();
    assert!(status.success(), "{screen}");
    // Still there after the bars' later frames and the run's summary.
    assert!(warned(&screen), "{screen}");
    assert!(screen.contains("✔ import succeeded"), "{screen}");
}
