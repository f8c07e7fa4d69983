//! `--progress auto` on a real pseudo-terminal: live bars redrawn in place, in color,
//! and without color under `NO_COLOR`. (Forced bars on a pipe, and the screens
//! themselves, are tested in the SDK.) `herald watch` draws the same bars for a run on
//! a hub.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

use serde_json::json;

use crate::hubs::{DEADLINE, TestHub, cmd};

/// Runs `herald ARGS` with its stdout and stderr on a new 30x100 pseudo-terminal and
/// `env` set; everything it wrote there, and whether it succeeded.
fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> (bool, Vec<u8>) {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = openpt(flags).expect("a pseudo-terminal");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let size = Winsize {
        ws_row: 30,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tcsetwinsize(&master, size).expect("a window size");
    let name = ptsname(&master, Vec::new()).expect("the terminal's name");
    // Not the test process's controlling terminal: only the child's output goes there.
    let terminal = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(OsStr::from_bytes(name.as_bytes()))
        .expect("the terminal's other end");

    let mut command = cmd(args);
    command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(terminal.try_clone().expect("a second handle"))
        .stderr(terminal);
    let mut child = command.spawn().expect("herald runs");
    // The command holds the terminal's end too: only the child may keep it open, so
    // that reading ends when the child does.
    drop(command);

    let (tx, rx) = mpsc::channel();
    let mut master = File::from(master);
    thread::spawn(move || {
        let mut buf = [0; 8192];
        // Linux answers EIO, not end of file, once the other end is closed.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let start = Instant::now();
    let mut output = Vec::new();
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(chunk) => output.extend(chunk),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "herald did not end within {DEADLINE:?}:\n{}",
                    String::from_utf8_lossy(&output)
                );
            }
        }
    }
    let status = child.wait().expect("waiting for herald");
    (status.success(), output)
}

/// Every escape sequence in `out` as its bytes after ESC, up to its final letter.
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

/// A demo long enough for several redraws (they come at most every 50 ms).
const DEMO: [&str; 7] = [
    "demo",
    "--items",
    "12",
    "--speed",
    "20",
    "--progress",
    "auto",
];

#[track_caller]
fn assert_live_bars(out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    assert!(
        !text.contains(r#""v":1"#),
        "JSON Lines on a terminal:\n{text}"
    );
    assert!(text.contains('█'), "no bar drawn:\n{text}");
    // Redrawn in place: back up over the live area and clear it.
    assert!(text.contains("\x1b[J"), "never redrawn in place:\n{text:?}");
}

#[test]
fn progress_auto_on_a_terminal_draws_live_bars_in_color() {
    let (ok, out) = on_a_terminal(&DEMO, &[]);
    assert!(ok, "{}", String::from_utf8_lossy(&out));
    assert_live_bars(&out);
    assert!(
        escapes(&out).iter().any(|esc| esc.ends_with('m')),
        "no color:\n{:?}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn no_color_leaves_the_bars_and_takes_the_color_away() {
    let (ok, out) = on_a_terminal(&DEMO, &[("NO_COLOR", "1")]);
    assert!(ok, "{}", String::from_utf8_lossy(&out));
    assert_live_bars(&out);
    for esc in escapes(&out) {
        assert!(
            esc == "[J" || (esc.starts_with('[') && esc.ends_with('A')),
            "not cursor control under NO_COLOR: ESC{esc}\n{:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

#[test]
fn watch_on_a_terminal_shows_a_tool_s_own_progress_on_its_row() {
    let hub = TestHub::start();
    let run = hub.create(json!({"name": "crawler"}));
    hub.append(
        &run,
        json!([
            {"event": "run.started", "name": "crawler"},
            {"event": "tool.started", "call_id": "t1", "tool": "crawl", "feedback": "Crawling the site"},
            {"event": "progress", "call_id": "t1", "done": 3, "total": 12, "unit": "pages",
             "message": "Page 3 of 12", "elapsed_s": 1.0},
        ]),
    );
    // The run stays open: watch draws it until nothing arrives for a second.
    let (ok, out) = on_a_terminal(
        &["watch", "--idle-timeout", "1s", &run.id],
        &[("HERALD_URL", hub.url.as_str()), ("NO_COLOR", "1")],
    );
    let text = String::from_utf8_lossy(&out);
    assert!(!ok, "an idle timeout is not a success:\n{text}");
    assert!(
        text.contains("⚙ crawl: Page 3 of 12… · 25%  3/12 pages · "),
        "the tool's row without its progress:\n{text}"
    );
}
