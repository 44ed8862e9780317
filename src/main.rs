//! `neonex`: the hub server.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use neonex::{Hub, HubConfig};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc commits its arenas eagerly by default, which measured here doubles the
/// resident memory of a hub holding many idle connections (about 2.1 KB per connection
/// against 1.0 KB with lazy commit). Options are read when mimalloc starts, before `main`,
/// so this runs as an early constructor. `MIMALLOC_ARENA_EAGER_COMMIT`, if set, still wins.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00101"]
static LAZY_ARENA_COMMIT: extern "C" fn() = lazy_arena_commit;

#[cfg(target_os = "linux")]
extern "C" fn lazy_arena_commit() {
    /// `mi_option_arena_eager_commit` in mimalloc's option enum (v2 and v3).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        // SAFETY: setting an option is a plain store; mimalloc allows it before init.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
    }
}

#[derive(Parser)]
#[command(
    name = "neonex",
    version,
    about = "A thread-per-core WebSocket hub server"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "NEONEX_LOG_FORMAT", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub server.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:3000", env = "NEONEX_LISTEN")]
    listen: SocketAddr,
    /// Number of shards (threads, one per core). Default: the number of cores.
    #[arg(long, env = "NEONEX_SHARDS")]
    shards: Option<usize>,
    /// Run the shards on epoll even where io_uring is available.
    #[arg(long)]
    epoll: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut config = HubConfig::default();
    if let Some(shards) = args.shards {
        config.shards = shards;
    }
    if args.epoll {
        config.driver = neonex::DriverChoice::Epoll;
    }
    // Signals are taken by this thread before any shard starts, so every thread
    // inherits the handlers and none dies of SIGINT by default.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let hub = match Hub::new(config) {
        Ok(hub) => hub,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the hub");
            return ExitCode::FAILURE;
        }
    };
    match hub.listen(args.listen) {
        Ok(addr) => tracing::info!(%addr, path = %hub.config().path, "neonex is serving"),
        Err(e) => {
            tracing::error!(listen = %args.listen, error = %e, "cannot listen");
            hub.close();
            return ExitCode::FAILURE;
        }
    }
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down gracefully");
    }
    // A second signal during the drain ends the process at once.
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            std::process::exit(1);
        }
    });
    hub.close();
    tracing::info!("bye");
    ExitCode::SUCCESS
}
