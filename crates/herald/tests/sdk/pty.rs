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

    /// Tells the child to go on.
    fn go(&mut self) {
        self.stdin
            .write_all(b"go\n")
            .expect("the child reads its stdin");
        self.stdin.flush().unwrap();
    }

    /// Resizes the terminal, and the emulator with it.
    #[allow(dead_code)]
    fn resize(&mut self, rows: u16, cols: u16) {
        self.pump();
        resize(&self.master, rows, cols);
        self.parser.set_size(nonzero(rows), nonzero(cols));
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
