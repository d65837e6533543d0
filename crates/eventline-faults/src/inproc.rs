//! The server inside the test process, on the simulated disk of [`crate::sim_disk`]: its
//! store's files go through it, so a test can cut the power or fail the disk under it,
//! then stop it abruptly and start it again on the same address and files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventline_server::{App, Config};
use eventline_store::log::LogOptions;
use eventline_store::{Durability, Store, StoreConfig};
use tokio::sync::oneshot;

use crate::sim_disk;

/// One server with its own runtime on its own thread.
pub struct InProcess {
    /// `http://127.0.0.1:PORT`, the same across restarts.
    pub url: String,
    address: SocketAddr,
    dir: PathBuf,
    durability: Durability,
    running: Option<Running>,
}

struct Running {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl InProcess {
    /// Starts a server on a free loopback port with the embedded store in `dir`.
    pub async fn start(dir: &Path, durability: Durability) -> InProcess {
        let address = "127.0.0.1:0".parse().expect("address");
        let (running, address) = launch(dir, durability, address)
            .await
            .expect("start the server");
        InProcess {
            url: format!("http://{address}"),
            address,
            dir: dir.to_owned(),
            durability,
            running: Some(running),
        }
    }

    /// Cuts the power under the running server: the writes not synced are gone, or
    /// scattered (see [`sim_disk::PowerCut`]). The server stops at once (its requests
    /// end unanswered), and the disk works again.
    pub async fn power_cut(&mut self, cut: sim_disk::PowerCut) {
        sim_disk::power_off(cut);
        self.halt().await;
        sim_disk::power_on();
    }

    /// Stops the server at once: open requests end unanswered, nothing is drained, and
    /// every file is closed when this returns.
    pub async fn halt(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            tokio::task::spawn_blocking(move || running.thread.join())
                .await
                .expect("join")
                .expect("the server thread ended cleanly");
        }
    }

    /// Starts the server again on the same address and files; the port is retried for a
    /// while in case the old socket lingers.
    pub async fn restart(&mut self) {
        self.halt().await;
        let mut attempts = 0;
        loop {
            match launch(&self.dir, self.durability, self.address).await {
                Ok((running, _)) => {
                    self.running = Some(running);
                    return;
                }
                Err(error) if attempts >= 50 => panic!("the server did not start again: {error}"),
                Err(_) => attempts += 1,
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
        }
    }
}

async fn launch(
    dir: &Path,
    durability: Durability,
    address: SocketAddr,
) -> Result<(Running, SocketAddr), String> {
    let (ready, started) = oneshot::channel();
    let (stop, stopped) = oneshot::channel();
    let dir = dir.to_owned();
    let thread = std::thread::spawn(move || serve(dir, durability, address, ready, stopped));
    match started.await {
        Ok(Ok(address)) => Ok((Running { stop, thread }, address)),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => Err("the server thread ended before listening".to_owned()),
    }
}

/// The server thread: opens the store on the simulated disk, serves until `stopped`, then
/// drops the runtime, which ends every task and waits for the blocking ones, so the
/// store's files are closed when the thread ends.
fn serve(
    dir: PathBuf,
    durability: Durability,
    address: SocketAddr,
    ready: oneshot::Sender<Result<SocketAddr, String>>,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let opened = open_store(&dir, durability)
            .await
            .map_err(|error| format!("open the store: {error}"))
            .and_then(|store| {
                let mut config = Config::new(dir.clone());
                config.durability = durability;
                App::with_store(config, store).map_err(|error| error.to_string())
            });
        let app = match opened {
            Ok(app) => app,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let listener = match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(error) => {
                let _ = ready.send(Err(format!("bind {address}: {error}")));
                return;
            }
        };
        let bound = listener.local_addr().expect("local address");
        let _ = ready.send(Ok(bound));
        tokio::select! {
            served = app.serve(listener, std::future::pending()) => {
                served.expect("serve");
            }
            _ = stopped => {}
        }
    });
    drop(runtime);
}

/// The embedded store in `dir`, on the simulated disk.
async fn open_store(
    dir: &Path,
    durability: Durability,
) -> Result<Arc<dyn Store>, eventline_store::Error> {
    eventline_store::open(StoreConfig::Embedded {
        data_dir: dir.to_owned(),
        options: LogOptions {
            durability,
            disk: Arc::new(sim_disk::SimDisk),
            // A few hundred events: the faults strike flushes and segments too.
            memtable_bytes_max: 256 << 10,
            ..LogOptions::default()
        },
    })
    .await
}
