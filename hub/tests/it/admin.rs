//! `station-hub enroll`, `revoke` and `tokens` against a running
//! `station-hub serve` process, through its administration socket: a token
//! issued while the hub serves works at once, a revocation holds from the
//! next call, and a hub killed with SIGKILL leaves a socket that neither the
//! commands nor the next hub trip over.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use crate::fixtures::{authorized, hello, hub_cli, hub_command, stdout_of};
use station_proto::ids::Uuid;
use station_proto::v1::sync_client::SyncClient;
use tonic::Code;

fn stderr_of(output: &Output) -> String {
    assert!(!output.status.success(), "expected a refusal");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `station-hub serve` process, killed when dropped.
pub struct Served {
    child: Child,
    pub url: String,
    socket: std::path::PathBuf,
}

impl Served {
    /// Starts the hub on `data` and waits until it says where it listens:
    /// by then its administration socket is bound, if it could be.
    pub fn start(data: &Path) -> Served {
        let mut child = hub_command(&["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("the hub exited before serving")
                .unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                break format!("http://{addr}");
            }
        };
        // Keep reading, so the hub never writes into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Served {
            child,
            url,
            socket: data.join("admin").join("hub.sock"),
        }
    }

    async fn hello(&self, token: &str, origin: Uuid) -> Result<(), tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = SyncClient::new(channel);
        client
            .hello(authorized(hello(origin, "540502001"), token))
            .await
            .map(|_| ())
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_issued_and_revoked_while_the_hub_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let hub = Served::start(&data);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("admin")), 0o700, "a private folder");
    assert_eq!(mode(&hub.socket), 0o600);

    // Issued while serving, used at once.
    let token = stdout_of(&hub_cli(
        &data,
        &["enroll", "--station", "540502001", "--device", "zd-phone-3"],
    ))
    .trim()
    .to_string();
    let token_id = token.split_once('.').unwrap().0.to_string();
    let origin = Uuid::now_v7();
    hub.hello(&token, origin).await.unwrap();

    // The running hub checks its own roster and the usual rules.
    let off_roster = stderr_of(&hub_cli(
        &data,
        &["enroll", "--station", "540502999", "--device", "x"],
    ));
    assert!(
        off_roster.contains("station 540502999 is not on the roster")
            && off_roster.contains("the running hub serves with"),
        "{off_roster}"
    );
    let bad_code = stderr_of(&hub_cli(
        &data,
        &["enroll", "--station", "5405", "--device", "x"],
    ));
    assert!(bad_code.contains("must be 9 digits"), "{bad_code}");
    let unknown = stderr_of(&hub_cli(&data, &["revoke", "--token-id", "ffffffffffff"]));
    assert!(
        unknown.contains("no token has the id ffffffffffff"),
        "{unknown}"
    );

    // The listing shows the token bound to its origin, and no secret.
    let listing = stdout_of(&hub_cli(&data, &["tokens"]));
    assert!(!listing.contains(token.split_once('.').unwrap().1));
    let row: Vec<&str> = listing
        .lines()
        .find(|l| l.starts_with(&token_id))
        .unwrap()
        .split('\t')
        .collect();
    assert_eq!(
        row[..6],
        [
            token_id.as_str(),
            "device",
            "540502001",
            "zd-phone-3",
            &origin.to_string(),
            "-"
        ]
    );

    // Revoked while serving: refused from the next call on.
    stdout_of(&hub_cli(&data, &["revoke", "--token-id", &token_id]));
    let status = hub.hello(&token, origin).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "token revoked");

    // Whatever else arrives on the socket is refused and changes nothing.
    for garbage in [&b"{\"drop_everything\":{}}\n"[..], b"\xff\xfe not json\n"] {
        let mut stream = std::os::unix::net::UnixStream::connect(&hub.socket).unwrap();
        stream.write_all(garbage).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.contains("refused"), "{answer}");
    }
    let listing = stdout_of(&hub_cli(&data, &["tokens"]));
    assert_eq!(listing.lines().count(), 2, "{listing}");

    // SIGTERM: the hub stops cleanly and takes its socket with it; the
    // commands then work on the store directly.
    assert!(hub.terminate().success());
    assert!(!data.join("admin").join("hub.sock").exists());
    let listing = stdout_of(&hub_cli(&data, &["tokens"]));
    assert_eq!(listing.lines().count(), 2, "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_left_by_a_killed_hub_trips_up_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let hub = Served::start(&data);
    let socket = hub.socket.clone();
    drop(hub); // SIGKILL: the socket file stays.
    assert!(socket.exists());

    // Nobody listens: the commands open the store directly.
    let bureau = stdout_of(&hub_cli(&data, &["enroll", "--bureau", "山南市民政局"]));
    assert_eq!(bureau.trim().split_once('.').unwrap().0.len(), 12);

    // The next hub replaces the socket and answers on it.
    let hub = Served::start(&data);
    let token = stdout_of(&hub_cli(
        &data,
        &["enroll", "--station", "540502001", "--device", "zd-phone-4"],
    ));
    hub.hello(token.trim(), Uuid::now_v7()).await.unwrap();
    let listing = stdout_of(&hub_cli(&data, &["tokens"]));
    assert_eq!(listing.lines().count(), 3, "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_folder_too_deep_for_a_socket_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    // A Unix socket's path holds at most 107 bytes.
    let data = dir.path().join("d".repeat(60)).join("h".repeat(60));
    let hub = Served::start(&data);
    assert!(!hub.socket.exists());
    // It answers calls: an unknown token is refused as such.
    let status = hub
        .hello("0123456789ab.00", Uuid::now_v7())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // The commands say why they cannot reach it.
    let output = hub_cli(&data, &["tokens"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot open the hub store"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(hub.terminate().success());
}
