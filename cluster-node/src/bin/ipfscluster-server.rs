//! The cluster peer daemon (not yet: see the crate docs).

fn main() {
    std::process::exit(cluster_node::not_yet(
        "ipfscluster-server",
        "the peer daemon",
    ));
}
