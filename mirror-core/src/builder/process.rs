//! Running builder processes: output streamed line by line as events, the last lines kept
//! for errors, a deadline, and the whole process group killed on timeout or cancellation.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::{BuildEvent, BuildRequest, CommandLine, LogStream};
use crate::error::{Error, Result};

/// Lines kept for [`Error::BuildFailed::log_tail`](crate::Error::BuildFailed).
const TAIL_LINES: usize = 40;
/// Longest line kept or sent; longer output without a newline is split.
const MAX_LINE: usize = 16 * 1024;
/// Longest line in the tail.
const TAIL_LINE_CHARS: usize = 2000;
/// How long output may still arrive after the process exited (a stray child holding the
/// pipes open is killed after that).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Runs the commands of one build, sharing its deadline and its log tail.
pub(crate) struct Runner<'a> {
    request: &'a BuildRequest,
    timeout: Duration,
    deadline: Instant,
    tail: VecDeque<String>,
}

impl<'a> Runner<'a> {
    /// A runner whose deadline is the request's timeout from now.
    pub(crate) fn new(request: &'a BuildRequest) -> Self {
        Self::with_timeout(request, request.timeout)
    }

    /// A runner with its own time limit (clean-up steps after the build).
    pub(crate) fn with_timeout(request: &'a BuildRequest, timeout: Duration) -> Self {
        Runner {
            request,
            timeout,
            deadline: Instant::now() + timeout,
            tail: VecDeque::new(),
        }
    }

    /// A [`Error::BuildFailed`] with the log tail so far.
    pub(crate) fn failure(&self, status: impl Into<String>) -> Error {
        Error::BuildFailed {
            reference: self.request.reference.clone(),
            status: status.into(),
            log_tail: self.tail.iter().cloned().collect::<Vec<_>>().join("\n"),
        }
    }

    fn line(&mut self, stream: LogStream, bytes: &[u8]) {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = String::from_utf8_lossy(bytes).into_owned();
        tracing::debug!(target: "mirror_core::builder", ?stream, "{line}");
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail
            .push_back(line.chars().take(TAIL_LINE_CHARS).collect());
        self.request.emit(BuildEvent::Log { stream, line });
    }

    /// Runs `cmd` to completion; a non-zero exit, a failure to start, the deadline or an I/O
    /// error is an [`Error::BuildFailed`].
    pub(crate) async fn run(&mut self, cmd: &CommandLine) -> Result<()> {
        let program = cmd.program.display().to_string();
        self.request.emit(BuildEvent::Command {
            command: cmd.redacted(),
        });
        let mut c = tokio::process::Command::new(&cmd.program);
        c.args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        c.process_group(0);
        let mut child = c
            .spawn()
            .map_err(|e| self.failure(format!("cannot start {program}: {e}")))?;
        let mut group = GroupGuard(child.id());
        let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(self.failure(format!("{program}: no output pipes")));
        };

        let deadline = self.deadline;
        let mut out_buf = Vec::new();
        let mut err_buf = Vec::new();
        let (mut out_open, mut err_open) = (true, true);
        let mut status: Option<ExitStatus> = None;
        let mut drain_until: Option<Instant> = None;
        let mut chunk_out = [0u8; 8192];
        let mut chunk_err = [0u8; 8192];
        loop {
            if !out_open && !err_open && status.is_some() {
                break;
            }
            let limit = drain_until.map_or(deadline, |d| d.min(deadline));
            tokio::select! {
                r = out.read(&mut chunk_out), if out_open => match r {
                    Ok(0) | Err(_) => {
                        out_open = false;
                        self.flush(LogStream::Stdout, &mut out_buf, true);
                    }
                    Ok(n) => {
                        out_buf.extend_from_slice(&chunk_out[..n]);
                        self.flush(LogStream::Stdout, &mut out_buf, false);
                    }
                },
                r = err.read(&mut chunk_err), if err_open => match r {
                    Ok(0) | Err(_) => {
                        err_open = false;
                        self.flush(LogStream::Stderr, &mut err_buf, true);
                    }
                    Ok(n) => {
                        err_buf.extend_from_slice(&chunk_err[..n]);
                        self.flush(LogStream::Stderr, &mut err_buf, false);
                    }
                },
                r = child.wait(), if status.is_none() => match r {
                    Ok(s) => {
                        status = Some(s);
                        drain_until = Some(Instant::now() + DRAIN_GRACE);
                    }
                    Err(e) => {
                        group.kill();
                        return Err(self.failure(format!("waiting for {program}: {e}")));
                    }
                },
                _ = tokio::time::sleep_until(limit) => {
                    if let (Some(s), true) = (status, Instant::now() < deadline) {
                        // The process is gone but something it started still holds its
                        // output open: that stray keeps the group alive, so killing the
                        // group reaches only it.
                        group.kill();
                        self.flush(LogStream::Stdout, &mut out_buf, true);
                        self.flush(LogStream::Stderr, &mut err_buf, true);
                        return self.finish(&program, s);
                    }
                    group.kill();
                    let _ = child.kill().await;
                    self.flush(LogStream::Stdout, &mut out_buf, true);
                    self.flush(LogStream::Stderr, &mut err_buf, true);
                    return Err(self.failure(format!(
                        "{program} timed out after {}s and was killed",
                        self.timeout.as_secs_f64()
                    )));
                }
            }
        }
        // Reaped and its output closed: the group may be gone and its id reused.
        group.disarm();
        match status {
            Some(s) => self.finish(&program, s),
            None => Err(self.failure(format!("{program}: no exit status"))),
        }
    }

    fn finish(&self, program: &str, status: ExitStatus) -> Result<()> {
        if status.success() {
            return Ok(());
        }
        Err(self.failure(format!("{program} {}", describe(status))))
    }

    /// Sends every complete line of `buf` (all of it when `end`, or when a line grows past
    /// [`MAX_LINE`]).
    fn flush(&mut self, stream: LogStream, buf: &mut Vec<u8>, end: bool) {
        while let Some(at) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=at).collect();
            self.line(stream, &line[..line.len() - 1]);
        }
        if (end && !buf.is_empty()) || buf.len() > MAX_LINE {
            let line = std::mem::take(buf);
            self.line(stream, &line);
        }
    }
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    match status.code() {
        Some(c) => format!("exit status {c}"),
        None => status.to_string(),
    }
}

/// Kills the child's process group (the child and everything it started) when dropped
/// while armed: a cancelled build leaves no process behind.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.0 {
            if let Ok(pgid) = i32::try_from(pid) {
                // SAFETY: `kill` has no memory-safety preconditions. The group id is the
                // child's pid, which cannot be reused while the child is unreaped or while
                // any member of its group lives.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn request(timeout: Duration) -> (BuildRequest, Arc<Mutex<Vec<BuildEvent>>>) {
        let mut r = BuildRequest::new("/", "/Dockerfile", "127.0.0.1:1/r:t");
        r.timeout = timeout;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        r.events = Some(Arc::new(move |e: &BuildEvent| {
            s.lock().unwrap().push(e.clone())
        }));
        (r, seen)
    }

    fn sh(script: &str) -> CommandLine {
        CommandLine {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("MIRROR_TEST_VAR".into(), "from-env".into())],
        }
    }

    #[tokio::test]
    async fn lines_stream_as_events_and_failures_carry_the_tail() {
        let (r, seen) = request(Duration::from_secs(20));
        let mut runner = Runner::new(&r);
        runner
            .run(&sh(
                "echo out1; echo err1 >&2; printf 'no newline'; echo \"$MIRROR_TEST_VAR\" >&2",
            ))
            .await
            .unwrap();
        let logs: Vec<(LogStream, String)> = seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                BuildEvent::Log { stream, line } => Some((*stream, line.clone())),
                _ => None,
            })
            .collect();
        assert!(
            logs.contains(&(LogStream::Stdout, "out1".into())),
            "{logs:?}"
        );
        assert!(
            logs.contains(&(LogStream::Stderr, "err1".into())),
            "{logs:?}"
        );
        assert!(
            logs.contains(&(LogStream::Stdout, "no newline".into())),
            "{logs:?}"
        );
        assert!(
            logs.contains(&(LogStream::Stderr, "from-env".into())),
            "{logs:?}"
        );

        let err = runner
            .run(&sh("for i in $(seq 1 100); do echo line$i; done; exit 3"))
            .await
            .unwrap_err();
        match err {
            Error::BuildFailed {
                status, log_tail, ..
            } => {
                assert!(status.ends_with("exit status 3"), "{status}");
                assert!(log_tail.ends_with("line100"), "{log_tail}");
                assert!(!log_tail.contains("line60\n"), "only the tail: {log_tail}");
                assert_eq!(log_tail.lines().count(), TAIL_LINES);
            }
            e => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_a_build_failure() {
        let (r, _) = request(Duration::from_secs(5));
        let cmd = CommandLine {
            program: "/nonexistent/buildah".into(),
            args: vec![],
            env: vec![],
        };
        let err = Runner::new(&r).run(&cmd).await.unwrap_err();
        assert!(
            matches!(&err, Error::BuildFailed { status, .. } if status.contains("cannot start /nonexistent/buildah")),
            "{err}"
        );
    }

    fn alive(pid: i32) -> bool {
        // Zombies count as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    }

    async fn read_pid(path: &std::path::Path) -> i32 {
        for _ in 0..100 {
            if let Ok(s) = std::fs::read_to_string(path) {
                if let Ok(p) = s.trim().parse() {
                    return p;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no pid file");
    }

    #[tokio::test]
    async fn the_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let (r, _) = request(Duration::from_millis(1500));
        let script = format!(
            "echo starting; (sleep 60; echo never) & echo $! > {}; wait",
            pidfile.display()
        );
        let started = std::time::Instant::now();
        let err = Runner::new(&r).run(&sh(&script)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        match &err {
            Error::BuildFailed {
                status, log_tail, ..
            } => {
                assert!(status.contains("timed out after 1.5s"), "{status}");
                assert!(log_tail.contains("starting"), "{log_tail}");
            }
            e => panic!("{e}"),
        }
        let grandchild = read_pid(&pidfile).await;
        for _ in 0..50 {
            if !alive(grandchild) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the grandchild {grandchild} survived the timeout");
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let (r, _) = request(Duration::from_secs(60));
        let script = format!("(sleep 60) & echo $! > {}; wait", pidfile.display());
        let cmd = sh(&script);
        let mut runner = Runner::new(&r);
        let fut = runner.run(&cmd);
        // Cancel the build after it started.
        let cancelled = tokio::time::timeout(Duration::from_millis(700), fut).await;
        assert!(cancelled.is_err());
        let grandchild = read_pid(&pidfile).await;
        for _ in 0..50 {
            if !alive(grandchild) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the grandchild {grandchild} survived cancellation");
    }

    #[tokio::test]
    async fn a_stray_holding_the_output_open_does_not_hang_the_build() {
        let (r, _) = request(Duration::from_secs(30));
        let started = std::time::Instant::now();
        Runner::new(&r)
            .run(&sh("(sleep 60) & echo done"))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
