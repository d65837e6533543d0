//! `eventline-bench`: measures Eventline against a bare axum server on the same machine,
//! in the same run, under the same load, and prints the figures and their ratios.
//!
//! `bench/run` builds everything in release mode, installs wrk, and calls `run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod baseline;
mod content_queries;
mod dataset;
mod disk;
mod load;
mod measure;
mod peers;
mod perf;
mod prototype;

#[derive(Parser)]
#[command(name = "eventline-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole benchmark and print the table.
    Run(RunArgs),
    /// Measure every target of the performance issue next to its reference (bare axum,
    /// ClickHouse, PostgreSQL with pgbench) and print the table.
    Perf(PerfArgs),
    /// Measure a log-structured store's two halves on this disk, with no server: a
    /// checksummed, group-synced log and zstd-compressed sorted segments.
    Prototype {
        /// NDJSON events (e.g. the data set file `perf` writes).
        input: PathBuf,
        /// Events per fdatasync.
        #[arg(long, default_value_t = 10_000)]
        group_len: usize,
    },
    /// Serve the baseline: a bare axum handler that reads the body and answers 201.
    Baseline {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Write the generated data set as NDJSON to stdout.
    Dataset {
        #[arg(long, default_value_t = 100_000)]
        events: usize,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The eventline binary to measure.
    #[arg(long, default_value = "target/release/eventline")]
    pub eventline: PathBuf,
    /// Where the data set, the wrk script and the results go.
    #[arg(long, default_value = "bench/out")]
    pub out_dir: PathBuf,
    /// Events in the generated data set.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Connections of the single-event load.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Length of each single-event measurement.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Events per batch request.
    #[arg(long, default_value_t = 1_000)]
    pub batch_len: usize,
    /// Concurrent batch requests.
    #[arg(long, default_value_t = 4)]
    pub batch_connections: usize,
    /// Also measure Eventline on PostgreSQL (a throwaway durable cluster from the system's
    /// PostgreSQL binaries) and `pgbench` one-row INSERTs on the same cluster.
    #[arg(long)]
    pub postgres: bool,
}

#[derive(clap::Args)]
pub struct PerfArgs {
    /// The eventline binary to measure.
    #[arg(long, default_value = "target/release/eventline")]
    pub eventline: PathBuf,
    /// Where the data set files (kept between runs), the scripts and the results go.
    #[arg(long, default_value = "bench/out")]
    pub out_dir: PathBuf,
    /// Events in the data set.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: usize,
    /// Length of each timed load (single posts, timeline queries, pgbench).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Connections of the single-post load.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Connections of the timeline query load, for Eventline and for pgbench.
    #[arg(long, default_value_t = 16)]
    pub query_connections: usize,
    /// Events per import request, for Eventline and ClickHouse.
    #[arg(long, default_value_t = 10_000)]
    pub batch_len: usize,
    /// Concurrent import requests.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// One more argument of `eventline serve`, as many times as needed: e.g.
    /// `--serve-arg=--log-memtable-mb --serve-arg=64` measures a larger memtable.
    #[arg(long, allow_hyphen_values = true)]
    pub serve_arg: Vec<String>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.trim_end_matches('s')
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|error| error.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => load::run(&args),
        Command::Perf(args) => perf::run(&args),
        Command::Prototype { input, group_len } => prototype::run(&input, group_len),
        Command::Baseline { listen } => baseline::serve(&listen),
        Command::Dataset { events } => dataset::write_ndjson(events, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("eventline-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
