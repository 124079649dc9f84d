//! `ipfscluster`: the command-line client of an IPFS Cluster peer's REST
//! API, compatible with `ipfs-cluster-ctl`. This parses the command line
//! and dispatches; the work is in [`cluster_node::cli`].

use clap::{Args, CommandFactory, Parser, Subcommand};
use cluster_node::api::client::AddParams;
use cluster_node::cli::session::{report, AddArgs, PinAddArgs, PinUpdateArgs, WaitArgs};
use cluster_node::cli::{CliError, Encoding, GlobalOptions, Session, VERSION};

/// Manages an IPFS Cluster through a peer's REST API.
#[derive(Parser)]
#[command(name = "ipfscluster", disable_version_flag = true)]
struct Cli {
    /// The peer's API: a multiaddress or an http:// URL [default: /ip4/127.0.0.1/tcp/9094].
    #[arg(short = 'l', long, global = true, value_name = "MULTIADDR|URL")]
    host: Option<String>,
    /// Basic authentication, <user>[:<password>] [env: CLUSTER_CREDENTIALS].
    #[arg(long, global = true, value_name = "USER:PASS")]
    basic_auth: Option<String>,
    /// Output: text or json.
    #[arg(
        long = "enc",
        alias = "encoding",
        global = true,
        value_name = "text|json"
    )]
    enc: Option<String>,
    /// Longest wait for each answer: seconds or a duration (30s, 2m); 0 = none.
    #[arg(short, long, global = true, value_name = "DURATION")]
    timeout: Option<String>,
    /// Prints the client's version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Shows the contacted peer's identity.
    Id,
    /// Adds files and directories to IPFS and pins the root in the cluster.
    Add(Box<AddFlags>),
    /// Lists or removes cluster peers.
    #[command(alias = "member", subcommand)]
    Peers(PeersCommand),
    /// Pins, unpins and lists pins.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Shows where CIDs are pinned (all tracked CIDs when none is given).
    Status {
        /// The CIDs.
        cids: Vec<String>,
        /// Only the contacted peer's view.
        #[arg(long)]
        local: bool,
        /// Only these statuses (comma list; only without CIDs).
        #[arg(long, value_name = "STATUS,...")]
        filter: Option<String>,
    },
    /// Retries failed pins and unpins (one CID, or all).
    #[command(alias = "sync")]
    Recover {
        /// The CID (all failed ones when absent).
        cid: Option<String>,
        /// Only on the contacted peer.
        #[arg(long)]
        local: bool,
    },
    /// Lists pins and where they are allocated (as `pin ls`).
    Allocations {
        /// One pin only.
        cid: Option<String>,
        /// Pin types: pin, meta-pin, clusterdag-pin, shard-pin, all.
        #[arg(long, default_value = "all")]
        filter: String,
    },
    /// Metrics, alerts and the connection graph.
    #[command(subcommand)]
    Health(HealthCommand),
    /// Commands run on every peer's IPFS daemon.
    #[command(subcommand)]
    Ipfs(IpfsCommand),
    /// Prints the cluster peer's API version.
    Version,
}

#[derive(Args)]
struct AddFlags {
    /// Files or directories to add.
    #[arg(required = true)]
    paths: Vec<std::path::PathBuf>,
    /// Add directories with everything under them.
    #[arg(short, long)]
    recursive: bool,
    /// Print only the CIDs.
    #[arg(short, long)]
    quiet: bool,
    /// Print only the root's CID.
    #[arg(short = 'Q', long)]
    quieter: bool,
    /// Print everything at the end (with --enc json: one array).
    #[arg(long)]
    no_stream: bool,
    /// Put the blocks on the contacted peer's IPFS only.
    #[arg(long)]
    local: bool,
    /// A name for the pin [default: the root's file name].
    #[arg(short, long, default_value = "")]
    name: String,
    /// Fewest peers to pin it (0: cluster default, -1: everywhere).
    #[arg(
        long,
        visible_alias = "rmin",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    replication_min: i32,
    /// Most peers to pin it (0: cluster default, -1: everywhere).
    #[arg(
        long,
        visible_alias = "rmax",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    replication_max: i32,
    /// Unpin automatically after this long (e.g. 1h30m).
    #[arg(long, value_name = "DURATION")]
    expire_in: Option<String>,
    /// key=value metadata (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Peers to allocate it to first (comma list).
    #[arg(long, visible_alias = "allocs", value_name = "PEER,...")]
    allocations: Vec<String>,
    /// Store in IPFS without pinning in the cluster.
    #[arg(long)]
    no_pin: bool,
    /// Wait until the root is pinned, then print its status.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this long (exit code 62); 0 = never.
    #[arg(long, visible_alias = "wt", value_name = "DURATION")]
    wait_timeout: Option<String>,
    /// Wrap the files in a directory (implied by several paths).
    #[arg(short, long)]
    wrap_with_directory: bool,
    /// unixfs (car is not supported).
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// balanced or trickle.
    #[arg(long, value_name = "LAYOUT")]
    layout: Option<String>,
    /// Include hidden files.
    #[arg(short = 'H', long)]
    hidden: bool,
    /// Chunking algorithm, e.g. size-262144.
    #[arg(short = 's', long, value_name = "CHUNKER")]
    chunker: Option<String>,
    /// Raw blocks for leaves (implied by --cid-version 1).
    #[arg(long)]
    raw_leaves: bool,
    /// CID version (0 or 1).
    #[arg(long, default_value_t = 0)]
    cid_version: u32,
    /// Hash function; any but sha2-256 forces --cid-version 1.
    #[arg(long, value_name = "HASH")]
    hash: Option<String>,
}

impl AddFlags {
    fn args(self) -> (Vec<std::path::PathBuf>, AddArgs) {
        let cid_version = match self.hash.as_deref() {
            Some(h) if h != "sha2-256" => 1,
            _ => self.cid_version,
        };
        let args = AddArgs {
            recursive: self.recursive,
            quiet: self.quiet,
            quieter: self.quieter,
            no_stream: self.no_stream,
            pin: PinAddArgs {
                replication_min: self.replication_min,
                replication_max: self.replication_max,
                name: self.name,
                allocations: self.allocations,
                expire_in: self.expire_in,
                metadata: self.metadata,
                wait: WaitArgs {
                    wait: self.wait,
                    timeout: self.wait_timeout,
                    ..WaitArgs::default()
                },
                ..PinAddArgs::default()
            },
            params: AddParams {
                wrap_with_directory: self.wrap_with_directory,
                hidden: self.hidden,
                no_pin: self.no_pin,
                cid_version,
                raw_leaves: self.raw_leaves.then_some(true),
                layout: self.layout,
                chunker: self.chunker,
                hash: self.hash,
                local: self.local,
            },
            format: self.format,
        };
        (self.paths, args)
    }
}

#[derive(Subcommand)]
enum PeersCommand {
    /// Lists the cluster peers.
    Ls,
    /// Removes a peer from the cluster.
    Rm {
        /// The peer's id.
        peer: String,
    },
}

#[derive(Args)]
struct WaitFlags {
    /// Print the API's answer instead of the status afterwards.
    #[arg(long, visible_alias = "ns")]
    no_status: bool,
    /// Wait until the status is reached, with a progress line on stderr.
    #[arg(short, long)]
    wait: bool,
    /// Peers that must reach the status [default: the pin's minimum replication; all when unpinning].
    #[arg(
        long,
        visible_alias = "wl",
        value_name = "N",
        allow_negative_numbers = true
    )]
    wait_limit: Option<i32>,
    /// Give up waiting after this long (exit code 62); 0 = never.
    #[arg(long, visible_alias = "wt", value_name = "DURATION")]
    wait_timeout: Option<String>,
}

impl WaitFlags {
    fn args(self) -> WaitArgs {
        WaitArgs {
            wait: self.wait,
            limit: self.wait_limit,
            timeout: self.wait_timeout,
            no_status: self.no_status,
        }
    }
}

#[derive(Subcommand)]
enum PinCommand {
    /// Pins a CID in the cluster.
    Add {
        /// The CID (or /ipfs/<cid>).
        cid: String,
        /// Sets both replication factors when not 0.
        #[arg(short, long, default_value_t = 0, allow_negative_numbers = true)]
        replication: i32,
        /// Fewest peers to pin it (0: cluster default, -1: everywhere).
        #[arg(
            long,
            visible_alias = "rmin",
            default_value_t = 0,
            allow_negative_numbers = true
        )]
        replication_min: i32,
        /// Most peers to pin it (0: cluster default, -1: everywhere).
        #[arg(
            long,
            visible_alias = "rmax",
            default_value_t = 0,
            allow_negative_numbers = true
        )]
        replication_max: i32,
        /// A name for the pin.
        #[arg(short, long, default_value = "")]
        name: String,
        /// recursive or direct.
        #[arg(long, default_value = "recursive")]
        mode: String,
        /// Peers to allocate it to first (comma list).
        #[arg(long, visible_alias = "allocs", value_name = "PEER,...")]
        allocations: Vec<String>,
        /// Unpin automatically after this long (e.g. 1h30m).
        #[arg(long, value_name = "DURATION")]
        expire_in: Option<String>,
        /// key=value metadata (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        metadata: Vec<String>,
        #[command(flatten)]
        wait: WaitFlags,
    },
    /// Unpins a CID from the cluster.
    Rm {
        /// The CID (or /ipfs/<cid>).
        cid: String,
        #[command(flatten)]
        wait: WaitFlags,
    },
    /// Pins TO with FROM's options and allocations.
    Update {
        /// The pinned CID.
        from: String,
        /// The new CID.
        to: String,
        /// A name for the new pin [default: the old one's].
        #[arg(short, long, default_value = "")]
        name: String,
        /// Unpin the new pin automatically after this long.
        #[arg(long, value_name = "DURATION")]
        expire_in: Option<String>,
        #[command(flatten)]
        wait: WaitFlags,
    },
    /// Lists the pinset, or one pin.
    Ls {
        /// One pin only.
        cid: Option<String>,
        /// Pin types: pin, meta-pin, clusterdag-pin, shard-pin, all.
        #[arg(long, default_value = "all")]
        filter: String,
    },
}

#[derive(Subcommand)]
enum HealthCommand {
    /// Lists the metric names, or each peer's last metric NAME.
    Metrics {
        /// The metric (e.g. freespace, ping).
        name: Option<String>,
    },
    /// Lists the metrics that expired lately.
    Alerts,
    /// Prints the cluster's connections as Graphviz DOT.
    Graph,
    /// Shows the contacted peer's cluster traffic per protocol.
    Bandwidth,
}

#[derive(Subcommand)]
enum IpfsCommand {
    /// Runs garbage collection on the IPFS daemons.
    Gc {
        /// Only the contacted peer's daemon.
        #[arg(long)]
        local: bool,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help is not an error; usage mistakes exit 1 as upstream.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if cli.version {
        println!("ipfscluster version {VERSION}");
        return;
    }
    let Some(command) = cli.command else {
        let _ = Cli::command().print_help();
        std::process::exit(1);
    };
    let global = GlobalOptions {
        host: cli.host,
        basic_auth: cli
            .basic_auth
            .or_else(|| std::env::var("CLUSTER_CREDENTIALS").ok()),
        encoding: cli.enc,
        timeout: cli.timeout,
    };
    let enc = Encoding::parse(global.encoding.as_deref().unwrap_or("text")).unwrap_or_default();
    if let Err(e) = run(&global, command) {
        std::process::exit(report(&e, enc));
    }
}

fn run(global: &GlobalOptions, command: Command) -> Result<(), CliError> {
    let mut session = Session::new(global, std::io::stdout().lock())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            Command::Id => session.id().await,
            Command::Add(flags) => {
                let (paths, args) = flags.args();
                session.add(&paths, &args).await
            }
            Command::Version => session.version().await,
            Command::Peers(PeersCommand::Ls) => session.peers_ls().await,
            Command::Peers(PeersCommand::Rm { peer }) => session.peers_rm(&peer).await,
            Command::Pin(PinCommand::Add {
                cid,
                replication,
                replication_min,
                replication_max,
                name,
                mode,
                allocations,
                expire_in,
                metadata,
                wait,
            }) => {
                let args = PinAddArgs {
                    replication,
                    replication_min,
                    replication_max,
                    name,
                    mode,
                    allocations,
                    expire_in,
                    metadata,
                    wait: wait.args(),
                };
                session.pin_add(&cid, &args).await
            }
            Command::Pin(PinCommand::Rm { cid, wait }) => session.pin_rm(&cid, &wait.args()).await,
            Command::Pin(PinCommand::Update {
                from,
                to,
                name,
                expire_in,
                wait,
            }) => {
                let args = PinUpdateArgs {
                    name,
                    expire_in,
                    wait: wait.args(),
                };
                session.pin_update(&from, &to, &args).await
            }
            Command::Pin(PinCommand::Ls { cid, filter }) | Command::Allocations { cid, filter } => {
                session.pin_ls(cid.as_deref(), &filter).await
            }
            Command::Status {
                cids,
                local,
                filter,
            } => session.status(&cids, local, filter.as_deref()).await,
            Command::Recover { cid, local } => session.recover(cid.as_deref(), local).await,
            Command::Health(HealthCommand::Metrics { name }) => {
                session.health_metrics(name.as_deref()).await
            }
            Command::Health(HealthCommand::Alerts) => session.health_alerts().await,
            Command::Health(HealthCommand::Graph) => session.health_graph().await,
            Command::Health(HealthCommand::Bandwidth) => session.health_bandwidth().await,
            Command::Ipfs(IpfsCommand::Gc { local }) => session.ipfs_gc(local).await,
        }
    })
}
