//! Real `nats-server` processes for the JetStream log's tests: one node, or a
//! three-node cluster on loopback, each node with its own folder and ports,
//! killed when dropped. The binary comes from `STATION_NATS_SERVER`
//! (`scripts/test.sh` sets it from `scripts/nats-server.sh`); without it the
//! tests skip, unless `STATION_REQUIRE_NATS=1`, which makes that a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use station_hub::store::{HubError, JetStreamLog, JetStreamOptions};

/// The server binary, or `None` (with a note) when the tests should skip.
pub fn server_binary() -> Option<PathBuf> {
    let required = std::env::var("STATION_REQUIRE_NATS").is_ok_and(|v| v == "1");
    match std::env::var_os("STATION_NATS_SERVER").map(PathBuf::from) {
        Some(path) if path.is_file() => Some(path),
        found => {
            assert!(
                !required,
                "STATION_REQUIRE_NATS=1 but STATION_NATS_SERVER ({found:?}) names no nats-server: \
                 run scripts/nats-server.sh install"
            );
            eprintln!(
                "skipped: no nats-server (set STATION_NATS_SERVER, see scripts/nats-server.sh)"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node: its folder, ports and process.
pub struct Node {
    binary: PathBuf,
    dir: PathBuf,
    pub client_port: u16,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL, as a crash: nothing of the node's shutdown runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Nodes of one deployment, in their temporary folder.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// One JetStream node, or `None` when the tests skip.
    pub fn single() -> Option<Self> {
        Self::start(1)
    }

    /// Three JetStream nodes routed to each other, or `None` when the tests skip.
    pub fn three() -> Option<Self> {
        Self::start(3)
    }

    fn start(count: usize) -> Option<Self> {
        let binary = server_binary()?;
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, cluster)| format!("nats-route://127.0.0.1:{cluster}"))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(n, (client, cluster))| {
                let node_dir = dir.path().join(format!("n{n}"));
                std::fs::create_dir_all(node_dir.join("jetstream")).unwrap();
                let cluster_block = if count > 1 {
                    format!(
                        "cluster {{\n  name: test\n  listen: 127.0.0.1:{cluster}\n  routes: [{}]\n}}\n",
                        routes.join(", ")
                    )
                } else {
                    String::new()
                };
                let config = format!(
                    "server_name: n{n}\nlisten: 127.0.0.1:{client}\n\
                     jetstream {{\n  store_dir: {:?}\n}}\n{cluster_block}",
                    node_dir.join("jetstream")
                );
                std::fs::write(node_dir.join("nats.conf"), config).unwrap();
                let mut node = Node {
                    binary: binary.clone(),
                    dir: node_dir,
                    client_port: *client,
                    child: None,
                };
                node.start();
                node
            })
            .collect();
        Some(Self { nodes, _dir: dir })
    }

    /// Starts again a node that was killed, on its folder and ports.
    pub fn restart(&mut self, node: usize) {
        self.nodes[node].start();
    }

    /// Every node's URL.
    pub fn servers(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// Options for a log named `stream` over these nodes.
    pub fn options(&self, stream: &str, replicas: usize) -> JetStreamOptions {
        JetStreamOptions {
            servers: self.servers(),
            credentials: None,
            replicas,
            stream: stream.to_string(),
            timeout: Duration::from_secs(3),
        }
    }

    /// Opens the log, polling while the nodes start and elect a leader.
    pub fn open(&self, options: &JetStreamOptions) -> JetStreamLog {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match JetStreamLog::open(options) {
                Ok(log) => return log,
                Err(error) if Instant::now() < deadline => {
                    let _: HubError = error;
                    std::thread::yield_now();
                }
                Err(error) => panic!(
                    "the log did not open: {error}; logs in {:?}",
                    self.log_dir()
                ),
            }
        }
    }

    fn log_dir(&self) -> &Path {
        &self.nodes[0].dir
    }
}
