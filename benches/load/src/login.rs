//! `sori-load login`: login latency by way of signing in. Local password logins (argon2id)
//! always; LDAP logins when given a directory person's credentials (the server must have
//! `[ldap]` on); JWT logins when given the server's `[jwt] secret` (HS256).

use std::time::{Duration, Instant};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::{percentile, register};

async fn time_logins(
    http: &reqwest::Client,
    url: &str,
    label: &str,
    logins: usize,
    body: impl Fn(usize) -> Value,
) -> Result<Value, String> {
    let mut latencies = Vec::with_capacity(logins);
    for n in 0..logins {
        let started = Instant::now();
        let response = http
            .post(format!("{url}/_matrix/client/v3/login"))
            .json(&body(n))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| e.to_string())?;
        latencies.push(started.elapsed());
        if !status.is_success() {
            return Err(format!("{label} login: {status} {answer}"));
        }
    }
    latencies.sort();
    println!(
        "{label:<28} {logins:>5} logins   p50 {:>7.2} ms   p95 {:>7.2} ms   p99 {:>7.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
    );
    Ok(json!({"p50_ms": percentile(&latencies, 0.50), "p95_ms": percentile(&latencies, 0.95)}))
}

pub async fn run(
    url: String,
    logins: usize,
    ldap: Option<(String, String)>,
    jwt_secret: Option<String>,
) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let name = format!("login{}", std::process::id());
    register(&http, &url, &name).await?;
    let password = format!("{name}-load-pw");
    let mut summary = json!({});
    summary["local"] = time_logins(&http, &url, "local password (argon2id)", logins, |_| {
        json!({"type": "m.login.password", "password": password,
               "identifier": {"type": "m.id.user", "user": name}})
    })
    .await?;
    if let Some((user, password)) = ldap {
        summary["ldap"] = time_logins(&http, &url, "LDAP (search + bind)", logins, |_| {
            json!({"type": "m.login.password", "password": password,
                   "identifier": {"type": "m.id.user", "user": user}})
        })
        .await?;
    }
    if let Some(secret) = jwt_secret {
        let key = EncodingKey::from_secret(secret.as_bytes()).map_err(|e| e.to_string())?;
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs()
            + 3600;
        let tokens: Vec<String> = (0..logins)
            .map(|n| {
                encode(
                    &Header::default(),
                    &json!({"sub": format!("jwt{}u{}", std::process::id(), n % 10), "exp": exp}),
                    &key,
                )
                .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        summary["jwt"] = time_logins(
            &http,
            &url,
            "JWT (HS256)",
            logins,
            |n| json!({"type": "org.matrix.login.jwt", "token": tokens[n]}),
        )
        .await?;
    }
    Ok(summary)
}
