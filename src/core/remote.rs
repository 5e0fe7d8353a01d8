//! Runs on another machine, over a pipe: `workbench serve --stdio` answers requests on its
//! standard input and output, so `ssh HOST workbench serve --stdio` reaches a cluster's runs
//! with the user's own SSH (keys, agents, `~/.ssh/config`, ProxyJump) and no port, server or
//! account.
//!
//! Every message is one frame as the run log writes them (`[len u32][crc32c u32][payload]`,
//! `core::runlog`), its payload a JSON header, a NUL byte, then raw bytes for the replies that
//! carry a file's bytes. The client asks, the server answers, one at a time. A log is read by
//! byte offset: the client keeps the offset of the last whole record it decoded and asks from
//! there, so after a dropped connection it goes on with no gap and no duplicate.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::protocol::Command;
use crate::core::runlog::{decode_frames, encode_frame, HEADER_LEN, MAX_RECORD_LEN};

/// The protocol's version; a server of another says so in one line.
pub const VERSION: u32 = 2;
/// The most bytes of a log one reply carries.
pub const CHUNK: u64 = 4 << 20;

/// Client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Hello {
        version: u32,
    },
    /// The runs folder's runs.
    List,
    /// The runs table's rows of the runs folder (read incrementally over one session).
    Rows,
    /// Up to `max` bytes of `run`'s `events.log` from byte `offset`.
    Read {
        run: String,
        offset: u64,
        max: u64,
    },
    /// Up to [`CHUNK`] bytes of a file of a run (`scalars.lod`, a sample image, a volume, a
    /// checkpoint's tensors) from byte `offset` ([`fetch`] asks until it has the whole).
    File {
        run: String,
        path: String,
        #[serde(default)]
        offset: u64,
    },
    /// A command for a run, through its inbox (`core::inbox`).
    Command {
        run: String,
        command: Command,
    },
}

/// A run as the list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteRun {
    /// The folder's name under the runs folder.
    pub run: String,
    pub name: String,
    pub family: String,
    pub status: String,
    pub last_step: u64,
    /// The size of its `events.log`.
    pub log_len: u64,
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Hello {
        version: u32,
        workbench: String,
        runs_dir: String,
    },
    Runs {
        runs: Vec<RemoteRun>,
    },
    Rows {
        rows: Vec<crate::core::runtable::WireRow>,
    },
    /// Bytes of a log (in the frame's body) from `offset`, and the log's length now.
    Bytes {
        offset: u64,
        log_len: u64,
    },
    /// A file's bytes from the offset asked (in the body), and the file's length.
    File {
        len: u64,
    },
    /// The command was put in the run's inbox.
    Sent {
        id: String,
    },
    Error {
        message: String,
    },
}

/// Errors of the pipe.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a message that is not of this protocol: {0}")]
    Garbled(String),
    #[error("{0}")]
    Refused(String),
}

/// One message: a header and its body.
pub fn write_message<W: Write, H: Serialize>(
    w: &mut W,
    header: &H,
    body: &[u8],
) -> Result<(), RemoteError> {
    let mut payload =
        serde_json::to_vec(header).map_err(|e| RemoteError::Garbled(e.to_string()))?;
    payload.push(0);
    payload.extend_from_slice(body);
    w.write_all(&encode_frame(&payload))?;
    w.flush()?;
    Ok(())
}

/// Reads one message; a torn frame or a bad checksum is garbage, not a message.
pub fn read_message<R: Read, H: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<(H, Vec<u8>), RemoteError> {
    let mut head = [0u8; HEADER_LEN];
    if let Err(e) = r.read_exact(&mut head) {
        return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
            RemoteError::Closed
        } else {
            RemoteError::Io(e)
        });
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if len > MAX_RECORD_LEN {
        return Err(RemoteError::Garbled(format!("a frame of {len} bytes")));
    }
    let mut frame = head.to_vec();
    frame.resize(HEADER_LEN + len as usize, 0);
    r.read_exact(&mut frame[HEADER_LEN..])
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => RemoteError::Closed,
            _ => RemoteError::Io(e),
        })?;
    let (payloads, _) = decode_frames(&frame);
    let payload = payloads
        .first()
        .ok_or_else(|| RemoteError::Garbled("a frame whose checksum does not match".into()))?;
    let split = payload
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| RemoteError::Garbled("a frame without a header".into()))?;
    let header = serde_json::from_slice(&payload[..split])
        .map_err(|e| RemoteError::Garbled(e.to_string()))?;
    Ok((header, payload[split + 1..].to_vec()))
}

/// A run's folder under `runs_dir`, refusing names that leave it.
fn run_dir(runs_dir: &Path, run: &str) -> Result<PathBuf, String> {
    if run.is_empty() || run.contains('/') || run.contains('\\') || run == "." || run == ".." {
        return Err(format!("`{run}` is not a run of this folder"));
    }
    let dir = runs_dir.join(run);
    if dir.join("events.log").is_file() {
        Ok(dir)
    } else {
        Err(format!("{}: not a run folder", dir.display()))
    }
}

/// Serves requests from `input` on `output` until the input closes. Each request gets one
/// reply; a request it cannot read ends the session (the client reconnects).
pub fn serve<R: Read, W: Write>(
    runs_dir: &Path,
    input: &mut R,
    output: &mut W,
) -> Result<(), RemoteError> {
    // The session's runs table: a second Rows reads only what each log gained.
    let mut index = crate::core::runtable::RunIndex::default();
    loop {
        let request: Request = match read_message(input) {
            Ok((r, _)) => r,
            Err(RemoteError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let (reply, body) = answer(runs_dir, &mut index, request);
        write_message(output, &reply, &body)?;
    }
}

fn answer(
    runs_dir: &Path,
    index: &mut crate::core::runtable::RunIndex,
    request: Request,
) -> (Reply, Vec<u8>) {
    let error = |message: String| (Reply::Error { message }, Vec::new());
    match request {
        Request::Hello { version } if version != VERSION => error(format!(
            "this workbench ({}) speaks protocol {VERSION}, the app {version}: use the same version on both sides",
            env!("CARGO_PKG_VERSION")
        )),
        Request::Hello { .. } => (
            Reply::Hello {
                version: VERSION,
                workbench: env!("CARGO_PKG_VERSION").to_string(),
                runs_dir: runs_dir.display().to_string(),
            },
            Vec::new(),
        ),
        Request::List => match crate::core::rundir::list_runs(runs_dir) {
            Ok(list) => (
                Reply::Runs {
                    runs: list
                        .into_iter()
                        .map(|s| RemoteRun {
                            run: s
                                .dir
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            log_len: std::fs::metadata(s.dir.join("events.log"))
                                .map_or(0, |m| m.len()),
                            name: s.name,
                            family: s.family,
                            status: s.status.label().to_string(),
                            last_step: s.last_step,
                        })
                        .collect(),
                },
                Vec::new(),
            ),
            Err(e) => error(e.to_string()),
        },
        Request::Rows if !runs_dir.is_dir() => {
            error(format!("{}: no such runs folder", runs_dir.display()))
        }
        Request::Rows => (
            Reply::Rows {
                rows: index
                    .refresh(runs_dir)
                    .iter()
                    .map(crate::core::runtable::RunRow::to_wire)
                    .collect(),
            },
            Vec::new(),
        ),
        Request::Read { run, offset, max } => {
            let dir = match run_dir(runs_dir, &run) {
                Ok(d) => d,
                Err(e) => return error(e),
            };
            let path = dir.join("events.log");
            let read = || -> std::io::Result<(u64, Vec<u8>)> {
                use std::io::Seek;
                let mut f = std::fs::File::open(&path)?;
                let len = f.metadata()?.len();
                let n = len.saturating_sub(offset).min(max.min(CHUNK));
                let mut buf = vec![0u8; n as usize];
                f.seek(std::io::SeekFrom::Start(offset))?;
                f.read_exact(&mut buf)?;
                Ok((len, buf))
            };
            match read() {
                Ok((log_len, buf)) => (Reply::Bytes { offset, log_len }, buf),
                Err(e) => error(format!("{}: {e}", path.display())),
            }
        }
        Request::File { run, path, offset } => {
            let dir = match run_dir(runs_dir, &run) {
                Ok(d) => d,
                Err(e) => return error(e),
            };
            let rel = Path::new(&path);
            if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return error(format!("`{path}` is not a file of the run"));
            }
            let file = dir.join(rel);
            let read = || -> std::io::Result<(u64, Vec<u8>)> {
                use std::io::Seek;
                let mut f = std::fs::File::open(&file)?;
                let len = f.metadata()?.len();
                let n = len.saturating_sub(offset).min(CHUNK);
                let mut buf = vec![0u8; n as usize];
                f.seek(std::io::SeekFrom::Start(offset))?;
                f.read_exact(&mut buf)?;
                Ok((len, buf))
            };
            match read() {
                Ok((len, b)) => (Reply::File { len }, b),
                Err(e) => error(format!("{}: {e}", file.display())),
            }
        }
        Request::Command { run, command } => {
            let dir = match run_dir(runs_dir, &run) {
                Ok(d) => d,
                Err(e) => return error(e),
            };
            match crate::core::inbox::send(&dir, &command, false) {
                Ok(id) => (Reply::Sent { id }, Vec::new()),
                Err(e) => error(e.to_string()),
            }
        }
    }
}

/// The command line that reaches a remote's `workbench serve --stdio`: `ssh` (or the
/// program `WORKBENCH_SSH` names, as `GIT_SSH`), the destination as the user's SSH knows it
/// (`~/.ssh/config`, keys, agents and ProxyJump apply), the remote's `workbench` and its runs
/// folder (its default when empty).
#[must_use]
pub fn ssh_argv(ssh: &str, destination: &str, workbench: &str, runs_dir: &str) -> Vec<String> {
    let mut argv = vec![
        ssh.to_string(),
        "-o".into(),
        "BatchMode=yes".into(),
        destination.to_string(),
        workbench.to_string(),
    ];
    if !runs_dir.trim().is_empty() {
        argv.extend(["--runs-dir".to_string(), runs_dir.trim().to_string()]);
    }
    argv.extend(["serve".to_string(), "--stdio".to_string()]);
    argv
}

/// A run's file, whole, asked for in parts of at most [`CHUNK`] bytes.
pub fn fetch(conn: &mut Connection, run: &str, path: &str) -> Result<Vec<u8>, RemoteError> {
    let mut out = Vec::new();
    loop {
        let request = Request::File {
            run: run.to_string(),
            path: path.to_string(),
            offset: out.len() as u64,
        };
        match conn.ask(&request)? {
            (Reply::File { len }, bytes) => {
                let got = bytes.len();
                out.extend_from_slice(&bytes);
                if out.len() as u64 >= len {
                    return Ok(out);
                }
                if got == 0 {
                    return Err(RemoteError::Garbled(format!(
                        "{run}/{path} stopped at byte {} of {len}",
                        out.len()
                    )));
                }
            }
            (Reply::Error { message }, _) => return Err(RemoteError::Refused(message)),
            (other, _) => return Err(RemoteError::Garbled(format!("{other:?} to a file"))),
        }
    }
}

/// The runs table's rows of a remote's runs folder, over a fresh connection.
pub fn rows(argv: &[String]) -> Result<Vec<crate::core::runtable::WireRow>, RemoteError> {
    let (mut c, _) = Connection::open(argv)?;
    match c.ask(&Request::Rows)? {
        (Reply::Rows { rows }, _) => Ok(rows),
        (Reply::Error { message }, _) => Err(RemoteError::Refused(message)),
        (other, _) => Err(RemoteError::Garbled(format!("{other:?} to rows"))),
    }
}

/// The client's side of one connection: a child process (`ssh HOST workbench serve --stdio`,
/// or the binary itself for a local test) and its pipes.
#[derive(Debug)]
pub struct Connection {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl Connection {
    /// Starts `argv` and says hello; a server of another version is refused in one line.
    pub fn open(argv: &[String]) -> Result<(Self, Reply), RemoteError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| RemoteError::Refused("no command to reach the remote".into()))?;
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let input = child.stdin.take().ok_or(RemoteError::Closed)?;
        let output = std::io::BufReader::new(child.stdout.take().ok_or(RemoteError::Closed)?);
        let mut c = Self {
            child,
            input,
            output,
        };
        let (hello, _) = c.ask(&Request::Hello { version: VERSION })?;
        Ok((c, hello))
    }

    /// One request and its reply; a server's error reply is `Refused`.
    pub fn ask(&mut self, r: &Request) -> Result<(Reply, Vec<u8>), RemoteError> {
        write_message(&mut self.input, r, &[])?;
        match read_message(&mut self.output)? {
            (Reply::Error { message }, _) => Err(RemoteError::Refused(message)),
            other => Ok(other),
        }
    }

    /// The process behind the connection (a test kills it to cut the connection).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Follows one remote run's log over a connection that may drop: keeps the byte offset of
/// the last whole record, decodes records from it, and reconnects (backing off from 0.5 s to
/// 10 s) from the same offset.
#[derive(Debug)]
pub struct RemoteLog {
    argv: Vec<String>,
    run: String,
    /// Bytes of the log decoded so far.
    pub offset: u64,
    pending: Vec<u8>,
    conn: Option<Connection>,
    backoff: std::time::Duration,
    retry_at: Option<std::time::Instant>,
    /// The last connection error, while disconnected.
    pub down: Option<String>,
    /// Log bytes received so far (resent bytes after a reconnection included).
    pub received: u64,
}

impl RemoteLog {
    #[must_use]
    pub fn new(argv: Vec<String>, run: String) -> Self {
        Self {
            argv,
            run,
            offset: 0,
            pending: Vec::new(),
            conn: None,
            backoff: std::time::Duration::from_millis(500),
            retry_at: None,
            down: None,
            received: 0,
        }
    }

    /// The connection in use (a test cuts it through its pid).
    #[must_use]
    pub fn connection(&self) -> Option<&Connection> {
        self.conn.as_ref()
    }

    /// The records that became readable since the last poll; nothing while disconnected (a
    /// reconnection is tried when its back-off has passed). A refused hello (another
    /// version) is an error: no retry helps.
    pub fn poll(&mut self) -> Result<Vec<crate::core::protocol::Event>, RemoteError> {
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|t| std::time::Instant::now() < t) {
                return Ok(Vec::new());
            }
            match Connection::open(&self.argv) {
                Ok((c, _)) => {
                    self.conn = Some(c);
                    self.down = None;
                    self.backoff = std::time::Duration::from_millis(500);
                }
                Err(e @ RemoteError::Refused(_)) => return Err(e),
                Err(e) => {
                    self.lost(&e);
                    return Ok(Vec::new());
                }
            }
        }
        let mut events = Vec::new();
        loop {
            let from = self.offset + self.pending.len() as u64;
            let request = Request::Read {
                run: self.run.clone(),
                offset: from,
                max: CHUNK,
            };
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            let (log_len, bytes) = match conn.ask(&request) {
                Ok((Reply::Bytes { log_len, .. }, bytes)) => (log_len, bytes),
                Ok((other, _)) => {
                    return Err(RemoteError::Garbled(format!("{other:?} to a read")));
                }
                Err(e @ RemoteError::Refused(_)) => return Err(e),
                Err(e) => {
                    // A torn reply is dropped whole: the offset stays at the last record.
                    self.lost(&e);
                    break;
                }
            };
            self.received += bytes.len() as u64;
            self.pending.extend_from_slice(&bytes);
            let (payloads, used) = decode_frames(&self.pending);
            for p in payloads {
                let e =
                    serde_json::from_slice(p).map_err(|e| RemoteError::Garbled(e.to_string()))?;
                events.push(e);
            }
            self.pending.drain(..used);
            self.offset += used as u64;
            if bytes.is_empty() || from + bytes.len() as u64 >= log_len {
                break;
            }
        }
        Ok(events)
    }

    /// A file of the run (`scalars.lod`), whole, over this connection (connecting first if it
    /// is down).
    pub fn file(&mut self, path: &str) -> Result<Vec<u8>, RemoteError> {
        if self.conn.is_none() {
            let (c, _) = Connection::open(&self.argv)?;
            self.conn = Some(c);
        }
        let conn = self.conn.as_mut().ok_or(RemoteError::Closed)?;
        fetch(conn, &self.run, path)
    }

    /// Sends a command for the run over this connection (reconnecting first if it is down).
    pub fn send(&mut self, command: &Command) -> Result<String, RemoteError> {
        if self.conn.is_none() {
            let (c, _) = Connection::open(&self.argv)?;
            self.conn = Some(c);
            self.down = None;
        }
        let request = Request::Command {
            run: self.run.clone(),
            command: command.clone(),
        };
        let Some(conn) = self.conn.as_mut() else {
            return Err(RemoteError::Closed);
        };
        match conn.ask(&request) {
            Ok((Reply::Sent { id }, _)) => Ok(id),
            Ok((other, _)) => Err(RemoteError::Garbled(format!("{other:?} to a command"))),
            Err(e) => {
                if !matches!(e, RemoteError::Refused(_)) {
                    self.lost(&e);
                }
                Err(e)
            }
        }
    }

    fn lost(&mut self, e: &RemoteError) {
        self.conn = None;
        self.pending.clear();
        self.down = Some(e.to_string());
        self.retry_at = Some(std::time::Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(std::time::Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_torn_or_garbage_input_is_refused() {
        let mut buf = Vec::new();
        write_message(&mut buf, &Request::List, b"").expect("write");
        let first = buf.len();
        write_message(
            &mut buf,
            &Reply::Bytes {
                offset: 3,
                log_len: 9,
            },
            &[0, 1, 2, 255],
        )
        .expect("write");
        let mut r = &buf[..];
        let (req, body): (Request, Vec<u8>) = read_message(&mut r).expect("one");
        assert_eq!((req, body.len()), (Request::List, 0));
        let (rep, body): (Reply, Vec<u8>) = read_message(&mut r).expect("two");
        assert_eq!(
            rep,
            Reply::Bytes {
                offset: 3,
                log_len: 9
            }
        );
        assert_eq!(body, [0, 1, 2, 255]);
        assert!(matches!(
            read_message::<_, Request>(&mut r),
            Err(RemoteError::Closed)
        ));
        // Every cut of a message is a closed connection, never a message.
        for cut in 0..first {
            let mut r = &buf[..cut];
            assert!(read_message::<_, Request>(&mut r).is_err(), "{cut}");
        }
        // A flipped bit fails the checksum; garbage that claims a huge frame is refused.
        let mut bad = buf.clone();
        bad[HEADER_LEN + 2] ^= 4;
        assert!(matches!(
            read_message::<_, Request>(&mut &bad[..]),
            Err(RemoteError::Garbled(_))
        ));
        let garbage = [0xffu8; 64];
        assert!(matches!(
            read_message::<_, Request>(&mut &garbage[..]),
            Err(RemoteError::Garbled(_))
        ));
    }

    #[test]
    fn the_server_answers_reads_by_offset_and_keeps_to_the_runs_folder() {
        let tmp = tempfile::tempdir().expect("tmp");
        let run = tmp.path().join("r1");
        std::fs::create_dir_all(&run).expect("dir");
        let mut w = crate::core::runlog::LogWriter::open(&run.join("events.log")).expect("log");
        w.append(&crate::core::protocol::Event::Paused { step: 1 })
            .expect("append");
        w.append(&crate::core::protocol::Event::Resumed { step: 1 })
            .expect("append");
        std::fs::write(run.join("preset.ron"), "()").expect("preset");
        let mut input = Vec::new();
        for r in [
            Request::Hello { version: VERSION },
            Request::Rows,
            Request::Read {
                run: "r1".into(),
                offset: 5,
                max: 1 << 20,
            },
            Request::File {
                run: "r1".into(),
                path: "events.log".into(),
                offset: 3,
            },
            Request::File {
                run: "r1".into(),
                path: "../r1/events.log".into(),
                offset: 0,
            },
            Request::Read {
                run: "..".into(),
                offset: 0,
                max: 1,
            },
            Request::Hello {
                version: VERSION + 1,
            },
        ] {
            write_message(&mut input, &r, &[]).expect("write");
        }
        let mut out = Vec::new();
        serve(tmp.path(), &mut &input[..], &mut out).expect("serve");
        let mut r = &out[..];
        let mut next = || read_message::<_, Reply>(&mut r).expect("reply");
        assert!(matches!(
            next().0,
            Reply::Hello {
                version: VERSION,
                ..
            }
        ));
        // The table's row of each run, by folder name.
        match next().0 {
            Reply::Rows { rows } => {
                assert_eq!(rows.len(), 1, "{rows:?}");
                assert_eq!(rows[0].run, "r1");
                let row = crate::core::runtable::RunRow::from_wire("cluster", rows[0].clone());
                assert_eq!(row.dir, std::path::Path::new("cluster:r1"));
                assert_eq!(row.machine.as_deref(), Some("cluster"));
            }
            other => panic!("{other:?}"),
        }
        let (bytes, body) = next();
        let len = std::fs::metadata(run.join("events.log"))
            .expect("len")
            .len();
        assert_eq!(
            bytes,
            Reply::Bytes {
                offset: 5,
                log_len: len
            }
        );
        assert_eq!(
            body,
            std::fs::read(run.join("events.log")).expect("log")[5..]
        );
        // A file from an offset, with its whole length.
        let (file, part) = next();
        assert_eq!(file, Reply::File { len });
        assert_eq!(
            part,
            std::fs::read(run.join("events.log")).expect("log")[3..]
        );
        assert!(
            matches!(next().0, Reply::Error { message } if message.contains("not a file of the run"))
        );
        assert!(matches!(next().0, Reply::Error { message } if message.contains("not a run")));
        assert!(
            matches!(next().0, Reply::Error { message } if message.contains(&format!("speaks protocol {VERSION}")))
        );
    }
}
