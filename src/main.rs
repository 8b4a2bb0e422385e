//! The `sori` command: serve (the default), or administer the data directory offline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sori::config::{Config, LogFormat};
use sori::users::accounts::Role;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "sori",
    version,
    about = "Sori: a Matrix homeserver for company messaging"
)]
struct Cli {
    /// Configuration file (TOML). Without one, defaults and SORI_* variables apply.
    #[arg(long, short, env = "SORI_CONFIG", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver (the default).
    Serve,
    /// Manage accounts directly in the data directory (with the server stopped).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the message search index (with the server stopped).
    Search {
        #[command(subcommand)]
        command: SearchCommand,
    },
    /// Check or export the audit log (with the server stopped).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and name the first entry that was changed or removed (exit 1).
    Verify,
    /// Write every entry, oldest first, to standard output.
    Export {
        /// One JSON object per line (the only format).
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
    },
}

#[derive(Subcommand)]
enum SearchCommand {
    /// Empty the search backend and index every searchable event of every room again.
    Reindex,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account, e.g. the first administrator.
    Create {
        /// The localpart: `alice` becomes @alice:<server_name>.
        name: String,
        /// Give the account the server admin role.
        #[arg(long)]
        admin: bool,
        /// The password; a random one is generated and printed when omitted.
        #[arg(long)]
        password: Option<String>,
    },
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log.format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Panics inside request handlers are answered with a 500 and the server goes on; log where
/// they happened through tracing (JSON logs stay parseable). The payload is left out: it may
/// quote request data.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(location = location.as_deref().unwrap_or("unknown"), "panic");
    }));
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}

async fn create_user(
    config: Config,
    name: String,
    admin: bool,
    password: Option<String>,
) -> Result<(), String> {
    let app = sori::build(config).map_err(|e| {
        format!("{e} (is the server running? stop it first: the database allows one process)")
    })?;
    let accounts = &app.services.accounts;
    let user_id = accounts.user_id_for(&name).map_err(|e| e.to_string())?;
    let generated = password.is_none();
    let password = password.unwrap_or_else(sori::random::password);
    let role = if admin { Role::Admin } else { Role::User };
    accounts
        .create(
            &user_id,
            Some(password.clone()),
            role,
            &sori::admin::audit::Origin::server(),
        )
        .await
        .map_err(|e| e.to_string())?;
    app.services
        .profiles
        .set_field(&user_id, "displayname", Some(user_id.localpart().into()))
        .map_err(|e| e.to_string())?;
    println!("created {user_id}{}", if admin { " (admin)" } else { "" });
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

/// Opens only the store (not the whole server) for offline reads.
fn open_store(config: &Config) -> Result<sori::storage::rocksdb::RocksStore, String> {
    sori::storage::rocksdb::RocksStore::open(&config.storage.path, config.storage.cache_mb).map_err(
        |e| format!("{e} (is the server running? stop it first: the database allows one process)"),
    )
}

fn audit_verify(config: Config) -> Result<(), String> {
    let store = open_store(&config)?;
    let report = sori::admin::audit::chain::verify(&store).map_err(|e| e.to_string())?;
    if let Some(anchor) = &report.anchor {
        println!(
            "entries up to {} were pruned; the chain starts from its hash",
            anchor.id
        );
    }
    match report.broken {
        None => {
            println!(
                "audit log intact: {} entries, last id {}",
                report.intact, report.last_id
            );
            Ok(())
        }
        Some((id, problem)) => Err(format!(
            "audit log broken at entry {id}: {problem} ({} entries before it are intact)",
            report.intact
        )),
    }
}

fn audit_export(config: Config) -> Result<(), String> {
    let store = open_store(&config)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written =
        sori::admin::audit::Audit::export_jsonl(&store, &mut out).map_err(|e| e.to_string())?;
    std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
    eprintln!("exported {written} entries");
    Ok(())
}

async fn reindex(config: Config) -> Result<(), String> {
    let app = sori::build(config).map_err(|e| {
        format!("{e} (is the server running? stop it first: the database allows one process)")
    })?;
    let started = std::time::Instant::now();
    let indexed = sori::search::indexer::reindex(&app.services, |done| {
        eprint!("\rindexed {done} events");
    })
    .await
    .map_err(|e| e.to_string())?;
    eprintln!();
    println!(
        "reindexed {indexed} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sori: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_logging(&config);
            log_panics();
            match sori::build(config) {
                Ok(app) => sori::serve(app, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
        Command::User {
            command:
                UserCommand::Create {
                    name,
                    admin,
                    password,
                },
        } => create_user(config, name, admin, password).await,
        Command::Search {
            command: SearchCommand::Reindex,
        } => reindex(config).await,
        Command::Audit {
            command: AuditCommand::Verify,
        } => audit_verify(config),
        Command::Audit {
            command: AuditCommand::Export { format: _ },
        } => audit_export(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            eprintln!("sori: {e}");
            ExitCode::FAILURE
        }
    }
}
