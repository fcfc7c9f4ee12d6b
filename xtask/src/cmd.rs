//! The one door for subprocesses: records the command line and cwd, captures output, enforces a
//! timeout, and turns failure into an error that carries the output tail and a hint.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many trailing lines of output an error keeps.
const TAIL_LINES: usize = 40;

/// A command to run, described as plain data so errors and logs can print it exactly.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
    timeout: Option<Duration>,
    stdin: Option<Vec<u8>>,
    hint: Option<String>,
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
    /// stdout and stderr together, for parsers of tools that print versions on either stream.
    pub fn combined(&self) -> String {
        let mut s = self.stdout.clone();
        if !self.stderr.is_empty() {
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str(&self.stderr);
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
        hint: Option<String>,
    },
    #[error("`{command}` did not finish within {secs} s and was stopped")]
    Timeout {
        command: String,
        secs: u64,
        hint: Option<String>,
    },
    #[error("`{command}` failed ({status}) in {cwd}\n--- last lines of output ---\n{tail}")]
    Failed {
        command: String,
        cwd: String,
        status: String,
        tail: String,
        hint: Option<String>,
    },
}

impl crate::error::Hint for CmdError {
    fn hint(&self) -> Option<String> {
        match self {
            CmdError::Spawn { hint, .. }
            | CmdError::Timeout { hint, .. }
            | CmdError::Failed { hint, .. } => hint.clone(),
        }
    }
}

impl CmdError {
    /// True when the program itself could not be found: a missing tool is a fact, not a failure.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CmdError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            envs: Vec::new(),
            timeout: None,
            stdin: None,
            hint: None,
        }
    }
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I, S>(mut self, it: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }
    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    pub fn stdin_bytes(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(b.into());
        self
    }
    /// What to tell the user when this command fails.
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }

    /// The command line as a user would type it (for errors and logs).
    pub fn display(&self) -> String {
        let mut s = shell_quote(&self.program.to_string_lossy());
        for a in &self.args {
            s.push(' ');
            s.push_str(&shell_quote(&a.to_string_lossy()));
        }
        s
    }

    /// The command with its directory and environment; callers add the stdio they need.
    fn base(&self) -> duct::Expression {
        // A bare `OsStr` program is looked up on PATH; duct reads a relative `Path` as `./name`.
        let mut e = duct::cmd(self.program.as_os_str(), &self.args).unchecked();
        if let Some(d) = &self.cwd {
            e = e.dir(d);
        }
        for (k, v) in &self.envs {
            e = e.env(k, v);
        }
        e
    }

    fn expression(&self) -> duct::Expression {
        let e = self.base().stdout_capture().stderr_capture();
        match &self.stdin {
            Some(b) => e.stdin_bytes(b.clone()),
            None => e.stdin_null(),
        }
    }

    /// Runs to completion (or timeout) and returns the output whatever the exit status.
    pub fn output(&self) -> Result<Output, CmdError> {
        let handle = self.expression().start().map_err(|e| self.spawn_error(e))?;
        let started = Instant::now();
        let out = loop {
            match handle.try_wait() {
                Ok(Some(o)) => break o.clone(),
                Ok(None) => {}
                Err(e) => return Err(self.spawn_error(e)),
            }
            if let Some(limit) = self.timeout {
                if started.elapsed() >= limit {
                    let _ = handle.kill();
                    return Err(CmdError::Timeout {
                        command: self.display(),
                        secs: limit.as_secs(),
                        hint: self.hint.clone(),
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(Output {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs and requires exit status 0.
    pub fn run(&self) -> Result<Output, CmdError> {
        let out = self.output()?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.failed(&out))
        }
    }

    /// Runs with the terminal attached (no capture), for long tools whose own output is the progress.
    pub fn run_inherit(&self) -> Result<(), CmdError> {
        let out = self.base().run().map_err(|err| self.spawn_error(err))?;
        self.shown_status(out.status)
    }

    /// The result of a run whose output was shown as it ran.
    fn shown_status(&self, status: std::process::ExitStatus) -> Result<(), CmdError> {
        if status.success() {
            return Ok(());
        }
        Err(CmdError::Failed {
            command: self.display(),
            cwd: self.cwd_display(),
            status: describe_status(status.code()),
            tail: "(output was shown above)".into(),
            hint: self.hint.clone(),
        })
    }

    /// Like [`Cmd::run_inherit`], but the program's stdout goes to our stderr: for installers
    /// (apt, pip) run by a command whose stdout is data (`--json`), so their chatter never mixes
    /// with it.
    pub fn run_to_stderr(&self) -> Result<(), CmdError> {
        let out = self
            .base()
            .stdout_to_stderr()
            .run()
            .map_err(|err| self.spawn_error(err))?;
        self.shown_status(out.status)
    }

    /// Runs with stdout and stderr merged, calling `on_line` for each line as it arrives (for
    /// progress and logs of long builds). Returns the exit code (`None`: killed by a signal).
    pub fn stream_lines(&self, mut on_line: impl FnMut(&str)) -> Result<Option<i32>, CmdError> {
        use std::io::BufRead;
        let e = self.base().stderr_to_stdout().stdin_null();
        let reader = e.reader().map_err(|err| self.spawn_error(err))?;
        let mut buf = std::io::BufReader::new(&reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match buf.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => on_line(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r'])),
                Err(err) => return Err(self.spawn_error(err)),
            }
        }
        let status = reader
            .try_wait()
            .map_err(|err| self.spawn_error(err))?
            .map(|o| o.status.code())
            .unwrap_or(None);
        Ok(status)
    }

    pub fn failed(&self, out: &Output) -> CmdError {
        CmdError::Failed {
            command: self.display(),
            cwd: self.cwd_display(),
            status: describe_status(out.status),
            tail: tail(&out.combined(), TAIL_LINES),
            hint: self.hint.clone(),
        }
    }

    fn cwd_display(&self) -> String {
        match &self.cwd {
            Some(d) => d.display().to_string(),
            None => std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| ".".into()),
        }
    }

    fn spawn_error(&self, source: std::io::Error) -> CmdError {
        CmdError::Spawn {
            command: self.display(),
            source,
            hint: self.hint.clone(),
        }
    }
}

fn describe_status(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Finds an executable by name on `path` (a PATH-style list); `None` when absent.
pub fn which_in(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    for dir in std::env::split_paths(path) {
        let cand = dir.join(name);
        if is_executable(&cand) {
            return Some(cand);
        }
        if cfg!(windows) {
            let exe = dir.join(format!("{name}.exe"));
            if exe.is_file() {
                return Some(exe);
            }
        }
    }
    None
}

pub fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_command_status_and_output_tail() {
        let err = Cmd::new("sh")
            .args(["-c", "echo first; echo boom >&2; exit 3"])
            .hint("try again")
            .run()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("exit status 3"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
        assert_eq!(crate::error::Hint::hint(&err).as_deref(), Some("try again"));
    }

    #[test]
    fn hanging_command_is_stopped_at_timeout() {
        let started = Instant::now();
        let err = Cmd::new("sleep")
            .arg("30")
            .timeout(Duration::from_millis(300))
            .output()
            .unwrap_err();
        assert!(matches!(err, CmdError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_program_is_reported_as_not_found() {
        let err = Cmd::new("/nonexistent/definitely-not-here")
            .output()
            .unwrap_err();
        assert!(err.is_not_found());
    }

    #[test]
    fn bare_program_names_are_looked_up_on_path() {
        // duct treats a `Path` program as relative to the cwd; names must go through PATH.
        let out = Cmd::new("sh").args(["-c", "echo hi"]).run().unwrap();
        assert_eq!(out.stdout.trim(), "hi");
    }

    #[test]
    fn streamed_lines_arrive_in_order_with_exit_code() {
        let mut lines = Vec::new();
        let code = Cmd::new("sh")
            .args(["-c", "echo one; echo two >&2; exit 4"])
            .stream_lines(|l| lines.push(l.to_string()))
            .unwrap();
        assert_eq!(lines, ["one", "two"]);
        assert_eq!(code, Some(4));
    }

    #[test]
    fn quoting_keeps_arguments_with_spaces_together() {
        let c = Cmd::new("echo").arg("a b").arg("plain");
        assert_eq!(c.display(), "echo 'a b' plain");
    }
}
