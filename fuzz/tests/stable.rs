//! The stable runner (CI): every target, or the ones named, for a fixed time
//! each on the stable toolchain. See `fuzz/README.md`.
//!
//!     cargo test --release --no-default-features --test stable -- [options] [target…]
//!
//! Options: `--secs N` per target (default 20, or `FUZZ_SECS`), `--execs N`
//! per target at most, `--seed N` (default: from the clock, printed),
//! `--replay FILE` (run one saved input), `--write-seeds` (regenerate the
//! generated seeds under `corpus/`), `--list`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_fuzz::{runner, seeds, target, Target, TARGETS};

struct Options {
    secs: f64,
    execs: u64,
    seed: u64,
    replay: Option<PathBuf>,
    write_seeds: bool,
    list: bool,
    targets: Vec<&'static Target>,
}

fn parse() -> Result<Options, String> {
    let clock_seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut o = Options {
        secs: std::env::var("FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20.0),
        execs: u64::MAX,
        seed: clock_seed,
        replay: None,
        write_seeds: false,
        list: false,
        targets: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--secs" => {
                o.secs = value("--secs")?
                    .parse()
                    .map_err(|e| format!("--secs: {e}"))?
            }
            "--execs" => {
                o.execs = value("--execs")?
                    .parse()
                    .map_err(|e| format!("--execs: {e}"))?
            }
            "--seed" => {
                o.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--replay" => o.replay = Some(value("--replay")?.into()),
            "--write-seeds" => o.write_seeds = true,
            "--list" => o.list = true,
            // What libtest passes to every test binary; not ours.
            "--nocapture" | "--quiet" | "-q" | "--color" => {}
            name if !name.starts_with('-') => o
                .targets
                .push(target(name).ok_or(format!("no target {name:?}"))?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.targets.is_empty() {
        o.targets = TARGETS.iter().collect();
    }
    Ok(o)
}

fn write_seeds(root: &Path, t: &Target) -> std::io::Result<usize> {
    let dir = root.join("corpus").join(t.name);
    std::fs::create_dir_all(&dir)?;
    let seeds = seeds::seeds(t.name);
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("gen-{i:02}")), seed)?;
    }
    Ok(seeds.len())
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if o.list {
        TARGETS.iter().for_each(|t| println!("{}", t.name));
        return ExitCode::SUCCESS;
    }
    if o.write_seeds {
        for t in &o.targets {
            match write_seeds(root, t) {
                Ok(n) => println!("{}: {n} generated seeds", t.name),
                Err(e) => {
                    eprintln!("{}: {e}", t.name);
                    return ExitCode::FAILURE;
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Some(file) = &o.replay {
        let input = std::fs::read(file).expect("the input to replay is readable");
        for t in &o.targets {
            (t.run)(&input); // Panics with the finding.
            println!("{}: {} passes", t.name, file.display());
        }
        return ExitCode::SUCCESS;
    }
    println!("fuzz: seed {} ({} s per target)", o.seed, o.secs);
    let mut failed = false;
    for t in &o.targets {
        let budget = Duration::from_secs_f64(o.secs);
        match runner::run(root, t, o.seed, budget, o.execs) {
            Ok(r) => println!(
                "{:<16} {:>9} execs {:>8.0}/s  corpus {:>3}  {:.1} s",
                t.name,
                r.execs,
                r.execs as f64 / r.elapsed.as_secs_f64().max(1e-9),
                r.corpus,
                r.elapsed.as_secs_f64()
            ),
            Err(crash) => {
                failed = true;
                eprintln!(
                    "{}: FOUND: {}\n  input saved to {}\n  replay: cargo test --release \
                     --no-default-features --test stable -- {} --replay {}",
                    t.name,
                    crash.message,
                    crash.saved.display(),
                    t.name,
                    crash.saved.display()
                );
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
