//! WebAssembly spec tests through hb_beamr's preparation pipeline and wasmer.
//!
//! Runs every `.wast` script under the shared spec-tests directory (memory64, legacy and
//! current exceptions, memory32), directive by directive; see docs/testing.md, "The WebAssembly spec
//! tests".
//!
//! ```text
//! cargo test --release -p beamr_core --test spec
//! SPEC_FILTER=memory64 cargo test --release -p beamr_core --test spec
//! ```
//!
//! * `SPEC_TESTS_DIR`: the scripts (default `../shared/spec-tests` beside the workspace);
//!   when it is set, missing scripts fail the test; when it is not and the default
//!   directory is missing (a clone without HyperBEAM's fixtures), the suite is skipped
//!   with a printed line.
//! * `SPEC_FILTER`: comma-separated substrings of the relative paths to run
//!   (`memory64`, `bulk`, `exceptions/throw.wast`).
//! * `SPEC_JOBS` (default 2), `SPEC_TIMEOUT` (seconds per file, default 60; the whole
//!   suite takes seconds, so only a hang reaches it).
//!
//! Each script runs in its own child process (this binary with `--spec-file`), so a crash
//! or a hang is reported against that file, with the last directive it finished, and the
//! other files still run. The test fails if any directive fails.
//!
//! The spec-test harness's parts, by concern:
//!
//! * [`script`]: the directive model both front ends produce;
//! * [`wast_front`] / [`json_front`]: the `wast` crate and `wast2json` front ends;
//! * [`runner`]: executes directives through preparation and wasmer;
//! * [`linking`], [`host`]: import resolution and the `spectest` module;
//! * [`values`], [`traps`]: how results and traps are judged;
//! * [`exclusions`]: the named, self-verifying exclusion list;
//! * [`report`]: per-directive records and the summary.

mod exclusions;
mod host;
mod json_front;
mod linking;
mod report;
mod runner;
mod script;
mod traps;
mod values;
mod wast_front;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use report::{FileReport, Record, Status};

const CHILD_FLAG: &str = "--spec-file";

fn main() -> ExitCode {
    let root = spec_root();
    let args: Vec<String> = std::env::args().collect();
    if let Some(file) = args
        .iter()
        .position(|a| a == CHILD_FLAG)
        .and_then(|i| args.get(i + 1))
    {
        run_file(&root, file);
        return ExitCode::SUCCESS;
    }
    if !root.is_dir() && std::env::var_os("SPEC_TESTS_DIR").is_none() {
        println!(
            "spec tests skipped: {} not found (HyperBEAM's spec-tests: put its fixtures at ../shared or set SPEC_TESTS_DIR)",
            root.display()
        );
        return ExitCode::SUCCESS;
    }
    if !root.is_dir() {
        eprintln!(
            "spec tests not found at {}: provide them there or set SPEC_TESTS_DIR",
            root.display()
        );
        return ExitCode::FAILURE;
    }
    let filters: Vec<String> = std::env::var("SPEC_FILTER")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect();
    let files: Vec<String> = wast_files(&root)
        .into_iter()
        .filter(|file| filters.is_empty() || filters.iter().any(|f| file.contains(f.as_str())))
        .collect();
    if files.is_empty() {
        eprintln!(
            "no .wast file under {} matches SPEC_FILTER={filters:?}",
            root.display()
        );
        return ExitCode::FAILURE;
    }
    let reports = run_isolated(&root, &files);
    if report::summarize(&reports) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn spec_root() -> PathBuf {
    std::env::var_os("SPEC_TESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/spec-tests"))
}

/// Every script, as a sorted path relative to `root` with `/` separators.
fn wast_files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|ext| ext == "wast") {
                let relative = path.strip_prefix(root).expect("walked under root");
                out.push(
                    relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files.sort();
    files
}

/// Child side: parse one script with the front end it needs and run it.
fn run_file(root: &Path, file: &str) {
    let path = root.join(file);
    // The wast crate cannot parse the legacy folded `try` form; wast2json can.
    let directives = if file.split('/').any(|dir| dir == "legacy-exceptions") {
        json_front::load(&path)
    } else {
        wast_front::load(&path)
    };
    match directives {
        Ok(directives) => runner::run(file, &directives, |record| report::emit(&record)),
        Err(why) => report::emit(&Record {
            line: 0,
            kind: "parse".into(),
            status: Status::Fail,
            detail: why,
            note: None,
        }),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Parent side: runs each script in a child process, `SPEC_JOBS` at a time.
fn run_isolated(root: &Path, files: &[String]) -> Vec<FileReport> {
    let jobs = env_number("SPEC_JOBS", 2).max(1) as usize;
    let timeout = Duration::from_secs(env_number("SPEC_TIMEOUT", 60));
    let exe = std::env::current_exe().expect("test binary path");
    let queue = Mutex::new(files.iter().enumerate());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(files.len()) {
            scope.spawn(|| loop {
                let Some((index, file)) = queue.lock().unwrap().next() else {
                    break;
                };
                let started = Instant::now();
                let report = run_child(&exe, root, file, timeout);
                let count = |status| report.records.iter().filter(|r| r.status == status).count();
                println!(
                    "spec: {file}: {} passed, {} failed, {} excluded ({:.1}s)",
                    count(Status::Pass),
                    count(Status::Fail),
                    count(Status::Excluded),
                    started.elapsed().as_secs_f64()
                );
                done.lock().unwrap().push((index, report));
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, report)| report).collect()
}

fn run_child(exe: &Path, root: &Path, file: &str, timeout: Duration) -> FileReport {
    let spawned = Command::new(exe)
        .args([CHILD_FLAG, file])
        .env("SPEC_TESTS_DIR", root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return crashed(
                file,
                Vec::new(),
                format!("cannot start the child process: {e}"),
            )
        }
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    // Readers drain both pipes so a chatty child never blocks on a full pipe.
    let records = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| report::parse(&line))
            .collect::<Vec<_>>()
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let finished = wait_or_kill(&mut child, timeout);
    let records = records.join().expect("stdout reader");
    let errors = errors.join().expect("stderr reader");
    let last = records.last().map_or(0, |r| r.line);
    match finished {
        Some(status) if status.success() => FileReport {
            file: file.into(),
            records,
        },
        Some(status) => {
            let tail: Vec<&str> = errors.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = tail[tail.len().saturating_sub(6)..].join(" | ");
            crashed(
                file,
                records,
                format!("the child process died ({status}) after line {last}: {tail}"),
            )
        }
        None => crashed(
            file,
            records,
            format!(
                "timed out after {}s in the directive after line {last}",
                timeout.as_secs()
            ),
        ),
    }
}

/// The exit status, or `None` if the child outlived `timeout` and was killed.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn crashed(file: &str, mut records: Vec<Record>, why: String) -> FileReport {
    let line = records.last().map_or(0, |r| r.line);
    records.push(Record {
        line,
        kind: "process".into(),
        status: Status::Fail,
        detail: why,
        note: None,
    });
    FileReport {
        file: file.into(),
        records,
    }
}
