//! `sori-ldap-sync`: the LDAP bridge. The company directory decides who has an account,
//! their profile, and which org-unit spaces and rooms they are in; the bridge brings Sori in
//! step through the appservice API, once (`once`, or `once --dry-run` to see the changes) or
//! every few minutes and whenever the admin room asks (`daemon`).

mod config;
mod directory;
mod matrix;
mod requests;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sori-ldap-sync",
    version,
    about = "Keeps Sori in step with the company directory"
)]
struct Cli {
    /// The configuration file (TOML; see ldap-sync.example.toml).
    #[arg(
        long,
        short,
        env = "SORI_LDAP_SYNC_CONFIG",
        global = true,
        default_value = "ldap-sync.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sync once and exit.
    Once {
        /// Print the changes a sync would make, and make none.
        #[arg(long)]
        dry_run: bool,
    },
    /// Sync now and then every `interval_secs`, and whenever an admin asks in the admin room
    /// (`!admin ldap sync`); a failed sync (the directory or the homeserver down) is retried
    /// at the next one.
    Daemon,
}

/// One sync: read the directory (all or nothing), then apply the difference.
async fn sync_once(config: &config::Config, dry: bool) -> Result<sync::Summary, String> {
    let registration = config::Registration::load(&config.registration)?;
    let started = Instant::now();
    let directory = directory::read(&config.ldap).await?;
    for skipped in &directory.skipped {
        tracing::warn!(entry = %skipped, "left out of the sync");
    }
    let homeserver = matrix::Homeserver::connect(
        &config.homeserver,
        &registration.as_token,
        &registration.sender_localpart,
    )
    .await?;
    let mut state = sync::State::load(&config.state_file)?;
    let summary = sync::run(
        &homeserver,
        &directory,
        &mut state,
        &config.company_name,
        &config.alias_prefix,
        Some(&config.state_file),
        dry,
    )
    .await?;
    tracing::info!(
        people = directory.people.len(),
        units = directory.units.len(),
        seconds = started.elapsed().as_secs_f64(),
        "sync done"
    );
    Ok(summary)
}

/// The command's answer, on standard output (logs go to standard error).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let config = match config::Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Once { dry_run } => {
            let started = Instant::now();
            match sync_once(&config, dry_run).await {
                Ok(summary) => {
                    if dry_run {
                        for change in &summary.changes {
                            say(&format!("would {change}"));
                        }
                    }
                    say(&format!(
                        "{}{} in {:.2} s",
                        if dry_run { "dry run: " } else { "" },
                        summary.line(),
                        started.elapsed().as_secs_f64()
                    ));
                    if summary.failed > 0 {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    tracing::error!("{e}; nothing was changed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Daemon => daemon(&config).await,
    }
}

/// A sync, logged.
async fn logged_sync(config: &config::Config, dry: bool) -> Result<sync::Summary, String> {
    let started = Instant::now();
    let outcome = sync_once(config, dry).await;
    match &outcome {
        Ok(summary) => tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            dry,
            "{}",
            summary.line()
        ),
        Err(e) => tracing::error!(error = %e, "sync failed; retrying at the next sync"),
    }
    outcome
}

/// The bot's device listening for the admin room's requests.
async fn listen(
    config: &config::Config,
) -> Result<(matrix::Homeserver, requests::Listener), String> {
    let registration = config::Registration::load(&config.registration)?;
    let homeserver = matrix::Homeserver::connect(
        &config.homeserver,
        &registration.as_token,
        &registration.sender_localpart,
    )
    .await?;
    let listener = requests::Listener::start(&homeserver)
        .await
        .map_err(|f| format!("signing the bot in: {f}"))?;
    Ok((homeserver, listener))
}

/// Syncs now, every `interval_secs`, and when asked; never returns.
async fn daemon(config: &config::Config) -> ExitCode {
    let interval = Duration::from_secs(config.interval_secs.max(1));
    let mut listening = None;
    let mut next_sync = tokio::time::Instant::now();
    loop {
        // Listening first, so that a request made during the first sync is heard.
        if listening.is_none() {
            match listen(config).await {
                Ok(pair) => listening = Some(pair),
                Err(e) => tracing::warn!(error = %e, "not listening for requests yet"),
            }
        }
        if tokio::time::Instant::now() >= next_sync {
            let _ = logged_sync(config, false).await;
            next_sync = tokio::time::Instant::now() + interval;
        }
        let Some((homeserver, listener)) = listening.as_mut() else {
            let retry = tokio::time::Instant::now() + Duration::from_secs(10);
            tokio::time::sleep_until(next_sync.min(retry)).await;
            continue;
        };
        let polled = tokio::select! {
            _ = tokio::time::sleep_until(next_sync) => continue,
            polled = listener.next(homeserver) => polled,
        };
        match polled {
            Ok(asked) => {
                for request in asked {
                    tracing::info!(room = %request.room_id, dry = request.dry_run, "sync asked for");
                    let outcome = logged_sync(config, request.dry_run).await;
                    let text = requests::answer_text(&outcome, request.dry_run);
                    if let Err(f) = requests::answer(homeserver, &request, &text).await {
                        tracing::warn!(failure = %f, "answering the admin room");
                    }
                }
            }
            Err(f) => {
                tracing::warn!(failure = %f, "listening for requests; trying again");
                listening = None;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}
