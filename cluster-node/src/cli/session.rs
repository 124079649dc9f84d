//! One method per command: check the arguments, call the API through the
//! typed client, print the answer in the chosen encoding. Listings are
//! printed item by item as they stream in.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_core::{Cid, Millis, PinMode, PinOptions, TrackerStatus};
use serde::Serialize;

use super::wait::{self, WaitSpec};
use super::{args, format, host, humanize, CliError};
use crate::api::client::{Client, ClientConfig, StatusQuery};
use crate::api::types::GlobalPinInfo;

/// How long after a pin or unpin the status is printed, when not waiting
/// (upstream sleeps one second so the trackers have started).
pub const SETTLE: Duration = Duration::from_secs(1);

/// Stands for "no timeout": long enough never to fire, short enough for
/// tokio's timers.
const FOREVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// `--enc`: what the output looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// `ipfs-cluster-ctl`'s text layouts.
    #[default]
    Text,
    /// The API's JSON objects, pretty-printed.
    Json,
}

impl Encoding {
    /// Parses `text` or `json`.
    pub fn parse(text: &str) -> Result<Encoding, CliError> {
        match text {
            "text" => Ok(Encoding::Text),
            "json" => Ok(Encoding::Json),
            other => Err(CliError::Argument(format!(
                "unsupported encoding {other:?} (text or json)"
            ))),
        }
    }
}

/// The global flags, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalOptions {
    /// `--host`: multiaddress or `http://` URL (default [`host::DEFAULT_HOST`]).
    pub host: Option<String>,
    /// `--basic-auth user[:password]`.
    pub basic_auth: Option<String>,
    /// `--enc`: `text` or `json`.
    pub encoding: Option<String>,
    /// `--timeout`: seconds or a human duration; 0 or absent = none.
    pub timeout: Option<String>,
}

/// `--wait` and its companions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitArgs {
    /// Wait until the target status is reached.
    pub wait: bool,
    /// Peers that must reach it (default: the pin's minimum replication
    /// when pinning, every peer when unpinning).
    pub limit: Option<i32>,
    /// Give up after this long (human duration; 0 or absent = never).
    pub timeout: Option<String>,
    /// Print the API's answer instead of the status afterwards.
    pub no_status: bool,
}

/// `pin add`'s options, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinAddArgs {
    /// `--replication`: both factors when non-zero.
    pub replication: i32,
    /// `--replication-min` (0: the cluster default).
    pub replication_min: i32,
    /// `--replication-max` (0: the cluster default).
    pub replication_max: i32,
    /// `--name`.
    pub name: String,
    /// `--mode`: `recursive` or `direct`.
    pub mode: String,
    /// `--allocations`: peer ids (each item may be a comma list).
    pub allocations: Vec<String>,
    /// `--expire-in`: a human duration.
    pub expire_in: Option<String>,
    /// `--metadata key=value`.
    pub metadata: Vec<String>,
    /// Waiting and status printing.
    pub wait: WaitArgs,
}

/// `pin update`'s options, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinUpdateArgs {
    /// `--name` of the new pin (default: the old pin's).
    pub name: String,
    /// `--expire-in`: a human duration.
    pub expire_in: Option<String>,
    /// Waiting and status printing.
    pub wait: WaitArgs,
}

/// `add`'s options, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddArgs {
    /// `--recursive`: directories with everything under them.
    pub recursive: bool,
    /// `--quiet`: only CIDs.
    pub quiet: bool,
    /// `--quieter`: only the root's CID.
    pub quieter: bool,
    /// `--no-stream`: print everything at the end (JSON: one array).
    pub no_stream: bool,
    /// The pin's options, as `pin add` takes them (`replication` unused).
    pub pin: PinAddArgs,
    /// The add parameters.
    pub params: crate::api::client::AddParams,
    /// `--format`: only `unixfs` is supported.
    pub format: Option<String>,
}

/// A connected client and where its output goes.
pub struct Session<W: Write> {
    client: Client,
    host: String,
    enc: Encoding,
    out: W,
    progress: Progress,
}

impl<W: Write> Session<W> {
    /// Checks the global flags and builds the client (no request yet).
    pub fn new(options: &GlobalOptions, out: W) -> Result<Session<W>, CliError> {
        let enc = Encoding::parse(options.encoding.as_deref().unwrap_or("text"))?;
        let host = options
            .host
            .clone()
            .unwrap_or_else(|| host::DEFAULT_HOST.to_string());
        let base_url = host::base_url(&host)?;
        let basic_auth = options
            .basic_auth
            .as_deref()
            .map(args::basic_auth)
            .transpose()?;
        let timeout = match options.timeout.as_deref() {
            None => FOREVER,
            Some(t) => match args::duration("--timeout", t)? {
                Duration::ZERO => FOREVER,
                d => d,
            },
        };
        let client = Client::new(ClientConfig {
            base_url,
            basic_auth,
            timeout,
        })
        .map_err(|e| CliError::Argument(e.to_string()))?;
        Ok(Session {
            client,
            host,
            enc,
            out,
            progress: Progress::stderr(),
        })
    }

    /// The output, once the session is done.
    pub fn into_output(self) -> W {
        self.out
    }

    fn api<T>(&self, r: Result<T, crate::api::client::ClientError>) -> Result<T, CliError> {
        r.map_err(|e| CliError::from_client(&self.host, e))
    }

    fn emit<T: Serialize>(
        &mut self,
        value: &T,
        text: impl FnOnce(&T) -> String,
    ) -> Result<(), CliError> {
        let s = match self.enc {
            Encoding::Json => format::json(value),
            Encoding::Text => text(value),
        };
        self.out.write_all(s.as_bytes())?;
        Ok(())
    }

    /// `id`: the contacted peer.
    pub async fn id(&mut self) -> Result<(), CliError> {
        let info = self.api(self.client.id().await)?;
        self.emit(&info, format::id)
    }

    /// `version`: the API's version.
    pub async fn version(&mut self) -> Result<(), CliError> {
        let v = self.api(self.client.version().await)?;
        self.emit(&v, |v| format!("{}\n", v.version))
    }

    /// `peers ls`: every cluster peer, as each answers.
    pub async fn peers_ls(&mut self) -> Result<(), CliError> {
        let (enc, out) = (self.enc, &mut self.out);
        let mut written = Ok(());
        let r = self
            .client
            .peers_each(|p| {
                let s = match enc {
                    Encoding::Json => format::json(&p),
                    Encoding::Text => format::id(&p),
                };
                if written.is_ok() {
                    written = out.write_all(s.as_bytes());
                }
            })
            .await;
        self.api(r)?;
        Ok(written?)
    }

    /// `peers rm PEER`: removes a peer from the cluster.
    pub async fn peers_rm(&mut self, peer: &str) -> Result<(), CliError> {
        let peer = args::peer(peer)?;
        let r = self.client.remove_peer(&peer).await;
        self.api(r)
    }

    /// `pin add CID`: pins with the options, then prints the status.
    pub async fn pin_add(&mut self, cid: &str, a: &PinAddArgs) -> Result<(), CliError> {
        let cid = args::cid(cid)?;
        let (mut rmin, mut rmax) = (a.replication_min, a.replication_max);
        if a.replication != 0 {
            (rmin, rmax) = (a.replication, a.replication);
        }
        let mode = match a.mode.as_str() {
            "" | "recursive" => PinMode::Recursive,
            "direct" => PinMode::Direct,
            other => {
                return Err(CliError::Argument(format!(
                    "error parsing --mode: {other:?} is neither recursive nor direct"
                )))
            }
        };
        let options = PinOptions {
            replication_factor_min: rmin,
            replication_factor_max: rmax,
            name: a.name.clone(),
            mode,
            user_allocations: args::allocations(&a.allocations)?,
            expire_at: expire_at(a.expire_in.as_deref())?,
            metadata: args::metadata(&a.metadata)?,
            ..PinOptions::default()
        };
        let wait_timeout = wait_timeout(&a.wait)?;
        // The path route, as upstream's CLI: it honours `mode=direct`.
        let pin = self.api(self.client.pin_path(&cid, &options).await)?;
        if a.wait.no_status {
            return self.emit(&pin, format::pin);
        }
        let limit = a.wait.limit.unwrap_or(pin.replication_factor_min);
        self.after_change(&cid, &a.wait, TrackerStatus::Pinned, limit, wait_timeout)
            .await
    }

    /// `add PATH…`: uploads files and directories, prints each added file,
    /// the root last, with a progress line on stderr while uploading.
    pub async fn add(&mut self, paths: &[std::path::PathBuf], a: &AddArgs) -> Result<(), CliError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        if a.format.as_deref().is_some_and(|f| f != "unixfs") {
            return Err(CliError::Argument(
                "only --format unixfs is supported".into(),
            ));
        }
        let mut params = a.params.clone();
        // Several paths need a common root (as ipfs-cluster-ctl).
        params.wrap_with_directory |= paths.len() > 1;
        let options = self.add_pin_options(&a.pin)?;
        let files = crate::api::upload::AddFiles::walk(paths, a.recursive, params.hidden)
            .map_err(|e| CliError::Argument(e.to_string()))?;
        let total = files.total_bytes();
        let query = crate::api::client::add_query(&options, &params);
        let sent = Arc::new(AtomicU64::new(0));
        // The progress line runs beside the request, on its own timer.
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let watch = Arc::clone(&sent);
        let ticker = tokio::spawn(async move {
            let mut progress = Progress::stderr();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                let done = watch.load(Ordering::Relaxed);
                progress.update(&format!(
                    "uploading: {} / {}",
                    humanize::bytes(done),
                    humanize::bytes(total)
                ));
            }
            progress.finish();
        });
        let (enc, stream) = (self.enc, !a.no_stream);
        let (quiet, quieter) = (a.quiet, a.quieter);
        let out = &mut self.out;
        let mut all = Vec::new();
        let mut written = Ok(());
        let r = self
            .client
            .add(files, &query, sent, |o: crate::api::types::AddedOutput| {
                if stream && !quieter && written.is_ok() {
                    written = out.write_all(added_text(enc, quiet, &o).as_bytes());
                }
                all.push(o);
            })
            .await;
        let _ = stop.send(());
        let _ = ticker.await;
        self.api(r)?;
        written?;
        let last = all.last().cloned();
        if !stream || quieter {
            let text = match (enc, quieter) {
                (_, true) => last
                    .as_ref()
                    .map(|o| added_text(enc, true, o))
                    .unwrap_or_default(),
                (Encoding::Json, false) => format::json(&all),
                (Encoding::Text, false) => all.iter().map(|o| added_text(enc, quiet, o)).collect(),
            };
            self.out.write_all(text.as_bytes())?;
        }
        let Some(root) = last.and_then(|o| o.cid) else {
            return Err(CliError::Argument("the upload added nothing".into()));
        };
        if a.pin.wait.wait && !params.no_pin {
            let wait_timeout = wait_timeout(&a.pin.wait)?;
            let limit = match a.pin.wait.limit {
                Some(l) => l,
                None => {
                    self.api(self.client.allocation(&root).await)?
                        .replication_factor_min
                }
            };
            self.after_change(
                &root,
                &a.pin.wait,
                TrackerStatus::Pinned,
                limit,
                wait_timeout,
            )
            .await?;
        }
        Ok(())
    }

    fn add_pin_options(&self, a: &PinAddArgs) -> Result<PinOptions, CliError> {
        Ok(PinOptions {
            replication_factor_min: a.replication_min,
            replication_factor_max: a.replication_max,
            name: a.name.clone(),
            user_allocations: args::allocations(&a.allocations)?,
            expire_at: expire_at(a.expire_in.as_deref())?,
            metadata: args::metadata(&a.metadata)?,
            ..PinOptions::default()
        })
    }

    /// `pin rm CID`: unpins, then prints the status.
    pub async fn pin_rm(&mut self, cid: &str, w: &WaitArgs) -> Result<(), CliError> {
        let cid = args::cid(cid)?;
        let wait_timeout = wait_timeout(w)?;
        let pin = self.api(self.client.unpin(&cid).await)?;
        if w.no_status {
            return self.emit(&pin, format::pin);
        }
        let limit = w.limit.unwrap_or(0);
        self.after_change(&cid, w, TrackerStatus::Unpinned, limit, wait_timeout)
            .await
    }

    /// `pin update FROM TO`: pins TO like FROM (allocations and options).
    pub async fn pin_update(
        &mut self,
        from: &str,
        to: &str,
        a: &PinUpdateArgs,
    ) -> Result<(), CliError> {
        let from = args::cid(from)?;
        let to = args::cid(to)?;
        let options = PinOptions {
            name: a.name.clone(),
            expire_at: expire_at(a.expire_in.as_deref())?,
            pin_update: Some(from),
            ..PinOptions::default()
        };
        let wait_timeout = wait_timeout(&a.wait)?;
        let pin = self.api(self.client.pin_path(&to, &options).await)?;
        if a.wait.no_status {
            return self.emit(&pin, format::pin);
        }
        let limit = a.wait.limit.unwrap_or(pin.replication_factor_min);
        self.after_change(&to, &a.wait, TrackerStatus::Pinned, limit, wait_timeout)
            .await
    }

    /// After a pin or unpin: wait if asked, else settle; print the status.
    async fn after_change(
        &mut self,
        cid: &Cid,
        w: &WaitArgs,
        target: TrackerStatus,
        limit: i32,
        timeout: Option<Duration>,
    ) -> Result<(), CliError> {
        let info = if w.wait {
            let spec = WaitSpec {
                target,
                limit,
                timeout,
                interval: wait::POLL_INTERVAL,
            };
            let progress = &mut self.progress;
            let r = wait::wait_for(&self.client, &self.host, cid, spec, &mut |line| {
                progress.update(line)
            })
            .await;
            self.progress.finish();
            r?
        } else {
            tokio::time::sleep(SETTLE).await;
            self.api(self.client.status(cid, false).await)?
        };
        self.emit(&info, format::status)
    }

    /// `pin ls [CID]` (and `allocations`): the pinset, or one pin.
    pub async fn pin_ls(&mut self, cid: Option<&str>, filter: &str) -> Result<(), CliError> {
        if let Some(cid) = cid {
            let cid = args::cid(cid)?;
            let pin = self.api(self.client.allocation(&cid).await)?;
            return self.emit(&pin, format::pin);
        }
        let types = args::pin_type_filter(filter)?;
        let (enc, out) = (self.enc, &mut self.out);
        let mut written = Ok(());
        let r = self
            .client
            .allocations_each(&types, |p| {
                let s = match enc {
                    Encoding::Json => format::json(&p),
                    Encoding::Text => format::pin(&p),
                };
                if written.is_ok() {
                    written = out.write_all(s.as_bytes());
                }
            })
            .await;
        self.api(r)?;
        Ok(written?)
    }

    /// `status [CID…]`: one CID, several, or everything (`filter` applies
    /// only then).
    pub async fn status(
        &mut self,
        cids: &[String],
        local: bool,
        filter: Option<&str>,
    ) -> Result<(), CliError> {
        let cids = cids
            .iter()
            .map(|c| args::cid(c))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = match filter {
            Some(f) if !cids.is_empty() && !f.is_empty() => {
                return Err(CliError::Argument(
                    "error parsing filter flag: --filter applies only without CIDs".into(),
                ))
            }
            Some(f) => args::status_filter(f)?,
            None => Vec::new(),
        };
        if let [one] = cids.as_slice() {
            let info = self.api(self.client.status(one, local).await)?;
            return self.emit(&info, format::status);
        }
        let query = StatusQuery {
            filter,
            local,
            cids,
            ..StatusQuery::default()
        };
        let (enc, out) = (self.enc, &mut self.out);
        let mut written = Ok(());
        let r = self
            .client
            .status_all_each(&query, |info| {
                if written.is_ok() {
                    written = out.write_all(status_text(enc, &info).as_bytes());
                }
            })
            .await;
        self.api(r)?;
        Ok(written?)
    }

    /// `recover [CID]` (alias `sync`): retries failed pins and unpins.
    pub async fn recover(&mut self, cid: Option<&str>, local: bool) -> Result<(), CliError> {
        if let Some(cid) = cid {
            let cid = args::cid(cid)?;
            let info = self.api(self.client.recover(&cid, local).await)?;
            return self.emit(&info, format::status);
        }
        let all = self.api(self.client.recover_all(local).await)?;
        for info in &all {
            self.out.write_all(status_text(self.enc, info).as_bytes())?;
        }
        Ok(())
    }

    /// `health metrics [NAME]`: the metric names, or each peer's last metric.
    pub async fn health_metrics(&mut self, name: Option<&str>) -> Result<(), CliError> {
        match name {
            None => {
                let names = self.api(self.client.metric_names().await)?;
                self.emit(&names, |n| format::metric_names(n))
            }
            Some(name) => {
                let metrics = self.api(self.client.metrics(name).await)?;
                let now = humanize::now_nanos();
                self.emit(&metrics, |ms| {
                    ms.iter().map(|m| format::metric(m, now)).collect()
                })
            }
        }
    }

    /// `health alerts`: the metrics that expired lately.
    pub async fn health_alerts(&mut self) -> Result<(), CliError> {
        let alerts = self.api(self.client.alerts().await)?;
        let now = humanize::now_nanos();
        self.emit(&alerts, |al| {
            al.iter().map(|a| format::alert(a, now)).collect()
        })
    }

    /// `health bandwidth`: the contacted peer's traffic per protocol.
    pub async fn health_bandwidth(&mut self) -> Result<(), CliError> {
        let traffic = self.api(self.client.bandwidth().await)?;
        self.emit(&traffic, format::bandwidth)
    }

    /// `health graph`: the cluster's connections as Graphviz DOT.
    pub async fn health_graph(&mut self) -> Result<(), CliError> {
        let graph = self.api(self.client.graph().await)?;
        self.emit(&graph, format::graph)
    }

    /// `ipfs gc`: garbage collection on every peer's IPFS.
    pub async fn ipfs_gc(&mut self, local: bool) -> Result<(), CliError> {
        let gc = self.api(self.client.ipfs_gc(local).await)?;
        self.emit(&gc, format::repo_gc)
    }
}

/// One added file as `ipfs-cluster-ctl add` prints it.
fn added_text(enc: Encoding, quiet: bool, o: &crate::api::types::AddedOutput) -> String {
    let cid = o.cid.as_ref().map(ToString::to_string).unwrap_or_default();
    match (enc, quiet) {
        (Encoding::Json, _) => format::json(o),
        (Encoding::Text, true) => format!("{cid}\n"),
        (Encoding::Text, false) => format!("added {cid} {}\n", o.name),
    }
}

fn status_text(enc: Encoding, info: &GlobalPinInfo) -> String {
    match enc {
        Encoding::Json => format::json(info),
        Encoding::Text => format::status(info),
    }
}

/// `--expire-in d` as the time it means: now + d.
fn expire_at(expire_in: Option<&str>) -> Result<Option<Millis>, CliError> {
    let Some(text) = expire_in else {
        return Ok(None);
    };
    let d = args::duration("--expire-in", text)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CliError::Argument("the system clock is before 1970".into()))?;
    let at = now.saturating_add(d).as_millis();
    Ok(Some(Millis(u64::try_from(at).unwrap_or(u64::MAX))))
}

fn wait_timeout(w: &WaitArgs) -> Result<Option<Duration>, CliError> {
    match w.timeout.as_deref() {
        None => Ok(None),
        Some(t) => match args::duration("--wait-timeout", t)? {
            Duration::ZERO => Ok(None),
            d => Ok(Some(d)),
        },
    }
}

/// The `--wait` progress line on stderr: rewritten in place on a
/// terminal, one line per change otherwise (logs stay readable).
struct Progress {
    tty: bool,
    last: String,
}

impl Progress {
    fn stderr() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: String::new(),
        }
    }

    fn update(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        // A progress line that cannot be written is not worth failing for.
        if self.tty {
            let _ = write!(err, "\r\x1b[K{line}");
            let _ = err.flush();
        } else {
            // Ignore the elapsed time when deciding whether it changed.
            let key = line.rsplit_once(", ").map_or(line, |(k, _)| k);
            if key != self.last {
                let _ = writeln!(err, "{line}");
                self.last = key.to_string();
            }
        }
    }

    fn finish(&mut self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
        self.last.clear();
    }
}

/// Prints `error` as the CLI reports failures: with `--enc json` and an
/// API error, the API's error object on stdout; always one `error: …`
/// line on stderr. Answers the exit code.
pub fn report(error: &CliError, enc: Encoding) -> i32 {
    if enc == Encoding::Json {
        if let Some(body) = error.api_body() {
            print!("{}", format::json(&body));
        }
    }
    eprintln!("error: {error}");
    error.exit_code()
}
