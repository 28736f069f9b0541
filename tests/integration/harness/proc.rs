//! The built binary as a child process, with deadlines: a stuck child is killed and its test
//! fails within minutes naming what it waited for (with the child's stderr so far), instead
//! of holding CI until its 90-minute limit. Every test that runs the binary goes through here
//! (`every_wait_on_a_child_has_a_deadline` checks the sources).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tag-space");

/// How long one run of the binary may take before it counts as stuck. Far above what any
/// run here needs, even on a loaded 2-core CI machine where a debug build is many times
/// slower than on a desk; a hang still fails in two minutes.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// How long a test waits for something a child or a server should do (a request, a line).
pub const POLL_PATIENCE: Duration = Duration::from_secs(60);

/// How often a wait looks again. Polling a process or a server, not timing anything.
const TICK: Duration = Duration::from_millis(10);

/// `cmd.output()` with a deadline: `cmd.output_bounded()`.
pub trait OutputBounded {
    /// Runs to the end (stdin closed, stdout and stderr captured); a run that takes more
    /// than [`PATIENCE`] is killed and the test fails naming it.
    fn output_bounded(&mut self) -> Output;
}

impl OutputBounded for Command {
    fn output_bounded(&mut self) -> Output {
        Running::start(self).wait_bounded()
    }
}

/// `tag-space <args>` in `dir` with only `NO_COLOR=1` and `vars` in its environment, run to
/// its end with a deadline.
pub fn run_in(dir: &Path, args: &[&str], vars: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("NO_COLOR", "1");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output_bounded()
}

/// [`run_in`] with `HOME=dir`: the default state file and locks live under HOME, kept in
/// the test's directory.
pub fn run_at_home(dir: &Path, args: &[&str], vars: &[(&str, String)]) -> Output {
    let mut vars = vars.to_vec();
    vars.insert(0, ("HOME", dir.display().to_string()));
    run_in(dir, args, &vars)
}

/// Runs `cmd` to its end off the async runtime's threads (for fakes that answer on them).
pub async fn output_off_runtime(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output_bounded())
        .await
        .unwrap()
}

/// A child's stream, read to its end on a thread of its own so that the child never blocks
/// on a full pipe, and readable while the child runs.
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    /// Says when the stream reached its end (every writer gone, grandchildren included).
    ended: Option<mpsc::Receiver<()>>,
}

impl Capture {
    fn new(stream: Option<impl Read + Send + 'static>) -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let ended = stream.map(|mut s| {
            let buf = Arc::clone(&buf);
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
                let _ = tx.send(());
            });
            rx
        });
        Self { buf, ended }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Everything, once the child is gone. A process it left behind holding the pipe (a
    /// shell's child) is given a moment, not for ever: what was read by then is returned.
    fn take(&mut self) -> Vec<u8> {
        if let Some(ended) = self.ended.take() {
            let _ = ended.recv_timeout(Duration::from_secs(10));
        }
        std::mem::take(&mut *self.buf.lock().unwrap())
    }
}

/// A running child, in a process group of its own. Dropped before it ended (a failed
/// assertion), or stuck, the whole group is killed (a shell's children too), so that no test
/// leaves a process behind.
pub struct Running {
    child: Child,
    what: String,
    stdout: Capture,
    stderr: Capture,
    ended: Option<ExitStatus>,
}

impl Running {
    /// Spawns `cmd` with stdin closed and stdout/stderr captured.
    pub fn start(cmd: &mut Command) -> Self {
        let what = describe(cmd);
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
        let stdout = Capture::new(child.stdout.take());
        let stderr = Capture::new(child.stderr.take());
        Self {
            child,
            what,
            stdout,
            stderr,
            ended: None,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.text()
    }

    /// Its exit status if it has ended.
    pub fn ended(&mut self) -> Option<ExitStatus> {
        if self.ended.is_none() {
            self.ended = self.child.try_wait().unwrap();
        }
        self.ended
    }

    /// Sends `sig` (kill(2)); the child must still be running.
    pub fn signal(&mut self, sig: i32) {
        assert!(
            self.ended().is_none(),
            "{}: ended before the signal",
            self.what
        );
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on the pid of our child, not reaped yet (`ended` is None).
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// SIGKILL, then reaps it (a killed process cannot refuse to end).
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        self.ended = Some(self.child.wait().unwrap());
    }

    /// SIGKILL to the child's process group, then reaps the child.
    fn kill_group(&mut self) {
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this child leads (process_group(0)).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        self.ended = self.child.wait().ok();
    }

    /// Waits (async) until `done` holds; fails if the child ends first or after
    /// [`POLL_PATIENCE`], naming `what` and showing the child's stderr.
    pub async fn until(&mut self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + POLL_PATIENCE;
        while !done() {
            if let Some(status) = self.ended() {
                panic!(
                    "{}: ended ({status}) before {what}; stderr:\n{}",
                    self.what,
                    self.stderr_so_far()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {POLL_PATIENCE:?}; stderr so far:\n{}",
                self.what,
                self.stderr_so_far()
            );
            tokio::time::sleep(TICK).await;
        }
    }

    /// Waits until the child has written `needle` on stderr.
    pub async fn until_stderr_shows(&mut self, needle: &str) {
        let stderr = Arc::clone(&self.stderr.buf);
        let seen = move || String::from_utf8_lossy(&stderr.lock().unwrap()).contains(needle);
        self.until(&format!("{needle:?} on stderr"), seen).await;
    }

    /// Waits for the end (blocking), killing the child after [`PATIENCE`].
    pub fn wait_bounded(self) -> Output {
        self.wait_bounded_within(PATIENCE)
    }

    fn wait_bounded_within(mut self, patience: Duration) -> Output {
        let deadline = Instant::now() + patience;
        let status = loop {
            if let Some(status) = self.ended() {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill_group();
                panic!(
                    "{}: did not exit within {patience:?}, killed it; stderr:\n{}",
                    self.what,
                    String::from_utf8_lossy(&self.stderr.take())
                );
            }
            std::thread::sleep(TICK);
        };
        Output {
            status,
            stdout: self.stdout.take(),
            stderr: self.stderr.take(),
        }
    }

    /// [`Running::wait_bounded`] off the async runtime's threads.
    pub async fn finish(self) -> Output {
        tokio::task::spawn_blocking(move || self.wait_bounded())
            .await
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.ended.is_none() && self.child.try_wait().ok().flatten().is_none() {
            self.kill_group();
        }
    }
}

/// `tag-space --space ENG ...`, for messages.
fn describe(cmd: &Command) -> String {
    let program = std::path::Path::new(cmd.get_program())
        .file_name()
        .map_or_else(|| "?".into(), |n| n.to_string_lossy().into_owned());
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("`{program} {}`", args.join(" "))
}

/// Polls `done` (async) until it holds; fails after [`POLL_PATIENCE`] naming `what`.
pub async fn until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + POLL_PATIENCE;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "no {what} within {POLL_PATIENCE:?}"
        );
        tokio::time::sleep(TICK).await;
    }
}

#[test]
fn a_stuck_shell_and_its_child_are_killed() {
    // The README examples run tag-space through `sh`: a stuck grandchild holds the pipes.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "sleep 600 & echo pid=$! >&2; wait"]);
    let running = Running::start(&mut cmd);
    let failed =
        std::thread::spawn(move || running.wait_bounded_within(Duration::from_millis(300)))
            .join()
            .unwrap_err();
    let msg = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("did not exit within"), "{msg}");
    // The last `pid=`: the command line shows `pid=$!`, the stderr the number.
    let pid = msg
        .rsplit("pid=")
        .next()
        .and_then(|r| r.split_whitespace().next())
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no child pid in {msg}"));
    // SIGKILL is not instant: wait (bounded) until the grandchild is gone or a zombie.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "the shell's child {pid} is left");
        std::thread::sleep(TICK);
    }
}

/// Whether process `pid` exists and is not a zombie (from /proc/PID/stat).
#[cfg(test)]
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // After the command name's closing parenthesis comes the state.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

#[test]
fn a_stuck_child_is_killed_and_named() {
    // `sleep` stands in for a hung tag-space; a short patience keeps this test quick.
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    let running = Running::start(&mut cmd);
    let pid = running.id();
    let failed =
        std::thread::spawn(move || running.wait_bounded_within(Duration::from_millis(300)))
            .join()
            .unwrap_err();
    let msg = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("`sleep 600`: did not exit within"), "{msg}");
    // Reaped: no such process any more.
    // SAFETY: signal 0 only checks that the pid exists.
    assert_eq!(unsafe { libc::kill(i32::try_from(pid).unwrap(), 0) }, -1);
}
