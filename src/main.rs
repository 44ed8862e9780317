//! `neonex`: the hub server.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use neonex::settings::{CheckedSettings, LogFormat, LogSettings, Overrides, Settings};
use neonex::{CheckedConfig, ConfigError, Hub};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Two mimalloc options, each measured on a hub holding many idle connections. Arenas are
/// committed lazily: eager commit (the default) doubles the resident memory (about 2.1 KB
/// per connection against 1.0 KB). And freed memory goes back to the system at once, not
/// after 10 ms: an idle shard makes no further call that would give it back later, so
/// what the handshakes' short-lived allocations left stays resident (599 bytes per idle
/// connection against 664; CPU per delivery and per churned connection unchanged,
/// `perf/RESULTS.md`). Options are read when mimalloc starts, before `main`, so this runs
/// as an early constructor; `MIMALLOC_ARENA_EAGER_COMMIT` and `MIMALLOC_PURGE_DELAY`, if
/// set, still win.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00101"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

#[cfg(target_os = "linux")]
extern "C" fn tune_allocator() {
    /// `mi_option_arena_eager_commit` and `mi_option_purge_delay` in mimalloc's option
    /// enum (v2 and v3).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    for (variable, option) in [
        ("MIMALLOC_ARENA_EAGER_COMMIT", ARENA_EAGER_COMMIT),
        ("MIMALLOC_PURGE_DELAY", PURGE_DELAY),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: setting an option is a plain store; mimalloc allows it before init.
            unsafe { libmimalloc_sys::mi_option_set(option, 0) };
        }
    }
}

#[derive(Parser)]
#[command(
    name = "neonex",
    version,
    about = "A thread-per-core WebSocket hub server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub server.
    Serve(SettingsArgs),
    /// Print the settings in effect (defaults, file, environment, flags) and exit.
    Config(SettingsArgs),
}

/// The layers above the embedded defaults; see `neonex.example.toml`.
#[derive(clap::Args)]
struct SettingsArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address and port to listen on (`listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Number of shards, one thread per core (`shards`).
    #[arg(long)]
    shards: Option<usize>,
    /// Run the shards on epoll even where io_uring is available (`hub.driver = "epoll"`).
    #[arg(long)]
    epoll: bool,
    /// Join the cluster on this NATS server, e.g. `nats://127.0.0.1:4222`
    /// (`cluster.nats_url`).
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// Log format (`log.format`).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

impl SettingsArgs {
    /// The settings these layers give, checked once, and what checking built.
    fn load_and_check(&self) -> Result<(Settings, CheckedSettings), ConfigError> {
        let overrides = Overrides {
            listen: self.listen,
            shards: self.shards,
            log_format: self.log_format,
            epoll: self.epoll,
            cluster: self.cluster.clone(),
        };
        let settings = Settings::load(self.config.as_deref(), std::env::vars(), &overrides)?;
        let checked = settings.check()?;
        Ok((settings, checked))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (Command::Serve(args) | Command::Config(args)) = &cli.command;
    let (settings, checked) = match args.load_and_check() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("neonex: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Config(_) => {
            print!("{}", settings.to_toml());
            ExitCode::SUCCESS
        }
        Command::Serve(_) => {
            init_logging(&settings.log, checked.log_filter);
            serve(settings.listen, checked.hub)
        }
    }
}

/// SIGHUP: the TLS certificate and key are read again for new connections, as a
/// certificate renewal needs; a file that cannot be used is logged, and the hub goes on
/// with what it had.
fn reload_tls(hub: &Hub) {
    match hub.reload_tls() {
        Ok(true) => tracing::info!("SIGHUP: TLS certificate and key reloaded for new connections"),
        Ok(false) => tracing::info!("SIGHUP: no TLS to reload"),
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the certificate in use")
        }
    }
}

/// `RUST_LOG`, when set and valid, wins over `log.level`.
fn init_logging(log: &LogSettings, level: tracing_subscriber::EnvFilter) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or(level);
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log.format {
        LogFormat::Text => builder
            .with_ansi(log.color.use_ansi(std::io::stdout().is_terminal()))
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(listen: SocketAddr, config: CheckedConfig) -> ExitCode {
    // Signals are taken by this thread before any shard starts, so every thread
    // inherits the handlers and none dies of SIGINT by default.
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let hub = match Hub::from_checked(config) {
        Ok(hub) => hub,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the hub");
            return ExitCode::FAILURE;
        }
    };
    match hub.listen(listen) {
        Ok(addr) => tracing::info!(%addr, path = %hub.config().path, "neonex is serving"),
        Err(e) => {
            // Said on standard error too: a second start under a service manager must
            // say why it stopped even where the log goes elsewhere.
            eprintln!("neonex: cannot listen on {listen}: {e}");
            tracing::error!(%listen, error = %e, "cannot listen");
            hub.close();
            return ExitCode::from(2);
        }
    }
    for signal in signals.forever() {
        if signal == SIGHUP {
            reload_tls(&hub);
            continue;
        }
        tracing::info!(signal, "shutting down gracefully");
        break;
    }
    // A second signal to stop during the drain ends the process at once.
    std::thread::spawn(move || {
        if signals.forever().any(|signal| signal != SIGHUP) {
            std::process::exit(1);
        }
    });
    hub.close();
    tracing::info!("bye");
    ExitCode::SUCCESS
}
