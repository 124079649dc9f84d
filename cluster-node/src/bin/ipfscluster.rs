//! The command-line client (not yet: see the crate docs).

fn main() {
    std::process::exit(cluster_node::not_yet(
        "ipfscluster",
        "the command-line client",
    ));
}
