//! A terminal for tests: a tmux server of its own running `sh` in a pane of
//! a fixed size, driven with send-keys and read with capture-pane. Used to
//! run siphon where standard input is a terminal (`status --watch`, the
//! prompts of `connection add` and `sync add`).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A tmux server of its own (`-L`), with one session `w` running `sh` in
/// `dir`; killed when dropped.
#[derive(Debug)]
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts the server with a `width` × `height` pane; the shell's prompt is `ready$ `.
    pub fn start(dir: &Path, width: u16, height: u16) -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "siphon-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let t = Tmux { socket };
        let out = t
            .tmux()
            .args(["new-session", "-d", "-s", "w", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg("-c")
            .arg(dir)
            .args(["env", "PS1=ready$ ", "sh"])
            .output()
            .expect("run tmux (scripts/test installs it)");
        assert!(out.status.success(), "tmux: {out:?}");
        t
    }

    /// A tmux command for this server, without the caller's siphon settings.
    pub fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket])
            .env_remove("SIPHON_STATE")
            .env_remove("SIPHON_LOG_FORMAT")
            .env_remove("RUST_LOG")
            .env_remove("TMUX")
            .env("NO_COLOR", "1");
        c
    }

    /// Types `keys` (tmux key names, or text) into the pane.
    pub fn send(&self, keys: &[&str]) {
        let out = self
            .tmux()
            .args(["send-keys", "-t", "w"])
            .args(keys)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// Types `text` literally (no key names), without Enter.
    pub fn type_text(&self, text: &str) {
        let out = self
            .tmux()
            .args(["send-keys", "-t", "w", "-l", text])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// Clears the pane (the shell's `clear`), and waits until it is clear of
    /// what the last command printed.
    pub fn clear(&self) {
        self.send(&["clear", "Enter"]);
        self.wait("the pane to clear", Duration::from_secs(10), |s| {
            !s.contains("siphon ended") && s.contains("ready$")
        });
    }

    /// What the pane shows now.
    pub fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "w"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the pane shows what `cond` wants; fails with the pane.
    pub fn wait(&self, what: &str, within: Duration, mut cond: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; the pane shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the shell's prompt, then runs `siphon ARGS` (each argument
    /// single-quoted) in the pane; when it ends, the pane shows `siphon
    /// ended N` with its exit status (see [`Tmux::ended`]).
    pub fn siphon(&self, args: &[&str]) {
        self.wait("the shell's prompt", Duration::from_secs(10), |s| {
            s.contains("ready$")
        });
        let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_siphon"))
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        self.send(&[
            &format!("{}; printf 'siphon %s %d\\n' ended $?", quoted.join(" ")),
            "Enter",
        ]);
    }

    /// Waits for the command [`Tmux::siphon`] started to end; returns its
    /// exit status and the pane.
    pub fn ended(&self, within: Duration) -> (i32, String) {
        let s = self.wait("siphon to end", within, |s| s.contains("siphon ended "));
        let code = s
            .split("siphon ended ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|c| c.parse().ok())
            .expect("an exit status");
        (code, s)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}
