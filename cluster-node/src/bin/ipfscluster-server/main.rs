//! `ipfscluster-server`: runs an IPFS Cluster peer and manages its config
//! directory and offline state. The work is done by
//! [`cluster_node::server`]; this parses the command line and reports.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use cluster_node::config::ServerConfig;
use cluster_node::server::daemon::{self, DaemonOptions};
use cluster_node::server::init::{init, InitOptions};
use cluster_node::server::lock::ConfigLock;
use cluster_node::server::state::{self, PeerPaths};
use cluster_node::server::{config_dir, VERSION};

#[cfg(feature = "client")]
mod local_cluster;

/// An IPFS Cluster peer: keeps a pinset replicated with Raft among the
/// cluster's peers and has its IPFS daemon pin what is allocated to it.
#[derive(Parser)]
#[command(name = "ipfscluster-server", version = VERSION)]
struct Cli {
    /// Config directory [default: $IPFS_CLUSTER_PATH, else ~/.ipfs-cluster]
    #[arg(short, long, global = true, value_name = "DIR")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a new config directory: server.json and the identity key.
    Init {
        /// Replace an existing server.json (the identity key is kept).
        #[arg(short, long)]
        force: bool,
        /// The cluster secret, 64 hex characters [default: random].
        #[arg(long, value_name = "HEX")]
        secret: Option<String>,
        /// Peers to join through (multiaddrs with /p2p/<id>), comma-separated.
        #[arg(long, value_name = "MULTIADDR,...", value_delimiter = ',')]
        peers: Vec<String>,
        /// Drive the external IPFS daemon whose API is at MULTIADDR (e.g.
        /// /ip4/127.0.0.1/tcp/5001) [default: an IPFS node embedded in the
        /// peer, no other software needed].
        #[arg(long, value_name = "MULTIADDR")]
        ipfs_api: Option<String>,
    },
    /// Runs the peer until SIGINT or SIGTERM.
    Daemon {
        /// Join the cluster through these peers (multiaddrs with /p2p/<id>,
        /// comma-separated) when this peer has no cluster state yet.
        #[arg(short = 'j', long, value_name = "MULTIADDR,...", value_delimiter = ',')]
        bootstrap: Vec<String>,
    },
    /// Offline commands on a stopped peer's consensus data.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Runs a whole cluster on this machine: PEERS peers on 127.0.0.1, each
    /// with an embedded IPFS node, adds a sample file pinned with
    /// replication 2, shows its status and keeps running until Ctrl-C.
    /// Running it again on the same directory restarts the same cluster.
    #[cfg(feature = "client")]
    LocalCluster {
        /// Where the peers' configs, data and logs go [default:
        /// ~/.ipfs-cluster-local].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// How many peers.
        #[arg(long, default_value_t = cluster_node::server::local::DEFAULT_PEERS)]
        peers: usize,
        /// Peer 0's REST API port; peer i uses BASE+100*i and the next three
        /// ports (IPFS proxy, cluster swarm, Pinning Service API).
        #[arg(long, value_name = "BASE", default_value_t = cluster_node::server::local::DEFAULT_BASE_PORT)]
        base_port: u16,
    },
    /// Prints the version.
    Version,
}

#[derive(Subcommand)]
enum StateCommand {
    /// Writes every pin, one JSON object per line.
    Export {
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Fills a fresh peer with the pins of FILE (one JSON object per line;
    /// "-" reads stdin): it becomes a new single-peer cluster holding them.
    Import {
        /// The export to read, or "-" for stdin.
        file: PathBuf,
    },
    /// Removes this peer's consensus data: its next start is a first start.
    Cleanup {
        /// Really remove it.
        #[arg(short, long)]
        force: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    init_tracing();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // openraft narrates every election and start at INFO: useful when
    // debugging consensus (RUST_LOG=info), noise for a user.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // The embedded IPFS node's crates log every connection and ping.
        EnvFilter::new("info,openraft=warn,libp2p_swarm=warn,connexa=warn,rust_ipfs=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .init();
}

fn run(cli: Cli) -> Result<()> {
    #[cfg(feature = "client")]
    if let Command::LocalCluster {
        dir,
        peers,
        base_port,
    } = &cli.command
    {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let Some(dir) = dir
            .clone()
            .or_else(|| home.map(|h| h.join(".ipfs-cluster-local")))
        else {
            bail!("no directory for the local cluster: give --dir DIR (HOME is not set)");
        };
        let options = cluster_node::server::local::LocalOptions {
            dir,
            peers: *peers,
            base_port: *base_port,
        };
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        return runtime.block_on(local_cluster::run(&options, stop_signal()));
    }
    let Some(dir) = config_dir(cli.config.as_deref()) else {
        bail!("no config directory: give --config DIR or set IPFS_CLUSTER_PATH (HOME is not set)");
    };
    match cli.command {
        Command::Version => {
            println!("{VERSION}");
            Ok(())
        }
        Command::Init {
            force,
            secret,
            peers,
            ipfs_api,
        } => {
            let report = init(
                &dir,
                &InitOptions {
                    force,
                    secret,
                    peers,
                    ipfs_api,
                },
            )?;
            eprintln!("configuration written to {}", report.config_file.display());
            if report.kept_identity {
                eprintln!("identity key kept: peer id {}", report.peer_id);
            } else {
                eprintln!("new identity written: peer id {}", report.peer_id);
            }
            match report.ipfs_embedded {
                true => eprintln!("IPFS: embedded node (in {}/ipfs)", dir.display()),
                false => eprintln!(
                    "IPFS: external daemon at {}",
                    load(&dir)?.ipfs_http.node_multiaddress
                ),
            }
            Ok(())
        }
        Command::Daemon { bootstrap } => {
            let config = load(&dir)?;
            let lock = ConfigLock::acquire(&dir)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async {
                let daemon = daemon::start(&dir, &config, &DaemonOptions { bootstrap }).await?;
                daemon.run(stop_signal()).await?;
                anyhow::Ok(())
            })?;
            drop(lock);
            Ok(())
        }
        Command::State { command } => state_command(&dir, command),
        #[cfg(feature = "client")]
        Command::LocalCluster { .. } => unreachable!("handled before the config directory"),
    }
}

fn load(dir: &Path) -> Result<ServerConfig> {
    ServerConfig::load(dir).with_context(|| {
        format!(
            "loading the configuration (run `ipfscluster-server init` to create one in {})",
            dir.display()
        )
    })
}

fn state_command(dir: &Path, command: StateCommand) -> Result<()> {
    let config = load(dir)?;
    let _lock = ConfigLock::acquire(dir)?;
    let peer = cluster_net::p2p::identity_peer_id(&config.identity_dir(dir))?;
    let paths = PeerPaths::of(dir, &config, peer);
    let raft = config.raft_config();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        StateCommand::Export { file } => {
            let mut out: Box<dyn Write> = match &file {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let count = runtime.block_on(state::export(&paths, &raft, &mut out))?;
            eprintln!("exported {count} pins");
        }
        StateCommand::Import { file } => {
            let mut input: Box<dyn BufRead> = if file.as_os_str() == "-" {
                eprintln!("reading from stdin, Ctrl-D to finish");
                Box::new(BufReader::new(std::io::stdin()))
            } else {
                Box::new(BufReader::new(
                    std::fs::File::open(&file)
                        .with_context(|| format!("opening {}", file.display()))?,
                ))
            };
            let pins = state::read_pins(&mut input)?;
            let count = runtime.block_on(state::import(&paths, &raft, pins))?;
            eprintln!("imported {count} pins: this peer is now a single-peer cluster holding them");
        }
        StateCommand::Cleanup { force } => {
            if state::cleanup(&paths, force)? {
                eprintln!("consensus data removed: the next start is a first start");
            } else {
                eprintln!("no consensus data to remove");
            }
        }
    }
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM; a second one ends the process
/// at once (exit 1) in case the shutdown hangs.
async fn stop_signal() {
    wait_signal().await;
    tracing::info!("signal received: stopping (send it again to exit at once)");
    tokio::spawn(async {
        wait_signal().await;
        eprintln!("second signal: exiting without a clean shutdown");
        std::process::exit(1);
    });
}

async fn wait_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); only SIGINT stops the daemon");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
