//! Commands for a run this process did not start: files in its folder's `inbox/`, which the
//! run reads between steps. It works on a local disk, on storage a cluster shares and through
//! `workbench serve --stdio` over SSH, with no listening port.
//!
//! A sender writes one command per file, `inbox/<nanoseconds>-<pid>-<n>.json`, to a temporary
//! name first and renamed into place, so a reader never sees half a command. The run takes
//! the files in name order at a step boundary (at most every 50 ms while training, every
//! 200 ms while paused), removes each, applies it, and, when the sender asked, answers in
//! `<id>.ack` with the step it was applied at and what the run said. A file that is not a command is removed with a warning in the
//! run's log.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::protocol::Command;

/// The folder in a run folder.
pub const DIR: &str = "inbox";

/// Errors of the inbox.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> InboxError + '_ {
    move |source| InboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One command as a file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub command: Command,
    /// Whether the sender waits for an answer (`<id>.ack`).
    #[serde(default)]
    pub ack: bool,
}

/// The run's answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The step boundary it was applied at.
    pub step: u64,
    /// What the run said (a refusal's reason, or empty).
    #[serde(default)]
    pub said: String,
}

/// Sends `command` to the run at `run`: returns its id (for [`answer`]).
pub fn send(run: &Path, command: &Command, ack: bool) -> Result<String, InboxError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = run.join(DIR);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!(
        "{nanos:020}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let body = serde_json::to_vec(&Envelope {
        command: command.clone(),
        ack,
    })
    .map_err(|e| InboxError::Io {
        path: dir.clone(),
        source: std::io::Error::other(e),
    })?;
    let tmp = dir.join(format!(".{id}.tmp"));
    let path = dir.join(format!("{id}.json"));
    std::fs::write(&tmp, body).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(id)
}

/// A command taken from the inbox, or why a file was not one.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    Command {
        id: String,
        command: Command,
        ack: bool,
    },
    Bad {
        file: String,
        why: String,
    },
}

/// Takes every command waiting in `run`'s inbox, oldest first, removing the files. A missing
/// inbox is an empty one.
#[must_use]
pub fn take(run: &Path) -> Vec<Taken> {
    let dir = run.join(DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read(&path).ok()?;
            // Gone means taken: a second reader (none should exist) does not apply it twice.
            std::fs::remove_file(&path).ok()?;
            let id = path.file_stem()?.to_string_lossy().into_owned();
            Some(match serde_json::from_slice::<Envelope>(&text) {
                Ok(e) => Taken::Command {
                    id,
                    command: e.command,
                    ack: e.ack,
                },
                Err(e) => Taken::Bad {
                    file: path.display().to_string(),
                    why: e.to_string(),
                },
            })
        })
        .collect()
}

/// Answers command `id`.
pub fn acknowledge(run: &Path, id: &str, ack: &Ack) -> Result<(), InboxError> {
    let dir = run.join(DIR);
    let tmp = dir.join(format!(".{id}.ack.tmp"));
    let path = dir.join(format!("{id}.ack"));
    let body = serde_json::to_vec(ack).map_err(|e| InboxError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&tmp, body).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// The run's answer to command `id`, once there is one (the file is removed).
#[must_use]
pub fn answer(run: &Path, id: &str) -> Option<Ack> {
    let path = run.join(DIR).join(format!("{id}.ack"));
    let text = std::fs::read(&path).ok()?;
    let ack = serde_json::from_slice(&text).ok()?;
    let _ = std::fs::remove_file(&path);
    Some(ack)
}

/// Whether a command is still waiting (not yet taken by the run).
#[must_use]
pub fn waiting(run: &Path, id: &str) -> bool {
    run.join(DIR).join(format!("{id}.json")).exists()
}

/// Withdraws a command the run has not taken: true when it was still there.
#[must_use]
pub fn withdraw(run: &Path, id: &str) -> bool {
    std::fs::remove_file(run.join(DIR).join(format!("{id}.json"))).is_ok()
}

/// A command as written on a command line: `pause`, `resume`, `stop`, `stop-and-save`,
/// `checkpoint`, `skip-phase`, `set FIELD=VALUE`, `watch MODULE[:every=K,steps=N]`,
/// `unwatch MODULE`.
pub fn parse(words: &[String]) -> Result<Command, String> {
    let arg = |what: &str| -> Result<&String, String> {
        words
            .get(1)
            .ok_or_else(|| format!("`{}` needs {what}", words[0]))
    };
    let Some(first) = words.first() else {
        return Err("name a command: pause, resume, stop, stop-and-save, checkpoint, skip-phase, set FIELD=VALUE, watch MODULE, unwatch MODULE".into());
    };
    let c = match first.as_str() {
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "stop" => Command::Stop,
        "stop-and-save" => Command::StopAndSave,
        "checkpoint" => Command::CheckpointNow,
        "skip-phase" => Command::SkipPhase,
        "set" => {
            let a = arg("FIELD=VALUE")?;
            let (name, value) = a
                .split_once('=')
                .ok_or_else(|| format!("`{a}`: write FIELD=VALUE (train.lr_g=1e-4)"))?;
            let value: f64 = value
                .parse()
                .map_err(|_| format!("`{a}`: {value} is not a number"))?;
            Command::SetHyperparameter {
                name: name.to_string(),
                value,
            }
        }
        "watch" => Command::Watch(arg("a module")?.parse()?),
        "unwatch" => Command::Watch(crate::core::protocol::WatchSpec {
            module: arg("a module")?.clone(),
            every: 1,
            steps: Some(0),
        }),
        other => {
            return Err(format!(
                "`{other}` is not a command: pause, resume, stop, stop-and-save, checkpoint, skip-phase, set FIELD=VALUE, watch MODULE, unwatch MODULE"
            ))
        }
    };
    if words.len()
        > 1 + usize::from(matches!(
            c,
            Command::SetHyperparameter { .. } | Command::Watch(_)
        ))
    {
        return Err(format!("`{}`: one command at a time", words.join(" ")));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_in_order_and_a_bad_file_is_named() {
        let tmp = tempfile::tempdir().expect("tmp");
        let run = tmp.path();
        assert!(take(run).is_empty(), "no inbox yet");
        let a = send(run, &Command::Pause, true).expect("send");
        let b = send(
            run,
            &Command::SetHyperparameter {
                name: "train.lr_g".into(),
                value: 2e-4,
            },
            false,
        )
        .expect("send");
        assert!(a < b && waiting(run, &a));
        std::fs::write(run.join(DIR).join("zz.json"), b"{not json").expect("write");
        std::fs::write(run.join(DIR).join(".half.tmp"), b"{").expect("write");
        let taken = take(run);
        assert_eq!(taken.len(), 3);
        assert_eq!(
            taken[0],
            Taken::Command {
                id: a.clone(),
                command: Command::Pause,
                ack: true
            }
        );
        assert!(matches!(&taken[1], Taken::Command { ack: false, .. }));
        assert!(matches!(&taken[2], Taken::Bad { file, .. } if file.ends_with("zz.json")));
        assert!(take(run).is_empty() && !waiting(run, &a));
        assert_eq!(answer(run, &a), None);
        acknowledge(
            run,
            &a,
            &Ack {
                step: 7,
                said: String::new(),
            },
        )
        .expect("ack");
        assert_eq!(answer(run, &a).map(|x| x.step), Some(7));
        assert_eq!(answer(run, &a), None, "read once");
    }

    #[test]
    fn command_lines_parse_or_say_what_is_wrong() {
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(parse(&w("pause")), Ok(Command::Pause));
        assert_eq!(
            parse(&w("set train.lr_d=5e-4")),
            Ok(Command::SetHyperparameter {
                name: "train.lr_d".into(),
                value: 5e-4
            })
        );
        assert!(matches!(parse(&w("watch d:every=5")), Ok(Command::Watch(s)) if s.every == 5));
        assert!(parse(&w("set lr")).unwrap_err().contains("FIELD=VALUE"));
        assert!(parse(&w("jump")).unwrap_err().contains("not a command"));
        assert!(parse(&w("pause now")).unwrap_err().contains("one command"));
    }
}
