//! The stable runner: what CI runs in place of libFuzzer (which needs a
//! nightly compiler). For one target it replays the checked-in corpus, then
//! runs inputs made by a seeded PRNG: fresh random bytes, and corpus
//! entries mutated as libFuzzer's simpler mutators do (bit flips, byte
//! changes, inserts, deletes, duplicated and spliced chunks, dictionary
//! tokens). No coverage feedback: the corpus carries the structure. A
//! panic stops the run; the input is saved so it can be replayed.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Target;

/// Longest generated input, in bytes.
const INPUT_BYTES_MAX: usize = 4096;

/// SplitMix64: small, fast, and the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// What one target's run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Corpus entries replayed.
    pub corpus: usize,
    /// Inputs run in all (corpus included).
    pub execs: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// A panicking input, saved under `artifacts/`.
#[derive(Debug)]
pub struct Crash {
    /// Where the input was saved.
    pub saved: PathBuf,
    /// The panic message.
    pub message: String,
}

/// The files of `corpus/<target>/` under `root`, sorted by name.
pub fn load_corpus(root: &Path, target: &str) -> Vec<Vec<u8>> {
    let dir = root.join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// Replays the corpus, then runs generated inputs until `budget` is spent
/// or `execs_max` inputs ran.
pub fn run(
    root: &Path,
    target: &Target,
    seed: u64,
    budget: Duration,
    execs_max: u64,
) -> Result<Report, Crash> {
    let start = Instant::now();
    let corpus = load_corpus(root, target.name);
    let mut execs = 0u64;
    for input in &corpus {
        one(root, target, input)?;
        execs += 1;
    }
    let mut rng = Rng::new(seed);
    while execs < execs_max && start.elapsed() < budget {
        // Time is checked every few inputs: reading the clock costs.
        for _ in 0..16 {
            let input = generate(&mut rng, &corpus, target.dictionary);
            one(root, target, &input)?;
            execs += 1;
        }
    }
    Ok(Report {
        corpus: corpus.len(),
        execs,
        elapsed: start.elapsed(),
    })
}

/// Runs one input, turning a panic into a saved [`Crash`].
pub fn one(root: &Path, target: &Target, input: &[u8]) -> Result<(), Crash> {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let Err(payload) = outcome else {
        return Ok(());
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic without a message".into());
    let dir = root.join("artifacts").join(target.name);
    let saved = dir.join(format!("crash-{:016x}", fnv(input)));
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(&saved, input);
    Err(Crash { saved, message })
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One input: usually a mutated corpus entry, sometimes fresh bytes.
pub fn generate(rng: &mut Rng, corpus: &[Vec<u8>], dictionary: &[&[u8]]) -> Vec<u8> {
    if corpus.is_empty() || rng.below(8) == 0 {
        let len = match rng.below(4) {
            0 => rng.below(16),
            1 => rng.below(256),
            _ => rng.below(INPUT_BYTES_MAX),
        };
        return rng.bytes(len);
    }
    let mut input = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(4) {
        mutate(rng, &mut input, corpus, dictionary);
    }
    input.truncate(INPUT_BYTES_MAX);
    input
}

/// Values that sit on boundaries of lengths, varints and counts.
const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, 0x40, 0x20, 0x10];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]]) {
    let len = input.len();
    let at = |rng: &mut Rng| rng.below(len.max(1));
    match rng.below(10) {
        0 if len > 0 => {
            let i = at(rng);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = at(rng);
            input[i] = rng.next_u64() as u8;
        }
        2 if len > 0 => {
            let i = at(rng);
            input[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        3 if len > 0 => {
            // Delete a chunk.
            let i = at(rng);
            let n = 1 + rng.below((len - i).min(16));
            input.drain(i..i + n);
        }
        4 => {
            // Insert random bytes.
            let i = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes = rng.bytes(n);
            input.splice(i..i, bytes);
        }
        5 if len > 0 => {
            // Duplicate a chunk in place (repeated entries, nested lengths).
            let i = at(rng);
            let n = 1 + rng.below((len - i).min(64));
            let chunk = input[i..i + n].to_vec();
            let j = rng.below(len + 1);
            input.splice(j..j, chunk);
        }
        6 => {
            // Splice with another corpus entry.
            let other = &corpus[rng.below(corpus.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        7 if !dictionary.is_empty() => {
            let token = dictionary[rng.below(dictionary.len())];
            let i = rng.below(len + 1);
            input.splice(i..i, token.iter().copied());
        }
        8 if len > 0 => {
            // Truncate: torn writes, short reads.
            input.truncate(at(rng));
        }
        _ => {
            // Add or subtract a little from one byte (lengths, counts).
            if len > 0 {
                let i = at(rng);
                let delta = 1 + rng.below(4) as u8;
                input[i] = if rng.below(2) == 0 {
                    input[i].wrapping_add(delta)
                } else {
                    input[i].wrapping_sub(delta)
                };
            }
        }
    }
}
