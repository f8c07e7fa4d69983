//! What the hub commands say when the hub cannot be reached or refuses the token.

use serde_json::json;

use crate::hubs::{ADMIN, TestHub, cmd, run_within, stderr_of};

#[test]
fn an_unreachable_hub_is_named() {
    for args in [
        vec!["ls"],
        vec!["events", "r1"],
        vec!["watch", "r1"],
        vec!["cancel", "r1"],
        vec!["rm", "r1"],
        vec!["emit", "--run", "r1", "log", "level=info", "message=hi"],
    ] {
        let mut command = cmd(&args);
        command.env("HERALD_URL", "http://127.0.0.1:1");
        let out = run_within(command);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("herald: cannot reach the hub at http://127.0.0.1:1: "),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_missing_wrong_or_foreign_token_is_named() {
    let hub = TestHub::with_token(ADMIN);
    let check = |args: &[&str], needle: &str| {
        let out = run_within(hub.herald(args));
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: `{stderr}` lacks `{needle}`"
        );
    };
    check(&["ls"], "needs a token: pass --token or set HERALD_TOKEN");
    check(&["ls", "--token", "wrong"], "does not accept the token");

    let a = hub.create(json!({"name": "a"}));
    let b = hub.create(json!({"name": "b"}));
    check(
        &["cancel", &b.id, "--token", &a.write_token],
        "the token belongs to another run",
    );
    check(
        &[
            "emit",
            "--run",
            &a.id,
            "--token",
            &a.read_token,
            "log",
            "level=info",
            "message=x",
        ],
        "a read token cannot change a run",
    );
    check(
        &["rm", &a.id, "--token", &a.write_token],
        "needs the hub's admin token",
    );

    // The right tokens open what they should.
    let out = run_within(hub.herald(&["events", &a.id, "--token", &a.read_token]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let out = run_within(hub.herald(&["ls", "--token", ADMIN]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}
